package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/control"
	"github.com/xflow-net/xflow/internal/testnet"
)

// The agents of part 2, each started once per flow count in side B's
// namespace and stopped with SIGTERM (what `systemctl stop` sends), after
// which each must have exported every flow it still held.

type agentKind int

const (
	agentNone agentKind = iota
	agentXflow
	agentSoftflowd
	agentPmacctd
)

type agentSpec struct {
	kind agentKind
	mapK bpf.Kind // agentXflow
}

func (a agentSpec) String() string {
	switch a.kind {
	case agentNone:
		return "no agent"
	case agentXflow:
		return "xflow " + string(a.mapK)
	case agentSoftflowd:
		return "softflowd"
	default:
		return "pmacctd nfprobe"
	}
}

// Settings shared by the agents, as an operator would size them for this
// load: a 2 s idle timeout, expiry scans twice a second (xflow) or every
// second (softflowd, pmacctd: whole seconds only), and room for the flows:
// xflow's data plane holds the flows seen since its last scan (at most two
// runs' worth, 131072: the store is swapped for an empty one at every
// scan), its user space and the others every flow until it expires.
const (
	e2eMaxFlows   = 1 << 18
	e2eIdle       = "2s"
	e2eScan       = "500ms"
	pcapBufBytes  = 64 << 20 // softflowd -B: the capture ring
	pmacctPipe    = 64 << 20 // pmacctd plugin_pipe_size: core → nfprobe queue
	pmacctBufSize = 64 << 10 // plugin_buffer_size, 1:1000 of the pipe as its docs advise
)

// agentProc is one running agent.
type agentProc struct {
	spec agentSpec
	cmd  *exec.Cmd
	log  string
	pass link.Link     // the XDP_PASS program on B (none, softflowd, pmacctd)
	prog *ebpf.Program // xflow: its XDP program attached to B
	exit time.Duration // CPU time of the whole process tree, once it exited

	waitDone chan struct{} // closed once the process was waited for

	ctl, ctlSock string // softflowctl and softflowd's control socket
	pinPath      string // xflow's

	// What the capture of softflowd and pmacctd said (libpcap's counters).
	pcapReceived, pcapDropped uint64
	pcapKnown                 bool
	notes                     []string // notable lines of its log
}

