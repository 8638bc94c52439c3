// Command demo is `make demo`: two network namespaces joined by a veth
// pair, `xflow run` on one end exporting IPFIX to `xflow collect`, about
// ten seconds of TCP, UDP and ICMP traffic over IPv4 and IPv6, the live
// flow table (`xflow flows`) while it flows, and the records the collector
// decoded, every kind of traffic sent among them, with TCP flags and end
// reasons in words. It ends with one line: flows, records decoded, lost,
// and fails unless every kind was decoded and nothing was lost. Everything
// it creates is removed at the end. Run it as root: go run ./internal/demo
// bin/xflow
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xflow-net/xflow/internal/testnet"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: demo PATH-TO-XFLOW")
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "run as root, e.g. sudo make demo")
		os.Exit(1)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

func run(xflow string) error {
	xflow, err := filepath.Abs(xflow)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	step("creating two network namespaces joined by a veth pair")
	p, err := testnet.New("xdemo")
	if err != nil {
		return err
	}
	defer func() {
		step("cleaning up: namespaces %s and %s", p.NSNameA, p.NSNameB)
		p.Close()
	}()
	fmt.Printf("    %s (%s, %s) <-> %s (%s, %s)\n", p.NameA, p.A4, p.A6, p.NameB, p.B4, p.B6)

	dir, err := os.MkdirTemp("", "xflow-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pin := "/sys/fs/bpf/xflow-demo"
	cfgPath := filepath.Join(dir, "xflow.yaml")
	cfg := fmt.Sprintf(`# written by the demo
interfaces:
  - {name: %s, ingress: xdp, egress: tc}
datapath: {map: percpu_hash, max_flows: 65536}
pin_path: %s
timeouts: {active: 5s, inactive: 2s, scan_interval: 500ms}
export:
  collectors:
    - {address: 127.0.0.1:4739, protocol: ipfix, transport: udp}
`, p.NameA, pin)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	fmt.Printf("\n%s", cfg)

	// nsenter, unlike `ip netns exec`, keeps the host's /sys/fs/bpf, so
	// `xflow flows` finds the daemon's pins and control socket.
	inA := func(args ...string) *exec.Cmd {
		return exec.Command("nsenter", append([]string{"--net=/var/run/netns/" + p.NSNameA, xflow}, args...)...)
	}

	step("starting the collector: xflow collect --json --listen udp://127.0.0.1:4739 (in %s)", p.NSNameA)
	var collected syncBuffer
	collect := inA("collect", "--json", "--listen", "udp://127.0.0.1:4739")
	var collectLog syncBuffer
	collect.Stdout = &collected
	collect.Stderr = io.MultiWriter(os.Stderr, &collectLog)
	if err := collect.Start(); err != nil {
		return err
	}
	defer func() {
		if collect.ProcessState == nil {
			collect.Process.Kill()
			collect.Wait()
		}
	}()
	// The exporter sends its templates first (then every minute): the
	// collector must be listening before it starts.
	for i := 0; !strings.Contains(collectLog.String(), "listening on"); i++ {
		if i > 200 {
			return fmt.Errorf("xflow collect did not start:\n%s", collectLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	step("starting the exporter: xflow run -c %s", cfgPath)
	var runLog syncBuffer
	daemon := inA("run", "-c", cfgPath)
	daemon.Stderr = &runLog
	if err := daemon.Start(); err != nil {
		return err
	}
	defer func() {
		if daemon.ProcessState == nil {
			daemon.Process.Kill()
			daemon.Wait()
		}
		os.RemoveAll(pin)
	}()
	for i := 0; !strings.Contains(runLog.String(), "msg=counting"); i++ {
		if i > 100 {
			return fmt.Errorf("xflow run did not start:\n%s", runLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Print(indent(runLog.String()))

	step("sending about 10 s of traffic from %s to %s, of every kind:", p.NameB, p.NameA)
	for _, k := range kinds {
		fmt.Printf("    %-7s %s\n", k.name, k.what)
	}
	// The traffic runs in its own goroutine; the live table is taken
	// while it flows.
	trafficDone := make(chan error, 1)
	go func() { trafficDone <- sendTraffic(ctx, p, 10*time.Second) }()
	select {
	case <-time.After(4 * time.Second):
	case err := <-trafficDone:
		return fmt.Errorf("traffic: %w", err)
	}
	step("xflow flows --sort last --top 16 (live, from the daemon, while the traffic flows)")
	out, err := inA("flows", "--pin-path", pin, "--sort", "last", "--top", "16").CombinedOutput()
	if err != nil {
		return fmt.Errorf("xflow flows: %v\n%s", err, out)
	}
	fmt.Print(indent(string(out)))
	if err := <-trafficDone; err != nil {
		return fmt.Errorf("traffic: %w", err)
	}

	step("stopping the exporter (SIGTERM: it detaches and exports every remaining flow)")
	daemon.Process.Signal(syscall.SIGTERM)
	if err := daemon.Wait(); err != nil {
		return fmt.Errorf("xflow run: %v\n%s", err, runLog.String())
	}
	time.Sleep(300 * time.Millisecond)
	collect.Process.Signal(syscall.SIGTERM)
	collect.Wait()
	var recs []record
	for _, l := range strings.Split(strings.TrimSpace(collected.String()), "\n") {
		if l == "" {
			continue
		}
		var r record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			return fmt.Errorf("xflow collect --json: %q: %w", l, err)
		}
		recs = append(recs, r)
	}

	step("what the collector decoded: %d records; by kind of traffic (first 3 of each)", len(recs))
	byKind := map[string][]record{}
	for _, r := range recs {
		byKind[r.kind()] = append(byKind[r.kind()], r)
	}
	var missingKinds []string
	for _, k := range kinds {
		rs := byKind[k.name]
		fmt.Printf("    %s: %d records\n", k.name, len(rs))
		if len(rs) == 0 {
			missingKinds = append(missingKinds, k.name)
		}
		for i, r := range rs {
			if i == 3 {
				break
			}
			fmt.Println("      ", r)
		}
	}
	step("records by end reason")
	reasons := map[string]int{}
	var order []string
	for _, r := range recs {
		w := endReason(r.FlowEndReason, r.TCPFlags)
		if reasons[w] == 0 {
			order = append(order, w)
		}
		reasons[w]++
	}
	sort.Strings(order)
	for _, w := range order {
		fmt.Printf("    %-36s %d records\n", w, reasons[w])
	}
	step("the exporter's last words")
	fmt.Print(indent(lastLines(runLog.String(), 3)))

	// Lost: records the exporter sent that the collector did not decode,
	// and the gaps in the sequence numbers the collector saw.
	m := regexp.MustCompile(`msg="collector totals" .* records=(\d+) `).FindStringSubmatch(runLog.String())
	if m == nil {
		return fmt.Errorf("the exporter logged no collector totals")
	}
	sent, _ := strconv.Atoi(m[1])
	gaps := 0
	if g := regexp.MustCompile(`(\d+) sequence gaps`).FindStringSubmatch(collectLog.String()); g != nil {
		gaps, _ = strconv.Atoi(g[1])
	}
	lost := sent - len(recs)
	flows := map[string]bool{}
	for _, r := range recs {
		flows[fmt.Sprint(r.Src, r.SrcPort, r.Dst, r.DstPort, r.Proto, r.Direction)] = true
	}
	fmt.Printf("\ndemo: %d flows, %d records decoded, %d lost (sent %d, %d sequence gaps)\n", len(flows), len(recs), lost, sent, gaps)
	switch {
	case sent == 0 || lost != 0 || gaps != 0:
		return fmt.Errorf("the exporter sent %d records, the collector decoded %d with %d sequence gaps", sent, len(recs), gaps)
	case len(missingKinds) > 0:
		return fmt.Errorf("no record of %s", strings.Join(missingKinds, ", "))
	}
	return nil
}

// kinds are the kinds of traffic the demo sends, each round.
var kinds = []struct{ name, what string }{
	{"tcp", "a TCP connection: 200 kB up, 20 kB down, then FIN (IPv4)"},
	{"udp", "3 UDP flows of 20 datagrams to port 5353 (IPv4)"},
	{"icmp", "3 ICMP echo requests and their replies (IPv4)"},
	{"udp6", "2 UDP flows of 10 datagrams to port 6000 (IPv6)"},
	{"icmp6", "3 ICMPv6 echo requests and their replies (IPv6)"},
}

// sendTraffic sends rounds of every kind for about d.
func sendTraffic(ctx context.Context, p *testnet.Pair, d time.Duration) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil {
		if _, err := p.TCPExchange(false, 200_000, 20_000); err != nil {
			return err
		}
		if _, err := p.SendUDP(testnet.SideB, false, 5353, 3, 20, 200); err != nil {
			return err
		}
		if _, err := p.SendICMPEcho(testnet.SideB, false, 3, 56); err != nil {
			return err
		}
		if _, err := p.SendUDP(testnet.SideB, true, 6000, 2, 10, 500); err != nil {
			return err
		}
		if _, err := p.SendICMPEcho(testnet.SideB, true, 3, 56); err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
	return ctx.Err()
}

// record is one line of `xflow collect --json`.
type record struct {
	Src           string `json:"src"`
	Dst           string `json:"dst"`
	SrcPort       uint16 `json:"src_port"`
	DstPort       uint16 `json:"dst_port"` // ICMP: type<<8 | code
	Proto         uint8  `json:"proto"`
	Direction     string `json:"direction"`
	Packets       uint64 `json:"packets"`
	Bytes         uint64 `json:"bytes"`
	TCPFlags      uint16 `json:"tcp_flags"`
	FlowEndReason uint8  `json:"flow_end_reason"`
	IPVersion     uint8  `json:"ip_version"`
}

func (r record) kind() string {
	name := map[uint8]string{6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}[r.Proto]
	if name == "" {
		name = "proto " + strconv.Itoa(int(r.Proto))
	}
	if r.IPVersion == 6 || strings.Contains(r.Src, ":") {
		name += "6"
	}
	return name
}

func (r record) String() string {
	from, to := r.Src+":"+strconv.Itoa(int(r.SrcPort)), r.Dst+":"+strconv.Itoa(int(r.DstPort))
	if strings.Contains(r.Src, ":") {
		from, to = "["+r.Src+"]:"+strconv.Itoa(int(r.SrcPort)), "["+r.Dst+"]:"+strconv.Itoa(int(r.DstPort))
	}
	detail := ""
	switch r.Proto {
	case 6:
		detail = "flags " + tcpFlags(r.TCPFlags)
	case 1, 58:
		from, to = r.Src, r.Dst
		detail = icmpType(r.Proto, r.DstPort)
	}
	return fmt.Sprintf("%-6s %s -> %s  %s  %d packets, %d bytes  %s  [%s]",
		r.kind(), from, to, r.Direction, r.Packets, r.Bytes, detail, endReason(r.FlowEndReason, r.TCPFlags))
}

// tcpFlags names the TCP flags set, in the order a connection uses them.
func tcpFlags(f uint16) string {
	var names []string
	for _, fl := range []struct {
		bit  uint16
		name string
	}{{0x02, "SYN"}, {0x10, "ACK"}, {0x08, "PSH"}, {0x20, "URG"}, {0x40, "ECE"}, {0x80, "CWR"}, {0x100, "NS"}, {0x01, "FIN"}, {0x04, "RST"}} {
		if f&fl.bit != 0 {
			names = append(names, fl.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// endReason says IPFIX flowEndReason in words; a TCP flow's end says
// whether a FIN or a RST ended it.
func endReason(r uint8, flags uint16) string {
	switch r {
	case 1:
		return "idle timeout"
	case 2:
		return "active timeout (the flow goes on)"
	case 3:
		if flags&0x04 != 0 {
			return "end of flow (RST)"
		}
		return "end of flow (FIN)"
	case 4:
		return "forced end (the exporter stopped)"
	case 5:
		return "lack of resources (flow table full)"
	}
	return fmt.Sprintf("end reason %d", r)
}

// icmpType names the ICMP (1) or ICMPv6 (58) type and code.
func icmpType(proto uint8, tc uint16) string {
	t, c := tc>>8, tc&0xff
	names := map[uint16]string{0: "echo reply", 8: "echo request", 3: "destination unreachable", 11: "time exceeded"}
	if proto == 58 {
		names = map[uint16]string{129: "echo reply", 128: "echo request", 1: "destination unreachable", 135: "neighbour solicitation", 136: "neighbour advertisement"}
	}
	name := names[t]
	if name == "" {
		name = "type"
	}
	return fmt.Sprintf("%s %d/%d", name, t, c)
}

// syncBuffer is a bytes.Buffer that a child process writes to while the
// demo reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n") + "\n"
}
