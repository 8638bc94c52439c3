package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/internal/testnet"
)

// TestClsactRestartMiss measures what the README admits: without TCX
// (Linux before 6.6, or tc_mode clsact) a restarted daemon replaces the
// clsact egress filter instead of updating a link, so the egress packets
// sent between the removal of the old filter and the attach of the new one
// are not counted. Egress traffic runs at a steady rate across a kill -9
// and a restart; ingress (XDP, a pinned link) must stay exact, egress may
// only miss packets (never count more than the capture saw), and the miss
// is logged in packets and in milliseconds of traffic.
func TestClsactRestartMiss(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xm")
	sink := newRecordSink()
	coll := listenCollector(t, p, "udp://127.0.0.1:0", sink)
	cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc, tc_mode: clsact}
datapath: {map: percpu_hash, max_flows: 8192}
pin_path: %s
timeouts: {active: 2s, inactive: 700ms, scan_interval: 300ms}
export:
  collectors:
    - {address: %s, protocol: ipfix, transport: udp}
metrics: {listen: ""}
`, p.NameA, pinDir(t), coll.Addr()))

	// A sink on B, and A's sockets towards it (sockets keep the namespace
	// they were made in).
	var rx *net.UDPConn
	if err := p.Do(p.NSB, func() (err error) {
		rx, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.B4, 9998)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := rx.ReadFromUDP(buf); err != nil {
				return
			}
		}
	}()
	const flows = 4
	var tx []*net.UDPConn
	if err := p.Do(p.NSA, func() error {
		for i := 0; i < flows; i++ {
			c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.A4, uint16(31000+i))),
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.B4, 9998)))
			if err != nil {
				return err
			}
			tx = append(tx, c)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range tx {
		defer c.Close()
	}

	capt, err := testnet.Capture(p, p.NSA, p.NameA)
	if err != nil {
		t.Fatal(err)
	}
	d1 := startDaemon(t, p, cfg)
	stop := make(chan struct{})
	done := make(chan int)
	began := time.Now()
	go func() { // one packet per flow every millisecond, A -> B (A's egress)
		n := 0
		payload := make([]byte, 64)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				done <- n
				return
			case <-tick.C:
				for _, c := range tx {
					if _, err := c.Write(payload); err == nil {
						n++
					}
				}
			}
		}
	}()
	time.Sleep(2 * time.Second)
	d1.stop(t, syscall.SIGKILL) // the clsact filter stays, counting into the pinned maps
	time.Sleep(500 * time.Millisecond)
	restart := time.Now()
	d2 := startDaemon(t, p, cfg)
	startup := time.Since(restart)
	time.Sleep(2 * time.Second)
	close(stop)
	sentPkts := <-done
	elapsed := time.Since(began)
	time.Sleep(300 * time.Millisecond)
	capIn, capOut := capt.Stop()
	if err := capt.Err(); err != nil {
		t.Fatal(err)
	}
	if err := d2.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("daemon 2: %v\n%s", err, d2.stderr)
	}
	if !strings.Contains(d2.stderr.String(), "took over from an earlier daemon") {
		t.Errorf("daemon 2 did not take over:\n%s", d2.stderr)
	}

	sink.mu.Lock()
	defer sink.mu.Unlock()
	// Ingress went through the pinned XDP link: exact.
	expectEqual(t, "exported vs capture (ingress)", capIn, sink.in)
	// Egress: per flow, never more than the capture saw.
	var missed, captured uint64
	for id, c := range capOut {
		if id.DstPort != 9998 {
			continue // ND and ARP: not the measured traffic
		}
		got := sink.out[id]
		if got.Packets > c.Packets || got.Bytes > c.Bytes {
			t.Errorf("egress flow %v: exported %v, more than the capture's %v", id, got, c)
			continue
		}
		missed += c.Packets - got.Packets
		captured += c.Packets
	}
	if captured == 0 {
		t.Fatalf("no egress traffic captured (sent %d)", sentPkts)
	}
	rate := float64(captured) / elapsed.Seconds()
	t.Logf("clsact replacement missed %d of %d egress packets (%.0f ms of traffic at %.0f pkts/s); the second daemon took %v from exec to counting",
		missed, captured, float64(missed)/rate*1000, rate, startup.Round(time.Millisecond))
}
