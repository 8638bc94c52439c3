package netflow9

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xflow-net/xflow/flow"
)

// The expected values below are written by hand from RFC 3954 and the
// layout documented in netflow9.go, not derived from the encoder. Every
// packet is decoded by the small collector below, which learns the templates
// from the packets as a real one would, decodes data records by their
// template's field types, and checks the header's count against the records
// it found.

// testNow is the export time of the tests: its fraction must be dropped.
var testNow = time.Unix(1700000000, 999_999_999)

// testBoot is the boot time of the tests; its fraction of a millisecond is
// dropped. sysUpTime at testNow, rounded up to the second:
// 1700000001000 - 1698000000123.
var testBoot = time.Unix(1698000000, 123_456_789)

const (
	testUnixSecs = 1700000001
	testUptime   = 2_000_000_877
)

// u16 encodes big-endian 16-bit values, to write expected bytes by hand.
func u16(vs ...uint16) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// header is a NetFlow v9 packet header, parsed by hand.
type header struct {
	version, count             uint16
	uptime, unixSecs, seq, src uint32
}

// flowSet is one FlowSet of a packet: its ID and its body (the bytes after
// the FlowSet header, padding included).
type flowSet struct {
	id   uint16
	body []byte
}

// splitPacket parses a packet's header and FlowSets by hand, and checks that
// the FlowSets tile the packet exactly and that every FlowSet length is a
// multiple of 4 (the encoder pads every FlowSet).
func splitPacket(t *testing.T, pkt []byte) (header, []flowSet) {
	t.Helper()
	if len(pkt) < 20 {
		t.Fatalf("packet of %d bytes, shorter than a header", len(pkt))
	}
	be := binary.BigEndian
	h := header{
		version:  be.Uint16(pkt[0:]),
		count:    be.Uint16(pkt[2:]),
		uptime:   be.Uint32(pkt[4:]),
		unixSecs: be.Uint32(pkt[8:]),
		seq:      be.Uint32(pkt[12:]),
		src:      be.Uint32(pkt[16:]),
	}
	if h.version != 9 {
		t.Fatalf("version %d, want 9", h.version)
	}
	var sets []flowSet
	for rest := pkt[20:]; len(rest) > 0; {
		if len(rest) < 4 {
			t.Fatalf("%d stray bytes after the FlowSets", len(rest))
		}
		id, n := be.Uint16(rest), int(be.Uint16(rest[2:]))
		if n < 4 || n > len(rest) {
			t.Fatalf("FlowSet %d: length %d, %d bytes left in the packet", id, n, len(rest))
		}
		if n%4 != 0 {
			t.Fatalf("FlowSet %d: length %d is not padded to a multiple of 4", id, n)
		}
		sets = append(sets, flowSet{id, rest[4:n]})
		rest = rest[n:]
	}
	if len(sets) == 0 {
		t.Fatal("packet without FlowSets")
	}
	return h, sets
}

// spec is a field specifier: field type and length.
type spec struct{ typ, length uint16 }

// template is what the collector learned from a template or options
// template record.
type template struct {
	scopes, fields []spec
}

func (tp template) recordLen() int {
	n := 0
	for _, f := range append(append([]spec(nil), tp.scopes...), tp.fields...) {
		n += int(f.length)
	}
	return n
}

// record is a decoded data record: its template, its scope field values (by
// scope type) and its field values (by field type).
type record struct {
	template uint16
	scope    map[uint16][]byte
	fields   map[uint16][]byte
}

// u is field typ's value as a big-endian unsigned number.
func (r record) u(typ uint16) uint64 {
	var v uint64
	for _, b := range r.fields[typ] {
		v = v<<8 | uint64(b)
	}
	return v
}

// str is field typ's value as a zero-padded string.
func (r record) str(typ uint16) string {
	b, _, _ := bytes.Cut(r.fields[typ], []byte{0})
	return string(b)
}

// collector decodes an encoder's packets as a collector would.
type collector struct {
	templates map[uint16]template
}

func newCollector() *collector { return &collector{templates: map[uint16]template{}} }

// primed is a collector that has seen the templates.
func primed(t *testing.T) *collector {
	t.Helper()
	c := newCollector()
	var pkts packets
	if err := NewEncoder(Options{}).Templates(testNow, Stats{}, nil, pkts.send); err != nil {
		t.Fatal(err)
	}
	c.decode(t, pkts[0])
	return c
}

