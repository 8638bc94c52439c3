// Package daemon is `xflow run`: it loads and attaches the data plane,
// runs the export loop, applies reloads and shuts down, either detaching
// and exporting every flow or (for an upgrade) leaving the data plane
// counting for the next daemon.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"time"

	"github.com/cilium/ebpf/rlimit"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/config"
	"github.com/xflow-net/xflow/control"
	"github.com/xflow-net/xflow/exporter"
	"github.com/xflow-net/xflow/flow"
	"github.com/xflow-net/xflow/metrics"
)

// ConfigError is an error in the configuration found while starting (an
// unknown map kind, interface or protocol): the command's usage error.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

func configErr(err error) error { return &ConfigError{Err: err} }

// Options configure a Daemon.
type Options struct {
	Logger *slog.Logger
	// QueueRecords, if set, bounds every destination's queue instead of
	// the default (twice datapath.max_flows, at least 262144): tests that
	// fill a queue.
	QueueRecords int
}

// Daemon is a running xflow: the data plane attached and counting, the
// exporter, its destinations, the metrics endpoint and the control socket.
type Daemon struct {
	cfg    *config.Config // as applied: reloads update Timeouts and Export
	log    *slog.Logger
	kind   bpf.Kind
	sock   string
	ifaces []flow.Interface

	dests       *destinations
	dp          *bpf.Datapath
	atts        []*bpf.Attachment
	exp         *exporter.Exporter
	met         *metrics.Metrics
	stopMetrics func()
	stopControl func()
	ringStop    context.CancelFunc
	ringDone    chan error

	mu      sync.Mutex // serialises Reload and Stop
	stopped bool
	health  health // /readyz
}

// New checks cfg and starts the daemon, in this order: the destinations
// (one that cannot be named stops the start before anything is loaded or
// attached), stale attachments removed, the data plane loaded (adopting
// the maps an earlier daemon pinned) and attached, pinned links of hooks
// no longer configured removed, the metrics endpoint, the earlier daemon's
// flows restored, the control socket. When New returns, the data plane is
// counting; call Run, then Stop.
//
// A start that fails leaves no pins behind, and leaves an adopted data
// plane as it found it: counting, for the next attempt to take over.
// Errors the configuration causes are *ConfigError.
func New(cfg *config.Config, opts Options) (_ *Daemon, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Debug("raise memlock limit", "err", err)
	}
	// What the kernel lacks, in one line, before anything is loaded.
	kern := bpf.Probe()
	if err := kern.Err(); err != nil {
		return nil, err
	}
	log.Info("kernel", "features", kern.Summary())
	kind, err := bpf.ParseKind(cfg.Datapath.Map)
	if err != nil {
		return nil, configErr(err)
	}
	c := *cfg
	d := &Daemon{cfg: &c, log: log, kind: kind, sock: control.SocketPath(cfg.PinPath)}
	d.health.scanEvery.Store(int64(cfg.Timeouts.ScanInterval))
	// A daemon already running on this pin path owns its attachments and
	// pins: touch nothing.
	if control.Answers(d.sock) {
		return nil, fmt.Errorf("an xflow daemon already runs with pin_path %s (its control socket %s answers)", cfg.PinPath, d.sock)
	}
	for _, ifc := range cfg.Interfaces {
		ni, err := net.InterfaceByName(ifc.Name)
		if err != nil {
			return nil, configErr(fmt.Errorf("interface %s: %w", ifc.Name, err))
		}
		d.ifaces = append(d.ifaces, flow.Interface{Index: uint32(ni.Index), Name: ifc.Name})
	}

	// Destinations first: one that cannot be named stops the start before
	// anything is loaded or attached.
	d.dests = &destinations{ifaces: d.ifaces, boot: flow.BootTime(), log: log, queue: opts.QueueRecords}
	if _, err := d.dests.build(d.cfg); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.abort())
		}
	}()
	if err := d.cleanStale(); err != nil {
		return nil, err
	}
	def, err := sampling(cfg.Sampling)
	if err != nil {
		return nil, configErr(err)
	}
	rules, err := filterRules(cfg.Filters)
	if err != nil {
		return nil, configErr(err)
	}
	d.dp, err = bpf.Load(bpf.Options{
		Kind:     kind,
		MaxFlows: uint32(cfg.Datapath.MaxFlows),
		RingSize: uint32(cfg.Datapath.RingSize),
		PinPath:  cfg.PinPath,
		Sampling: def,
		Filters:  rules,
	})
	if err != nil {
		return nil, err
	}
	if err := d.attach(); err != nil {
		return nil, err
	}
	if err := d.pruneLinks(); err != nil {
		return nil, err
	}
	d.health.setAttached()
	d.exp = exporter.New(d.dp, d.dests.sinks(), exporter.Options{
		Timeouts:     exporter.Timeouts{Active: cfg.Timeouts.Active, Inactive: cfg.Timeouts.Inactive},
		ScanInterval: cfg.Timeouts.ScanInterval,
		MaxFlows:     cfg.Datapath.MaxFlows,
		LRU:          kind.Evicts(),
		Logger:       log,
		OnDrain: func(dur time.Duration) {
			d.health.scanned()
			if d.met != nil {
				d.met.ObserveDrain(dur)
			}
		},
	})
	if err := d.serveMetrics(); err != nil {
		return nil, err
	}
	// What an earlier daemon left: its flows, and what was counted since.
	if n, err := d.exp.Restore(); err != nil {
		return nil, fmt.Errorf("restore the earlier daemon's flows: %w", err)
	} else if d.dp.Adopted || n > 0 {
		log.Info("took over from an earlier daemon", "maps_adopted", d.dp.Adopted, "flows", n)
	}
	d.stopControl, err = control.Serve(d.sock, d.exp, log)
	if err != nil {
		return nil, err
	}

	// The ring consumer (ringbuf kind) runs until the programs are detached.
	ringCtx, ringStop := context.WithCancel(context.Background())
	d.ringStop, d.ringDone = ringStop, make(chan error, 1)
	go func() { d.ringDone <- d.dp.RunRing(ringCtx) }()

	log.Info("counting", "map", kind, "max_flows", cfg.Datapath.MaxFlows, "pin_path", cfg.PinPath, "control", d.sock,
		"sampling", fmt.Sprintf("1:%d %s", max(cfg.Sampling.Rate, 1), cfg.Sampling.Mode), "filters", len(cfg.Filters))
	return d, nil
}