// startAgent starts spec in side B's namespace, ready to count when it
// returns.
func (e *e2e) startAgent(spec agentSpec, flows int) (*agentProc, error) {
	a := &agentProc{spec: spec}
	if spec.kind != agentXflow {
		// B's veth accepts redirected frames only with an XDP program.
		err := testnet.Do(e.pair.NSB, func() (err error) {
			a.pass, err = link.AttachXDP(link.XDPOptions{Program: e.gen.pass, Interface: e.pair.IfB, Flags: link.XDPDriverMode})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("attach XDP_PASS to %s: %w", e.pair.NameB, err)
		}
	}
	tag := strings.ReplaceAll(spec.String(), " ", "-")
	a.log = filepath.Join(e.dir, fmt.Sprintf("%s-%d.log", tag, flows))
	var argv []string
	switch spec.kind {
	case agentNone:
		return a, nil
	case agentXflow:
		cfg := filepath.Join(e.dir, tag+".yaml")
		// A pin path of its own: a daemon would adopt the maps an earlier
		// one left pinned.
		e.starts++
		pin := fmt.Sprintf("%s-%d", e.pinBase, e.starts)
		body := fmt.Sprintf(`interfaces:
  - {name: %s, ingress: xdp, egress: none, xdp_mode: native}
datapath: {map: %s, max_flows: %d}
pin_path: %s
timeouts: {active: 60s, inactive: %s, scan_interval: %s}
export:
  collectors:
    - {address: %s, protocol: ipfix, transport: udp}
metrics: {listen: ""}
`, e.pair.NameB, spec.mapK, e2eMaxFlows, pin, e2eIdle, e2eScan, e.coll.Addr())
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			return nil, err
		}
		argv = []string{e.o.Xflow, "run", "-c", cfg}
		a.pinPath = pin
	case agentSoftflowd:
		a.ctl, a.ctlSock = e.tools["softflowctl"], filepath.Join(e.dir, "softflowd.ctl")
		argv = []string{e.tools["softflowd"], "-d", "-i", e.pair.NameB, "-n", e.coll.Addr().String(), "-v", "10",
			"-m", fmt.Sprint(e2eMaxFlows), "-B", fmt.Sprint(pcapBufBytes),
			"-t", "udp=2", "-t", "general=2", "-t", "maxlife=60", "-t", "expint=1",
			"-p", filepath.Join(e.dir, "softflowd.pid"), "-c", a.ctlSock}
	case agentPmacctd:
		cfg := filepath.Join(e.dir, "pmacctd.conf")
		body := fmt.Sprintf(`daemonize: false
pidfile: %s
pcap_interface: %s
aggregate: src_host, dst_host, src_port, dst_port, proto
plugins: nfprobe
nfprobe_receiver: %s
nfprobe_version: 10
nfprobe_timeouts: udp=2:general=2:maxlife=60:expint=1
nfprobe_maxflows: %d
plugin_pipe_size: %d
plugin_buffer_size: %d
`, filepath.Join(e.dir, "pmacctd.pid"), e.pair.NameB, e.coll.Addr(), e2eMaxFlows, pmacctPipe, pmacctBufSize)
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			return nil, err
		}
		argv = []string{e.tools["pmacctd"], "-f", cfg}
	}
	f, err := os.Create(a.log)
	if err != nil {
		a.detachPass()
		return nil, err
	}
	defer f.Close()
	// nsenter execs the agent (no fork): the pid is the agent's.
	a.cmd = exec.Command("nsenter", append([]string{"--net=" + filepath.Join(testnet.NetnsDir, e.pair.NSNameB)}, argv...)...)
	a.cmd.Stdout, a.cmd.Stderr = f, f
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		a.detachPass()
		return nil, fmt.Errorf("start %s: %w", spec, err)
	}
	exited := make(chan struct{})
	a.waitDone = exited
	go func() { a.cmd.Wait(); close(exited) }()
	ready := func() bool {
		if spec.kind == agentXflow {
			b, _ := os.ReadFile(a.log)
			return bytes.Contains(b, []byte("msg=counting"))
		}
		return packetSocketOn(a.cmd.Process.Pid, e.pair.IfB)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !ready() {
		select {
		case <-exited:
			a.detachPass()
			return nil, fmt.Errorf("%s exited at start: %s", spec, a.tail())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			a.kill()
			return nil, fmt.Errorf("%s not ready after 20 s: %s", spec, a.tail())
		}
	}
	if spec.kind == agentXflow {
		id, err := e.xdpProgID()
		if err == nil {
			a.prog, err = ebpf.NewProgramFromID(id)
		}
		if err != nil {
			a.kill()
			return nil, fmt.Errorf("xflow's XDP program on %s: %w", e.pair.NameB, err)
		}
	} else {
		// The capture is open once its packet socket is bound; libpcap
		// sets up its ring and filter right after.
		time.Sleep(200 * time.Millisecond)
	}
	return a, nil
}

// cpu is the agent's CPU time so far (process tree).
func (a *agentProc) cpu() time.Duration {
	if a.cmd == nil {
		return 0
	}
	return treeCPU(a.cmd.Process.Pid)
}

