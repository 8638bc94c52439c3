package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xflow-net/xflow/collector"
	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/internal/testnet"
)

// recordSink collects what the in-process collector decoded, summed per
// flow and direction.
type recordSink struct {
	mu      sync.Mutex
	in, out testnet.Expect
	reasons map[uint8]int
	n       int
	start   time.Time
	badTime []collector.Record // start/end outside the test, or end before start
}

func newRecordSink() *recordSink {
	return &recordSink{in: testnet.Expect{}, out: testnet.Expect{}, reasons: map[uint8]int{}, start: time.Now()}
}

func (s *recordSink) add(r collector.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := uint64(time.Now().UnixMilli()); r.Start < uint64(s.start.UnixMilli()) || r.End < r.Start || r.End > now {
		s.badTime = append(s.badTime, r)
	}
	id := testnet.FlowID{Src: netip.MustParseAddr(r.Src), Dst: netip.MustParseAddr(r.Dst),
		SrcPort: r.SrcPort, DstPort: r.DstPort, Proto: r.Proto, VLAN: r.VLAN}
	e := s.in
	if r.Direction == "egress" {
		e = s.out
	}
	e.Add(id, testnet.Count{Packets: r.Packets, Bytes: r.Bytes})
	s.reasons[r.FlowEndReason]++
	s.n++
}

