package netflow5

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xflow-net/xflow/flow"
)

// The expected values below are written by hand from Cisco's NetFlow v5
// format and the layout documented in netflow5.go, not derived from the
// encoder. Every datagram is decoded by hand below.

// testNow is the export time of the tests: its fraction of a millisecond
// must be dropped.
var testNow = time.Unix(1700000000, 999_999_999)

// testBoot is the boot time of the tests; its fraction of a millisecond is
// dropped. sysUptime at testNow: 1700000000999 - 1698000000123.
var testBoot = time.Unix(1698000000, 123_456_789)

const (
	testUnixSecs  = 1700000000
	testUnixNsecs = 999_000_000
	testUptime    = 2_000_000_876
)

// header is a NetFlow v5 header, parsed by hand.
type header struct {
	version, count           uint16
	uptime, secs, nsecs, seq uint32
	engineType, engineID     uint8
	sampling                 uint16
}

// rec is a NetFlow v5 record's fields that may be non-zero; decode checks
// that the others are.
type rec struct {
	src, dst          string
	in, out           uint16
	pkts, bytes       uint32
	first, last       uint32
	sport, dport      uint16
	flags, proto, tos uint8
}

// decode parses a datagram by hand: its length must be the header's and
// count records', count 1 to 30, and the fields xflow does not fill zero.
func decode(t *testing.T, pkt []byte) (header, []rec) {
	t.Helper()
	be := binary.BigEndian
	if len(pkt) < 24 {
		t.Fatalf("datagram of %d bytes, shorter than a header", len(pkt))
	}
	h := header{
		version: be.Uint16(pkt[0:]), count: be.Uint16(pkt[2:]),
		uptime: be.Uint32(pkt[4:]), secs: be.Uint32(pkt[8:]), nsecs: be.Uint32(pkt[12:]), seq: be.Uint32(pkt[16:]),
		engineType: pkt[20], engineID: pkt[21], sampling: be.Uint16(pkt[22:]),
	}
	if h.version != 5 {
		t.Fatalf("version %d, want 5", h.version)
	}
	if h.count < 1 || h.count > 30 || len(pkt) != 24+48*int(h.count) {
		t.Fatalf("count %d in a datagram of %d bytes", h.count, len(pkt))
	}
	if h.sampling != 0 {
		t.Errorf("sampling interval %d", h.sampling)
	}
	var recs []rec
	for b := pkt[24:]; len(b) > 0; b = b[48:] {
		r := rec{
			src: netip.AddrFrom4([4]byte(b[0:4])).String(), dst: netip.AddrFrom4([4]byte(b[4:8])).String(),
			in: be.Uint16(b[12:]), out: be.Uint16(b[14:]),
			pkts: be.Uint32(b[16:]), bytes: be.Uint32(b[20:]), first: be.Uint32(b[24:]), last: be.Uint32(b[28:]),
			sport: be.Uint16(b[32:]), dport: be.Uint16(b[34:]),
			flags: b[37], proto: b[38], tos: b[39],
		}
		for _, z := range [][]byte{b[8:12], b[36:37], b[40:48]} { // nexthop, pad1, AS, masks, pad2
			if !bytes.Equal(z, make([]byte, len(z))) {
				t.Errorf("record %d: % x should be zeros", len(recs), b)
				break
			}
		}
		recs = append(recs, r)
	}
	return h, recs
}

// packets collects copies of the datagrams passed to send.
type packets [][]byte

func (p *packets) send(pkt []byte) error {
	*p = append(*p, bytes.Clone(pkt))
	return nil
}

func addr16(s string) [16]byte { return netip.MustParseAddr(s).As16() } // IPv4 comes out v4-mapped

func TestTemplates(t *testing.T) {
	e := NewEncoder(Options{})
	err := e.Templates(testNow, flow.ExportTotals{Messages: 1}, []flow.Interface{{Index: 1, Name: "lo"}},
		func([]byte) error { t.Error("sent a datagram"); return nil })
	if err != nil {
		t.Error(err)
	}
}

