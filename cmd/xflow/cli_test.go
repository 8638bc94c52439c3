package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/xflow-net/xflow/control"
	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/internal/testnet"
)

var xflowBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xflow-cli")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	xflowBin = filepath.Join(dir, "xflow")
	if bin := os.Getenv("XFLOW_TEST_BIN"); bin != "" {
		// A prebuilt binary: the older-kernel guest has no Go toolchain
		// (scripts/kernels).
		xflowBin = bin
	} else if out, err := exec.Command("go", "build", "-o", xflowBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build xflow: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is `xflow run` started in side A's namespace (through nsenter,
// which unlike `ip netns exec` keeps the host's /sys/fs/bpf).
type daemon struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
}

// syncBuffer is a process's output, safe to read while exec's copying
// goroutine writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startDaemon(t *testing.T, p *testnet.Pair, cfg string, flags ...string) *daemon {
	t.Helper()
	d := &daemon{stderr: &syncBuffer{}}
	d.cmd = exec.Command("nsenter", append([]string{"--net=/var/run/netns/" + p.NSNameA, xflowBin, "run", "-c", cfg}, flags...)...)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			d.cmd.Wait()
		}
	})
	// Wait until it is counting.
	for i := 0; i < 100; i++ {
		if strings.Contains(d.stderr.String(), "msg=counting") {
			return d
		}
		if d.cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("xflow run did not start:\n%s", d.stderr)
	return nil
}

func (d *daemon) stop(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		t.Fatalf("xflow run did not stop on %v:\n%s", sig, d.stderr)
	}
	return nil
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "xflow.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// attached describes what is attached to side A's veth.
func attached(t *testing.T, p *testnet.Pair) (desc string) {
	t.Helper()
	err := p.Do(p.NSA, func() error {
		l, err := netlink.LinkByName(p.NameA)
		if err != nil {
			return err
		}
		var parts []string
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			parts = append(parts, fmt.Sprintf("xdp:%d", x.ProgId))
		}
		qs, err := netlink.QdiscList(l)
		if err != nil {
			return err
		}
		for _, q := range qs {
			if q.Type() == "clsact" {
				parts = append(parts, "clsact")
			}
		}
		for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
			fs, _ := netlink.FilterList(l, parent)
			for _, f := range fs {
				if bf, ok := f.(*netlink.BpfFilter); ok {
					parts = append(parts, "filter:"+bf.Name)
				}
			}
		}
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			if !kernelFeatures().Has("tcx") {
				break // nothing can be attached through TCX (Linux before 6.6)
			}
			r, err := link.QueryPrograms(link.QueryOptions{Target: p.IfA, Attach: at})
			if err != nil {
				return err
			}
			for _, prog := range r.Programs {
				parts = append(parts, fmt.Sprintf("tcx:%d", prog.ID))
			}
		}
		desc = strings.Join(parts, " ")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return desc
}

func pinDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("xflow-test-%d", time.Now().UnixNano()))
	t.Cleanup(func() {
		os.RemoveAll(dir)
		os.Remove(control.SocketPath(dir)) // left by a daemon killed with -9
	})
	return dir
}

func flowsJSON(t *testing.T, p *testnet.Pair, pin string, args ...string) []map[string]any {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=/var/run/netns/" + p.NSNameA, xflowBin, "flows", "--json", "--pin-path", pin}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xflow flows: %v\n%s", err, out)
	}
	var v []map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("xflow flows --json: %v\n%s", err, out)
	}
	return v
}