// decode decodes pkt: it registers the templates it carries and decodes the
// data records of known templates (an unknown one is an error: the encoder
// always sends its templates first). It checks that the header's count is
// the number of records of every kind in the packet, and that the padding at
// the end of a FlowSet is zeros, shorter than 4 bytes and than a record.
func (c *collector) decode(t *testing.T, pkt []byte) (header, []record) {
	t.Helper()
	be := binary.BigEndian
	h, sets := splitPacket(t, pkt)
	var recs []record
	count := 0
	for _, s := range sets {
		b := s.body
		switch {
		case s.id == 0: // template FlowSet
			for len(b) >= 4 {
				id, n := be.Uint16(b), int(be.Uint16(b[2:]))
				if len(b) < 4+4*n {
					t.Fatalf("template %d: truncated", id)
				}
				var tp template
				for i := range n {
					tp.fields = append(tp.fields, spec{be.Uint16(b[4+4*i:]), be.Uint16(b[6+4*i:])})
				}
				c.templates[id] = tp
				b = b[4+4*n:]
				count++
			}
		case s.id == 1: // options template FlowSet
			for len(b) >= 6 {
				id, sl, ol := be.Uint16(b), int(be.Uint16(b[2:])), int(be.Uint16(b[4:]))
				if sl%4 != 0 || ol%4 != 0 || len(b) < 6+sl+ol {
					t.Fatalf("options template %d: scope length %d, option length %d, %d bytes", id, sl, ol, len(b))
				}
				var tp template
				for i := 0; i < sl+ol; i += 4 {
					f := spec{be.Uint16(b[6+i:]), be.Uint16(b[8+i:])}
					if i < sl {
						tp.scopes = append(tp.scopes, f)
					} else {
						tp.fields = append(tp.fields, f)
					}
				}
				c.templates[id] = tp
				b = b[6+sl+ol:]
				count++
			}
		case s.id >= 256:
			tp, ok := c.templates[s.id]
			if !ok {
				t.Fatalf("data FlowSet %d before its template", s.id)
			}
			n := tp.recordLen()
			for len(b) >= n {
				r := record{template: s.id, scope: map[uint16][]byte{}, fields: map[uint16][]byte{}}
				for _, f := range tp.scopes {
					r.scope[f.typ] = b[:f.length]
					b = b[f.length:]
				}
				for _, f := range tp.fields {
					if _, dup := r.fields[f.typ]; dup {
						t.Fatalf("template %d: field %d twice", s.id, f.typ)
					}
					r.fields[f.typ] = b[:f.length]
					b = b[f.length:]
				}
				recs = append(recs, r)
				count++
			}
		default:
			t.Fatalf("FlowSet ID %d is reserved", s.id)
		}
		if len(b) > 3 {
			t.Errorf("FlowSet %d: %d bytes left over", s.id, len(b))
		}
		for _, x := range b {
			if x != 0 {
				t.Errorf("FlowSet %d: padding % x is not zeros", s.id, b)
				break
			}
		}
	}
	if int(h.count) != count {
		t.Errorf("header count %d, %d records in the packet", h.count, count)
	}
	return h, recs
}

// flowRec is a flow record's fields, by name.
type flowRec struct {
	src, dst                   string
	pkts, bytes                uint64
	first, last, in, out       uint32
	sport, dport, icmp, vlan   uint16
	proto, tos, flags, dir, er uint8
	ipVersion                  uint8
}

// flowOf reads a flow record's fields by their v9 field types.
func flowOf(t *testing.T, r record) flowRec {
	t.Helper()
	addr := func(typ uint16) string {
		a, ok := netip.AddrFromSlice(r.fields[typ])
		if !ok {
			return ""
		}
		return a.String()
	}
	f := flowRec{
		pkts: r.u(2), bytes: r.u(1), first: uint32(r.u(22)), last: uint32(r.u(21)),
		in: uint32(r.u(10)), out: uint32(r.u(14)),
		sport: uint16(r.u(7)), dport: uint16(r.u(11)), icmp: uint16(r.u(32)), vlan: uint16(r.u(58)),
		proto: uint8(r.u(4)), tos: uint8(r.u(5)), flags: uint8(r.u(6)), dir: uint8(r.u(61)),
		er: uint8(r.u(136)), ipVersion: uint8(r.u(60)),
	}
	switch r.template {
	case 256:
		f.src, f.dst = addr(8), addr(12)
	case 257:
		f.src, f.dst = addr(27), addr(28)
	default:
		t.Fatalf("record of template %d is not a flow", r.template)
	}
	return f
}

// packets collects copies of the packets passed to send.
type packets [][]byte

func (p *packets) send(pkt []byte) error {
	*p = append(*p, bytes.Clone(pkt))
	return nil
}

func addr16(s string) [16]byte { return netip.MustParseAddr(s).As16() } // IPv4 comes out v4-mapped

// The template FlowSet and options template FlowSet bodies, by hand.
var (
	wantTemplate256 = u16(256, 18,
		8, 4, 12, 4, 2, 8, 1, 8, 22, 4, 21, 4, 10, 4, 14, 4,
		7, 2, 11, 2, 32, 2, 58, 2, 4, 1, 5, 1, 6, 1, 61, 1, 136, 1, 60, 1)
	wantTemplate257 = u16(257, 18,
		27, 16, 28, 16, 2, 8, 1, 8, 22, 4, 21, 4, 10, 4, 14, 4,
		7, 2, 11, 2, 32, 2, 58, 2, 4, 1, 5, 1, 6, 1, 61, 1, 136, 1, 60, 1)
	wantOptions258 = u16(258, 4, 12, 1, 4, 41, 8, 42, 8, 40, 8)
	wantOptions259 = u16(259, 4, 12, 1, 4, 10, 4, 82, 32, 83, 32)
)

// name32 is s zero-padded to 32 bytes.
func name32(s string) []byte { return append([]byte(s), make([]byte, 32-len(s))...) }

