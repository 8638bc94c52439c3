package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/xflow-net/xflow/config"
	"github.com/xflow-net/xflow/exporter"
	"github.com/xflow-net/xflow/exporter/ipfix"
	"github.com/xflow-net/xflow/exporter/netflow5"
	"github.com/xflow-net/xflow/exporter/netflow9"
	"github.com/xflow-net/xflow/flow"
	"github.com/xflow-net/xflow/metrics"
	"github.com/xflow-net/xflow/sink/kafka"
)

// sinkKey is what makes a collector's sink: a reload keeps the sinks whose
// key did not change (their connections, templates and sequence numbers).
type sinkKey struct {
	collector config.Collector
	domain    uint32
	mtu       int
	refresh   time.Duration
}

type sinkEntry struct {
	key sinkKey
	c   destination
}

// destination is one configured destination: an IPFIX/NetFlow collector's
// sink or a Kafka topic's.
type destination interface {
	exporter.Sink
	Stats() exporter.CollectorStats
}

// kafkaDestination gives a Kafka destination's totals the shape of a
// collector's, for the metrics and the log.
type kafkaDestination struct{ *kafka.Destination }

func (k kafkaDestination) Stats() exporter.CollectorStats {
	st := k.Destination.Stats()
	return exporter.CollectorStats{Messages: st.Records, Records: st.Records, Octets: st.Bytes,
		SendErrors: st.Errors, DroppedRecords: st.Dropped, Connects: st.Connects, Queued: st.Queued}
}

// collectorSet is the daemon's collector sinks, as configured now.
type collectorSet struct {
	ifaces []flow.Interface
	boot   time.Time
	log    *slog.Logger

	mu      sync.Mutex
	entries []sinkEntry
}

// build makes the sinks for cfg, reusing the current ones whose settings
// did not change; it returns the sinks no longer configured (to close).
// On error nothing changes.
func (s *collectorSet) build(cfg *config.Config) (unused []destination, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := append([]sinkEntry(nil), s.entries...)
	var next []sinkEntry
	var made []destination
	defer func() {
		if err != nil {
			closeAll(made, time.Second)
		}
	}()
	for _, cc := range cfg.Export.Collectors {
		k := sinkKey{collector: cc, domain: cfg.Export.ObservationDomain, mtu: cfg.Export.MTU, refresh: cfg.Export.TemplateRefresh}
		if i := slices.IndexFunc(old, func(e sinkEntry) bool { return e.key.equal(k) }); i >= 0 {
			next = append(next, old[i])
			old = slices.Delete(old, i, i+1)
			continue
		}
		c, err := s.newCollector(cfg, cc)
		if err != nil {
			return nil, err
		}
		made = append(made, c)
		next = append(next, sinkEntry{k, c})
		s.log.Info("exporting", "collector", cc.Name(), "protocol", cc.Protocol, "transport", cc.Transport)
	}
	for _, e := range old {
		unused = append(unused, e.c)
	}
	s.entries = next
	return unused, nil
}

// equal compares keys (config.Collector holds its kafka settings by
// pointer).
func (k sinkKey) equal(o sinkKey) bool {
	return k.collector.Equal(o.collector) && k.domain == o.domain && k.mtu == o.mtu && k.refresh == o.refresh
}

func (s *collectorSet) newCollector(cfg *config.Config, cc config.Collector) (destination, error) {
	var enc exporter.Encoder
	switch cc.Protocol {
	case "kafka":
		o, err := kafka.FromConfig(cfg, cc)
		if err != nil {
			return nil, err
		}
		o.Interfaces, o.Logger = s.ifaces, s.log
		d, err := kafka.New(o)
		if err != nil {
			return nil, fmt.Errorf("collector %s: %w", cc.Name(), err)
		}
		return kafkaDestination{d}, nil
	case "ipfix":
		enc = ipfix.NewEncoder(ipfix.Options{ObservationDomain: cfg.Export.ObservationDomain, MTU: cfg.Export.MTU})
	case "netflow9":
		enc = netflow9.NewEncoder(netflow9.Options{SourceID: cfg.Export.ObservationDomain, MTU: cfg.Export.MTU, Boot: s.boot})
	case "netflow5":
		enc = netflow5.NewEncoder(netflow5.Options{EngineID: uint8(cfg.Export.ObservationDomain), MTU: cfg.Export.MTU, Boot: s.boot})
	default:
		return nil, usageErr(fmt.Errorf("collector %s: unknown protocol %q", cc.Address, cc.Protocol))
	}
	tlsCfg, err := cc.TLSConfig()
	if err != nil {
		return nil, fmt.Errorf("collector %s: %w", cc.Address, err)
	}
	return exporter.NewCollector(exporter.CollectorOptions{
		Address:         cc.Address,
		Transport:       cc.Transport,
		TLS:             tlsCfg,
		Encoder:         enc,
		TemplateRefresh: cfg.Export.TemplateRefresh,
		Interfaces:      s.ifaces,
		Logger:          s.log,
		// One scan may end every flow the data plane holds: room for two.
		QueueRecords: max(1<<18, 2*int(cfg.Datapath.MaxFlows)),
	})
}

// sinks lists the current sinks.
func (s *collectorSet) sinks() []exporter.Sink {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]exporter.Sink, len(s.entries))
	for i, e := range s.entries {
		out[i] = e.c
	}
	return out
}

// metrics lists the current collectors for the metrics endpoint.
func (s *collectorSet) metrics() []metrics.Collector {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]metrics.Collector, len(s.entries))
	for i, e := range s.entries {
		out[i] = metrics.Collector{Address: e.key.collector.Name(), Protocol: e.key.collector.Protocol,
			Transport: e.key.collector.Transport, Stats: e.c.Stats}
	}
	return out
}

// logTotals logs each collector's totals.
func (s *collectorSet) logTotals() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		cs, cc := e.c.Stats(), e.key.collector
		s.log.Info("collector totals", "collector", cc.Name(), "transport", cc.Transport,
			"messages", cs.Messages, "records", cs.Records, "octets", cs.Octets,
			"dropped_records", cs.DroppedRecords, "unexportable_records", cs.Unexportable, "send_errors", cs.SendErrors,
			"connects", cs.Connects, "disconnects", cs.Disconnects)
	}
}

// closeAll closes collectors, each sending what it has queued for at most
// timeout.
func closeAll(cs []destination, timeout time.Duration) error {
	var errs []error
	for _, c := range cs {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		errs = append(errs, c.Close(ctx))
		cancel()
	}
	return errors.Join(errs...)
}