// cleanStale removes what an earlier xflow left attached and no process
// owns.
func (d *Daemon) cleanStale() error {
	for _, ifc := range d.cfg.Interfaces {
		removed, err := bpf.CleanStale(ifc.Name)
		if err != nil {
			return err
		}
		for _, r := range removed {
			d.log.Info("removed stale attachment", "iface", ifc.Name, "what", r)
		}
	}
	return nil
}

// attach attaches the programs to every configured interface.
func (d *Daemon) attach() error {
	for _, ifc := range d.cfg.Interfaces {
		h := bpf.Hooks{Iface: ifc.Name, Ingress: ifc.Ingress, Egress: ifc.Egress,
			XDPMode: ifc.XDPMode, TCMode: ifc.TCMode}
		if ifc.Sampling != nil {
			s, err := sampling(*ifc.Sampling)
			if err != nil {
				return configErr(fmt.Errorf("interface %s: %w", ifc.Name, err))
			}
			h.Sampling = &s
		}
		a, err := d.dp.Attach(h)
		if err != nil {
			return err
		}
		d.atts = append(d.atts, a)
		d.log.Info("attached", "iface", ifc.Name, "ifindex", a.Ifindex, "hooks", a.Attached, "adopted", a.Adopted,
			"sampling", d.dp.SamplingRate(uint32(a.Ifindex)))
		if a.GenericXDP() {
			d.log.Warn("generic XDP counts a GRO/GSO aggregate as one packet; for exact counts use native XDP or ingress: tc", "iface", ifc.Name)
		}
	}
	return nil
}

// pruneLinks lets go of the links an earlier daemon pinned for hooks or
// interfaces no longer configured: they would go on counting into the
// adopted maps.
func (d *Daemon) pruneLinks() error {
	keep := map[string]bool{}
	for _, a := range d.atts {
		for _, p := range a.PinnedLinks() {
			keep[p] = true
		}
	}
	removed, err := d.dp.PruneLinks(keep)
	if err != nil {
		return err
	}
	if len(removed) > 0 {
		d.log.Info("removed pinned links of hooks no longer configured", "links", removed)
	}
	return nil
}

// serveMetrics serves the metrics endpoint, if configured.
func (d *Daemon) serveMetrics() error {
	if d.cfg.Metrics.Listen == "" {
		return nil
	}
	var skip []bool
	for _, f := range d.cfg.Filters {
		skip = append(skip, f.Action == "skip")
	}
	m := metrics.New(metrics.Sources{Datapath: d.dp, Exporter: d.exp, Destinations: d.dests.metrics,
		Interfaces: d.ifaces, MaxFlows: d.cfg.Datapath.MaxFlows, FilterSkip: skip, Ready: d.health.ready})
	stop, err := m.Serve(d.cfg.Metrics.Listen, d.log)
	if err != nil {
		return err
	}
	d.stopMetrics, d.met = stop, m
	d.log.Info("metrics", "listen", d.cfg.Metrics.Listen)
	return nil
}