func TestTemplates(t *testing.T) {
	n31 := strings.Repeat("n", 31)
	long := strings.Repeat("x", 40)
	utf := strings.Repeat("u", 30) + "é" // 32 bytes; é is c3 a9
	ifaces := []flow.Interface{{Index: 1, Name: "lo"}, {Index: 2, Name: n31}, {Index: 70000, Name: long}, {Index: 4, Name: utf}}
	st := Stats{Messages: 11, Records: 222, Octets: 1 << 40}

	e := NewEncoder(Options{SourceID: 0x01020304, MTU: 1400, Boot: testBoot})
	var pkts packets
	if err := e.Templates(testNow, st, ifaces, pkts.send); err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 1 {
		t.Fatalf("%d packets, want 1", len(pkts))
	}
	pkt := pkts[0]
	// 20 header + 156 template FlowSet (4 + 2×76) + 2 options template
	// FlowSets of one record each (4 + 22, padded to 28) + 32 statistics
	// FlowSet (4 + 28) + 292 interface FlowSet (4 + 4×72).
	if len(pkt) != 556 {
		t.Fatalf("packet of %d bytes, want 556", len(pkt))
	}
	// Count: 2 templates, 2 options templates, 1 + 4 options data records.
	h, recs := newCollector().decode(t, pkt)
	if h != (header{9, 9, testUptime, testUnixSecs, 0, 0x01020304}) {
		t.Errorf("header %+v", h)
	}

	_, sets := splitPacket(t, pkt)
	var ids []uint16
	for _, s := range sets {
		ids = append(ids, s.id)
	}
	if !reflect.DeepEqual(ids, []uint16{0, 1, 1, 258, 259}) {
		t.Fatalf("FlowSets %v, want [0 1 1 258 259]", ids)
	}
	// One options template a FlowSet (pmacct reads only the first).
	sets[1].body = cat(sets[1].body[:22], sets[2].body[:22])
	sets = append(sets[:2], sets[3:]...)
	if want := cat(wantTemplate256, wantTemplate257); !bytes.Equal(sets[0].body, want) {
		t.Errorf("template FlowSet\n got % x\nwant % x", sets[0].body, want)
	}
	if want := cat(wantOptions258, wantOptions259); !bytes.Equal(sets[1].body, want) {
		t.Errorf("options template FlowSet\n got % x\nwant % x", sets[1].body, want)
	}
	wantStats := cat(u16(0x0102, 0x0304), u16(0, 0, 0, 11), u16(0, 0, 0, 222), u16(0, 0x100, 0, 0))
	if !bytes.Equal(sets[2].body, wantStats) {
		t.Errorf("statistics FlowSet\n got % x\nwant % x", sets[2].body, wantStats)
	}
	src := u16(0x0102, 0x0304)
	wantIfaces := cat(
		src, u16(0, 1), name32("lo"), name32("lo"),
		src, u16(0, 2), name32(n31), name32(n31), // 31 bytes: kept whole
		src, u16(1, 70000-65536), name32(long[:31]), name32(long[:31]), // cut to 31
		src, u16(0, 4), name32(utf[:30]), name32(utf[:30])) // é would be cut in two: cut before it
	if !bytes.Equal(sets[3].body, wantIfaces) {
		t.Errorf("interface FlowSet\n got % x\nwant % x", sets[3].body, wantIfaces)
	}

	// The options records as the collector decoded them.
	if len(recs) != 5 {
		t.Fatalf("%d options records, want 5", len(recs))
	}
	if r := recs[0]; r.template != 258 || !bytes.Equal(r.scope[1], src) ||
		r.u(41) != 11 || r.u(42) != 222 || r.u(40) != 1<<40 {
		t.Errorf("statistics record %+v", r)
	}
	var got []string
	for _, r := range recs[1:] {
		if r.template != 259 || !bytes.Equal(r.scope[1], src) || r.str(82) != r.str(83) {
			t.Errorf("interface record %+v", r)
		}
		got = append(got, fmt.Sprintf("%d=%s", r.u(10), r.str(82)))
	}
	if want := []string{"1=lo", "2=" + n31, "70000=" + long[:31], "4=" + utf[:30]}; !reflect.DeepEqual(got, want) {
		t.Errorf("interfaces %q, want %q", got, want)
	}

	// The next packet has sequence number 1: packets are counted, not
	// records.
	pkts = nil
	if err := e.Templates(testNow.Add(time.Second), st, nil, pkts.send); err != nil {
		t.Fatal(err)
	}
	if h, _ := newCollector().decode(t, pkts[0]); h.seq != 1 || h.count != 5 || len(pkts[0]) != 20+156+28+28+32 ||
		h.unixSecs != testUnixSecs+1 || h.uptime != testUptime+1000 {
		t.Errorf("second templates packet: %+v, %d bytes", h, len(pkts[0]))
	}
}

// TestTemplatesSplit sends the templates and 10 interface records in
// 200-byte packets.
func TestTemplatesSplit(t *testing.T) {
	var ifaces []flow.Interface
	for i := range 10 {
		ifaces = append(ifaces, flow.Interface{Index: uint32(i + 1), Name: fmt.Sprintf("eth%d", i)})
	}
	e := NewEncoder(Options{SourceID: 9, MTU: 200, Boot: testBoot})
	var pkts packets
	if err := e.Templates(testNow, Stats{Messages: 1, Records: 2, Octets: 3}, ifaces, pkts.send); err != nil {
		t.Fatal(err)
	}
	// Packet 1: header 20, template FlowSet 4+2×76 = 156: 176 bytes (an
	// options template FlowSet needs 28 more). Packet 2: 2 options template
	// FlowSets of one record, 4+22 padded to 28 each, statistics FlowSet
	// 4+28 = 32, interface FlowSet 4+72 = 76: 184 bytes (a second interface
	// would make 256). Packets 3 to 6: 2 interfaces, 20 + 4+144 = 168 bytes.
	// Packet 7: the last one, 96.
	type want struct {
		length, count int
		sets          []int // FlowSet ID, FlowSet length, ...
	}
	wants := []want{
		{176, 2, []int{0, 156}},
		{184, 4, []int{1, 28, 1, 28, 258, 32, 259, 76}},
		{168, 2, []int{259, 148}},
		{168, 2, []int{259, 148}},
		{168, 2, []int{259, 148}},
		{168, 2, []int{259, 148}},
		{96, 1, []int{259, 76}},
	}
	if len(pkts) != len(wants) {
		t.Fatalf("%d packets, want %d", len(pkts), len(wants))
	}
	c := newCollector()
	var names []string
	for i, pkt := range pkts {
		h, sets := splitPacket(t, pkt)
		var got []int
		for _, s := range sets {
			got = append(got, int(s.id), len(s.body)+4)
		}
		if len(pkt) != wants[i].length || int(h.count) != wants[i].count || int(h.seq) != i || !reflect.DeepEqual(got, wants[i].sets) {
			t.Errorf("packet %d: length %d, count %d, sequence %d, FlowSets %v; want %+v, sequence %d",
				i, len(pkt), h.count, h.seq, got, wants[i], i)
		}
		if h.unixSecs != testUnixSecs || h.uptime != testUptime || h.src != 9 {
			t.Errorf("packet %d: header %+v", i, h)
		}
		_, recs := c.decode(t, pkt)
		for _, r := range recs {
			if r.template == 259 {
				names = append(names, fmt.Sprintf("%d=%s", r.u(10), r.str(82)))
			}
		}
	}
	want10 := "1=eth0 2=eth1 3=eth2 4=eth3 5=eth4 6=eth5 7=eth6 8=eth7 9=eth8 10=eth9"
	if got := strings.Join(names, " "); got != want10 {
		t.Errorf("interfaces\n got %s\nwant %s", got, want10)
	}
}