// testRecords are flows of every kind, IPv4 and IPv6 interleaved. With
// testBoot, sysUptime is 2000000876 at testNow; the uptimes of the records'
// times are given beside them.
func testRecords() []flow.Export {
	return []flow.Export{
		{ // IPv4 TCP, ingress
			Key: flow.Key{Src: addr16("10.0.0.1"), Dst: addr16("192.168.1.20"), SrcPort: 43210, DstPort: 443,
				IfIndex: 3, Proto: 6, IPVersion: 4, Direction: flow.Ingress},
			Packets: 10, Bytes: 5200,
			StartMs: 1700000000123, EndMs: 1700000000567, // 2000000000, 2000000444
			TCPFlags: 0x1b, TOS: 0x10, EndReason: flow.EndOfFlow,
		},
		{ // IPv6: skipped
			Key: flow.Key{Src: addr16("2001:db8::1"), Dst: addr16("2001:db8:0:1::2"), SrcPort: 50000, DstPort: 22,
				IfIndex: 4, Proto: 6, IPVersion: 6, Direction: flow.Egress},
			Packets: 1, Bytes: 80, StartMs: 1700000000000, EndMs: 1700000000000,
		},
		{ // IPv4 ICMP echo request, egress, VLAN: the source port goes to 0
			Key: flow.Key{Src: addr16("10.0.0.2"), Dst: addr16("8.8.8.8"), SrcPort: 777, DstPort: 8 << 8,
				IfIndex: 5, VLAN: 100, Proto: 1, IPVersion: 4, Direction: flow.Egress},
			Packets: 3, Bytes: 252,
			StartMs: 1699999000000, EndMs: 1699999002000, // 1998999877, 1999001877
			TCPFlags: 0x02, EndReason: flow.IdleTimeout,
		},
		{ // ICMPv6: skipped
			Key: flow.Key{Src: addr16("fe80::1"), Dst: addr16("ff02::1"), DstPort: 128 << 8,
				IfIndex: 6, Proto: 58, IPVersion: 6},
			Packets: 2, Bytes: 208, StartMs: 1700000000000, EndMs: 1700000000000,
		},
		{ // IPv4 UDP, ifindex beyond 16 bits; TCP flags are dropped
			Key: flow.Key{Src: addr16("172.16.0.1"), Dst: addr16("172.16.0.9"), SrcPort: 53, DstPort: 5353,
				IfIndex: 70000, Proto: 17, IPVersion: 4, Direction: flow.Ingress},
			Packets: 1, Bytes: 4294967295,
			StartMs: 1698000000123, EndMs: 1700000000999, // 0, 2000000876
			TCPFlags: 0x10, TOS: 0x02, EndReason: flow.ActiveTimeout,
		},
		{ // IPv4 TCP, egress, ifindex 65535, NS flag (dropped)
			Key: flow.Key{Src: addr16("192.0.2.1"), Dst: addr16("198.51.100.2"), SrcPort: 1, DstPort: 65535,
				IfIndex: 65535, Proto: 6, IPVersion: 4, Direction: flow.Egress},
			Packets: 4294967295, Bytes: 1 << 31,
			StartMs: 1700000000998, EndMs: 1700000000999, // 2000000875, 2000000876
			TCPFlags: 0x1c2, TOS: 0xff, EndReason: flow.ForcedEnd,
		},
	}
}

// wantRecords are testRecords' IPv4 records as decoded.
var wantRecords = []rec{
	{"10.0.0.1", "192.168.1.20", 3, 0, 10, 5200, 2000000000, 2000000444, 43210, 443, 0x1b, 6, 0x10},
	{"10.0.0.2", "8.8.8.8", 0, 5, 3, 252, 1998999877, 1999001877, 0, 0x0800, 0, 1, 0},
	{"172.16.0.1", "172.16.0.9", 0, 0, 1, 4294967295, 0, 2000000876, 53, 5353, 0, 17, 2},
	{"192.0.2.1", "198.51.100.2", 0, 65535, 4294967295, 1 << 31, 2000000875, 2000000876, 1, 65535, 0xc2, 6, 0xff},
}