// TestRunAttachDetach: `xflow run` attaches XDP and TC, counts, and on
// SIGTERM leaves nothing on the interface, for TCX and for clsact.
func TestRunAttachDetach(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xr")
	for _, mode := range []string{tcxMode(), "clsact"} {
		t.Run(mode, func(t *testing.T) {
			pin := pinDir(t)
			cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc, xdp_mode: native, tc_mode: %s}
datapath: {map: percpu_hash, max_flows: 1024}
pin_path: %s
timeouts: {scan_interval: 100ms, inactive: 30s, active: 30s}
`, p.NameA, mode, pin))
			if got := attached(t, p); got != "" {
				t.Fatalf("before: %s", got)
			}
			d := startDaemon(t, p, cfg)
			got := attached(t, p)
			if !strings.Contains(got, "xdp:") || !strings.Contains(got, tcHook(mode)) {
				t.Fatalf("attached: %q", got)
			}
			if mode == "auto" && !strings.Contains(d.stderr.String(), "tcx (Linux 6.6)") {
				t.Errorf("the start did not say that the kernel lacks TCX:\n%s", d.stderr)
			}
			sent, err := p.SendUDP(testnet.SideB, false, 9000, 5, 4, 50)
			if err != nil {
				t.Fatal(err)
			}
			// Several drains happen meanwhile: the daemon still reports each
			// flow's cumulative counts.
			time.Sleep(500 * time.Millisecond)
			flows := flowsJSON(t, p, pin, "--iface", p.NameA)
			matched := 0
			for id, c := range sent {
				for _, f := range flows {
					if f["src"] == id.Src.String() && uint16(f["src_port"].(float64)) == id.SrcPort && f["direction"] == "ingress" {
						matched++
						if uint64(f["packets"].(float64)) != c.Packets || uint64(f["bytes"].(float64)) != c.Bytes {
							t.Errorf("flow %v: %v packets %v bytes, want %v", id, f["packets"], f["bytes"], c)
						}
						for _, key := range []string{"dst", "dst_port", "proto", "iface", "vlan", "tcp_flags", "first", "last"} {
							if _, ok := f[key]; !ok {
								t.Errorf("flows --json: no %q in %v", key, f)
							}
						}
					}
				}
			}
			if matched != len(sent) {
				t.Errorf("xflow flows matched %d of %d sent flows: %v", matched, len(sent), flows)
			}
			if err := d.stop(t, syscall.SIGTERM); err != nil {
				t.Fatalf("xflow run exited with %v:\n%s", err, d.stderr)
			}
			if got := attached(t, p); got != "" {
				t.Fatalf("after SIGTERM: %s\n%s", got, d.stderr)
			}
		})
	}
}

// TestCrashRestart: after a kill -9 the XDP program stays attached through
// its pinned link (and goes on counting) and a clsact filter stays too; the
// next `xflow run` takes the link over and replaces the stale filter, and
// its own SIGTERM leaves nothing. A netlink-attached XDP program named like
// ours, left by something else, is removed at start.
func TestCrashRestart(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xc")
	pin := pinDir(t)
	cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc, tc_mode: clsact}
datapath: {map: hash, max_flows: 1024}
pin_path: %s
`, p.NameA, pin))
	d := startDaemon(t, p, cfg)
	before := attached(t, p)
	d.stop(t, syscall.SIGKILL)
	if got := attached(t, p); got != before || !strings.HasPrefix(got, "xdp:") || !strings.Contains(got, "filter:xflow_tc_egress") {
		t.Fatalf("after kill -9, want the pinned XDP link and the clsact filter left (%q), got %q", before, got)
	}
	// The pinned maps outlive the daemon: `xflow flows` still reads them.
	flowsJSON(t, p, pin)

	d = startDaemon(t, p, cfg)
	if log := d.stderr.String(); !strings.Contains(log, "removed stale attachment") || !strings.Contains(log, "took over from an earlier daemon") {
		t.Errorf("restart did not take over / clean up:\n%s", log)
	}
	got := attached(t, p)
	if strings.Count(got, "filter:") != 1 || strings.Count(got, "xdp:") != 1 {
		t.Fatalf("after restart: %q", got)
	}
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("xflow run: %v\n%s", err, d.stderr)
	}
	if got := attached(t, p); got != "" {
		t.Fatalf("after SIGTERM: %q\n%s", got, d.stderr)
	}

	// A legacy (netlink) XDP attachment named like ours outlives its
	// owner: put one there.
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xflow_xdp", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if err := p.Do(p.NSA, func() error {
		l, err := netlink.LinkByName(p.NameA)
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFd(l, prog.FD())
	}); err != nil {
		t.Fatal(err)
	}
	d = startDaemon(t, p, cfg)
	if !strings.Contains(d.stderr.String(), "removed stale attachment") {
		t.Errorf("the netlink XDP program was not removed:\n%s", d.stderr)
	}
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("xflow run: %v\n%s", err, d.stderr)
	}
	if got := attached(t, p); got != "" {
		t.Fatalf("after SIGTERM: %q\n%s", got, d.stderr)
	}
}

// TestRunBadInput: bad configuration or interface is exit status 2 with a
// message naming the file, line and field, and nothing is attached or
// pinned.
func TestRunBadInput(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xb")
	pin := pinDir(t)
	for _, c := range []struct {
		name, body, want string
	}{
		{"unknown interface", fmt.Sprintf("interfaces:\n  - name: nosuchif0\npin_path: %s\n", pin), ":2: interfaces[0].name"},
		{"unknown map kind", fmt.Sprintf("interfaces:\n  - name: %s\ndatapath:\n  map: hashh\npin_path: %s\n", p.NameA, pin), ":4: datapath.map"},
		{"unknown key", fmt.Sprintf("interfaces:\n  - name: %s\n    xdpmode: native\npin_path: %s\n", p.NameA, pin), ":3: interfaces[0].xdpmode"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := writeConfig(t, c.body)
			cmd := exec.Command("nsenter", "--net=/var/run/netns/"+p.NSNameA, xflowBin, "run", "-c", cfg)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v, want status 2\n%s", err, out)
			}
			if !strings.Contains(string(out), cfg+c.want) {
				t.Errorf("message %q does not name %q", out, cfg+c.want)
			}
			if strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
				t.Errorf("want a one-line error, got %q", out)
			}
			if got := attached(t, p); got != "" {
				t.Errorf("attached: %q", got)
			}
			if _, err := os.Stat(pin); !os.IsNotExist(err) {
				t.Errorf("pin path exists: %v", err)
			}
		})
	}
}

