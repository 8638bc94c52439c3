package main

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/internal/testnet"
)

// TestCollectorStall: a TCP collector that stops reading (its window fills)
// while a UDP collector stays healthy. xflow keeps counting and exporting
// to the healthy one exactly, keeps its goroutines and memory bounded,
// counts what the stalled one loses, and when that collector comes back it
// reconnects with templates; every record is delivered or counted.
func TestCollectorStall(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xs")
	healthy := newRecordSink()
	hcoll := listenCollector(t, p, "udp://127.0.0.1:0", healthy)

	// The stalling collector: accepts, never reads.
	var stall net.Listener
	if err := p.Do(p.NSA, func() (err error) {
		stall, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stallAddr := stall.Addr().String()
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := stall.Accept()
			if err != nil {
				return
			}
			c.(*net.TCPConn).SetReadBuffer(4096)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()

	const listen = "127.0.0.1:9180"
	cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc}
pin_path: %s
timeouts: {active: 1s, inactive: 300ms, scan_interval: 100ms}
export:
  mtu: 1400
  collectors:
    - {address: %s, protocol: ipfix, transport: udp}
    - {address: %s, protocol: ipfix, transport: tcp}
metrics: {listen: %s}
`, p.NameA, pinDir(t), hcoll.Addr(), stallAddr, listen))
	d := startDaemon(t, p, cfg)

	sentCh := make(chan testnet.Expect, 1)
	go func() { sentCh <- onOffSender(t, p, 300, 14*time.Second, 3) }()
	// Stalled for 9 s: past the 5 s write timeout at least once.
	time.Sleep(9 * time.Second)
	during := scrape(t, p, listen)
	stall.Close()
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
	back := newRecordSink()
	bcoll := listenCollector(t, p, "tcp://"+stallAddr, back)
	sent := <-sentCh
	time.Sleep(time.Second)
	after := scrape(t, p, listen)
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("xflow run: %v\n%s", err, d.stderr)
	}
	time.Sleep(300 * time.Millisecond)
	bcoll.Close()

	// The healthy collector got everything, exactly.
	healthy.mu.Lock()
	expectEqual(t, "healthy collector", sent, healthy.in)
	healthy.mu.Unlock()

	// Bounded while stalled.
	if g := during["go_goroutines"]; g == 0 || g > 30 {
		t.Errorf("goroutines during the stall: %v", g)
	}
	if rss := during["process_resident_memory_bytes"]; rss == 0 || rss > 100<<20 {
		t.Errorf("resident memory during the stall: %v bytes", rss)
	}
	// Every record to the stalled collector: delivered or counted.
	log := d.stderr.String()
	exported := logInt(t, log, "exported", "records")
	line := grepLines(log, `msg="collector totals" collector=`+stallAddr+` `)
	delivered := logInt(t, line, "collector totals", "records")
	dropped := logInt(t, line, "collector totals", "dropped_records")
	back.mu.Lock()
	received := uint64(back.n)
	back.mu.Unlock()
	st := bcoll.Stats()
	t.Logf("stalled collector: %d records exported, %d delivered (%d received after it came back), %d dropped; during the stall %v goroutines, %.0f MB; after: queued %v",
		exported, delivered, received, dropped, during["go_goroutines"], during["process_resident_memory_bytes"]/1e6,
		after[fmt.Sprintf(`xflow_export_queued_records{collector="%s",protocol="ipfix",transport="tcp"}`, stallAddr)])
	if dropped == 0 || received == 0 {
		t.Errorf("want drops during the stall and records after it: dropped %d, received %d", dropped, received)
	}
	if delivered+dropped != exported {
		t.Errorf("delivered %d + dropped %d != exported %d", delivered, dropped, exported)
	}
	if st.MissingTemplate != 0 || st.SequenceGaps != 0 || st.DecodeErrors != 0 {
		t.Errorf("after the stall: %+v", st)
	}
	if !strings.Contains(log, "connection lost") {
		t.Errorf("the stall was not noticed:\n%s", grepLines(log, "collector"))
	}
}
