package collector

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// IPFIX messages are made here by hand, byte by byte, so that the collector
// is tested against RFC 7011 rather than against xflow's own encoder.

type field struct{ id, length uint16 }

func u8(b []byte, v uint8) []byte   { return append(b, v) }
func u16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func u32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func u64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
func ip(b []byte, s string) []byte  { return append(b, netip.MustParseAddr(s).AsSlice()...) }

// templateRecord is a template record (in a set with ID 2).
func templateRecord(id uint16, fs ...field) []byte {
	b := u16(u16(nil, id), uint16(len(fs)))
	for _, f := range fs {
		b = u16(u16(b, f.id), f.length)
	}
	return b
}

// optionsTemplateRecord is an options template record (set ID 3): the first
// scope fields are the scope.
func optionsTemplateRecord(id uint16, scope int, fs ...field) []byte {
	b := u16(u16(u16(nil, id), uint16(len(fs))), uint16(scope))
	for _, f := range fs {
		b = u16(u16(b, f.id), f.length)
	}
	return b
}

// set is a set header and its records, then padding bytes of zero.
func set(id uint16, padding int, recs ...[]byte) []byte {
	body := bytes.Join(recs, nil)
	body = append(body, make([]byte, padding)...)
	return append(u16(u16(nil, id), uint16(4+len(body))), body...)
}

const exportTime = 1795341605

// message is an IPFIX message header and its sets.
func message(seq, domain uint32, sets ...[]byte) []byte {
	body := bytes.Join(sets, nil)
	b := u16(nil, 10)
	b = u16(b, uint16(16+len(body)))
	b = u32(b, exportTime)
	b = u32(b, seq)
	b = u32(b, domain)
	return append(b, body...)
}

// Template 256: IPv4 flows, every length the natural one.
var flow4Fields = []field{
	{8, 4}, {12, 4}, {7, 2}, {11, 2}, {4, 1}, {5, 1}, {6, 2}, {10, 4}, {61, 1}, {58, 2},
	{2, 8}, {1, 8}, {152, 8}, {153, 8}, {136, 1}, {60, 1},
}

func flow4(src, dst string, sport, dport uint16, proto, tos uint8, flags uint16, ifindex uint32, dir uint8, vlan uint16,
	pkts, octets, start, end uint64, reason, version uint8) []byte {
	b := ip(nil, src)
	b = ip(b, dst)
	b = u16(b, sport)
	b = u16(b, dport)
	b = u8(b, proto)
	b = u8(b, tos)
	b = u16(b, flags)
	b = u32(b, ifindex)
	b = u8(b, dir)
	b = u16(b, vlan)
	b = u64(b, pkts)
	b = u64(b, octets)
	b = u64(b, start)
	b = u64(b, end)
	b = u8(b, reason)
	return u8(b, version)
}

// Template 257: IPv6 ICMP flows: no ports, icmpTypeCodeIPv6, the egress
// interface, reduced-size counters, no ipVersion.
var flow6Fields = []field{
	{27, 16}, {28, 16}, {4, 1}, {139, 2}, {14, 4}, {61, 1}, {2, 4}, {1, 4}, {152, 8}, {153, 8}, {136, 1},
}

func flow6(src, dst string, typeCode uint16, ifindex uint32, pkts, octets uint32, start, end uint64, reason uint8) []byte {
	b := ip(nil, src)
	b = ip(b, dst)
	b = u8(b, 58)
	b = u16(b, typeCode)
	b = u32(b, ifindex)
	b = u8(b, 1)
	b = u32(b, pkts)
	b = u32(b, octets)
	b = u64(b, start)
	b = u64(b, end)
	return u8(b, reason)
}

var (
	// Options template 258: interfaceName, variable length, by ingressInterface.
	ifNameVarTemplate = optionsTemplateRecord(258, 1, field{10, 4}, field{82, 65535})
	// Options template 259: interfaceName, 16 bytes, by ingressInterface.
	ifNameFixedTemplate = optionsTemplateRecord(259, 1, field{10, 4}, field{82, 16})
	// Options template 260: exporting process statistics, by
	// observationDomainId: exportedMessageTotalCount, exportedFlowRecordTotalCount.
	statsTemplate = optionsTemplateRecord(260, 1, field{149, 4}, field{41, 8}, field{42, 8})
)

