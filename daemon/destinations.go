package daemon

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
	"github.com/xflow-net/xflow/sink"
	"github.com/xflow-net/xflow/sink/kafka"
)

// destination is one configured destination, as the exporter feeds it
// and the metrics and the log read it: an IPFIX/NetFlow collector's
// (*sink.Destination) or a Kafka topic's (*kafka.Destination).
type destination interface {
	exporter.Sink
	Stats() sink.Stats
}

// destKey is what makes a collector's destination: a reload keeps the
// destinations whose key did not change (their connections, templates and
// sequence numbers).
type destKey struct {
	collector config.Collector
	domain    uint32
	mtu       int
	refresh   time.Duration
}

// equal compares keys (config.Collector holds its kafka settings by
// pointer, so == would not do).
func (k destKey) equal(o destKey) bool {
	return k.collector.Equal(o.collector) && k.domain == o.domain && k.mtu == o.mtu && k.refresh == o.refresh
}

type destEntry struct {
	key destKey
	d   destination
}

// destinations is the daemon's export destinations, as configured now.
type destinations struct {
	ifaces []flow.Interface
	boot   time.Time
	log    *slog.Logger
	queue  int // Options.QueueRecords

	mu      sync.Mutex
	entries []destEntry
}

// build makes the destinations for cfg, reusing the current ones whose
// settings did not change; it returns those no longer configured (to
// close). On error nothing changes.
func (s *destinations) build(cfg *config.Config) (unused []destination, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := slices.Clone(s.entries)
	var next []destEntry
	var made []destination
	defer func() {
		if err != nil {
			closeAll(made, time.Second)
		}
	}()
	for _, cc := range cfg.Export.Collectors {
		k := destKey{collector: cc, domain: cfg.Export.ObservationDomain, mtu: cfg.Export.MTU, refresh: cfg.Export.TemplateRefresh}
		if i := slices.IndexFunc(old, func(e destEntry) bool { return e.key.equal(k) }); i >= 0 {
			next = append(next, old[i])
			old = slices.Delete(old, i, i+1)
			continue
		}
		c, err := s.newDestination(cfg, cc)
		if err != nil {
			return nil, err
		}
		made = append(made, c)
		next = append(next, destEntry{k, c})
		s.log.Info("exporting", "collector", cc.Name(), "protocol", cc.Protocol, "transport", cc.Transport)
	}
	for _, e := range old {
		unused = append(unused, e.d)
	}
	s.entries = next
	return unused, nil
}

// queueRecords is a destination's queue bound: one scan may end every
// flow the data plane holds, so room for two (unless Options say).
func (s *destinations) queueRecords(cfg *config.Config) int {
	if s.queue > 0 {
		return s.queue
	}
	return max(1<<18, 2*int(cfg.Datapath.MaxFlows))
}

func (s *destinations) newDestination(cfg *config.Config, cc config.Collector) (destination, error) {
	var enc sink.Encoder
	switch cc.Protocol {
	case "kafka":
		o, err := kafka.FromConfig(cfg, cc)
		if err != nil {
			return nil, err
		}
		o.Interfaces, o.Logger, o.QueueRecords = s.ifaces, s.log, s.queueRecords(cfg)
		d, err := kafka.New(o)
		if err != nil {
			return nil, fmt.Errorf("collector %s: %w", cc.Name(), err)
		}
		return d, nil
	case "ipfix":
		enc = ipfix.NewEncoder(ipfix.Options{ObservationDomain: cfg.Export.ObservationDomain, MTU: cfg.Export.MTU})
	case "netflow9":
		enc = netflow9.NewEncoder(netflow9.Options{SourceID: cfg.Export.ObservationDomain, MTU: cfg.Export.MTU, Boot: s.boot})
	case "netflow5":
		enc = netflow5.NewEncoder(netflow5.Options{EngineID: uint8(cfg.Export.ObservationDomain), MTU: cfg.Export.MTU, Boot: s.boot})
	default:
		return nil, configErr(fmt.Errorf("collector %s: unknown protocol %q", cc.Name(), cc.Protocol))
	}
	tlsCfg, err := cc.TLSConfig()
	if err != nil {
		return nil, fmt.Errorf("collector %s: %w", cc.Address, err)
	}
	return sink.New(sink.Options{
		Address:         cc.Address,
		Transport:       cc.Transport,
		TLS:             tlsCfg,
		Encoder:         enc,
		TemplateRefresh: cfg.Export.TemplateRefresh,
		Interfaces:      s.ifaces,
		Logger:          s.log,
		QueueRecords:    s.queueRecords(cfg),
	})
}

// sinks lists the current destinations, as the exporter feeds them.
func (s *destinations) sinks() []exporter.Sink {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]exporter.Sink, len(s.entries))
	for i, e := range s.entries {
		out[i] = e.d
	}
	return out
}

// metrics lists the current destinations for the metrics endpoint.
func (s *destinations) metrics() []metrics.Destination {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]metrics.Destination, len(s.entries))
	for i, e := range s.entries {
		cc := e.key.collector
		out[i] = metrics.Destination{Name: cc.Name(), Protocol: cc.Protocol, Transport: cc.Transport, Stats: e.d.Stats}
	}
	return out
}

// logTotals logs each collector's totals.
func (s *destinations) logTotals() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		cs, cc := e.d.Stats(), e.key.collector
		s.log.Info("collector totals", "collector", cc.Name(), "transport", cc.Transport,
			"messages", cs.Messages, "records", cs.Records, "octets", cs.Octets,
			"dropped_records", cs.DroppedRecords, "unexportable_records", cs.Unexportable, "send_errors", cs.SendErrors,
			"connects", cs.Connects, "disconnects", cs.Disconnects)
	}
}

// closeAll closes every destination, each sending what it has queued for
// at most timeout (a start that failed).
func (s *destinations) closeAll(timeout time.Duration) error {
	s.mu.Lock()
	all := make([]destination, len(s.entries))
	for i, e := range s.entries {
		all[i] = e.d
	}
	s.mu.Unlock()
	return closeAll(all, timeout)
}

// closeAll closes destinations, each sending what it has queued for at
// most timeout.
func closeAll(cs []destination, timeout time.Duration) error {
	var errs []error
	for _, c := range cs {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		errs = append(errs, c.Close(ctx))
		cancel()
	}
	return errors.Join(errs...)
}
