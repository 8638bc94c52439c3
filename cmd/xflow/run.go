package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"reflect"
	"syscall"
	"time"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/config"
	"github.com/xflow-net/xflow/exporter"
	"github.com/xflow-net/xflow/flow"
	"github.com/xflow-net/xflow/metrics"
)

func cmdRun(args []string, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	path := fs.String("c", "/etc/xflow/xflow.yaml", "configuration `file`")
	keep := fs.Bool("keep-attached", false, "on SIGTERM, leave the programs counting and save the flows for the next `xflow run` (upgrades)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	log := cfg.Logger(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	defer signal.Stop(reload)
	return runDaemon(ctx, *path, cfg, reload, *keep, log)
}

// shutdownTimeout bounds the final export at SIGTERM.
const shutdownTimeout = 10 * time.Second

// runDaemon loads and attaches the data plane and runs the export loop
// until ctx ends; then it detaches, drains a last time, exports every
// remaining flow (reason 4, forced end) and stops. The pinned maps stay, so
// `xflow flows` can still read them; the next run replaces them.
func runDaemon(ctx context.Context, cfgPath string, cfg *config.Config, reload <-chan os.Signal, keepAttached bool, log *slog.Logger) (err error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Debug("raise memlock limit", "err", err)
	}
	kind, err := bpf.ParseKind(cfg.Datapath.Map)
	if err != nil {
		return usageErr(err)
	}
	// A daemon already running on this pin path owns its attachments and
	// pins: touch nothing.
	sock := exporter.ControlSocket(cfg.PinPath)
	if exporter.DaemonAnswers(sock) {
		return fmt.Errorf("an xflow daemon already runs with pin_path %s (its control socket %s answers)", cfg.PinPath, sock)
	}
	var ifaces []flow.Interface
	for _, ifc := range cfg.Interfaces {
		ni, err := net.InterfaceByName(ifc.Name)
		if err != nil {
			return usageErr(fmt.Errorf("interface %s: %w", ifc.Name, err))
		}
		ifaces = append(ifaces, flow.Interface{Index: uint32(ni.Index), Name: ifc.Name})
	}

	// Collectors first: one that cannot be named stops the start before
	// anything is loaded or attached.
	cols := &collectorSet{ifaces: ifaces, boot: bootTime(), log: log}
	if _, err := cols.build(cfg); err != nil {
		return err
	}
	shutDown := false
	defer func() {
		// Normally closed by Shutdown; this covers early returns.
		if !shutDown {
			var all []destination
			for _, e := range cols.entries {
				all = append(all, e.c)
			}
			closeAll(all, time.Second)
		}
	}()

	for _, ifc := range cfg.Interfaces {
		removed, err := bpf.CleanStale(ifc.Name)
		if err != nil {
			return err
		}
		for _, r := range removed {
			log.Info("removed stale attachment", "iface", ifc.Name, "what", r)
		}
	}
	dp, err := bpf.Load(bpf.Options{
		Kind:     kind,
		MaxFlows: uint32(cfg.Datapath.MaxFlows),
		RingSize: uint32(cfg.Datapath.RingSize),
		PinPath:  cfg.PinPath,
	})
	if err != nil {
		return err
	}
	defer dp.Close()
	started := false
	defer func() {
		// A start that failed leaves no pins behind.
		if !started {
			if uerr := dp.Unpin(); uerr != nil {
				log.Warn("remove pins", "err", uerr)
			}
		}
	}()

	var atts []*bpf.Attachment
	detach := func() error {
		var errs []error
		for _, a := range atts {
			errs = append(errs, a.Detach())
		}
		atts = nil
		return errors.Join(errs...)
	}
	defer func() {
		if !started && dp.Adopted {
			// A start that failed leaves an adopted data plane as it
			// found it: counting, for the next attempt to take over.
			for _, a := range atts {
				a.Release()
			}
			atts = nil
			return
		}
		if derr := detach(); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	for _, ifc := range cfg.Interfaces {
		a, err := dp.Attach(bpf.Hooks{Iface: ifc.Name, Ingress: ifc.Ingress, Egress: ifc.Egress,
			XDPMode: ifc.XDPMode, TCMode: ifc.TCMode})
		if err != nil {
			return err
		}
		atts = append(atts, a)
		log.Info("attached", "iface", ifc.Name, "ifindex", a.Ifindex, "hooks", a.Desc, "adopted", a.Adopted)
		if ifc.Ingress == "xdp" && len(a.Desc) > 0 && a.Desc[0] == "xdp/generic" {
			log.Warn("generic XDP counts a GRO/GSO aggregate as one packet; for exact counts use native XDP or ingress: tc", "iface", ifc.Name)
		}
	}

	// Links an earlier daemon pinned for hooks or interfaces no longer
	// configured would go on counting into the adopted maps: let them go.
	keep := map[string]bool{}
	for _, a := range atts {
		for _, p := range a.PinnedLinks() {
			keep[p] = true
		}
	}
	if removed, err := dp.PruneLinks(keep); err != nil {
		return err
	} else if len(removed) > 0 {
		log.Info("removed pinned links of hooks no longer configured", "links", removed)
	}

	var met *metrics.Metrics
	exp := exporter.New(dp, cols.sinks(), exporter.Options{
		Timeouts:     exporter.Timeouts{Active: cfg.Timeouts.Active, Inactive: cfg.Timeouts.Inactive},
		ScanInterval: cfg.Timeouts.ScanInterval,
		MaxFlows:     cfg.Datapath.MaxFlows,
		LRU:          kind == bpf.KindLRUHash || kind == bpf.KindLRUPerCPUHash,
		Logger:       log,
		OnDrain: func(d time.Duration) {
			if met != nil {
				met.ObserveDrain(d)
			}
		},
	})
	if cfg.Metrics.Listen != "" {
		m := metrics.New(metrics.Sources{Datapath: dp, Exporter: exp, Collectors: cols.metrics,
			Interfaces: ifaces, MaxFlows: cfg.Datapath.MaxFlows})
		stopMetrics, err := m.Serve(cfg.Metrics.Listen, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
		met = m
		log.Info("metrics", "listen", cfg.Metrics.Listen)
	}
	// What an earlier daemon left: its flows, and what was counted since.
	if n, err := exp.Restore(); err != nil {
		return fmt.Errorf("restore the earlier daemon's flows: %w", err)
	} else if dp.Adopted || n > 0 {
		log.Info("took over from an earlier daemon", "maps_adopted", dp.Adopted, "flows", n)
	}
	ctlStop, err := exporter.ServeControl(sock, exp, log)
	if err != nil {
		return err
	}
	defer ctlStop()
	started = true

	// The ring consumer (ringbuf kind) runs until the programs are detached.
	ringCtx, ringStop := context.WithCancel(context.Background())
	ringDone := make(chan error, 1)
	go func() { ringDone <- dp.RunRing(ringCtx) }()

	log.Info("counting", "map", kind, "max_flows", cfg.Datapath.MaxFlows, "pin_path", cfg.PinPath, "control", sock)
	reloadDone := make(chan struct{})
	reloadCtx, reloadStop := context.WithCancel(context.Background())
	go func() {
		defer close(reloadDone)
		for {
			select {
			case <-reloadCtx.Done():
				return
			case <-reload:
				reloadConfig(cfgPath, cfg, cols, exp, log)
			}
		}
	}()
	runErr := exp.Run(ctx)
	reloadStop()
	<-reloadDone

	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var derr, serr error
	if keepAttached {
		// An upgrade: the programs go on counting through their pinned
		// links; the flows are saved for the next daemon.
		log.Info("stopping, leaving the data plane attached (--keep-attached)")
		for _, a := range atts {
			derr = errors.Join(derr, a.Release())
		}
		atts = nil
		ringStop()
		if rerr := <-ringDone; rerr != nil {
			derr = errors.Join(derr, fmt.Errorf("ring buffer: %w", rerr))
		}
		serr = exp.Suspend(sctx)
	} else {
		log.Info("stopping: detaching, exporting every flow")
		derr = detach()
		ringStop()
		if rerr := <-ringDone; rerr != nil {
			derr = errors.Join(derr, fmt.Errorf("ring buffer: %w", rerr))
		}
		serr = exp.Shutdown(sctx)
	}
	shutDown = true
	cols.logTotals()
	st := exp.Stats()
	if c, err := dp.Counters(); err == nil {
		log.Info("data plane counters", "non_ip", c.NonIP, "truncated", c.Truncated,
			"malformed", c.Malformed, "missed_packets", c.MissedPackets, "lru_evicted_flows", st.Evicted)
	}
	log.Info("exported", "records", st.Records[1]+st.Records[2]+st.Records[3]+st.Records[4]+st.Records[5],
		"idle", st.Records[1], "active", st.Records[2], "end", st.Records[3], "forced", st.Records[4], "resources", st.Records[5])
	return errors.Join(runErr, derr, serr)
}

// reloadConfig applies what SIGHUP may change: timeouts and collectors
// (kept where unchanged). The data plane is not touched; a change that
// needs it (interfaces, datapath, pin_path, metrics, log) is logged and
// ignored. A configuration that does not load changes nothing.
func reloadConfig(path string, cur *config.Config, cols *collectorSet, exp *exporter.Exporter, log *slog.Logger) {
	next, err := loadConfig(path)
	if err != nil {
		log.Error("reload: configuration not applied", "err", err)
		return
	}
	if !reflect.DeepEqual(next.Interfaces, cur.Interfaces) || next.Datapath != cur.Datapath ||
		next.PinPath != cur.PinPath || next.Metrics != cur.Metrics || next.Log != cur.Log {
		log.Warn("reload: interfaces, datapath, pin_path, metrics and log need a restart; those changes are ignored")
	}
	unused, err := cols.build(next)
	if err != nil {
		log.Error("reload: collectors not applied", "err", err)
		return
	}
	exp.Reconfigure(exporter.Timeouts{Active: next.Timeouts.Active, Inactive: next.Timeouts.Inactive},
		next.Timeouts.ScanInterval, cols.sinks())
	if err := closeAll(unused, 5*time.Second); err != nil {
		log.Warn("reload: closing removed collectors", "err", err)
	}
	cur.Timeouts, cur.Export = next.Timeouts, next.Export
	log.Info("reloaded", "collectors", len(next.Export.Collectors), "active", next.Timeouts.Active,
		"inactive", next.Timeouts.Inactive, "scan_interval", next.Timeouts.ScanInterval)
}

// bootTime is when the system booted: the zero of CLOCK_MONOTONIC, which the
// data plane's timestamps count from, and NetFlow's sysUpTime.
func bootTime() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return time.Now()
	}
	return time.Now().Add(-time.Duration(ts.Nano()))
}