func TestEncodeRecords(t *testing.T) {
	e := NewEncoder(Options{EngineType: 7, EngineID: 9, MTU: 1400, Boot: testBoot})
	var pkts packets
	if err := e.Encode(testNow, testRecords(), pkts.send); err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 1 || len(pkts[0]) != 24+4*48 {
		t.Fatalf("%d datagrams, want 1 of 216 bytes", len(pkts))
	}
	h, recs := decode(t, pkts[0])
	if h != (header{5, 4, testUptime, testUnixSecs, testUnixNsecs, 0, 7, 9, 0}) {
		t.Errorf("header %+v", h)
	}
	if !reflect.DeepEqual(recs, wantRecords) {
		t.Errorf("records\n got %+v\nwant %+v", recs, wantRecords)
	}
	if e.Sent() != 4 || e.Unexportable() != 2 {
		t.Errorf("Sent %d, Unexportable %d; want 4, 2", e.Sent(), e.Unexportable())
	}

	// The header's and the first record's bytes, by hand.
	wantRaw := []byte{
		0, 5, 0, 4, // version, count
		0x77, 0x35, 0x97, 0x6c, // sysUptime 2000000876
		0x65, 0x53, 0xf1, 0x00, // unix_secs 1700000000
		0x3b, 0x8b, 0x87, 0xc0, // unix_nsecs 999000000
		0, 0, 0, 0, // flow_sequence
		7, 9, 0, 0, // engine type, ID, sampling
		10, 0, 0, 1, 192, 168, 1, 20, // addresses
		0, 0, 0, 0, // nexthop
		0, 3, 0, 0, // input, output
		0, 0, 0, 10, 0, 0, 0x14, 0x50, // dPkts, dOctets
		0x77, 0x35, 0x94, 0x00, 0x77, 0x35, 0x95, 0xbc, // First 2000000000, Last 2000000444
		0xa8, 0xca, 0x01, 0xbb, // ports 43210, 443
		0, 0x1b, 6, 0x10, // pad1, flags, protocol, TOS
		0, 0, 0, 0, 0, 0, 0, 0, // AS, masks, pad2
	}
	if !bytes.Equal(pkts[0][:72], wantRaw) {
		t.Errorf("header and first record\n got % x\nwant % x", pkts[0][:72], wantRaw)
	}
}

// TestTimes checks that collectors get the records' times back to the
// millisecond from the header's time and uptime, computing as the NetFlow
// v5 format intends (modulo 2^32) and as nfdump and goflow2 do.
func TestTimes(t *testing.T) {
	for _, c := range []struct {
		now, boot time.Time
	}{
		{testNow, testBoot},
		{time.Unix(1700000000, 0), time.Unix(1699999000, 0)},
		{time.Unix(1700000000, 500_400_000), time.Unix(1600000000, 999_999)}, // uptime wrapped 269 times
		{time.Unix(1700000000, 1), time.Unix(1700000000, 0)},                 // sysUptime 0
	} {
		nowMs := c.now.UnixMilli()
		bootMs := c.boot.UnixMilli()
		var recs []flow.Export
		for _, s := range []int64{nowMs, nowMs - 1, nowMs - 999, nowMs - 1000, nowMs - 20*86400_000, bootMs, bootMs + 1} {
			if s < nowMs-40*86400_000 || s > nowMs {
				continue // more than 2^32 ms back, or in the future: not representable
			}
			recs = append(recs, flow.Export{Key: flow.Key{IPVersion: 4}, StartMs: uint64(s), EndMs: uint64(nowMs)})
		}
		var pkts packets
		if err := NewEncoder(Options{Boot: c.boot}).Encode(c.now, recs, pkts.send); err != nil {
			t.Fatal(err)
		}
		h, rs := decode(t, pkts[0])
		if int64(h.secs) != c.now.Unix() || int(h.nsecs) != c.now.Nanosecond()/1e6*1e6 {
			t.Errorf("now %v: unix secs %d, nsecs %d", c.now, h.secs, h.nsecs)
		}
		hdrMs := int64(h.secs)*1000 + int64(h.nsecs)/1e6
		// The header's time less sysUptime is the boot time, to the
		// millisecond, modulo 2^32.
		if uint32(hdrMs-int64(h.uptime)) != uint32(bootMs) {
			t.Errorf("now %v, boot %v: unix secs %d, nsecs %d, sysUptime %d", c.now, c.boot, h.secs, h.nsecs, h.uptime)
		}
		unwrapped := nowMs-bootMs < 1<<32
		for i, r := range rs {
			for _, x := range []struct {
				name string
				v    uint32
				want int64
			}{{"First", r.first, int64(recs[i].StartMs)}, {"Last", r.last, int64(recs[i].EndMs)}} {
				// The difference of two uptimes, modulo 2^32.
				if got := hdrMs - int64(h.uptime-x.v); got != x.want {
					t.Errorf("now %v, boot %v, record %d: %s %d, sysUptime %d: %d, want %d",
						c.now, c.boot, i, x.name, x.v, h.uptime, got, x.want)
				}
				// goflow2: base - (uptime - time) with the difference in
				// uint32, in ns.
				base := uint64(h.secs)*1e9 + uint64(h.nsecs)
				if got := base - uint64(h.uptime-x.v)*1e6; int64(got) != x.want*1e6 {
					t.Errorf("now %v, record %d: %s: goflow2 would read %d ns, want %d ms", c.now, i, x.name, got, x.want)
				}
				// nfdump: boot time + time, in 64 bits: right while neither
				// sysUptime nor the time's uptime has wrapped.
				if unwrapped && x.want >= bootMs {
					if got := hdrMs - int64(h.uptime) + int64(x.v); got != x.want {
						t.Errorf("now %v, record %d: %s: nfdump would read %d, want %d", c.now, i, x.name, got, x.want)
					}
				}
			}
		}
	}
}