// testRecords are flows of every kind, IPv4 and IPv6 interleaved. With
// testBoot, sysUpTime is 1999999877 at testNow; the uptimes of the records'
// times are given beside them.
func testRecords() []flow.Export {
	return []flow.Export{
		{ // IPv4 TCP, ingress
			Key: flow.Key{Src: addr16("10.0.0.1"), Dst: addr16("192.168.1.20"), SrcPort: 43210, DstPort: 443,
				IfIndex: 3, Proto: 6, IPVersion: 4, Direction: flow.Ingress},
			Packets: 10, Bytes: 5200,
			StartMs: 1700000000123, EndMs: 1700000004567, // 2000000000, 2000004444
			TCPFlags: 0x1b, TOS: 0x10, EndReason: flow.EndOfFlow,
		},
		{ // IPv6 TCP, egress, VLAN, NS flag (dropped)
			Key: flow.Key{Src: addr16("2001:db8::1"), Dst: addr16("2001:db8:0:1::2"), SrcPort: 50000, DstPort: 22,
				IfIndex: 4, VLAN: 4094, Proto: 6, IPVersion: 6, Direction: flow.Egress},
			Packets: 1, Bytes: 80,
			StartMs: 1700000001000, EndMs: 1700000001000, // 2000000877
			TCPFlags: 0x112, TOS: 0xb8, EndReason: flow.ForcedEnd,
		},
		{ // IPv4 ICMP echo request, egress, VLAN: the source port goes to 0
			Key: flow.Key{Src: addr16("10.0.0.2"), Dst: addr16("8.8.8.8"), SrcPort: 777, DstPort: 8 << 8,
				IfIndex: 5, VLAN: 100, Proto: 1, IPVersion: 4, Direction: flow.Egress},
			Packets: 3, Bytes: 252,
			StartMs: 1700000002000, EndMs: 1700000004000, // 2000001877, 2000003877
			TCPFlags: 0x02, EndReason: flow.IdleTimeout,
		},
		{ // ICMPv6 echo request, ingress
			Key: flow.Key{Src: addr16("fe80::1"), Dst: addr16("ff02::1"), SrcPort: 99, DstPort: 128 << 8,
				IfIndex: 6, Proto: 58, IPVersion: 6, Direction: flow.Ingress},
			Packets: 2, Bytes: 208,
			StartMs: 1700000003000, EndMs: 1700000003500, // 2000002877, 2000003377
			EndReason: flow.ActiveTimeout,
		},
		{ // IPv4 UDP, 64-bit counters; TCP flags are dropped
			Key: flow.Key{Src: addr16("172.16.0.1"), Dst: addr16("172.16.0.9"), SrcPort: 53, DstPort: 5353,
				IfIndex: 2, Proto: 17, IPVersion: 4, Direction: flow.Ingress},
			Packets: 1 << 40, Bytes: 1<<41 + 7,
			StartMs: 1699000000000, EndMs: 1700000000000, // 999999877, 1999999877
			TCPFlags: 0x10, TOS: 0x02, EndReason: flow.ActiveTimeout,
		},
		{ // protocol 1 over IPv6 is not ICMPv6: ports stay
			Key: flow.Key{Src: addr16("::1"), Dst: addr16("2001:db8::ff"), SrcPort: 1234, DstPort: 8 << 8,
				IfIndex: 1, Proto: 1, IPVersion: 6, Direction: flow.Egress},
			Packets: 4, Bytes: 400,
			StartMs: 1700000000000, EndMs: 1700000000001, // 1999999877, 1999999878
			EndReason: flow.LackOfResources,
		},
	}
}

