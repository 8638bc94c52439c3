package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/internal/testnet"
)

// scrape reads /metrics from inside side A's namespace into name{labels} ->
// value.
func scrape(t *testing.T, p *testnet.Pair, addr string) map[string]float64 {
	t.Helper()
	var conn net.Conn
	if err := p.Do(p.NSA, func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]float64{}
	line := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$`)
	for _, l := range strings.Split(string(body), "\n") {
		if x := line.FindStringSubmatch(l); x != nil {
			v, _ := strconv.ParseFloat(x[2], 64)
			m[x[1]] = v
		}
	}
	return m
}

// TestMetrics scrapes /metrics during a run: the counters agree with the
// traffic sent (as a capture saw it) and with the records the collector
// received.
func TestMetrics(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xm")
	sink := newRecordSink()
	coll := listenCollector(t, p, "udp://127.0.0.1:0", sink)
	const listen = "127.0.0.1:9180"
	cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc}
pin_path: %s
timeouts: {active: 5s, inactive: 300ms, scan_interval: 100ms}
export:
  collectors:
    - {address: %s, protocol: ipfix, transport: udp}
metrics: {listen: %s}
`, p.NameA, pinDir(t), coll.Addr(), listen))
	capt, err := testnet.Capture(p, p.NSA, p.NameA)
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, p, cfg)
	if _, err := p.SendUDP(testnet.SideB, false, 5000, 20, 5, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := p.SendICMPEcho(testnet.SideB, true, 3, 56); err != nil {
		t.Fatal(err)
	}
	// Three ARP-like frames (not IP): counted as non_ip, never as flows.
	arp := make([]byte, 60)
	copy(arp, p.MACA)
	copy(arp[6:], p.MACB)
	arp[12], arp[13] = 0x08, 0x06
	if err := p.SendRawFrames(testnet.SideB, [][]byte{arp, arp, arp}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // idle timeouts, export
	capIn, capOut := capt.Stop()
	m := scrape(t, p, listen)
	sink.mu.Lock()
	received := sink.n
	sink.mu.Unlock()

	in := fmt.Sprintf(`{direction="ingress",iface="%s"}`, p.NameA)
	out := fmt.Sprintf(`{direction="egress",iface="%s"}`, p.NameA)
	for _, c := range []struct {
		name string
		want float64
	}{
		{"xflow_packets_total" + in, float64(capIn.Total().Packets)},
		{"xflow_bytes_total" + in, float64(capIn.Total().Bytes)},
		{"xflow_packets_total" + out, float64(capOut.Total().Packets)},
		{"xflow_bytes_total" + out, float64(capOut.Total().Bytes)},
		{`xflow_frames_not_counted_total{reason="non_ip"}`, 3},
		{`xflow_frames_not_counted_total{reason="malformed"}`, 0},
		{"xflow_store_missed_packets_total", 0},
		{fmt.Sprintf(`xflow_export_records_total{collector="%s",protocol="ipfix",transport="udp"}`, coll.Addr()), float64(received)},
		{fmt.Sprintf(`xflow_export_dropped_records_total{collector="%s",protocol="ipfix",transport="udp"}`, coll.Addr()), 0},
	} {
		if got, ok := m[c.name]; !ok || got != c.want {
			t.Errorf("%s = %v (present %v), want %v", c.name, got, ok, c.want)
		}
	}
	var exported float64
	for k, v := range m {
		if strings.HasPrefix(k, "xflow_flows_exported_total") {
			exported += v
		}
	}
	if exported != float64(received) || received == 0 {
		t.Errorf("xflow_flows_exported_total sums to %v, the collector received %d", exported, received)
	}
	if m["xflow_drain_duration_seconds_count"] < 5 || m["xflow_scans_total"] < 5 {
		t.Errorf("drains: histogram count %v, scans %v", m["xflow_drain_duration_seconds_count"], m["xflow_scans_total"])
	}
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("xflow run: %v\n%s", err, d.stderr)
	}
	t.Logf("ingress %v, egress %v, %d records; metrics agree", capIn.Total(), capOut.Total(), received)
}

// TestMapPressure runs far more flows than the store holds: the misses are
// counted and exposed, the oldest flows end early with reason 5, and the
// daemon stays healthy: every packet the capture saw is either in an
// exported record or counted as missed.
func TestMapPressure(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xp")
	sink := newRecordSink()
	coll := listenCollector(t, p, "udp://127.0.0.1:0", sink)
	const listen = "127.0.0.1:9180"
	cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc}
datapath: {map: percpu_hash, max_flows: 64}
pin_path: %s
timeouts: {active: 10s, inactive: 5s, scan_interval: 200ms}
export:
  collectors:
    - {address: %s, protocol: ipfix, transport: udp}
metrics: {listen: %s}
`, p.NameA, pinDir(t), coll.Addr(), listen))
	capt, err := testnet.Capture(p, p.NSA, p.NameA)
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, p, cfg)
	for round := 0; round < 3; round++ {
		if _, err := p.SendUDP(testnet.SideB, false, 5000, 300, 2, 64); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	capIn, capOut := capt.Stop()
	m := scrape(t, p, listen)
	// Still healthy: it answers and keeps exporting.
	if _, err := p.SendUDP(testnet.SideB, false, 6000, 1, 1, 10); err != nil {
		t.Fatal(err)
	}
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("xflow run: %v\n%s", err, d.stderr)
	}
	time.Sleep(300 * time.Millisecond)
	missed := m["xflow_store_missed_packets_total"]
	resources := m[`xflow_flows_exported_total{reason="resources"}`]
	if missed == 0 || resources == 0 {
		t.Errorf("missed %v packets, %v records with reason 5: want both > 0", missed, resources)
	}
	if !strings.Contains(d.stderr.String(), "flow store full") {
		t.Errorf("no warning about the full store in the log")
	}
	// Every packet seen (up to the scrape) is exported or missed; the
	// last probe packet came after the capture stopped.
	sink.mu.Lock()
	exported := sink.in.Total().Packets + sink.out.Total().Packets
	sink.mu.Unlock()
	seen := capIn.Total().Packets + capOut.Total().Packets
	if exported+uint64(missed) != seen+1 {
		t.Errorf("exported %d + missed %v != seen %d + 1 probe", exported, missed, seen)
	}
	t.Logf("seen %d packets: exported %d, missed %v; %v records with reason 5", seen, exported, missed, resources)
}