// TestBootDefault checks that a zero Options.Boot means the encoder's
// creation time.
func TestBootDefault(t *testing.T) {
	before := time.Now()
	e := NewEncoder(Options{})
	after := time.Now()
	now := after.Add(90 * time.Second)
	var pkts packets
	if err := e.Encode(now, []flow.Export{{Key: flow.Key{IPVersion: 4}, StartMs: uint64(now.UnixMilli()) - 5}}, pkts.send); err != nil {
		t.Fatal(err)
	}
	h, rs := decode(t, pkts[0])
	nowMs := now.UnixMilli()
	if lo, hi := nowMs-after.UnixMilli(), nowMs-before.UnixMilli(); int64(h.uptime) < lo || int64(h.uptime) > hi {
		t.Errorf("sysUptime %d, want %d..%d", h.uptime, lo, hi)
	}
	if h.uptime-rs[0].first != 5 {
		t.Errorf("sysUptime %d, First %d: want 5 ms apart", h.uptime, rs[0].first)
	}
}

// many returns n IPv4 records numbered by their packet counts, 1 to n.
func many(n int) []flow.Export {
	var recs []flow.Export
	for i := range n {
		recs = append(recs, flow.Export{
			Key:     flow.Key{Src: addr16("10.1.2.3"), Dst: addr16("10.3.2.1"), Proto: 17, IPVersion: 4, SrcPort: uint16(i)},
			Packets: uint64(i + 1), Bytes: 100,
		})
	}
	return recs
}

// TestPacking checks the records a datagram holds at several MTUs, that
// every record goes out once and in order, and the sequence numbers.
func TestPacking(t *testing.T) {
	rep := func(n, v int) []int {
		var s []int
		for range n {
			s = append(s, v)
		}
		return s
	}
	for _, c := range []struct {
		mtu    int
		counts []int
	}{
		{1464, []int{30, 1}},         // 31 records: 30 + 1
		{100000, []int{30, 1}},       // never more than 30
		{0, []int{28, 3}},            // DefaultMTU 1400: (1400-24)/48 = 28
		{1463, []int{29, 2}},         // one byte short of 30
		{72, rep(31, 1)},             // one record a datagram
		{119, rep(31, 1)},            // one byte short of two
		{120, append(rep(15, 2), 1)}, // two a datagram
	} {
		limit := c.mtu
		if limit == 0 {
			limit = 1400
		}
		e := NewEncoder(Options{MTU: c.mtu, Boot: testBoot})
		var pkts packets
		if err := e.Encode(testNow, many(31), pkts.send); err != nil {
			t.Fatal(err)
		}
		var counts []int
		var got []uint32
		for i, pkt := range pkts {
			h, rs := decode(t, pkt)
			if len(pkt) > limit || len(pkt) > 1464 {
				t.Errorf("MTU %d: datagram %d of %d bytes", c.mtu, i, len(pkt))
			}
			if int(h.seq) != len(got) {
				t.Errorf("MTU %d: datagram %d: sequence %d, want %d", c.mtu, i, h.seq, len(got))
			}
			counts = append(counts, int(h.count))
			for _, r := range rs {
				got = append(got, r.pkts)
			}
		}
		if !reflect.DeepEqual(counts, c.counts) {
			t.Errorf("MTU %d: datagrams of %v records, want %v", c.mtu, counts, c.counts)
		}
		for i, p := range got {
			if p != uint32(i+1) {
				t.Errorf("MTU %d: records %v", c.mtu, got)
				break
			}
		}
		if len(got) != 31 || e.Sent() != 31 {
			t.Errorf("MTU %d: %d records out, Sent %d", c.mtu, len(got), e.Sent())
		}
	}
}