// wantRecords are testRecords as decoded, in the order of the packet: IPv4
// first, then IPv6.
var wantRecords = []flowRec{
	{"10.0.0.1", "192.168.1.20", 10, 5200, 2000000000, 2000004444, 3, 0, 43210, 443, 0, 0, 6, 0x10, 0x1b, 0, 3, 4},
	{"10.0.0.2", "8.8.8.8", 3, 252, 2000001877, 2000003877, 0, 5, 0, 0x0800, 0x0800, 100, 1, 0, 0, 1, 1, 4},
	{"172.16.0.1", "172.16.0.9", 1 << 40, 1<<41 + 7, 999999877, 1999999877, 2, 0, 53, 5353, 0, 0, 17, 2, 0, 0, 2, 4},
	{"2001:db8::1", "2001:db8:0:1::2", 1, 80, 2000000877, 2000000877, 0, 4, 50000, 22, 0, 4094, 6, 0xb8, 0x12, 1, 4, 6},
	{"fe80::1", "ff02::1", 2, 208, 2000002877, 2000003377, 6, 0, 0, 0x8000, 0x8000, 0, 58, 0, 0, 0, 2, 6},
	{"::1", "2001:db8::ff", 4, 400, 1999999877, 1999999878, 0, 1, 1234, 0x0800, 0, 0, 1, 0, 0, 1, 5, 6},
}

func TestEncodeRecords(t *testing.T) {
	e := NewEncoder(Options{SourceID: 42, MTU: 1400, Boot: testBoot})
	c := newCollector()
	var pkts packets
	if err := e.Templates(testNow, Stats{}, nil, pkts.send); err != nil {
		t.Fatal(err)
	}
	if err := e.Encode(testNow, testRecords(), pkts.send); err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 2 {
		t.Fatalf("%d packets, want 2", len(pkts))
	}
	c.decode(t, pkts[0])
	h, recs := c.decode(t, pkts[1])
	// Sequence 1: the templates packet went before. Count: the 6 flow
	// records. Length: 20 + IPv4 FlowSet 4+3×54 = 166 padded to 168 + IPv6
	// FlowSet 4+3×78 = 238 padded to 240.
	if h != (header{9, 6, testUptime, testUnixSecs, 1, 42}) || len(pkts[1]) != 428 {
		t.Errorf("header %+v, %d bytes", h, len(pkts[1]))
	}
	_, sets := splitPacket(t, pkts[1])
	if len(sets) != 2 || sets[0].id != 256 || len(sets[0].body) != 164 || sets[1].id != 257 || len(sets[1].body) != 236 {
		t.Fatalf("FlowSets: want 256 of 168 bytes, 257 of 240 bytes")
	}
	if len(recs) != len(wantRecords) {
		t.Fatalf("%d records, want %d", len(recs), len(wantRecords))
	}
	for i, r := range recs {
		if got := flowOf(t, r); got != wantRecords[i] {
			t.Errorf("record %d\n got %+v\nwant %+v", i, got, wantRecords[i])
		}
	}
	if e.Sent() != 6 {
		t.Errorf("Sent %d, want 6", e.Sent())
	}

	// The first record's bytes, by hand.
	wantRaw := cat(
		[]byte{10, 0, 0, 1, 192, 168, 1, 20},
		u16(0, 0, 0, 10), u16(0, 0, 0, 5200),
		u16(0x7735, 0x9400), u16(0x7735, 0xa55c), // 2000000000, 2000004444
		u16(0, 3), u16(0, 0),
		u16(43210, 443, 0, 0),
		[]byte{6, 0x10, 0x1b, 0, 3, 4})
	if !bytes.Equal(sets[0].body[:54], wantRaw) {
		t.Errorf("first record\n got % x\nwant % x", sets[0].body[:54], wantRaw)
	}
}

