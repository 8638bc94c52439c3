package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xflow-net/xflow/config"
	"github.com/xflow-net/xflow/control"
	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/internal/testnet"
)

func quiet() Options { return Options{Logger: slog.New(slog.DiscardHandler)} }

// TestConfigErrors: what the configuration gets wrong is a *ConfigError
// (the command's usage error, exit status 2), found before anything is
// loaded.
func TestConfigErrors(t *testing.T) {
	base := func() *config.Config {
		c := config.Default()
		c.PinPath = filepath.Join(t.TempDir(), "pins")
		c.Metrics.Listen = ""
		c.Interfaces = []config.Interface{{Name: "lo", Ingress: "tc", Egress: "none", TCMode: "auto", XDPMode: "auto"}}
		return c
	}
	for name, mod := range map[string]func(*config.Config){
		"map kind":  func(c *config.Config) { c.Datapath.Map = "no_such_kind" },
		"interface": func(c *config.Config) { c.Interfaces[0].Name = "xflow-nosuch0" },
		"protocol": func(c *config.Config) {
			c.Export.Collectors = []config.Collector{{Address: "127.0.0.1:4739", Protocol: "sflow", Transport: "udp"}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := base()
			mod(c)
			d, err := New(c, quiet())
			var ce *ConfigError
			if !errors.As(err, &ce) {
				if d != nil {
					d.Stop(context.Background(), false)
				}
				t.Fatalf("New: %v, want a *ConfigError", err)
			}
			if _, err := os.Stat(c.PinPath); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("pin path after a refused start: %v", err)
			}
		})
	}
}

// vethConfig is a configuration for p's side A (XDP in, TC out), pinning
// under a fresh directory of /sys/fs/bpf.
func vethConfig(t *testing.T, p *testnet.Pair) *config.Config {
	c := config.Default()
	pin, err := os.MkdirTemp("/sys/fs/bpf", "xflow-daemontest-")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(pin)
	t.Cleanup(func() { os.RemoveAll(pin) })
	c.PinPath = pin
	c.Metrics.Listen = ""
	c.Timeouts.ScanInterval = 100 * time.Millisecond
	c.Interfaces = []config.Interface{{Name: p.NameA, Ingress: "xdp", Egress: "tc", XDPMode: "auto", TCMode: "auto"}}
	return c
}

// hooksOn lists what is attached to p's side A: XDP, and TCX/clsact
// programs.
func hooksOn(t *testing.T, p *testnet.Pair) (xdp bool, tc int) {
	t.Helper()
	err := p.Do(p.NSA, func() error {
		l, err := netlink.LinkByName(p.NameA)
		if err != nil {
			return err
		}
		xdp = l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			if fs, err := netlink.FilterList(l, parent); err == nil {
				tc += len(fs)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return xdp, tc
}

// pinned lists the files under dir.
func pinned(t *testing.T, dir string) (files []string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if !e.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// start runs New in side A's namespace.
func start(t *testing.T, p *testnet.Pair, c *config.Config, o Options) (d *Daemon, err error) {
	t.Helper()
	perr := p.Do(p.NSA, func() error {
		d, err = New(c, o)
		return nil
	})
	if perr != nil {
		t.Fatal(perr)
	}
	return d, err
}

func stop(t *testing.T, p *testnet.Pair, d *Daemon, keep bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	time.Sleep(300 * time.Millisecond) // a few scans
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if err := p.Do(p.NSA, func() error { return d.Stop(context.Background(), keep) }); err != nil {
		t.Errorf("Stop(keepAttached=%v): %v", keep, err)
	}
}

// TestStartStop: New attaches and serves the control socket; Stop
// detaches and removes the socket; the pins stay (for `xflow flows`).
// With keepAttached the programs stay and the next daemon adopts them.
func TestStartStop(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xd")
	c := vethConfig(t, p)
	var logs bytes.Buffer
	d, err := start(t, p, c, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sock := control.SocketPath(c.PinPath)
	if !control.Answers(sock) {
		t.Error("the control socket does not answer")
	}
	if xdp, _ := hooksOn(t, p); !xdp {
		t.Error("no XDP program attached")
	}
	if !strings.Contains(logs.String(), `hooks="[xdp/native tcx/egress]"`) {
		t.Errorf("attach log: %s", logs.String())
	}
	if err := d.Reload(c); err != nil {
		t.Errorf("Reload of the same configuration: %v", err)
	}
	stop(t, p, d, true)
	if xdp, _ := hooksOn(t, p); !xdp {
		t.Error("--keep-attached: the XDP program was detached")
	}
	if control.Answers(sock) {
		t.Error("the control socket answers after Stop")
	}

	d, err = start(t, p, c, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if !d.dp.Adopted {
		t.Error("the second daemon did not adopt the data plane")
	}
	stop(t, p, d, false)
	if xdp, tc := hooksOn(t, p); xdp || tc > 0 {
		t.Errorf("after Stop: xdp %v, tc filters %d", xdp, tc)
	}
	if len(pinned(t, c.PinPath)) == 0 {
		t.Error("no pins after Stop")
	}
	if err := d.Reload(c); err == nil {
		t.Error("Reload after Stop succeeded")
	}
}

// TestFailedStart: a start that fails after the data plane was loaded and
// attached (the metrics address is taken) leaves no pins and nothing
// attached; one that fails after adopting a data plane leaves it counting.
func TestFailedStart(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xe")
	c := vethConfig(t, p)
	var taken net.Listener
	if err := p.Do(p.NSA, func() (err error) {
		taken, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	bad := *c
	bad.Metrics.Listen = taken.Addr().String()

	if d, err := start(t, p, &bad, quiet()); err == nil {
		stop(t, p, d, false)
		t.Fatal("New succeeded with the metrics address taken")
	}
	if pins := pinned(t, c.PinPath); len(pins) > 0 {
		t.Errorf("pins after a failed start: %v", pins)
	}
	if xdp, tc := hooksOn(t, p); xdp || tc > 0 {
		t.Errorf("after a failed start: xdp %v, tc filters %d", xdp, tc)
	}

	// Leave a data plane counting, then fail to take it over.
	d, err := start(t, p, c, quiet())
	if err != nil {
		t.Fatal(err)
	}
	stop(t, p, d, true)
	if d, err := start(t, p, &bad, quiet()); err == nil {
		stop(t, p, d, false)
		t.Fatal("New succeeded with the metrics address taken")
	}
	if xdp, _ := hooksOn(t, p); !xdp {
		t.Error("a failed takeover detached the adopted data plane")
	}
	d, err = start(t, p, c, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if !d.dp.Adopted {
		t.Error("the data plane left by the failed takeover was not adopted")
	}
	stop(t, p, d, false)
}
