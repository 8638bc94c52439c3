package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/cilium/ebpf/rlimit"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/config"
)

func cmdRun(args []string, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	path := fs.String("c", "/etc/xflow/xflow.yaml", "configuration `file`")
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
	return runDaemon(ctx, cfg, log)
}

// runDaemon loads and attaches the data plane, keeps it counting until ctx
// ends, then detaches. The pinned maps stay, so `xflow flows` can still
// read the last counts; the next run replaces them.
func runDaemon(ctx context.Context, cfg *config.Config, log *slog.Logger) (err error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Debug("raise memlock limit", "err", err)
	}
	kind, err := bpf.ParseKind(cfg.Datapath.Map)
	if err != nil {
		return usageErr(err)
	}
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
		if derr := detach(); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	for _, ifc := range cfg.Interfaces {
		a, err := dp.Attach(bpf.Hooks{Iface: ifc.Name, Ingress: ifc.Ingress, Egress: ifc.Egress,
			XDPMode: ifc.XDPMode, TCMode: ifc.TCMode})
		if err != nil {
			if uerr := dp.Unpin(); uerr != nil {
				log.Warn("remove pins", "err", uerr)
			}
			return err
		}
		atts = append(atts, a)
		log.Info("attached", "iface", ifc.Name, "ifindex", a.Ifindex, "hooks", a.Desc)
	}
	log.Info("counting", "map", kind, "max_flows", cfg.Datapath.MaxFlows, "pin_path", cfg.PinPath)

	if kind == bpf.KindRingbuf {
		rc, err := dp.NewRingConsumer()
		if err != nil {
			return err
		}
		if err := rc.Run(ctx); err != nil {
			return fmt.Errorf("ring buffer: %w", err)
		}
	} else {
		<-ctx.Done()
	}
	log.Info("stopping: detaching")
	if err := detach(); err != nil {
		return err
	}
	if c, err := dp.Counters(); err == nil {
		log.Info("data plane counters", "non_ip", c.NonIP, "truncated", c.Truncated,
			"malformed", c.Malformed, "missed_packets", c.MissedPackets)
	}
	return nil
}