// runExit runs `xflow run` in side A's namespace to its end and returns
// its exit status and output.
func runExit(t *testing.T, p *testnet.Pair, cfg string) (int, string) {
	t.Helper()
	cmd := exec.Command("nsenter", "--net=/var/run/netns/"+p.NSNameA, xflowBin, "run", "-c", cfg)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// TestRunStartFailures: an interface that cannot take the programs (no
// native XDP on lo; a tun device without Ethernet headers) or a collector
// that cannot be named fails the start with an error naming it, leaves
// nothing attached to the other interfaces and no pins; and a second
// daemon on the same pin path is refused without touching the first.
func TestRunStartFailures(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xf")
	if err := p.Do(p.NSA, func() error {
		return netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "xtun0"}, Mode: netlink.TUNTAP_MODE_TUN})
	}); err != nil {
		t.Fatal(err)
	}
	pin := pinDir(t)
	for _, c := range []struct{ name, extra, want string }{
		{"no native XDP", "  - {name: lo, ingress: xdp, egress: none, xdp_mode: native}\n", "interface lo: attach XDP (native)"},
		{"not Ethernet", "  - {name: xtun0, ingress: tc, egress: tc}\n", "interface xtun0: link type none"},
		{"unknown collector host", "export:\n  collectors:\n    - {address: 'no-such-host.invalid:4739'}\n", "collector no-such-host.invalid:4739"},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := fmt.Sprintf("pin_path: %s\ninterfaces:\n  - {name: %s, ingress: xdp, egress: tc, tc_mode: clsact}\n", pin, p.NameA) + c.extra
			code, out := runExit(t, p, writeConfig(t, body))
			if code == 0 || !strings.Contains(out, c.want) || strings.Contains(out, "panic") {
				t.Fatalf("exit %d, want non-zero with %q:\n%s", code, c.want, out)
			}
			if got := attached(t, p); got != "" {
				t.Errorf("left attached: %q", got)
			}
			if entries, _ := os.ReadDir(pin); len(entries) != 0 {
				t.Errorf("left pinned: %v", entries)
			}
		})
	}

	t.Run("second daemon", func(t *testing.T) {
		cfg := writeConfig(t, fmt.Sprintf("pin_path: %s\ninterfaces:\n  - {name: %s, ingress: xdp, egress: tc, tc_mode: clsact}\n", pin, p.NameA))
		d := startDaemon(t, p, cfg)
		before := attached(t, p)
		code, out := runExit(t, p, cfg)
		if code == 0 || !strings.Contains(out, "already runs") {
			t.Fatalf("second daemon: exit %d:\n%s", code, out)
		}
		if got := attached(t, p); got != before {
			t.Errorf("the first daemon's attachments changed: %q, was %q", got, before)
		}
		if err := d.stop(t, syscall.SIGTERM); err != nil {
			t.Fatalf("first daemon: %v\n%s", err, d.stderr)
		}
		if got := attached(t, p); got != "" {
			t.Errorf("after SIGTERM: %q", got)
		}
	})
}

// TestUsage: the usage lists the commands, and the benchmark is not one
// of them (it is cmd/xflow-bench, not part of this binary).
func TestUsage(t *testing.T) {
	out, err := exec.Command(xflowBin, "help").CombinedOutput()
	if err != nil {
		t.Fatalf("xflow help: %v\n%s", err, out)
	}
	for _, cmd := range []string{"run", "flows", "collect", "check", "clean", "version"} {
		if !strings.Contains(string(out), "xflow "+cmd) {
			t.Errorf("usage lacks %q:\n%s", cmd, out)
		}
	}
	if strings.Contains(string(out), "bench") {
		t.Errorf("usage mentions bench:\n%s", out)
	}
	out, err = exec.Command(xflowBin, "bench").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), `unknown command "bench"`) {
		t.Errorf("xflow bench: %v, want exit status 2 and unknown command\n%s", err, out)
	}
}
