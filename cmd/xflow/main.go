// Command xflow is a flow exporter: eBPF programs on XDP and TC count every
// packet into per-flow entries, and xflow reads, shows and exports them.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/xflow-net/xflow/internal/buildinfo"
)

const usage = `xflow: eBPF flow exporter

Usage:
  xflow run    [-c FILE] [--keep-attached]
                              load, attach, count and export until SIGINT/SIGTERM
  xflow flows  [flags]        show the flows the data plane holds
  xflow collect [--listen udp://127.0.0.1:4739] [--json]
                [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
                              a small IPFIX collector (udp://, tcp:// or tls://):
                              print the records it receives
  xflow check  [-c FILE]      validate a configuration without touching the kernel
  xflow clean  [-c FILE]      remove what xflow left attached and pinned
  xflow version               the version, revision and Go release it was built from

FILE defaults to /etc/xflow/xflow.yaml.

Run "xflow COMMAND -h" for a command's flags.
`

// exitError carries a process exit status: 2 for bad usage or
// configuration, 1 for everything else.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(err error) error { return &exitError{code: 2, err: err} }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(args[1:], stdout, stderr)
	case "flows":
		err = cmdFlows(args[1:], stdout)
	case "collect":
		err = cmdCollect(args[1:], stdout, stderr)
	case "check":
		err = cmdCheck(args[1:], stdout)
	case "clean":
		err = cmdClean(args[1:], stdout)
	case "version", "-version", "--version":
		err = cmdVersion(args[1:], stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "xflow: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, errHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "xflow %s: %v\n", args[0], err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// cmdVersion prints the build information: the module version, the VCS
// revision and its time, and the Go release.
func cmdVersion(args []string, stdout io.Writer) error {
	fs := newFlags("version", "", "Prints the module version, the VCS revision and commit time (and the build time\n"+
		"where the build recorded one) and the Go release xflow was built from.", stdout)
	if err := fs.parse(args); err != nil {
		return err
	}
	fmt.Fprint(stdout, buildinfo.Get())
	return nil
}
