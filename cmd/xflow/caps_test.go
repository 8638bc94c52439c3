package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"

	"github.com/xflow-net/xflow/control"
	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/internal/testnet"
)

// The capabilities `xflow run` needs, and nothing else (deploy/systemd and
// deploy/kubernetes grant exactly these):
//
//   - CAP_BPF: bpf(2): create the maps, load the programs, pin.
//   - CAP_NET_ADMIN: load XDP and TC programs (the kernel asks for it for
//     networking program types on top of CAP_BPF), attach them (XDP and TCX
//     links, clsact qdisc and filters over netlink).
//   - CAP_PERFMON: without it the verifier refuses pointer arithmetic
//     between packet pointers (`data_end - data`, "pointer -= pointer
//     prohibited") that the programs use; it allows that only to loaders
//     that may read kernel pointers (perfmon_capable()).
//
// The daemon runs as uid 0 with only these: uid 0 owns /sys/fs/bpf (mode
// 0700) and /run/xflow, so it needs no CAP_DAC_OVERRIDE; another uid would.
// It cannot mount bpffs (CAP_SYS_ADMIN): /sys/fs/bpf must be mounted already,
// as systemd does at boot.
const (
	capNetAdmin = 12
	capPerfmon  = 38
	capBPF      = 39

	capsMinimal = "+bpf,+net_admin,+perfmon" // setpriv syntax
)

// capsCommand is `xflow ARGS` in side A's namespace, run as root with only
// the capabilities caps (setpriv syntax, e.g. "+bpf,+net_admin"; "" for
// none): inheritable, ambient and bounding sets are all set to them, so
// that the exec'ed xflow has exactly caps permitted and effective. caps
// "uid" runs it as uid and gid 65534 instead (no capabilities).
func capsCommand(p *testnet.Pair, caps string, args ...string) *exec.Cmd {
	set := "-all"
	if caps != "" {
		set += "," + caps
	}
	a := []string{"--net=/var/run/netns/" + p.NSNameA, "setpriv",
		"--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set,
		"--", xflowBin}
	if caps == "uid" {
		a = []string{"--net=/var/run/netns/" + p.NSNameA, "setpriv",
			"--reuid=65534", "--regid=65534", "--clear-groups", "--", xflowBin}
	}
	return exec.Command("nsenter", append(a, args...)...)
}

// requireSetpriv skips (fails under CI) without util-linux's setpriv or a
// kernel that knows CAP_BPF (5.8+).
func requireSetpriv(t *testing.T) {
	t.Helper()
	why := ""
	if _, err := exec.LookPath("setpriv"); err != nil {
		why = "setpriv (util-linux) not found"
	} else if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err != nil {
		why = err.Error()
	} else if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n < capBPF {
		why = "the kernel has no CAP_BPF (before 5.8)"
	}
	if why == "" {
		return
	}
	testenv.Unavailable(t, why)
}

type capsDaemon struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{} // closed when the process has exited; then err is set
	err  error
}

// startCapsDaemon starts `xflow run -c cfg` with only caps and waits until
// it counts.
func startCapsDaemon(t *testing.T, p *testnet.Pair, caps, cfg string) *capsDaemon {
	t.Helper()
	d := &capsDaemon{log: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = capsCommand(p, caps, "run", "-c", cfg)
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	deadline := time.After(15 * time.Second)
	for !strings.Contains(d.log.String(), "msg=counting") {
		select {
		case <-d.done:
			t.Fatalf("xflow run with only %s exited (%v) before counting:\n%s", caps, d.err, d.log)
		case <-deadline:
			t.Fatalf("xflow run with only %s did not start:\n%s", caps, d.log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return d
}

// stop sends SIGTERM and returns the exit error.
func (d *capsDaemon) stop(t *testing.T) error {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, d.log)
	}
	select {
	case <-d.done:
		return d.err
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		t.Fatalf("xflow run did not stop on SIGTERM:\n%s", d.log)
	}
	return nil
}

// procCaps reads the capability sets (CapInh, CapPrm, CapEff, CapBnd,
// CapAmb) and the real uid of a process.
func procCaps(t *testing.T, pid int) (caps map[string]uint64, uid string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	caps = map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch {
		case strings.HasPrefix(k, "Cap"):
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", k, v, err)
			}
			caps[k] = n
		case k == "Uid":
			uid = strings.Fields(v)[0]
		}
	}
	return caps, uid
}

// runCapsToExit runs `xflow run -c cfg` with only caps to its end (it is
// stopped with SIGTERM if it is still running after a while) and returns
// its exit status and output.
func runCapsToExit(t *testing.T, p *testnet.Pair, caps, cfg string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := capsCommand(p, caps, "run", "-c", cfg)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		err = <-done
		t.Errorf("xflow run with only %q was still running after 20s", caps)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String()
}

