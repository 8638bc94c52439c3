package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	// Named so: the tests have a type daemon (a daemon process).
	xdaemon "github.com/xflow-net/xflow/daemon"
)

// shutdownTimeout bounds the final export at SIGTERM.
const shutdownTimeout = 10 * time.Second

// cmdRun runs the daemon until SIGINT or SIGTERM; SIGHUP reloads the
// configuration file.
func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "[-c FILE] [--keep-attached]",
		"Loads the data plane, attaches it to the configured interfaces and exports flows until\n"+
			"SIGINT or SIGTERM. SIGHUP reloads the timeouts and collectors from FILE.", stdout)
	path := fs.configFlag()
	keep := fs.Bool("keep-attached", false, "on SIGTERM, leave the programs counting and save the flows for the next\n"+
		"xflow run to take over (upgrades without a gap)")
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
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
		reloadOnHUP(reloadCtx, hup, *path, d, log)
	}()
	runErr := d.Run(ctx)
	reloadStop()
	<-reloadDone

	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return errors.Join(runErr, d.Stop(sctx, *keep))
}

// reloadOnHUP reloads the configuration file at every SIGHUP until ctx
// ends. A configuration that does not load changes nothing.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, path string, d *xdaemon.Daemon, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			next, err := loadConfig(path)
			if err != nil {
				log.Error("reload: configuration not applied", "err", err)
				continue
			}
			d.Reload(next) // logs what it applies and what it refuses
		}
	}
}