func ifNameVar(index uint32, name string) []byte {
	b := u32(nil, index)
	b = u8(b, uint8(len(name)))
	return append(b, name...)
}

func ifNameFixed(index uint32, name string) []byte {
	b := u32(nil, index)
	n := make([]byte, 16)
	copy(n, name)
	return append(b, n...)
}

const (
	t0 = 1795341600123 // 2026-11-22T10:00:00.123Z
	t1 = 1795341601456 // 2026-11-22T10:00:01.456Z
	t2 = 1795341602000 // 2026-11-22T10:00:02.000Z
	t3 = 1795341602005 // 2026-11-22T10:00:02.005Z
	t4 = 1795341603999 // 2026-11-22T10:00:03.999Z
	t5 = 1795341604001 // 2026-11-22T10:00:04.001Z
)

var (
	recA = flow4("10.0.0.1", "10.0.0.2", 1234, 80, 6, 0x10, 0x1b, 7, 0, 100, 10, 1234, t0, t1, 1, 4)
	recB = flow4("192.168.1.5", "192.168.1.9", 53, 40000, 17, 0, 0, 3, 1, 0, 1, 80, t2, t3, 2, 4)
	recC = flow6("2001:db8::1", "2001:db8::2", 128<<8|0, 9, 4, 416, t4, t5, 3)
	recD = flow4("10.0.0.3", "10.0.0.4", 5555, 443, 6, 0, 0x02, 7, 1, 0, 1, 60, t2, t2, 5, 4)

	// wantA..D are recA..recD decoded, but for the exporter.
	wantA = Record{
		Src: "10.0.0.1", Dst: "10.0.0.2", SrcPort: 1234, DstPort: 80, Proto: 6, Iface: "veth0", Direction: "ingress",
		VLAN: 100, Packets: 10, Bytes: 1234, TCPFlags: 0x1b,
		First: "2026-11-22T10:00:00.123Z", Last: "2026-11-22T10:00:01.456Z", Start: t0, End: t1,
		FlowEndReason: 1, ObservationDomain: 1, IfIndex: 7, TOS: 0x10, IPVersion: 4,
	}
	wantB = Record{
		Src: "192.168.1.5", Dst: "192.168.1.9", SrcPort: 53, DstPort: 40000, Proto: 17, Iface: "3", Direction: "egress",
		Packets: 1, Bytes: 80,
		First: "2026-11-22T10:00:02.000Z", Last: "2026-11-22T10:00:02.005Z", Start: t2, End: t3,
		FlowEndReason: 2, ObservationDomain: 1, IfIndex: 3, IPVersion: 4,
	}
	wantC = Record{
		Src: "2001:db8::1", Dst: "2001:db8::2", DstPort: 0x8000, Proto: 58, Iface: "eth1", Direction: "egress",
		Packets: 4, Bytes: 416,
		First: "2026-11-22T10:00:03.999Z", Last: "2026-11-22T10:00:04.001Z", Start: t4, End: t5,
		FlowEndReason: 3, ObservationDomain: 1, IfIndex: 9, IPVersion: 6,
	}
	wantD = Record{
		Src: "10.0.0.3", Dst: "10.0.0.4", SrcPort: 5555, DstPort: 443, Proto: 6, Iface: "veth0", Direction: "egress",
		Packets: 1, Bytes: 60, TCPFlags: 0x02,
		First: "2026-11-22T10:00:02.000Z", Last: "2026-11-22T10:00:02.000Z", Start: t2, End: t2,
		FlowEndReason: 5, ObservationDomain: 1, IfIndex: 7, IPVersion: 4,
	}
)

// templatesMessage announces every template, with padding after the
// records of each set.
func templatesMessage(seq uint32) []byte {
	return message(seq, 1,
		set(2, 2, templateRecord(256, flow4Fields...), templateRecord(257, flow6Fields...)),
		set(3, 2, ifNameVarTemplate, ifNameFixedTemplate, statsTemplate),
	)
}