// capsReason is the daemon's error line, and for a verifier refusal the
// verifier's reason.
func capsReason(out string) string {
	var msg, reason string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "xflow run: ") {
			msg = l
		}
		if strings.Contains(l, "prohibited") || strings.Contains(l, "not allowed") {
			reason = strings.TrimSpace(l)
		}
	}
	if reason != "" {
		msg += " ... " + reason
	}
	return msg
}

// TestCapabilities runs the real daemon as root with only CAP_BPF,
// CAP_NET_ADMIN and CAP_PERFMON: it loads, attaches (TCX and clsact),
// pins, counts exactly, serves `xflow flows`, and on SIGTERM exits cleanly
// leaving nothing attached. Without any one of the three it fails before
// attaching anything, with the kernel's refusal in its message.
func TestCapabilities(t *testing.T) {
	testenv.RequireRoot(t)
	requireSetpriv(t)
	p := testnet.NewPair(t, "xcap")
	want := uint64(1)<<capBPF | 1<<capNetAdmin | 1<<capPerfmon

	for _, c := range []struct{ tcMode, kind string }{
		{tcxMode(), "percpu_hash"},
		{"clsact", "ringbuf"},
	} {
		t.Run("only BPF NET_ADMIN PERFMON/"+c.tcMode+"/"+c.kind, func(t *testing.T) {
			pin := pinDir(t)
			cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc, xdp_mode: native, tc_mode: %s}
datapath: {map: %s, max_flows: 1024}
pin_path: %s
timeouts: {scan_interval: 100ms, inactive: 30s, active: 30s}
`, p.NameA, c.tcMode, c.kind, pin))
			if got := attached(t, p); got != "" {
				t.Fatalf("before: %s", got)
			}
			d := startCapsDaemon(t, p, capsMinimal, cfg)

			// The process counting is xflow itself (nsenter and setpriv
			// exec it), with exactly the three capabilities, as root.
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", d.cmd.Process.Pid)); err != nil || exe != xflowBin {
				t.Fatalf("pid %d is %q (%v), want %s", d.cmd.Process.Pid, exe, err, xflowBin)
			}
			caps, uid := procCaps(t, d.cmd.Process.Pid)
			for _, set := range []string{"CapPrm", "CapEff", "CapBnd", "CapAmb"} {
				if caps[set] != want {
					t.Errorf("%s = %#x, want %#x (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)", set, caps[set], want)
				}
			}
			if uid != "0" {
				t.Errorf("uid %s, want 0", uid)
			}

			got := attached(t, p)
			wantHook := tcHook(c.tcMode)
			if !strings.Contains(got, "xdp:") || !strings.Contains(got, wantHook) {
				t.Fatalf("attached: %q, want xdp and %s", got, wantHook)
			}
			if entries, err := os.ReadDir(pin); err != nil || len(entries) == 0 {
				t.Errorf("pins under %s: %v %v", pin, entries, err)
			}
			if fi, err := os.Stat(control.SocketPath(pin)); err != nil || fi.Mode()&os.ModeSocket == 0 {
				t.Errorf("control socket: %v %v", fi, err)
			}

			sent, err := p.SendUDP(testnet.SideB, false, 9000, 5, 4, 50)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
			// `xflow flows` itself runs with full privileges: it talks to
			// the daemon over the control socket.
			flows := flowsJSON(t, p, pin, "--iface", p.NameA)
			matched := 0
			for id, cnt := range sent {
				for _, f := range flows {
					if f["src"] == id.Src.String() && uint16(f["src_port"].(float64)) == id.SrcPort && f["direction"] == "ingress" {
						matched++
						if uint64(f["packets"].(float64)) != cnt.Packets || uint64(f["bytes"].(float64)) != cnt.Bytes {
							t.Errorf("flow %v: %v packets %v bytes, want %v", id, f["packets"], f["bytes"], cnt)
						}
					}
				}
			}
			if matched != len(sent) {
				t.Errorf("xflow flows matched %d of %d sent flows: %v", matched, len(sent), flows)
			}

			if err := d.stop(t); err != nil {
				t.Fatalf("xflow run exited with %v:\n%s", err, d.log)
			}
			if !strings.Contains(d.log.String(), "msg=exported") {
				t.Errorf("no final export in the log:\n%s", d.log)
			}
			if got := attached(t, p); got != "" {
				t.Fatalf("after SIGTERM: %q\n%s", got, d.log)
			}
			if strings.Contains(d.log.String(), "level=WARN") || strings.Contains(d.log.String(), "level=ERROR") {
				t.Errorf("warnings with only the three capabilities:\n%s", d.log)
			}
		})
	}

	// Without one of the three the kernel refuses the load: the daemon
	// exits 1 with the refusal in its message, says what it needs and what
	// it lacks (and not cilium/ebpf's MEMLOCK hint: the kernel charges BPF
	// memory to the cgroup), before attaching or pinning anything, and
	// does not panic. A uid other than 0 has none of them either.
	const needs = "xflow needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: this process lacks "
	for _, c := range []struct{ name, caps, want, lacks string }{
		{"without CAP_BPF", "+net_admin,+perfmon", "map create: operation not permitted", "CAP_BPF)"},
		{"without CAP_NET_ADMIN", "+bpf,+perfmon", "load program: operation not permitted", "CAP_NET_ADMIN)"},
		{"without CAP_PERFMON", "+bpf,+net_admin", "load program: permission denied", "CAP_PERFMON)"},
		{"with none", "", "operation not permitted", "CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)"},
		{"as uid 65534", "uid", "operation not permitted", "CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pin := pinDir(t)
			cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc}
pin_path: %s
`, p.NameA, pin))
			if c.caps == "uid" {
				cfg = worldReadable(t, cfg)
			}
			code, out := runCapsToExit(t, p, c.caps, cfg)
			if code != 1 || strings.Contains(out, "panic") || !strings.Contains(out, "xflow run: load eBPF") || !strings.Contains(out, c.want) ||
				!strings.Contains(out, needs+c.lacks) || strings.Contains(out, "MEMLOCK") {
				t.Errorf("exit %d, want 1 with \"xflow run: load eBPF\", %q and %q, no MEMLOCK hint and no panic:\n%s", code, c.want, needs+c.lacks, out)
			} else {
				t.Logf("exit %d: %s", code, capsReason(out))
			}
			if got := attached(t, p); got != "" {
				t.Errorf("left attached: %q", got)
			}
			if entries, _ := os.ReadDir(pin); len(entries) != 0 {
				t.Errorf("left pinned: %v", entries)
			}
			if _, err := os.Stat(control.SocketPath(pin)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("control socket %s: %v", control.SocketPath(pin), err)
			}
		})
	}

	// A legacy (netlink-attached) XDP program named xflow_* is removed at
	// start only if xflow can recognise it, and that takes
	// BPF_PROG_GET_FD_BY_ID, which the kernel allows only with
	// CAP_SYS_ADMIN. With the three capabilities the daemon leaves it alone
	// and fails to attach its own XDP program, naming the interface, and
	// attaches nothing. (xflow attaches XDP with bpf_links, which die with
	// their process: such a program comes from something else, and `xflow
	// clean` as full root removes it.)
	t.Run("stale netlink XDP needs CAP_SYS_ADMIN to remove", func(t *testing.T) {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xflow_xdp", Type: ebpf.XDP, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
		if err != nil {
			t.Fatal(err)
		}
		defer prog.Close()
		setXDP := func(fd int) error {
			return p.Do(p.NSA, func() error {
				l, err := netlink.LinkByName(p.NameA)
				if err != nil {
					return err
				}
				return netlink.LinkSetXdpFd(l, fd)
			})
		}
		if err := setXDP(prog.FD()); err != nil {
			t.Fatal(err)
		}
		defer setXDP(-1)
		before := attached(t, p)
		if !strings.HasPrefix(before, "xdp:") {
			t.Fatalf("legacy xdp not attached: %q", before)
		}
		pin := pinDir(t)
		cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc, tc_mode: clsact}
pin_path: %s
`, p.NameA, pin))
		code, out := runCapsToExit(t, p, capsMinimal, cfg)
		if code == 0 || strings.Contains(out, "panic") || !strings.Contains(out, "interface "+p.NameA+": attach XDP") {
			t.Fatalf("exit %d, want a failure naming the interface's XDP attach:\n%s", code, out)
		}
		t.Logf("exit %d: %s", code, capsReason(out))
		if got := attached(t, p); got != before {
			t.Errorf("attached: %q, want only the legacy program %q", got, before)
		}
		if entries, _ := os.ReadDir(pin); len(entries) != 0 {
			t.Errorf("left pinned: %v", entries)
		}
		// With full privileges the same start removes it.
		cmd := exec.Command("nsenter", "--net=/var/run/netns/"+p.NSNameA, xflowBin, "clean", "-c", cfg)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("xflow clean: %v\n%s", err, out)
		}
		if got := attached(t, p); got != "" {
			t.Errorf("after xflow clean as root: %q", got)
		}
	})
}

// worldReadable copies the file at path into a directory any uid may read
// (t.TempDir's is 0700) and returns the copy's path.
func worldReadable(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "xflow-caps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "xflow.yaml")
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
