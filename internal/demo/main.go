// Command demo is `make demo`: two network namespaces joined by a veth
// pair, `xflow run` on one end exporting IPFIX to `xflow collect`, about
// ten seconds of mixed TCP, UDP, ICMP and IPv6 traffic, the flows xflow
// counted and the records the collector decoded. Everything it creates is
// removed at the end. Run it as root: go run ./internal/demo bin/xflow
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
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

	step("starting the collector: xflow collect --listen udp://127.0.0.1:4739 (in %s)", p.NSNameA)
	var collected syncBuffer
	collect := inA("collect", "--listen", "udp://127.0.0.1:4739")
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

	step("sending about 10 s of TCP, UDP, ICMP, IPv6 UDP and ICMPv6 traffic from %s to %s", p.NameB, p.NameA)
	end := time.Now().Add(10 * time.Second)
	for round := 1; time.Now().Before(end) && ctx.Err() == nil; round++ {
		if _, err := p.TCPExchange(false, 200_000, 20_000); err != nil {
			return err
		}
		if _, err := p.SendUDP(testnet.SideB, false, 5353, 8, 20, 200); err != nil {
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
		if round == 3 {
			step("xflow flows --top 12 (live, from the daemon)")
			out, err := inA("flows", "--pin-path", pin, "--top", "12").CombinedOutput()
			if err != nil {
				return fmt.Errorf("xflow flows: %v\n%s", err, out)
			}
			fmt.Print(string(out))
		}
		time.Sleep(500 * time.Millisecond)
	}

	step("stopping the exporter (SIGTERM: it detaches and exports every remaining flow)")
	daemon.Process.Signal(syscall.SIGTERM)
	if err := daemon.Wait(); err != nil {
		return fmt.Errorf("xflow run: %v\n%s", err, runLog.String())
	}
	time.Sleep(300 * time.Millisecond)
	collect.Process.Signal(syscall.SIGTERM)
	collect.Wait()
	var lines []string
	if out := strings.TrimSpace(collected.String()); out != "" {
		lines = strings.Split(out, "\n")
	}
	step("what the collector decoded: %d records (first 25)", len(lines))
	for i, l := range lines {
		if i == 25 {
			fmt.Printf("    ... %d more\n", len(lines)-25)
			break
		}
		fmt.Println("   ", l)
	}
	step("the exporter's last words")
	fmt.Print(indent(lastLines(runLog.String(), 3)))
	// The demo fails unless the collector decoded every record sent.
	m := regexp.MustCompile(`msg="collector totals" .* records=(\d+) `).FindStringSubmatch(runLog.String())
	if m == nil {
		return fmt.Errorf("the exporter logged no collector totals")
	}
	if sent, _ := strconv.Atoi(m[1]); sent == 0 || sent != len(lines) {
		return fmt.Errorf("the exporter sent %d records, the collector decoded %d", sent, len(lines))
	}
	return nil
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