// TestSequence checks that flow_sequence counts the records sent before
// each datagram in the session, across Encode calls, and restarts on Reset.
func TestSequence(t *testing.T) {
	e := NewEncoder(Options{MTU: 1464})
	var pkts packets
	for _, n := range []int{31, 5, 30} {
		if err := e.Encode(testNow, many(n), pkts.send); err != nil {
			t.Fatal(err)
		}
	}
	// Splitting: 3 records for one flow.
	if err := e.Encode(testNow, []flow.Export{{Key: flow.Key{IPVersion: 4}, Bytes: 1 << 33}}, pkts.send); err != nil {
		t.Fatal(err)
	}
	if err := e.Encode(testNow, many(1), pkts.send); err != nil {
		t.Fatal(err)
	}
	e.Reset()
	if e.Sent() != 0 {
		t.Errorf("Sent %d after Reset", e.Sent())
	}
	if err := e.Encode(testNow, many(2), pkts.send); err != nil {
		t.Fatal(err)
	}
	var seqs []uint32
	for _, pkt := range pkts {
		h, _ := decode(t, pkt)
		seqs = append(seqs, h.seq)
	}
	if want := []uint32{0, 30, 31, 36, 66, 69, 0}; !reflect.DeepEqual(seqs, want) {
		t.Errorf("sequence numbers %v, want %v", seqs, want)
	}
	if e.Sent() != 2 {
		t.Errorf("Sent %d, want 2", e.Sent())
	}
}

// TestIPv6 checks that IPv6 records are skipped, counted since the
// encoder's creation, and not counted as sent.
func TestIPv6(t *testing.T) {
	e := NewEncoder(Options{})
	v6 := []flow.Export{testRecords()[1], testRecords()[3]}
	if err := e.Encode(testNow, v6, func([]byte) error { t.Error("sent a datagram"); return nil }); err != nil {
		t.Fatal(err)
	}
	e.Reset()
	var pkts packets
	if err := e.Encode(testNow, testRecords(), pkts.send); err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 1 {
		t.Fatalf("%d datagrams", len(pkts))
	}
	if _, rs := decode(t, pkts[0]); len(rs) != 4 {
		t.Errorf("%d records, want 4", len(rs))
	}
	if e.Unexportable() != 4 || e.Sent() != 4 {
		t.Errorf("Unexportable %d, Sent %d; want 4, 4", e.Unexportable(), e.Sent())
	}
}