// TestTimes checks that collectors get the records' times back to the
// millisecond, computing as RFC 3954, goflow2 and nfdump do, for packet
// times with and without a fraction of a second, boot times with and
// without a fraction of a millisecond, and uptimes past 2^32 ms.
func TestTimes(t *testing.T) {
	const day = 86400_000
	rfc, wide := 0, 0 // checks made
	for _, c := range []struct {
		now, boot time.Time
	}{
		{testNow, testBoot},
		{time.Unix(1700000000, 0), time.Unix(1699999000, 0)},
		{time.Unix(1700000000, 500_000_000), time.Unix(1600000000, 999_999)}, // uptime wrapped 269 times
		{time.Unix(1700000000, 1), time.Unix(1700000000, 0)},                 // sysUpTime 0
		{time.Unix(1700000000, 999_000_000), time.Unix(1700000000, 0).Add(-60 * 24 * time.Hour)},
	} {
		nowMs := c.now.UnixMilli()
		bootMs := c.boot.UnixMilli()
		secMs := ceilSec(c.now) * 1000
		var recs []flow.Export
		for _, s := range []int64{
			secMs,          // the header's second
			secMs - 1,      // just before it
			nowMs,          // after it, in the same second
			nowMs + 3000,   // later still (a clock step)
			nowMs - 20*day, // 20 days earlier
			bootMs,         // at boot
			bootMs - 1,     // before boot
		} {
			recs = append(recs, flow.Export{Key: flow.Key{IPVersion: 4}, StartMs: uint64(s), EndMs: uint64(s + 1)})
		}
		e := NewEncoder(Options{Boot: c.boot})
		var pkts packets
		if err := e.Encode(c.now, recs, pkts.send); err != nil {
			t.Fatal(err)
		}
		h, rs := primed(t).decode(t, pkts[0])
		if int64(h.unixSecs) != ceilSec(c.now) {
			t.Errorf("now %v: unix secs %d", c.now, h.unixSecs)
		}
		// unix_secs*1000 - sysUpTime is the boot time, to the millisecond,
		// modulo 2^32.
		if uint32(int64(h.unixSecs)*1000-int64(h.uptime)) != uint32(bootMs) {
			t.Errorf("now %v, boot %v: unix secs %d, sysUpTime %d", c.now, c.boot, h.unixSecs, h.uptime)
		}
		// epoch is how many times the uptime wrapped at ms.
		epoch := func(ms int64) int64 {
			d := ms - bootMs
			if d < 0 {
				return -1 - (-d-1)>>32
			}
			return d >> 32
		}
		for i, r := range rs {
			f := flowOf(t, r)
			for _, x := range []struct {
				name string
				v    uint32
				want int64
			}{{"first", f.first, int64(recs[i].StartMs)}, {"last", f.last, int64(recs[i].EndMs)}} {
				// RFC 3954: the difference of two uptimes, modulo 2^32, read
				// as signed (the time may be after the header's second):
				// exact within 24.8 days of the header's time.
				if d := secMs - x.want; d > -1<<31 && d < 1<<31 {
					rfc++
					if got := int64(h.unixSecs)*1000 - int64(int32(h.uptime-x.v)); got != x.want {
						t.Errorf("now %v, boot %v, record %d: %s %d, sysUpTime %d: %d, want %d",
							c.now, c.boot, i, x.name, x.v, h.uptime, got, x.want)
					}
				}
				// goflow2 (base - (uptime - time), uint64 ns) and nfdump
				// (boot + time, 64 bits) do not compute modulo 2^32: they are
				// exact while the time and the header's second are in the
				// same period of the uptime's wrapping, as with any exporter.
				if epoch(x.want) != epoch(secMs) {
					continue
				}
				wide++
				base := uint64(h.unixSecs) * 1e9
				if got := base - (uint64(h.uptime)*1e6 - uint64(x.v)*1e6); int64(got) != x.want*1e6 {
					t.Errorf("now %v, boot %v, record %d: %s: goflow2 would read %d ns, want %d ms", c.now, c.boot, i, x.name, got, x.want)
				}
				if got := int64(h.unixSecs)*1000 - int64(h.uptime) + int64(x.v); got != x.want {
					t.Errorf("now %v, boot %v, record %d: %s: nfdump would read %d, want %d", c.now, c.boot, i, x.name, got, x.want)
				}
			}
		}
	}
	if rfc < 60 || wide < 40 {
		t.Errorf("only %d and %d checks", rfc, wide)
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
	if err := e.Encode(now, []flow.Export{{Key: flow.Key{IPVersion: 4}, StartMs: uint64(now.UnixMilli())}}, pkts.send); err != nil {
		t.Fatal(err)
	}
	h, rs := primed(t).decode(t, pkts[0])
	sec := ceilSec(now) * 1000
	if lo, hi := sec-after.UnixMilli(), sec-before.UnixMilli(); int64(h.uptime) < lo || int64(h.uptime) > hi {
		t.Errorf("sysUpTime %d, want %d..%d", h.uptime, lo, hi)
	}
	if got := int64(h.unixSecs)*1000 - int64(int32(h.uptime-flowOf(t, rs[0]).first)); got != now.UnixMilli() {
		t.Errorf("start %d, want %d", got, now.UnixMilli())
	}
}

// TestPacking encodes 100 IPv4 and 50 IPv6 records in 1000-byte packets.
func TestPacking(t *testing.T) {
	var recs []flow.Export
	for i := range 150 {
		r := flow.Export{
			Key:     flow.Key{Src: addr16("10.1.2.3"), Dst: addr16("10.3.2.1"), Proto: 17, IPVersion: 4, SrcPort: uint16(i)},
			Packets: uint64(i + 1), Bytes: 0xffffffffffffffff, StartMs: 1, EndMs: 2,
		}
		if i%3 == 2 {
			r.Key.Src, r.Key.Dst, r.Key.IPVersion = addr16("2001:db8::1"), addr16("2001:db8::2"), 6
		}
		recs = append(recs, r)
	}
	e := NewEncoder(Options{SourceID: 1, MTU: 1000, Boot: testBoot})
	c := newCollector()

	// Templates: one packet, sequence 0.
	var pkts packets
	if err := e.Templates(testNow, Stats{}, nil, pkts.send); err != nil {
		t.Fatal(err)
	}
	c.decode(t, pkts[0])

	pkts = nil
	if err := e.Encode(testNow, recs, pkts.send); err != nil {
		t.Fatal(err)
	}
	// IPv4: 18 records a packet: 20 + 4+18×54 = 996 (19 would need 1050).
	// 100 = 5×18 + 10; the 6th packet holds 10 IPv4 records (4+540 = 544)
	// and 5 IPv6 (4+390 = 394 padded to 396): 960 bytes, a 6th would need
	// 1040. IPv6: 12 a packet: 20 + 4+936 = 960 (13 would need 1038). 45 =
	// 3×12 + 9: 20 + 4+702 = 706 padded to 708: 728.
	wantLen := []int{996, 996, 996, 996, 996, 960, 960, 960, 960, 728}
	wantCount := []int{18, 18, 18, 18, 18, 15, 12, 12, 12, 9}
	if len(pkts) != len(wantLen) {
		t.Fatalf("%d packets, want %d", len(pkts), len(wantLen))
	}
	var v4, v6 []uint64
	for i, pkt := range pkts {
		if len(pkt) > 1000 {
			t.Errorf("packet %d: %d bytes, over the MTU", i, len(pkt))
		}
		h, rs := c.decode(t, pkt)
		if len(pkt) != wantLen[i] || int(h.count) != wantCount[i] || h.seq != uint32(i+1) {
			t.Errorf("packet %d: %d bytes, count %d, sequence %d; want %d, %d, %d",
				i, len(pkt), h.count, h.seq, wantLen[i], wantCount[i], i+1)
		}
		for _, r := range rs {
			f := flowOf(t, r)
			if f.bytes != 0xffffffffffffffff {
				t.Errorf("record %d: bytes %d", f.pkts, f.bytes)
			}
			if r.template == 256 {
				v4 = append(v4, f.pkts)
			} else {
				v6 = append(v6, f.pkts)
			}
		}
	}
	// Every record once, in order within its IP version.
	var want4, want6 []uint64
	for i := range uint64(150) {
		if i%3 == 2 {
			want6 = append(want6, i+1)
		} else {
			want4 = append(want4, i+1)
		}
	}
	if !reflect.DeepEqual(v4, want4) || !reflect.DeepEqual(v6, want6) {
		t.Errorf("records\nIPv4 %v\nIPv6 %v", v4, v6)
	}
	if e.Sent() != 150 {
		t.Errorf("Sent %d, want 150", e.Sent())
	}

	// The sequence goes on, a packet at a time, templates or data.
	pkts = nil
	if err := e.Templates(testNow, Stats{}, nil, pkts.send); err != nil {
		t.Fatal(err)
	}
	if err := e.Encode(testNow, recs[:1], pkts.send); err != nil {
		t.Fatal(err)
	}
	if h, _ := splitPacket(t, pkts[0]); h.seq != 11 {
		t.Errorf("templates after 11 packets: sequence %d", h.seq)
	}
	if h, _ := splitPacket(t, pkts[1]); h.seq != 12 {
		t.Errorf("records after 12 packets: sequence %d", h.seq)
	}

	// A new session starts again at 0.
	e.Reset()
	if e.Sent() != 0 {
		t.Errorf("Sent %d after Reset", e.Sent())
	}
	pkts = nil
	if err := e.Templates(testNow, Stats{}, nil, pkts.send); err != nil {
		t.Fatal(err)
	}
	if err := e.Encode(testNow, recs[:40], pkts.send); err != nil {
		t.Fatal(err)
	}
	if err := e.Encode(testNow, recs[:1], pkts.send); err != nil {
		t.Fatal(err)
	}
	var seqs, counts []int
	for _, pkt := range pkts {
		h, _ := splitPacket(t, pkt)
		seqs = append(seqs, int(h.seq))
		counts = append(counts, int(h.count))
	}
	// 40 records: 27 IPv4, 13 IPv6. Templates: 5 records. Then 18 IPv4; 9
	// IPv4 (20 + 4+486 = 510) and 6 IPv6 (4+468 = 472: 982); 7 IPv6; the
	// next batch.
	if want := []int{0, 1, 2, 3, 4}; !reflect.DeepEqual(seqs, want) {
		t.Errorf("sequence numbers after Reset %v, want %v", seqs, want)
	}
	if want := []int{5, 18, 15, 7, 1}; !reflect.DeepEqual(counts, want) {
		t.Errorf("counts after Reset %v, want %v", counts, want)
	}
	if e.Sent() != 41 {
		t.Errorf("Sent %d, want 41", e.Sent())
	}
}

// TestPaddingAtMTU checks that the padding of both FlowSets counts towards
// the MTU: an IPv4 FlowSet of one record (4+54 = 58, padded to 60) and an
// IPv6 FlowSet of one record (4+78 = 82, padded to 84) make 20+60+84 = 164
// bytes.
func TestPaddingAtMTU(t *testing.T) {
	recs := []flow.Export{testRecords()[0], testRecords()[1]} // IPv4, IPv6
	for _, c := range []struct {
		mtu  int
		lens []int
	}{
		{164, []int{164}},
		{163, []int{80, 104}},
	} {
		var pkts packets
		if err := NewEncoder(Options{MTU: c.mtu}).Encode(testNow, recs, pkts.send); err != nil {
			t.Fatal(err)
		}
		var lens []int
		for _, pkt := range pkts {
			primed(t).decode(t, pkt)
			lens = append(lens, len(pkt))
		}
		if !reflect.DeepEqual(lens, c.lens) {
			t.Errorf("MTU %d: packets of %v bytes, want %v", c.mtu, lens, c.lens)
		}
	}
}

// TestPacketSizes checks, at many MTUs, that every packet fits the MTU,
// that its FlowSets tile it, that its count is right and that every record
// goes out once.
func TestPacketSizes(t *testing.T) {
	recs := testRecords()
	for range 5 {
		recs = append(recs, recs...)
	}
	for i := range recs {
		recs[i].Packets = uint64(i)
	}
	ifaces := []flow.Interface{{Index: 1, Name: "lo"}, {Index: 2, Name: "eth0"}, {Index: 3, Name: "br-0123456789ab"}}
	mtus := []int{512, 1400, 1500, 9000, 65535, 100000}
	for mtu := 104; mtu < 400; mtu++ { // every padding case near the MTU
		mtus = append(mtus, mtu)
	}
	for _, mtu := range mtus {
		e := NewEncoder(Options{MTU: mtu})
		c := newCollector()
		n, seen := 0, map[uint64]int{}
		send := func(pkt []byte) error {
			if len(pkt) > mtu || len(pkt) > 65535 {
				t.Errorf("MTU %d: packet of %d bytes", mtu, len(pkt))
			}
			h, rs := c.decode(t, pkt)
			if h.seq != uint32(n) {
				t.Errorf("MTU %d: packet %d has sequence %d", mtu, n, h.seq)
			}
			n++
			for _, r := range rs {
				if r.template < 258 {
					seen[r.u(2)]++
				}
			}
			return nil
		}
		if err := e.Templates(testNow, Stats{}, ifaces, send); err != nil {
			t.Fatalf("MTU %d: %v", mtu, err)
		}
		if err := e.Encode(testNow, recs, send); err != nil {
			t.Fatalf("MTU %d: %v", mtu, err)
		}
		if n < 2 {
			t.Errorf("MTU %d: %d packets", mtu, n)
		}
		for i := range recs {
			if seen[uint64(i)] != 1 {
				t.Errorf("MTU %d: record %d seen %d times", mtu, i, seen[uint64(i)])
			}
		}
		if e.Sent() != uint64(len(recs)) {
			t.Errorf("MTU %d: Sent %d, want %d", mtu, e.Sent(), len(recs))
		}
	}
}

func TestErrors(t *testing.T) {
	recs := testRecords()
	fail := func(pkt []byte) error { t.Error("sent a packet"); return nil }

	// 100 bytes hold an IPv4 record (20 + 4+54 padded to 60 = 80), not an
	// IPv6 one (20 + 4+78 padded to 84 = 104).
	e := NewEncoder(Options{MTU: 100})
	if err := e.Encode(testNow, recs, fail); !errors.Is(err, ErrMTU) {
		t.Errorf("IPv6 record in 100 bytes: %v", err)
	}
	var pkts packets
	if err := e.Encode(testNow, recs[:1], pkts.send); err != nil || len(pkts) != 1 || len(pkts[0]) != 80 {
		t.Errorf("IPv4 record in 100 bytes: %v, %d packets", err, len(pkts))
	}
	// 103 bytes: one byte short for the IPv6 record and its padding.
	e = NewEncoder(Options{MTU: 103})
	if err := e.Encode(testNow, recs, fail); !errors.Is(err, ErrMTU) {
		t.Errorf("IPv6 record in 103 bytes: %v", err)
	}
	// A template record: 20 + 4+76 = 100.
	e = NewEncoder(Options{MTU: 99})
	if err := e.Templates(testNow, Stats{}, nil, fail); !errors.Is(err, ErrMTU) {
		t.Errorf("templates in 99 bytes: %v", err)
	}
	pkts = nil
	// 5 packets: a template each, the 2 options templates (20 + 2×28), the
	// statistics (20 + 32: the options templates leave 24 bytes), the
	// interface (20 + 76).
	if err := NewEncoder(Options{MTU: 100}).Templates(testNow, Stats{}, []flow.Interface{{Index: 1, Name: "x"}}, pkts.send); err != nil || len(pkts) != 5 {
		t.Errorf("templates in 100 bytes: %v, %d packets", err, len(pkts))
	}

	bad := append(testRecords(), flow.Export{})
	if err := NewEncoder(Options{}).Encode(testNow, bad, fail); err == nil || !strings.Contains(err.Error(), "IP version 0") {
		t.Errorf("IP version 0: %v", err)
	}
}

// TestSendError checks that a failed send stops Encode, and that the failed
// packet counts neither in the sequence numbers nor in Sent.
func TestSendError(t *testing.T) {
	var recs []flow.Export
	for range 40 {
		recs = append(recs, flow.Export{Key: flow.Key{IPVersion: 4}})
	}
	e := NewEncoder(Options{MTU: 1000}) // 18 IPv4 records a packet
	boom := errors.New("boom")
	calls := 0
	err := e.Encode(testNow, recs, func(pkt []byte) error {
		calls++
		if calls == 2 {
			return boom
		}
		return nil
	})
	if err != boom || calls != 2 {
		t.Fatalf("Encode: %v after %d sends", err, calls)
	}
	if e.Sent() != 18 {
		t.Errorf("Sent %d after a failed send, want 18", e.Sent())
	}
	var pkts packets
	if err := e.Encode(testNow, recs[:1], pkts.send); err != nil {
		t.Fatal(err)
	}
	if h, _ := splitPacket(t, pkts[0]); h.seq != 1 || h.count != 1 || len(pkts[0]) != 20+60 {
		t.Errorf("after a failed send: sequence %d, count %d, length %d; want 1, 1, 80", h.seq, h.count, len(pkts[0]))
	}
}

// TestPaddingZeroed checks that padding is zeroed even where the reused
// buffer held an earlier packet's bytes.
func TestPaddingZeroed(t *testing.T) {
	full := testRecords()
	for i := range full {
		full[i].Packets, full[i].Bytes, full[i].StartMs, full[i].EndMs = ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)
		full[i].Key.Src, full[i].Key.Dst = [16]byte{0: 0xff, 15: 0xff}, [16]byte{0: 0xff, 15: 0xff}
	}
	e := NewEncoder(Options{MTU: 1400})
	c := primed(t)
	for n := 1; n <= 6; n++ {
		if err := e.Encode(testNow, full, func([]byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if err := e.Encode(testNow, full[:n], func(pkt []byte) error { c.decode(t, pkt); return nil }); err != nil {
			t.Fatal(err)
		}
	}
}

// benchRecords is a batch of 1024 flows, a quarter of them IPv6.
func benchRecords() []flow.Export {
	base := testRecords()
	recs := make([]flow.Export, 1024)
	for i := range recs {
		recs[i] = base[[]int{0, 2, 4, 1}[i%4]]
		recs[i].Packets = uint64(i)
	}
	return recs
}

func TestEncodeAllocs(t *testing.T) {
	recs := benchRecords()
	e := NewEncoder(Options{SourceID: 1, MTU: 1472})
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
	e := NewEncoder(Options{SourceID: 1, MTU: 1472})
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

// ceilSec is t in Unix seconds, rounded up (the header's time).
func ceilSec(t time.Time) int64 {
	if t.Nanosecond() != 0 {
		return t.Unix() + 1
	}
	return t.Unix()
}