// dataMessage has 6 data records: 3 options, 3 flows (A and B in a set
// padded with 3 bytes, C).
func dataMessage(seq uint32) []byte {
	return message(seq, 1,
		set(258, 0, ifNameVar(7, "veth0")),
		set(259, 0, ifNameFixed(9, "eth1")),
		set(260, 0, u64(u64(u32(nil, 1), 5), 100)),
		set(256, 3, recA, recB),
		set(257, 0, recC),
	)
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

func listen(t *testing.T, addr string) *Collector {
	t.Helper()
	c, err := Listen(context.Background(), Options{Listen: addr, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func next(t *testing.T, c *Collector) Record {
	t.Helper()
	select {
	case r := <-c.Records():
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("no record after 5 s; stats %+v", c.Stats())
	}
	panic("unreachable")
}

func expectRecords(t *testing.T, c *Collector, exporter string, want ...Record) {
	t.Helper()
	for i, w := range want {
		w.Exporter = exporter
		got := next(t, c)
		if !reflect.DeepEqual(got, w) {
			t.Fatalf("record %d:\ngot  %+v\nwant %+v", i, got, w)
		}
	}
}

func expectNoRecord(t *testing.T, c *Collector) {
	t.Helper()
	select {
	case r := <-c.Records():
		t.Fatalf("unexpected record %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
}

// waitStats waits until the stats are want, for at most 5 s.
func waitStats(t *testing.T, c *Collector, want Stats) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := c.Stats()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats\ngot  %+v\nwant %+v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func checkGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutine leak: %d > %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUDP(t *testing.T) {
	base := runtime.NumGoroutine()
	c, err := Listen(context.Background(), Options{Listen: "udp://127.0.0.1:0", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", c.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exporter := conn.LocalAddr().String()
	send := func(m []byte) {
		t.Helper()
		if _, err := conn.Write(m); err != nil {
			t.Fatal(err)
		}
	}

	send(templatesMessage(0))
	send(dataMessage(0))
	expectRecords(t, c, exporter, wantA, wantB, wantC)
	waitStats(t, c, Stats{Messages: 2, Records: 3, TemplateRecords: 5, OptionsRecords: 3})

	// 6 data records so far: a message numbered 7 shows a gap; the next
	// one, numbered after it, does not.
	send(message(7, 1, set(256, 0, recD)))
	expectRecords(t, c, exporter, wantD)
	send(message(8, 1, set(256, 0, recD)))
	expectRecords(t, c, exporter, wantD)
	waitStats(t, c, Stats{Messages: 4, Records: 5, TemplateRecords: 5, OptionsRecords: 3, SequenceGaps: 1})

	// Another observation domain is another session: no templates there,
	// its own sequence numbers.
	send(message(100, 2, set(256, 0, recD)))
	waitStats(t, c, Stats{Messages: 5, Records: 5, TemplateRecords: 5, OptionsRecords: 3, SequenceGaps: 1, MissingTemplate: 1})
	expectNoRecord(t, c)

	// Not IPFIX.
	send(u16(make([]byte, 0, 20), 9))
	bad := message(9, 1, set(256, 0, recD))
	binary.BigEndian.PutUint16(bad, 9) // NetFlow v9
	send(bad)
	waitStats(t, c, Stats{Messages: 5, Records: 5, TemplateRecords: 5, OptionsRecords: 3, SequenceGaps: 1, MissingTemplate: 1, DecodeErrors: 2})

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-c.Records(); ok {
		t.Fatal("Records not closed after Close")
	}
	conn.Close()
	checkGoroutines(t, base)
}

func TestMissingTemplate(t *testing.T) {
	c := listen(t, "udp://127.0.0.1:0")
	conn, err := net.Dial("udp", c.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exporter := conn.LocalAddr().String()

	// Data before its template: counted, not emitted.
	conn.Write(message(0, 1, set(256, 0, recA)))
	waitStats(t, c, Stats{Messages: 1, MissingTemplate: 1})
	expectNoRecord(t, c)

	// Then the template and a record: the first record out is that one.
	// The sequence number after the undecodable set is taken as is.
	conn.Write(message(5, 1, set(2, 0, templateRecord(256, flow4Fields...)), set(256, 0, recB)))
	expectRecords(t, c, exporter, wantB)
	waitStats(t, c, Stats{Messages: 2, Records: 1, TemplateRecords: 1, MissingTemplate: 1})

	// A withdrawn template is unknown again.
	conn.Write(message(6, 1, set(2, 0, u16(u16(nil, 256), 0)), set(256, 0, recB)))
	waitStats(t, c, Stats{Messages: 3, Records: 1, TemplateRecords: 2, MissingTemplate: 2})
	expectNoRecord(t, c)
}

func TestTCP(t *testing.T) {
	base := runtime.NumGoroutine()
	c, err := Listen(context.Background(), Options{Listen: "tcp://127.0.0.1:0", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", c.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exporter := conn.LocalAddr().String()

	// The messages go in pieces that cut headers, sets and records: the
	// first one byte by byte, then at random points.
	stream := append(templatesMessage(0), dataMessage(0)...)
	stream = append(stream, message(7, 1, set(256, 0, recD))...) // a gap: 6 records before
	first := len(templatesMessage(0))
	for i := range first {
		if _, err := conn.Write(stream[i : i+1]); err != nil {
			t.Fatal(err)
		}
		if i%8 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for b := stream[first:]; len(b) > 0; {
		n := min(len(b), 1+rnd.IntN(40))
		if _, err := conn.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
		time.Sleep(time.Millisecond)
	}
	expectRecords(t, c, exporter, wantA, wantB, wantC, wantD)
	waitStats(t, c, Stats{Messages: 3, Records: 4, TemplateRecords: 5, OptionsRecords: 3, SequenceGaps: 1, Connections: 1})

	// A new connection is a new session: the templates are unknown, the
	// sequence numbers start again. The interface names stay: they are
	// the exporter's.
	conn2, err := net.Dial("tcp", c.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	exporter2 := conn2.LocalAddr().String()
	conn2.Write(message(0, 1, set(256, 0, recD)))
	waitStats(t, c, Stats{Messages: 4, Records: 4, TemplateRecords: 5, OptionsRecords: 3, SequenceGaps: 1, MissingTemplate: 1, Connections: 2})
	conn2.Write(message(0, 1, set(2, 0, templateRecord(256, flow4Fields...))))
	conn2.Write(message(0, 1, set(256, 0, recD)))
	conn2.Write(message(1, 1, set(256, 0, recA)))
	expectRecords(t, c, exporter2, wantD, wantA)
	waitStats(t, c, Stats{Messages: 7, Records: 6, TemplateRecords: 6, OptionsRecords: 3, SequenceGaps: 1, MissingTemplate: 1, Connections: 2})

	// A stream out of sync: the collector counts it and hangs up.
	conn2.Write([]byte{0, 9, 0, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	conn2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn2.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after a bad header: %v, want EOF", err)
	}
	waitStats(t, c, Stats{Messages: 7, Records: 6, TemplateRecords: 6, OptionsRecords: 3, SequenceGaps: 1, MissingTemplate: 1, DecodeErrors: 1, Connections: 2})

	// A message cut by the end of the connection.
	cut := message(2, 1, set(256, 0, recA))
	conn.Write(cut[:30])
	conn.Close()
	waitStats(t, c, Stats{Messages: 7, Records: 6, TemplateRecords: 6, OptionsRecords: 3, SequenceGaps: 1, MissingTemplate: 1, DecodeErrors: 2, Connections: 2})

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-c.Records(); ok {
		t.Fatal("Records not closed after Close")
	}
	checkGoroutines(t, base)
}

// Close ends connections that are still open, and a context ends the
// collector as Close does.
func TestCloseWithOpenConnection(t *testing.T) {
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan Record, 10)
	c, err := Listen(ctx, Options{Listen: "tcp://[::1]:0", OnRecord: func(r Record) { got <- r }})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	if c.Records() != nil {
		t.Fatal("Records with OnRecord set")
	}
	conn, err := net.Dial("tcp", c.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(append(templatesMessage(0), dataMessage(0)...))
	for i, w := range []Record{wantA, wantB, wantC} {
		w.Exporter = conn.LocalAddr().String()
		select {
		case r := <-got:
			if !reflect.DeepEqual(r, w) {
				t.Fatalf("record %d:\ngot  %+v\nwant %+v", i, r, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no record")
		}
	}
	if !strings.HasPrefix(conn.LocalAddr().String(), "[::1]:") {
		t.Fatalf("exporter %s", conn.LocalAddr())
	}
	cancel()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after cancel: %v, want EOF", err)
	}
	c.Close()
	conn.Close()
	checkGoroutines(t, base)
}

func TestListenErrors(t *testing.T) {
	for _, s := range []string{"sctp://127.0.0.1:0", "udp://127.0.0.1", "tcp://nonsense"} {
		if c, err := Listen(context.Background(), Options{Listen: s}); err == nil {
			c.Close()
			t.Errorf("Listen(%q): no error", s)
		}
	}
	c, err := Listen(context.Background(), Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Addr().Network() != "udp" {
		t.Fatalf("bare address: %s, want udp", c.Addr().Network())
	}
}

func TestFormat(t *testing.T) {
	a := wantA
	a.Exporter = "127.0.0.1:5000"
	b := wantB
	b.Exporter = a.Exporter
	c := wantC
	c.Exporter = a.Exporter
	for _, tc := range []struct {
		r    Record
		want string
	}{
		{a, "2026-11-22T10:00:00.123Z tcp 10.0.0.1:1234 -> 10.0.0.2:80 veth0 ingress vlan 100 pkts 10 bytes 1234 flags 0x1b reason 1"},
		{b, "2026-11-22T10:00:02.000Z udp 192.168.1.5:53 -> 192.168.1.9:40000 3 egress vlan 0 pkts 1 bytes 80 flags 0x0 reason 2"},
		{c, "2026-11-22T10:00:03.999Z icmpv6 2001:db8::1 -> 2001:db8::2 type 128/0 eth1 egress vlan 0 pkts 4 bytes 416 flags 0x0 reason 3"},
		{Record{Src: "::1", Dst: "::2", Proto: 47}, "- gre ::1 -> ::2 - - vlan 0 pkts 0 bytes 0 flags 0x0 reason 0"},
		{Record{Src: "::1", Dst: "::2", SrcPort: 1, DstPort: 2, Proto: 6}, "- tcp [::1]:1 -> [::2]:2 - - vlan 0 pkts 0 bytes 0 flags 0x0 reason 0"},
	} {
		if got := Format(tc.r); got != tc.want {
			t.Errorf("Format:\ngot  %s\nwant %s", got, tc.want)
		}
	}

	var buf bytes.Buffer
	if err := WriteJSON(&buf, a); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&buf, c); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	want := `{"src":"10.0.0.1","dst":"10.0.0.2","src_port":1234,"dst_port":80,"proto":6,"iface":"veth0","direction":"ingress",` +
		`"vlan":100,"packets":10,"bytes":1234,"tcp_flags":27,"first":"2026-11-22T10:00:00.123Z","last":"2026-11-22T10:00:01.456Z",` +
		`"start":1795341600123,"end":1795341601456,"flow_end_reason":1,"observation_domain":1,"exporter":"127.0.0.1:5000",` +
		`"ifindex":7,"tos":16,"ip_version":4}`
	if lines[0] != want {
		t.Fatalf("JSON:\ngot  %s\nwant %s", lines[0], want)
	}
	var back Record
	if err := json.Unmarshal([]byte(lines[1]), &back); err != nil || back != c {
		t.Fatalf("JSON round trip: %v\ngot  %+v\nwant %+v", err, back, c)
	}
}

// TestNamesFromDomain0 checks that interface names sent under observation
// domain 0 (where xflow sends its options records) name the interfaces of
// flows in another domain of the same exporter, and that a name sent in the
// flow's own domain wins.
func TestNamesFromDomain0(t *testing.T) {
	c := listen(t, "udp://127.0.0.1:0")
	conn, err := net.Dial("udp", c.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exporter := conn.LocalAddr().String()
	send := func(m []byte) {
		t.Helper()
		if _, err := conn.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	send(message(0, 0, set(3, 2, ifNameVarTemplate), set(258, 0, ifNameVar(7, "dom0"), ifNameVar(3, "three"))))
	send(message(0, 1, set(2, 2, templateRecord(256, flow4Fields...)), set(3, 2, ifNameVarTemplate)))
	send(message(0, 1, set(258, 0, ifNameVar(7, "veth0"))))
	waitStats(t, c, Stats{Messages: 3, TemplateRecords: 3, OptionsRecords: 3})
	send(message(1, 1, set(256, 3, recA, recB)))
	wantB3 := wantB
	wantB3.Iface = "three"
	expectRecords(t, c, exporter, wantA, wantB3)
	if st := c.Stats(); st.SequenceGaps != 0 {
		t.Errorf("stats %+v", st)
	}
}
