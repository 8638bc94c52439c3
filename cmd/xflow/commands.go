package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/config"
	"github.com/xflow-net/xflow/control"
)

var errHelp = errors.New("help shown")

// defaultConfig is the configuration file run, check and clean read unless
// -c names another.
const defaultConfig = "/etc/xflow/xflow.yaml"

// flagSet is a command's flags, its synopsis and what it does, for its
// usage text.
type flagSet struct {
	*flag.FlagSet
	synopsis string // after "xflow NAME"
	about    string
	stdout   io.Writer // where -h prints the usage
}

// newFlags makes a command's flag set. It reports errors instead of
// exiting, and prints nothing itself: parse does.
func newFlags(name, synopsis, about string, stdout io.Writer) *flagSet {
	fs := flag.NewFlagSet("xflow "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, synopsis: synopsis, about: about, stdout: stdout}
}

// configFlag is -c, the configuration file, the same for every command.
func (f *flagSet) configFlag() *string {
	return f.String("c", defaultConfig, "configuration `FILE`")
}

// usage writes the command's usage text.
func (f *flagSet) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", strings.TrimSpace(f.Name()+" "+f.synopsis), f.about)
	n := 0
	f.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprint(w, "\nFlags (-flag and --flag are the same):\n")
	f.SetOutput(w)
	f.PrintDefaults()
	f.SetOutput(io.Discard)
}

// parse parses args. -h prints the usage on standard output (errHelp: exit
// status 0); a bad flag or argument is a usage error whose message names
// it once, with the synopsis.
func (f *flagSet) parse(args []string) error {
	err := f.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		f.usage(f.stdout)
		return errHelp
	}
	if err == nil && f.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", f.Arg(0))
	}
	if err != nil {
		return usageErr(fmt.Errorf("%w\nUsage: %s\nRun \"%s -h\" for its flags.", err, strings.TrimSpace(f.Name()+" "+f.synopsis), f.Name()))
	}
	return nil
}

// loadConfig loads and validates the configuration, including that every
// interface exists. Any problem is a usage error (exit status 2).
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, usageErr(errors.New("no configuration: -c FILE is empty"))
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, usageErr(err)
	}
	if err := cfg.CheckInterfaces(func(name string) error {
		_, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("no such interface %q", name)
		}
		return nil
	}); err != nil {
		return nil, usageErr(err)
	}
	return cfg, nil
}

func cmdCheck(args []string, stdout io.Writer) error {
	fs := newFlags("check", "[-c FILE]",
		"Validates the configuration file (and that its interfaces exist) without touching the kernel.", stdout)
	path := fs.configFlag()
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (%d interfaces, map %s, %d flows)\n",
		*path, len(cfg.Interfaces), cfg.Datapath.Map, cfg.Datapath.MaxFlows)
	return nil
}

// cmdClean removes what an earlier xflow left behind on the configured
// interfaces and under the pin path.
func cmdClean(args []string, stdout io.Writer) error {
	fs := newFlags("clean", "[-c FILE]",
		"Removes what an earlier xflow left attached to the configured interfaces and pinned under\n"+
			"pin_path. It refuses while a daemon runs on that pin path.", stdout)
	path := fs.configFlag()
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if control.Answers(control.SocketPath(cfg.PinPath)) {
		return fmt.Errorf("an xflow daemon runs with pin_path %s: stop it first", cfg.PinPath)
	}
	var errs []error
	for _, ifc := range cfg.Interfaces {
		removed, err := bpf.CleanStale(ifc.Name)
		for _, r := range removed {
			fmt.Fprintf(stdout, "%s: removed %s\n", ifc.Name, r)
		}
		errs = append(errs, err)
	}
	if _, err := os.Stat(cfg.PinPath); err == nil {
		if err := bpf.RemovePins(cfg.PinPath); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(stdout, "removed pins under %s\n", cfg.PinPath)
		}
	}
	return errors.Join(errs...)
}
