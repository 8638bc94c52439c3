// Command xflow-bench is xflow's performance evaluation: it measures the
// data plane per map kind, the agent end to end on a veth pair beside
// softflowd and pmacctd, and the exporter, and writes tables and plots.
// It is a separate binary so that the xflow binary carries none of it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/xflow-net/xflow/bench"
	"github.com/xflow-net/xflow/internal/buildinfo"
)

// exitError carries a process exit status: 2 for bad usage, 1 for
// everything else.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(err error) error { return &exitError{code: 2, err: err} }

var errHelp = errors.New("help shown")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command: exit status 0, 1 when a measurement failed, 2 for
// bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	err := cmdBench(args, stdout, stderr)
	if err == nil || errors.Is(err, errHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "xflow-bench: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// cmdBench measures the data plane, the whole agent on a veth pair (beside
// softflowd and pmacctd) and the exporter, and writes the results.
func cmdBench(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("xflow-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: xflow-bench [--out DIR] [--runs N] [--parts LIST] [--quick] [-q] [--xflow PATH]\n\n"+
			"Measure the data plane, the agent end to end and the exporter; write tables and plots.\n\n")
		fs.PrintDefaults()
	}
	out := fs.String("out", "bench-results", "`directory` for results.md, results.json and the plots")
	runs := fs.Int("runs", 5, "measure each figure this many `times` (the report gives the median and spread)")
	parts := fs.String("parts", "all", "comma-separated `parts` to run: "+strings.Join(bench.Parts(), ", "))
	quick := fs.Bool("quick", false, "smallest sizes and short runs: a smoke test, not figures to quote")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	xflow := fs.String("xflow", "", "the xflow `binary` the end-to-end part runs as the agent (default: the xflow beside xflow-bench, else the one in PATH)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usageErr(err)
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if *runs < 1 || *runs > 100 {
		return usageErr(fmt.Errorf("--runs %d: want 1 to 100", *runs))
	}
	ps, err := bench.ParseParts(*parts)
	if err != nil {
		return usageErr(fmt.Errorf("--parts: %w", err))
	}
	agent := *xflow
	if slices.Contains(ps, bench.PartEndToEnd) {
		if agent, err = findXflow(agent); err != nil {
			return usageErr(fmt.Errorf("--xflow: %w", err))
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root (CAP_BPF, CAP_NET_ADMIN, network namespaces): run as root, e.g. sudo xflow-bench")
	}
	// Minutes of measurements must not end in an unwritable directory.
	if err := checkWritable(*out); err != nil {
		return usageErr(fmt.Errorf("--out: %w", err))
	}
	level := slog.LevelInfo
	if *quiet {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	r, err := bench.Run(ctx, bench.Options{Runs: *runs, Quick: *quick, Xflow: agent, Log: log}, ps)
	if err != nil {
		return fmt.Errorf("interrupted: %w (nothing written)", err)
	}
	r.Version = buildinfo.Get().Version
	r.Command = strings.Join(append([]string{"xflow-bench"}, args...), " ")
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

// findXflow is the xflow binary to run: path if set, else the xflow beside
// this executable (make build puts both in bin/), else xflow in PATH.
func findXflow(path string) (string, error) {
	if path == "" {
		if self, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(self), "xflow"); isExecutable(p) {
				return p, nil
			}
		}
		p, err := exec.LookPath("xflow")
		if err != nil {
			return "", errors.New("no xflow binary beside xflow-bench or in PATH (the end-to-end part runs it)")
		}
		path = p
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if !isExecutable(abs) {
		return "", fmt.Errorf("%s: not an executable file", path)
	}
	return abs, nil
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
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
