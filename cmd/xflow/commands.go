package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/config"
	"github.com/xflow-net/xflow/control"
)

var errHelp = errors.New("help shown")

// newFlags makes a flag set that reports errors instead of exiting.
func newFlags(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("xflow "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usageErr(err)
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	return nil
}

// loadConfig loads and validates the configuration, including that every
// interface exists. Any problem is a usage error (exit status 2).
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, usageErr(errors.New("no configuration: use -c FILE"))
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
	fs := newFlags("check", stdout)
	path := fs.String("c", "", "configuration `file`")
	if err := parseFlags(fs, args); err != nil {
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
	fs := newFlags("clean", stdout)
	path := fs.String("c", "", "configuration `file`")
	if err := parseFlags(fs, args); err != nil {
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