// abort undoes a start that failed, in reverse order.
func (d *Daemon) abort() error {
	var errs []error
	if d.stopControl != nil {
		d.stopControl()
	}
	if d.stopMetrics != nil {
		d.stopMetrics()
	}
	if d.dp != nil {
		if d.dp.Adopted {
			// An adopted data plane is left as found: counting, for
			// the next attempt to take over.
			for _, a := range d.atts {
				a.Release()
			}
			d.atts = nil
		} else {
			errs = append(errs, d.detach())
		}
		if err := d.dp.Unpin(); err != nil {
			d.log.Warn("remove pins", "err", err)
		}
		d.dp.Close()
	}
	d.dests.closeAll(time.Second)
	return errors.Join(errs...)
}

// detach detaches every attachment.
func (d *Daemon) detach() error {
	var errs []error
	for _, a := range d.atts {
		errs = append(errs, a.Detach())
	}
	d.atts = nil
	return errors.Join(errs...)
}

// Run runs the export loop until ctx ends or a scan fails.
func (d *Daemon) Run(ctx context.Context) error {
	return d.exp.Run(ctx)
}

// Reload applies what a reload (SIGHUP) may change: timeouts and
// destinations (kept where unchanged). The data plane is not touched; a
// change that needs it (interfaces, datapath, pin_path, metrics, log) is
// logged and ignored. Destinations that cannot be made change nothing.
// What it applies and what fails is logged; the error is returned too.
func (d *Daemon) Reload(next *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return errors.New("reload: the daemon has stopped")
	}
	cur := d.cfg
	if !reflect.DeepEqual(next.Interfaces, cur.Interfaces) || next.Datapath != cur.Datapath ||
		next.PinPath != cur.PinPath || next.Metrics != cur.Metrics || next.Log != cur.Log ||
		next.Sampling != cur.Sampling || !reflect.DeepEqual(next.Filters, cur.Filters) {
		d.log.Warn("reload: interfaces, datapath, pin_path, metrics, log, sampling and filters need a restart; those changes are ignored")
	}
	unused, err := d.dests.build(next)
	if err != nil {
		d.log.Error("reload: collectors not applied", "err", err)
		return fmt.Errorf("reload: collectors not applied: %w", err)
	}
	d.exp.Reconfigure(exporter.Timeouts{Active: next.Timeouts.Active, Inactive: next.Timeouts.Inactive},
		next.Timeouts.ScanInterval, d.dests.sinks())
	if err := closeAll(unused, 5*time.Second); err != nil {
		d.log.Warn("reload: closing removed collectors", "err", err)
	}
	cur.Timeouts, cur.Export = next.Timeouts, next.Export
	d.health.scanEvery.Store(int64(next.Timeouts.ScanInterval))
	d.log.Info("reloaded", "collectors", len(next.Export.Collectors), "active", next.Timeouts.Active,
		"inactive", next.Timeouts.Inactive, "scan_interval", next.Timeouts.ScanInterval)
	return nil
}

// Stop shuts the daemon down, the final export waiting at most until ctx
// ends. Normally it detaches the programs, drains a last time and exports
// every remaining flow (reason 4, forced end); the pinned maps stay, so
// `xflow flows` can still read them, and the next run replaces them. With
// keepAttached (an upgrade) the programs go on counting through their
// pinned links and the flows are saved for the next daemon. Call Stop once
// Run has returned.
func (d *Daemon) Stop(ctx context.Context, keepAttached bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return nil
	}
	d.stopped = true
	d.health.stopping.Store(true)
	var derr, serr error
	if keepAttached {
		d.log.Info("stopping, leaving the data plane attached (--keep-attached)")
		for _, a := range d.atts {
			derr = errors.Join(derr, a.Release())
		}
		d.atts = nil
		derr = errors.Join(derr, d.stopRing())
		serr = d.exp.Suspend(ctx)
	} else {
		d.log.Info("stopping: detaching, exporting every flow")
		derr = d.detach()
		derr = errors.Join(derr, d.stopRing())
		serr = d.exp.Shutdown(ctx)
	}
	d.dests.logTotals()
	st := d.exp.Stats()
	if c, err := d.dp.Counters(); err == nil {
		d.log.Info("data plane counters", "non_ip", c.NonIP, "truncated", c.Truncated,
			"malformed", c.Malformed, "missed_packets", c.MissedPackets, "lru_evicted_flows", st.Evicted)
	}
	d.log.Info("exported", "records", st.Records[1]+st.Records[2]+st.Records[3]+st.Records[4]+st.Records[5],
		"idle", st.Records[1], "active", st.Records[2], "end", st.Records[3], "forced", st.Records[4], "resources", st.Records[5])
	d.stopControl()
	if d.stopMetrics != nil {
		d.stopMetrics()
	}
	d.dp.Close()
	return errors.Join(derr, serr)
}

// stopRing stops the ring consumer (once the programs no longer write).
func (d *Daemon) stopRing() error {
	d.ringStop()
	if err := <-d.ringDone; err != nil {
		return fmt.Errorf("ring buffer: %w", err)
	}
	return nil
}