// listenCollector starts an in-process IPFIX collector inside side A's
// namespace (sockets keep the namespace they were made in).
func listenCollector(t *testing.T, p *testnet.Pair, listen string, sink *recordSink, also ...func(collector.Record)) *collector.Collector {
	t.Helper()
	var c *collector.Collector
	on := func(r collector.Record) {
		if sink != nil {
			sink.add(r)
		}
		for _, f := range also {
			f(r)
		}
	}
	err := p.Do(p.NSA, func() (err error) {
		c, err = collector.Listen(t.Context(), collector.Options{Listen: listen, OnRecord: on})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// onOffSender sends UDP from side B to side A over fixed 5-tuples, each flow
// switching between sending (a packet every 10 ms, random sizes) and
// pausing, for the given duration. Pauses longer than the exporter's idle
// timeout end a flow, which then resumes under the same 5-tuple; long
// bursts cross the active timeout.
func onOffSender(t *testing.T, p *testnet.Pair, flows int, d time.Duration, seed uint64) testnet.Expect {
	t.Helper()
	type udpFlow struct {
		conn   *net.UDPConn
		id     testnet.FlowID
		on     bool
		toggle time.Time
		hdr    int
	}
	var fs []*udpFlow
	var sinks []*net.UDPConn
	err := p.Do(p.NSA, func() error {
		for _, v6 := range []bool{false, true} {
			a := p.Addr(testnet.SideA, v6)
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 9999)))
			if err != nil {
				return err
			}
			sinks = append(sinks, c)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range sinks {
		go func(c *net.UDPConn) {
			buf := make([]byte, 2048)
			for {
				if _, _, err := c.ReadFromUDP(buf); err != nil {
					return
				}
			}
		}(c)
		defer c.Close()
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	err = p.Do(p.NSB, func() error {
		for i := 0; i < flows; i++ {
			v6 := i%5 == 4
			src := netip.AddrPortFrom(p.Addr(testnet.SideB, v6), uint16(20000+i))
			dst := netip.AddrPortFrom(p.Addr(testnet.SideA, v6), 9999)
			c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(src), net.UDPAddrFromAddrPort(dst))
			if err != nil {
				return err
			}
			hdr := 28
			if v6 {
				hdr = 48
			}
			fs = append(fs, &udpFlow{conn: c, hdr: hdr, toggle: time.Now().Add(time.Duration(rng.IntN(1000)) * time.Millisecond),
				id: testnet.FlowID{Src: src.Addr(), Dst: dst.Addr(), SrcPort: src.Port(), DstPort: 9999, Proto: testnet.ProtoUDP}})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := testnet.Expect{}
	payload := make([]byte, 1200)
	end := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for now := range tick.C {
		if now.After(end) {
			break
		}
		for _, f := range fs {
			if now.After(f.toggle) {
				f.on = !f.on
				if f.on {
					f.toggle = now.Add(time.Duration(200+rng.IntN(2300)) * time.Millisecond)
				} else {
					f.toggle = now.Add(time.Duration(100+rng.IntN(1100)) * time.Millisecond)
				}
			}
			if !f.on {
				continue
			}
			n := 20 + rng.IntN(1000)
			if _, err := f.conn.Write(payload[:n]); err != nil {
				t.Fatal(err)
			}
			sent.Add(f.id, testnet.Count{Packets: 1, Bytes: uint64(f.hdr + n)})
		}
	}
	for _, f := range fs {
		f.conn.Close()
	}
	return sent
}

// TestExportExact runs traffic without pause for 30 s through `xflow run`
// while flows expire every cycle (200 ms scans, 1 s active, 500 ms idle
// timeouts; flows that start, pause and resume), and checks that the
// packets and bytes exported per 5-tuple, summed over all their records,
// equal what was sent — and what a packet capture saw, for every flow.
func TestExportExact(t *testing.T) {
	testenv.RequireRoot(t)
	duration := 30 * time.Second
	if testing.Short() {
		duration = 5 * time.Second
	}
	for i, kind := range []string{"percpu_hash", "hash", "percpu_array"} {
		t.Run(kind, func(t *testing.T) {
			p := testnet.NewPair(t, "xe")
			sink := newRecordSink()
			coll := listenCollector(t, p, "udp://127.0.0.1:0", sink)
			pin := pinDir(t)
			cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc}
datapath: {map: %s, max_flows: 8192}
pin_path: %s
timeouts: {active: 1s, inactive: 500ms, scan_interval: 200ms}
export:
  collectors:
    - {address: %s, protocol: ipfix, transport: udp}
    # Collectors that are down must not hold up the one above.
    - {address: 127.0.0.1:9, protocol: ipfix, transport: udp}
    - {address: 127.0.0.1:9, protocol: ipfix, transport: tcp}
`, p.NameA, kind, pin, coll.Addr()))
			capt, err := testnet.Capture(p, p.NSA, p.NameA)
			if err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, p, cfg)

			// A TCP connection now and then beside the UDP flows.
			tcpDone := make(chan error, 1)
			go func() {
				var err error
				for j := 0; j < 4 && err == nil; j++ {
					time.Sleep(duration / 5)
					_, err = p.TCPExchange(j%2 == 1, 100_000, 30_000)
				}
				tcpDone <- err
			}()
			sent := onOffSender(t, p, 50, duration, uint64(i+1))
			if err := <-tcpDone; err != nil {
				t.Fatal(err)
			}
			// The collectors that are down cost nothing but counted errors.
			m := scrape(t, p, "127.0.0.1:9180")
			if g, rss := m["go_goroutines"], m["process_resident_memory_bytes"]; g == 0 || g > 30 || rss > 100<<20 {
				t.Errorf("with two collectors down: %v goroutines, %v bytes resident", g, rss)
			}
			if e := m[`xflow_export_send_errors_total{collector="127.0.0.1:9",protocol="ipfix",transport="udp"}`]; e == 0 {
				t.Errorf("no send errors counted for the absent UDP collector")
			}
			t.Logf("%s: with two collectors down: %v goroutines, %.0f MB resident; absent UDP collector: %v send errors; down TCP collector: %v records queued, %v dropped",
				kind, m["go_goroutines"], m["process_resident_memory_bytes"]/1e6,
				m[`xflow_export_send_errors_total{collector="127.0.0.1:9",protocol="ipfix",transport="udp"}`],
				m[`xflow_export_queued_records{collector="127.0.0.1:9",protocol="ipfix",transport="tcp"}`],
				m[`xflow_export_dropped_records_total{collector="127.0.0.1:9",protocol="ipfix",transport="tcp"}`])
			time.Sleep(300 * time.Millisecond)
			capIn, capOut := capt.Stop()
			if err := capt.Err(); err != nil {
				t.Fatal(err)
			}
			if err := d.stop(t, syscall.SIGTERM); err != nil {
				t.Fatalf("xflow run: %v\n%s", err, d.stderr)
			}
			time.Sleep(300 * time.Millisecond) // the last datagrams
			coll.Close()

			// The oracle agrees with what was sent (no packet lost on the veth).
			expectEqual(t, "capture vs sent", sent, capIn)
			sink.mu.Lock()
			defer sink.mu.Unlock()
			expectEqual(t, "exported vs sent", sent, sink.in)
			expectEqual(t, "exported vs capture (ingress)", capIn, sink.in)
			expectEqual(t, "exported vs capture (egress)", capOut, sink.out)
			for _, e := range []struct {
				name      string
				got, want testnet.Expect
			}{{"ingress", sink.in, capIn}, {"egress", sink.out, capOut}} {
				if _, extra := testnet.Diff(e.got, e.want); len(extra) > 0 {
					t.Errorf("exported %s flows the capture never saw: %v", e.name, extra)
				}
			}
			if len(sink.badTime) > 0 {
				t.Errorf("%d records with times outside the test or ending before they start, e.g. %+v", len(sink.badTime), sink.badTime[0])
			}
			st := coll.Stats()
			if st.SequenceGaps != 0 || st.DecodeErrors != 0 || st.MissingTemplate != 0 {
				t.Errorf("collector: %+v", st)
			}
			if sink.reasons[1] == 0 || sink.reasons[2] == 0 || sink.reasons[3] == 0 {
				t.Errorf("want idle, active and end-of-flow records, got %v", sink.reasons)
			}
			total := sent.Total()
			t.Logf("%s: sent %d UDP flows, %v; %d records exported (by reason %v); capture %v in / %v out; collector %+v",
				kind, len(sent), total, sink.n, sink.reasons, capIn.Total(), capOut.Total(), st)
		})
	}
}

func expectEqual(t *testing.T, what string, want, got testnet.Expect) {
	t.Helper()
	mism, _ := testnet.Diff(want, got)
	for i, m := range mism {
		if i == 10 {
			t.Errorf("%s: ... %d more", what, len(mism)-10)
			break
		}
		t.Errorf("%s: %s", what, m)
	}
}

// logInt finds key=N in the daemon's log line that contains msg.
func logInt(t *testing.T, log, msg, key string) uint64 {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "msg="+msg) && !strings.Contains(line, `msg="`+msg+`"`) {
			continue
		}
		m := regexp.MustCompile(`\b` + key + `=(\d+)`).FindStringSubmatch(line)
		if m == nil {
			break
		}
		n, _ := strconv.ParseUint(m[1], 10, 64)
		return n
	}
	t.Fatalf("no %s=N in the %q line of:\n%s", key, msg, log)
	return 0
}

// TestExportTCPRestart stops the TCP collector mid-run and starts it again:
// the exporter reconnects and sends the templates again (the new
// connection is a new session: data without them would be undecodable),
// and every record is either received or counted as dropped.
func TestExportTCPRestart(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xt")
	sink := newRecordSink()
	coll := listenCollector(t, p, "tcp://127.0.0.1:0", sink)
	addr := coll.Addr().String()
	pin := pinDir(t)
	cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc}
datapath: {map: percpu_hash, max_flows: 8192}
pin_path: %s
timeouts: {active: 1s, inactive: 500ms, scan_interval: 200ms}
export:
  collectors:
    - {address: %s, protocol: ipfix, transport: tcp}
`, p.NameA, pin, addr))
	d := startDaemon(t, p, cfg)

	sentCh := make(chan testnet.Expect, 1)
	go func() { sentCh <- onOffSender(t, p, 20, 12*time.Second, 7) }()
	time.Sleep(4 * time.Second)
	coll.Close() // graceful: the exporter sees the FIN
	first := coll.Stats()
	time.Sleep(2 * time.Second)
	// While the collector is down: bounded, records queued.
	m := scrape(t, p, "127.0.0.1:9180")
	if g, rss := m["go_goroutines"], m["process_resident_memory_bytes"]; g == 0 || g > 30 || rss > 100<<20 {
		t.Errorf("with the TCP collector down: %v goroutines, %v bytes resident", g, rss)
	}
	t.Logf("TCP collector down: %v goroutines, %.0f MB resident, %v records queued", m["go_goroutines"],
		m["process_resident_memory_bytes"]/1e6, m[fmt.Sprintf(`xflow_export_queued_records{collector="%s",protocol="ipfix",transport="tcp"}`, addr)])
	coll2 := listenCollector(t, p, "tcp://"+addr, sink)
	sent := <-sentCh
	time.Sleep(time.Second)
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("xflow run: %v\n%s", err, d.stderr)
	}
	time.Sleep(200 * time.Millisecond)
	coll2.Close()
	t.Logf("first collector %+v, second %+v", first, coll2.Stats())

	log := d.stderr.String()
	exported := logInt(t, log, "exported", "records")
	delivered := logInt(t, log, "collector totals", "records")
	dropped := logInt(t, log, "collector totals", "dropped_records")
	connects := logInt(t, log, "collector totals", "connects")
	sink.mu.Lock()
	defer sink.mu.Unlock()
	second := coll2.Stats()
	t.Logf("daemon log:\n%s", grepLines(log, "connection lost|connected|collector totals"))
	t.Logf("exported %d records: %d delivered, %d dropped; collector received %d (%d before the restart); %d connections",
		exported, delivered, dropped, sink.n, first.Records, connects)
	if uint64(sink.n) != delivered || delivered+dropped != exported {
		t.Errorf("received %d, exporter delivered %d + dropped %d, exported %d", sink.n, delivered, dropped, exported)
	}
	if connects < 2 || first.Records == 0 || second.Records == 0 {
		t.Errorf("want records before and after a reconnect: connects %d, before %d, after %d", connects, first.Records, second.Records)
	}
	for _, st := range []collector.Stats{first, second} {
		if st.SequenceGaps != 0 || st.DecodeErrors != 0 || st.MissingTemplate != 0 {
			t.Errorf("collector: %+v", st)
		}
	}
	for id, got := range sink.in {
		if w, ok := sent[id]; ok && (got.Packets > w.Packets || got.Bytes > w.Bytes) {
			t.Errorf("%v: received %v, more than sent %v", id, got, w)
		}
	}
	if dropped == 0 {
		expectEqual(t, "exported vs sent", sent, sink.in)
	}
}

func grepLines(s, re string) string {
	var out []string
	r := regexp.MustCompile(re)
	for _, l := range strings.Split(s, "\n") {
		if r.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
