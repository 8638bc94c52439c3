package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
)

// destKey is what makes a collector's destination: a reload keeps the
// destinations whose key did not change (their connections, templates and
// sequence numbers).
type destKey struct {
	collector config.Collector
	domain    uint32
	mtu       int
	refresh   time.Duration
}

type destEntry struct {
	key destKey
	d   *sink.Destination
}

// destinations is the daemon's export destinations, as configured now.
type destinations struct {
	ifaces []flow.Interface
	boot   time.Time
	log    *slog.Logger

	mu      sync.Mutex
	entries []destEntry
}

// build makes the destinations for cfg, reusing the current ones whose
// settings did not change; it returns those no longer configured (to
// close). On error nothing changes.
func (s *destinations) build(cfg *config.Config) (unused []*sink.Destination, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := map[destKey]*sink.Destination{}
	for _, e := range s.entries {
		old[e.key] = e.d
	}
	var next []destEntry
	var made []*sink.Destination
	defer func() {
		if err != nil {
			closeAll(made, time.Second)
		}
	}()
	for _, cc := range cfg.Export.Collectors {
		k := destKey{collector: cc, domain: cfg.Export.ObservationDomain, mtu: cfg.Export.MTU, refresh: cfg.Export.TemplateRefresh}
		if c, ok := old[k]; ok {
			next = append(next, destEntry{k, c})
			delete(old, k)
			continue
		}
		c, err := s.newDestination(cfg, cc)
		if err != nil {
			return nil, err
		}
		made = append(made, c)
		next = append(next, destEntry{k, c})
		s.log.Info("exporting", "collector", cc.Address, "protocol", cc.Protocol, "transport", cc.Transport)
	}
	for _, c := range old {
		unused = append(unused, c)
	}
	s.entries = next
	return unused, nil
}

func (s *destinations) newDestination(cfg *config.Config, cc config.Collector) (*sink.Destination, error) {
	var enc sink.Encoder
	switch cc.Protocol {
	case "ipfix":
		enc = ipfix.NewEncoder(ipfix.Options{ObservationDomain: cfg.Export.ObservationDomain, MTU: cfg.Export.MTU})
	case "netflow9":
		enc = netflow9.NewEncoder(netflow9.Options{SourceID: cfg.Export.ObservationDomain, MTU: cfg.Export.MTU, Boot: s.boot})
	case "netflow5":
		enc = netflow5.NewEncoder(netflow5.Options{EngineID: uint8(cfg.Export.ObservationDomain), MTU: cfg.Export.MTU, Boot: s.boot})
	default:
		return nil, configErr(fmt.Errorf("collector %s: unknown protocol %q", cc.Address, cc.Protocol))
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
		// One scan may end every flow the data plane holds: room for two.
		QueueRecords: max(1<<18, 2*int(cfg.Datapath.MaxFlows)),
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
		out[i] = metrics.Destination{Address: e.key.collector.Address, Protocol: e.key.collector.Protocol,
			Transport: e.key.collector.Transport, Stats: e.d.Stats}
	}
	return out
}

// logTotals logs each collector's totals.
func (s *destinations) logTotals() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		cs, cc := e.d.Stats(), e.key.collector
		s.log.Info("collector totals", "collector", cc.Address, "transport", cc.Transport,
			"messages", cs.Messages, "records", cs.Records, "octets", cs.Octets,
			"dropped_records", cs.DroppedRecords, "unexportable_records", cs.Unexportable, "send_errors", cs.SendErrors,
			"connects", cs.Connects, "disconnects", cs.Disconnects)
	}
}

// closeAll closes every destination, each sending what it has queued for
// at most timeout (a start that failed).
func (s *destinations) closeAll(timeout time.Duration) error {
	s.mu.Lock()
	all := make([]*sink.Destination, len(s.entries))
	for i, e := range s.entries {
		all[i] = e.d
	}
	s.mu.Unlock()
	return closeAll(all, timeout)
}

// closeAll closes destinations, each sending what it has queued for at
// most timeout.
func closeAll(cs []*sink.Destination, timeout time.Duration) error {
	var errs []error
	for _, c := range cs {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		errs = append(errs, c.Close(ctx))
		cancel()
	}
	return errors.Join(errs...)
}