// TestSplit checks that a record whose counts exceed 32 bits goes out as
// several records with the same key and times whose counts add up to its
// own, and counts once in Sent.
func TestSplit(t *testing.T) {
	const m = 1<<32 - 1
	base := testRecords()[0] // TCP, First 2000000000, Last 2000000444
	for _, c := range []struct {
		pkts, bytes uint64
		want        [][2]uint32 // packets, bytes of each part
	}{
		{m, m, [][2]uint32{{m, m}}},
		{1, 1 << 32, [][2]uint32{{1, 1 << 31}, {0, 1 << 31}}},
		{10, 1 << 33, [][2]uint32{{4, 2863311531}, {3, 2863311531}, {3, 2863311530}}},
		{1<<32 + 5, 1000, [][2]uint32{{2147483651, 500}, {2147483650, 500}}},
		{3*m + 1, 3 * m, [][2]uint32{{3221225472, 3221225472}, {3221225472, 3221225471}, {3221225471, 3221225471}, {3221225471, 3221225471}}},
	} {
		r := base
		r.Packets, r.Bytes = c.pkts, c.bytes
		e := NewEncoder(Options{Boot: testBoot})
		var pkts packets
		if err := e.Encode(testNow, []flow.Export{r}, pkts.send); err != nil {
			t.Fatal(err)
		}
		_, rs := decode(t, pkts[0])
		var got [][2]uint32
		for _, x := range rs {
			got = append(got, [2]uint32{x.pkts, x.bytes})
			x.pkts, x.bytes = 0, 0
			if w := wantRecords[0]; x != (rec{w.src, w.dst, w.in, w.out, 0, 0, w.first, w.last, w.sport, w.dport, w.flags, w.proto, w.tos}) {
				t.Errorf("%d packets, %d bytes: part %+v", c.pkts, c.bytes, x)
			}
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%d packets, %d bytes: parts %v, want %v", c.pkts, c.bytes, got, c.want)
		}
		if e.Sent() != 1 {
			t.Errorf("%d packets, %d bytes: Sent %d", c.pkts, c.bytes, e.Sent())
		}
	}

	// 2^40 bytes: 257 parts (256 × (2^32-1) falls 256 short) over 9
	// datagrams, between two other records.
	r := base
	r.Packets, r.Bytes = 1<<30, 1<<40
	recs := append(append(many(1), r), many(1)...)
	e := NewEncoder(Options{MTU: 1464, Boot: testBoot})
	var pkts packets
	if err := e.Encode(testNow, recs, pkts.send); err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 9 {
		t.Fatalf("%d datagrams, want 9", len(pkts))
	}
	var sumP, sumB uint64
	var n int
	for i, pkt := range pkts {
		h, rs := decode(t, pkt)
		if int(h.seq) != 30*i {
			t.Errorf("datagram %d: sequence %d", i, h.seq)
		}
		for _, x := range rs {
			if n > 0 && n < 258 {
				sumP += uint64(x.pkts)
				sumB += uint64(x.bytes)
				if x.src != "10.0.0.1" || x.first != 2000000000 || x.last != 2000000444 {
					t.Errorf("part %d: %+v", n, x)
				}
			} else if x.src != "10.1.2.3" {
				t.Errorf("record %d: %+v", n, x)
			}
			n++
		}
	}
	if n != 259 || sumP != 1<<30 || sumB != 1<<40 {
		t.Errorf("%d records; parts add up to %d packets, %d bytes", n, sumP, sumB)
	}
	if e.Sent() != 3 {
		t.Errorf("Sent %d, want 3", e.Sent())
	}

	// A split record counts as sent only once all its parts are.
	e = NewEncoder(Options{MTU: 1464})
	calls := 0
	boom := errors.New("boom")
	err := e.Encode(testNow, recs, func([]byte) error {
		if calls++; calls == 3 {
			return boom
		}
		return nil
	})
	if err != boom || e.Sent() != 1 {
		t.Errorf("send failing on the 3rd datagram: %v, Sent %d; want 1", err, e.Sent())
	}
	pkts = nil
	if err := e.Encode(testNow, many(1), pkts.send); err != nil {
		t.Fatal(err)
	}
	if h, _ := decode(t, pkts[0]); h.seq != 60 {
		t.Errorf("after the failed send: sequence %d, want 60", h.seq)
	}
}

