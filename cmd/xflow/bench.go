package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/xflow-net/xflow/bench"
)

// cmdBench measures the data plane, the whole agent on a veth pair (beside
// softflowd and pmacctd) and the exporter, and writes the results.
func cmdBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	out := fs.String("out", "bench-results", "`directory` for results.md, results.json and the plots")
	runs := fs.Int("runs", 5, "measure each figure this many `times` (the report gives the median and spread)")
	parts := fs.String("parts", "all", "comma-separated `parts` to run: "+strings.Join(bench.Parts(), ", "))
	quick := fs.Bool("quick", false, "smallest sizes and short runs: a smoke test, not figures to quote")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *runs < 1 || *runs > 100 {
		return usageErr(fmt.Errorf("--runs %d: want 1 to 100", *runs))
	}
	ps, err := bench.ParseParts(*parts)
	if err != nil {
		return usageErr(fmt.Errorf("--parts: %w", err))
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces): run as root, e.g. sudo xflow bench")
	}
	// Minutes of measurements must not end in an unwritable directory.
	if err := checkWritable(*out); err != nil {
		return usageErr(fmt.Errorf("--out: %w", err))
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the xflow binary: %w", err)
	}
	level := slog.LevelInfo
	if *quiet {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	r, err := bench.Run(ctx, bench.Options{Runs: *runs, Quick: *quick, Xflow: self, Log: log}, ps)
	if err != nil {
		return fmt.Errorf("interrupted: %w (nothing written)", err)
	}
	r.Version = version
	r.Command = "xflow bench " + strings.Join(args, " ")
	if err := r.Write(*out); err != nil {
		return err
	}
	fmt.Fprint(stdout, r.Markdown())
	fmt.Fprintf(stdout, "\nWritten to %s (results.md, results.json, plots).\n", *out)
	if len(r.Failures) > 0 {
		var names []string
		for _, f := range r.Failures {
			names = append(names, f.Part)
		}
		return fmt.Errorf("%d of %d parts failed (%s): see %s/results.md", len(r.Failures), len(ps), strings.Join(names, ", "), *out)
	}
	return nil
}

// checkWritable makes dir if missing and checks a file can be made in it.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".xflow-bench-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}