// stop sends SIGTERM, waits for the agent to exit (it exports what it
// holds) and records its CPU time.
func (a *agentProc) stop(timeout time.Duration) error {
	defer a.detachPass()
	if a.prog != nil {
		defer a.prog.Close()
	}
	if a.cmd == nil {
		return nil
	}
	before := a.cpu()
	if a.spec.kind == agentSoftflowd {
		a.softflowdStats()
		// softflowd installs its SIGTERM handler (expire every flow, then
		// exit) only when it daemonises; in the foreground (-d) SIGTERM
		// just kills it. `softflowctl shutdown` is the documented
		// equivalent of that handler.
		out, err := exec.Command(a.ctl, "-c", a.ctlSock, "shutdown").CombinedOutput()
		if err != nil {
			a.kill()
			return fmt.Errorf("softflowctl shutdown: %v: %s", err, bytes.TrimSpace(out))
		}
	} else if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-a.waitDone:
	case <-time.After(timeout):
		a.kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM: %s", a.spec, timeout, a.tail())
	}
	if a.pinPath != "" {
		os.RemoveAll(a.pinPath)
	}
	st := a.cmd.ProcessState
	a.exit = st.UserTime() + st.SystemTime()
	// A child the agent did not reap is not in its rusage.
	a.exit = max(a.exit, before)
	log, _ := os.ReadFile(a.log)
	a.notes = notableLines(log)
	switch a.spec.kind {
	case agentSoftflowd:
		// It exits with status 1 after a graceful shutdown.
		if !bytes.Contains(log, []byte("Shutting down on user request")) {
			return fmt.Errorf("softflowd did not shut down gracefully (%v): %s", st, a.tail())
		}
		return nil
	case agentPmacctd:
		// "[iface,0] received_packets=N dropped_packets=M" at exit.
		if m := pmacctdPcap.FindSubmatch(log); m != nil {
			a.pcapReceived, _ = strconv.ParseUint(string(m[1]), 10, 64)
			a.pcapDropped, _ = strconv.ParseUint(string(m[2]), 10, 64)
			a.pcapKnown = true
		}
	}
	if !st.Success() {
		return fmt.Errorf("%s exited with %v: %s", a.spec, st, a.tail())
	}
	return nil
}

var (
	pmacctdPcap   = regexp.MustCompile(`received_packets=(\d+) dropped_packets=(\d+)`)
	softflowdRecv = regexp.MustCompile(`Packets received by libpcap: (\d+)`)
	softflowdDrop = regexp.MustCompile(`Packets dropped by libpcap: (\d+)`)
)

// notable are the log lines worth keeping: xflow's data plane counters
// (missed packets, LRU evictions) and export totals, pmacctd's capture
// counters and plugin queue losses, anyone's warnings and errors.
var notable = regexp.MustCompile(`data plane counters|msg=exported|collector totals|level=(WARN|ERROR)|dropped_packets=|missing data|WARN|ERROR`)

func notableLines(log []byte) []string {
	var out []string
	for _, l := range strings.Split(string(log), "\n") {
		if l = strings.TrimSpace(l); l != "" && notable.MatchString(l) {
			if len(out) == 20 {
				out = append(out, "…")
				break
			}
			out = append(out, l)
		}
	}
	return out
}

// softflowdStats reads libpcap's counters from `softflowctl statistics`.
func (a *agentProc) softflowdStats() {
	out, err := exec.Command(a.ctl, "-c", a.ctlSock, "statistics").CombinedOutput()
	if err != nil {
		return
	}
	r, d := softflowdRecv.FindSubmatch(out), softflowdDrop.FindSubmatch(out)
	if r != nil && d != nil {
		a.pcapReceived, _ = strconv.ParseUint(string(r[1]), 10, 64)
		a.pcapDropped, _ = strconv.ParseUint(string(d[1]), 10, 64)
		a.pcapKnown = true
	}
}

func (a *agentProc) kill() {
	if a.cmd != nil && a.cmd.Process != nil {
		syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		if a.waitDone != nil {
			<-a.waitDone
		}
	}
	if a.pinPath != "" {
		os.RemoveAll(a.pinPath)
		os.Remove(control.SocketPath(a.pinPath))
	}
	a.detachPass()
}

func (a *agentProc) detachPass() {
	if a.pass != nil {
		a.pass.Close()
		a.pass = nil
	}
}

// tail is the end of the agent's log.
func (a *agentProc) tail() string {
	b, _ := os.ReadFile(a.log)
	const n = 1500
	if len(b) > n {
		b = b[len(b)-n:]
	}
	if len(b) == 0 {
		return "(no output)"
	}
	return string(bytes.TrimSpace(b))
}

// xdpProgID is the XDP program attached to B.
func (e *e2e) xdpProgID() (ebpf.ProgramID, error) {
	l, err := e.hB.LinkByIndex(e.pair.IfB)
	if err != nil {
		return 0, err
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached && x.ProgId != 0 {
		return ebpf.ProgramID(x.ProgId), nil
	}
	return 0, errors.New("no XDP program attached")
}