// TestMaxParts checks the limit on the parts of one record.
func TestMaxParts(t *testing.T) {
	const m = 1<<32 - 1
	if p := parts(&flow.Export{Bytes: MaxParts * m}); p != MaxParts {
		t.Errorf("%d bytes: %d parts, want %d", uint64(MaxParts*m), p, MaxParts)
	}
	if p := parts(&flow.Export{Packets: MaxParts*m + 1}); p != MaxParts+1 {
		t.Errorf("%d packets: %d parts, want %d", uint64(MaxParts*m+1), p, MaxParts+1)
	}
	if p := parts(&flow.Export{}); p != 1 {
		t.Errorf("no packets: %d parts", p)
	}
	fail := func([]byte) error { t.Error("sent a datagram"); return nil }
	for _, r := range []flow.Export{
		{Key: flow.Key{IPVersion: 4}, Packets: MaxParts*m + 1},
		{Key: flow.Key{IPVersion: 4}, Bytes: ^uint64(0)},
	} {
		err := NewEncoder(Options{}).Encode(testNow, append(many(3), r), fail)
		if err == nil || !strings.Contains(err.Error(), "record 3") {
			t.Errorf("%d packets, %d bytes: %v", r.Packets, r.Bytes, err)
		}
	}
}

func TestErrors(t *testing.T) {
	fail := func([]byte) error { t.Error("sent a datagram"); return nil }
	if err := NewEncoder(Options{MTU: 71}).Encode(testNow, testRecords(), fail); !errors.Is(err, ErrMTU) {
		t.Errorf("MTU 71: %v", err)
	}
	// No IPv4 record: nothing to send, no error.
	if err := NewEncoder(Options{MTU: 71}).Encode(testNow, testRecords()[1:2], fail); err != nil {
		t.Errorf("MTU 71, IPv6 only: %v", err)
	}
	bad := append(testRecords(), flow.Export{})
	e := NewEncoder(Options{})
	if err := e.Encode(testNow, bad, fail); err == nil || !strings.Contains(err.Error(), "IP version 0") {
		t.Errorf("IP version 0: %v", err)
	}
	if e.Unexportable() != 0 {
		t.Errorf("Unexportable %d after a refused batch", e.Unexportable())
	}
}

// TestSendError checks that a failed send stops Encode and that the lost
// records count neither in the sequence numbers nor in Sent.
func TestSendError(t *testing.T) {
	e := NewEncoder(Options{MTU: 1464})
	boom := errors.New("boom")
	calls := 0
	err := e.Encode(testNow, many(70), func([]byte) error {
		if calls++; calls == 2 {
			return boom
		}
		return nil
	})
	if err != boom || calls != 2 || e.Sent() != 30 {
		t.Fatalf("Encode: %v after %d sends, Sent %d", err, calls, e.Sent())
	}
	var pkts packets
	if err := e.Encode(testNow, many(1), pkts.send); err != nil {
		t.Fatal(err)
	}
	if h, _ := decode(t, pkts[0]); h.seq != 30 || h.count != 1 {
		t.Errorf("after a failed send: sequence %d, count %d; want 30, 1", h.seq, h.count)
	}
}

// TestBufferReuse checks that the fields xflow leaves zero are zeroed even
// where the reused buffer held other bytes.
func TestBufferReuse(t *testing.T) {
	e := NewEncoder(Options{})
	for i := range e.buf {
		e.buf[i] = 0xff
	}
	var pkts packets
	if err := e.Encode(testNow, testRecords(), pkts.send); err != nil {
		t.Fatal(err)
	}
	decode(t, pkts[0]) // checks the zero fields
}

// benchRecords is a batch of 1024 IPv4 flows.
func benchRecords() []flow.Export {
	base := testRecords()
	recs := make([]flow.Export, 1024)
	for i := range recs {
		recs[i] = base[[]int{0, 2, 4, 5}[i%4]]
		recs[i].Packets = uint64(i)
	}
	return recs
}

func TestEncodeAllocs(t *testing.T) {
	recs := benchRecords()
	recs[7].Bytes = 1 << 40 // and one split
	e := NewEncoder(Options{MTU: 1464})
	total := 0
	send := func(pkt []byte) error { total += len(pkt); return nil }
	if err := e.Encode(testNow, recs, send); err != nil { // warm
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := e.Encode(testNow, recs, send); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Encode of %d records: %v allocations, want 0", len(recs), allocs)
	}
}

func BenchmarkEncode(b *testing.B) {
	recs := benchRecords()
	e := NewEncoder(Options{MTU: 1464})
	send := func(pkt []byte) error { return nil }
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := e.Encode(testNow, recs, send); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*len(recs)), "ns/record")
}
