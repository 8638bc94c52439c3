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
	"syscall"
	"time"

	"github.com/xflow-net/xflow/config"
	// Named so: the tests have a type daemon (a daemon process).
	xdaemon "github.com/xflow-net/xflow/daemon"
)

// shutdownTimeout bounds the final export at SIGTERM.
const shutdownTimeout = 10 * time.Second

// cmdRun runs the daemon until SIGINT or SIGTERM; SIGHUP reloads the
// configuration file.
func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "[-c FILE] [--keep-attached] [--metrics-listen HOST:PORT]",
		"Loads the data plane, attaches it to the configured interfaces and exports flows until\n"+
			"SIGINT or SIGTERM. SIGHUP reloads the timeouts and collectors from FILE.", stdout)
	path := fs.configFlag()
	keep := fs.Bool("keep-attached", false, "on SIGTERM, leave the programs counting and save the flows for the next\n"+
		"xflow run to take over (upgrades without a gap)")
	listen := fs.String("metrics-listen", "", "serve /metrics, /healthz and /readyz on `HOST:PORT` instead of the file's\n"+
		"metrics.listen (the DaemonSet passes the pod's IP)")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *listen != "" {
		if _, port, err := net.SplitHostPort(*listen); err != nil || port == "" {
			return usageErr(fmt.Errorf("-metrics-listen %q: want HOST:PORT ([ADDR]:PORT for IPv6)", *listen))
		}
	}
	load := func() (*config.Config, error) {
		cfg, err := loadConfig(*path)
		if err == nil && *listen != "" {
			cfg.Metrics.Listen = *listen
		}
		return cfg, err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	log := cfg.Logger(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	d, err := xdaemon.New(cfg, xdaemon.Options{Logger: log})
	if err != nil {
		if ce := (*xdaemon.ConfigError)(nil); errors.As(err, &ce) {
			return usageErr(err)
		}
		return err
	}
	reloadCtx, reloadStop := context.WithCancel(context.Background())
	reloadDone := make(chan struct{})
	go func() {
		defer close(reloadDone)
		reloadOnHUP(reloadCtx, hup, load, d, log)
	}()
	runErr := d.Run(ctx)
	reloadStop()
	<-reloadDone

	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return errors.Join(runErr, d.Stop(sctx, *keep))
}

// reloadOnHUP reloads the configuration (load: the file and the flags that
// override it) at every SIGHUP until ctx ends. A configuration that does
// not load changes nothing.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, load func() (*config.Config, error), d *xdaemon.Daemon, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			next, err := load()
			if err != nil {
				log.Error("reload: configuration not applied", "err", err)
				continue
			}
			d.Reload(next) // logs what it applies and what it refuses
		}
	}
}
