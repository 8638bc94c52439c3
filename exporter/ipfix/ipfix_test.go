package ipfix

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	calmh "github.com/calmh/ipfix"

	"github.com/xflow-net/xflow/flow"
)

// The expected values below are written by hand from RFC 7011, the IANA
// registry and the layout documented in ipfix.go, not derived from the
// encoder. Every message the encoder produces is decoded with
// github.com/calmh/ipfix. That decoder skips options template sets (set ID
// 3), so the tests parse those by hand and register them with the decoder as
// plain templates, which lets it decode the options data records.

// testNow is the export time of the tests: its fraction must be dropped.
var testNow = time.Unix(1700000000, 999_999_999)

const testExportTime = 1700000000

// u16 encodes big-endian 16-bit values, to write expected bytes by hand.
func u16(vs ...uint16) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// header is an IPFIX message header, parsed by hand.
type header struct {
	version, length           uint16
	exportTime, seq, domainID uint32
}

// set is one set of a message: its ID and its body (the bytes after the set
// header, padding included).
type set struct {
	id   uint16
	body []byte
}

// splitMessage parses a message's header and sets by hand, and checks that
// the header's length is the message's size, that the sets tile the message
// exactly and that every set length is a multiple of 4 (the encoder pads
// every set).
func splitMessage(t *testing.T, msg []byte) (header, []set) {
	t.Helper()
	if len(msg) < 16 {
		t.Fatalf("message of %d bytes, shorter than a header", len(msg))
	}
	h := header{
		version:    binary.BigEndian.Uint16(msg[0:]),
		length:     binary.BigEndian.Uint16(msg[2:]),
		exportTime: binary.BigEndian.Uint32(msg[4:]),
		seq:        binary.BigEndian.Uint32(msg[8:]),
		domainID:   binary.BigEndian.Uint32(msg[12:]),
	}
	if h.version != 10 {
		t.Fatalf("version %d, want 10", h.version)
	}
	if int(h.length) != len(msg) {
		t.Fatalf("header length %d, message size %d", h.length, len(msg))
	}
	var sets []set
	for rest := msg[16:]; len(rest) > 0; {
		if len(rest) < 4 {
			t.Fatalf("%d stray bytes after the sets", len(rest))
		}
		id, n := binary.BigEndian.Uint16(rest), int(binary.BigEndian.Uint16(rest[2:]))
		if n < 4 || n > len(rest) {
			t.Fatalf("set %d: length %d, %d bytes left in the message", id, n, len(rest))
		}
		if n%4 != 0 {
			t.Fatalf("set %d: length %d is not padded to a multiple of 4", id, n)
		}
		sets = append(sets, set{id, rest[4:n]})
		rest = rest[n:]
	}
	if len(sets) == 0 {
		t.Fatal("message without sets")
	}
	return h, sets
}

// checkPadding checks that a set of fixed-size records of recLen bytes ends
// in fewer than recLen (here: at most 3) zero octets, and returns its number
// of records.
func checkPadding(t *testing.T, s set, recLen int) int {
	t.Helper()
	n := len(s.body) / recLen
	p := s.body[n*recLen:]
	if len(p) > 3 {
		t.Errorf("set %d: %d padding octets", s.id, len(p))
	}
	for _, b := range p {
		if b != 0 {
			t.Errorf("set %d: padding % x is not zeros", s.id, p)
			break
		}
	}
	return n
}

// collector decodes an encoder's messages with calmh/ipfix, as a collector
// would.
type collector struct {
	s  *calmh.Session
	in *calmh.Interpreter
}

func newCollector() *collector {
	s := calmh.NewSession()
	return &collector{s: s, in: calmh.NewInterpreter(s)}
}

// record is a decoded data record: its template and its fields by name, in
// template order, with addresses as strings and times as Unix ms.
type record struct {
	template uint16
	names    []string
	fields   map[string]any
}

// decode decodes msg; it checks the header and set structure by hand first
// (splitMessage) and registers the options templates it carries.
func (c *collector) decode(t *testing.T, msg []byte) (header, []calmh.TemplateRecord, []record) {
	t.Helper()
	h, sets := splitMessage(t, msg)
	for _, s := range sets {
		if s.id == 3 {
			c.s.LoadTemplateRecords(parseOptionsTemplates(t, s.body))
		}
	}
	m, err := c.s.ParseBuffer(msg)
	if err != nil {
		t.Fatalf("calmh/ipfix: %v", err)
	}
	if m.Header.Version != 10 || m.Header.Length != h.length || m.Header.SequenceNumber != h.seq ||
		m.Header.ExportTime != h.exportTime || m.Header.DomainID != h.domainID {
		t.Fatalf("calmh/ipfix header %+v, by hand %+v", m.Header, h)
	}
	var recs []record
	for _, dr := range m.DataRecords {
		r := record{template: dr.TemplateID, fields: map[string]any{}}
		fs := c.in.Interpret(dr)
		if fs == nil {
			t.Fatalf("calmh/ipfix cannot interpret a record of template %d", dr.TemplateID)
		}
		for _, f := range fs {
			if f.Name == "" {
				t.Fatalf("template %d: element %d unknown to calmh/ipfix", dr.TemplateID, f.FieldID)
			}
			v := f.Value
			switch x := v.(type) {
			case *net.IP:
				v = x.String()
			case time.Time:
				v = x.UnixMilli()
			}
			r.names = append(r.names, f.Name)
			r.fields[f.Name] = v
		}
		recs = append(recs, r)
	}
	return h, m.TemplateRecords, recs
}

// parseOptionsTemplates parses an options template set's body by hand
// (calmh/ipfix skips them), checking that every record has one scope field.
func parseOptionsTemplates(t *testing.T, b []byte) []calmh.TemplateRecord {
	t.Helper()
	var trs []calmh.TemplateRecord
	for len(b) >= 6 { // shorter: padding
		id, count, scope := binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:]), binary.BigEndian.Uint16(b[4:])
		if scope != 1 {
			t.Fatalf("options template %d: %d scope fields, want 1", id, scope)
		}
		b = b[6:]
		tr := calmh.TemplateRecord{TemplateID: id}
		for range count {
			if len(b) < 4 {
				t.Fatalf("options template %d: truncated", id)
			}
			f := calmh.TemplateFieldSpecifier{FieldID: binary.BigEndian.Uint16(b), Length: binary.BigEndian.Uint16(b[2:])}
			if f.FieldID&0x8000 != 0 {
				t.Fatalf("options template %d: unexpected enterprise element", id)
			}
			tr.FieldSpecifiers = append(tr.FieldSpecifiers, f)
			b = b[4:]
		}
		trs = append(trs, tr)
	}
	for _, x := range b {
		if x != 0 {
			t.Fatalf("options template set padding % x is not zeros", b)
		}
	}
	return trs
}

// messages collects copies of the messages passed to send.
type messages [][]byte

func (m *messages) send(msg []byte) error {
	*m = append(*m, bytes.Clone(msg))
	return nil
}

func addr16(s string) [16]byte { return netip.MustParseAddr(s).As16() } // IPv4 comes out v4-mapped

// The names of the flow templates' fields, in template order.
var (
	ipv4Names = []string{
		"sourceIPv4Address", "destinationIPv4Address",
		"packetDeltaCount", "octetDeltaCount", "flowStartMilliseconds", "flowEndMilliseconds",
		"ingressInterface", "egressInterface",
		"sourceTransportPort", "icmpTypeCodeIPv4", "destinationTransportPort", "tcpControlBits", "vlanId",
		"protocolIdentifier", "ipClassOfService", "flowDirection", "flowEndReason", "ipVersion",
	}
	ipv6Names = []string{
		"sourceIPv6Address", "destinationIPv6Address",
		"packetDeltaCount", "octetDeltaCount", "flowStartMilliseconds", "flowEndMilliseconds",
		"ingressInterface", "egressInterface",
		"sourceTransportPort", "icmpTypeCodeIPv6", "destinationTransportPort", "tcpControlBits", "vlanId",
		"protocolIdentifier", "ipClassOfService", "flowDirection", "flowEndReason", "ipVersion",
	}
)

// The template set and options template set bodies, by hand.
var (
	wantTemplate256 = u16(256, 18,
		8, 4, 12, 4, 2, 8, 1, 8, 152, 8, 153, 8, 10, 4, 14, 4,
		7, 2, 32, 2, 11, 2, 6, 2, 58, 2, 4, 1, 5, 1, 61, 1, 136, 1, 60, 1)
	wantTemplate257 = u16(257, 18,
		27, 16, 28, 16, 2, 8, 1, 8, 152, 8, 153, 8, 10, 4, 14, 4,
		7, 2, 139, 2, 11, 2, 6, 2, 58, 2, 4, 1, 5, 1, 61, 1, 136, 1, 60, 1)
	wantOptions258 = u16(258, 4, 1, 149, 4, 41, 8, 42, 8, 40, 8)
	wantOptions259 = u16(259, 2, 1, 10, 4, 82, 65535)
)

func TestTemplates(t *testing.T) {
	long := strings.Repeat("x", 300) // needs the 3-byte variable-length prefix
	ifaces := []flow.Interface{{Index: 1, Name: "lo"}, {Index: 2, Name: "eth0"}, {Index: 7, Name: long}}
	st := Stats{Messages: 11, Records: 222, Octets: 1 << 40}

	e := NewEncoder(Options{ObservationDomain: 0x01020304, MTU: 1400})
	var msgs messages
	if err := e.Templates(testNow, st, ifaces, msgs.send); err != nil {
		t.Fatal(err)
	}
	// Two messages: the flow templates in the flow records' domain, the
	// options templates and records in domain 0.
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	// 16 header + 156 template set; 16 header + 40 options template set +
	// 32 statistics set + 328 interface set (4 + 7 + 9 + 307, padded by 1).
	// 16 header + 156 template set; 16 header + 2 options template sets of
	// one record each (4+22 padded to 28, 4+14 padded to 20) + 32 statistics
	// set + 328 interface set (4 + 7 + 9 + 307, padded by 1).
	if len(msgs[0]) != 172 || len(msgs[1]) != 424 {
		t.Fatalf("messages of %d and %d bytes, want 172 and 424", len(msgs[0]), len(msgs[1]))
	}

	c := newCollector()
	h, trs, recs := c.decode(t, msgs[0])
	if h != (header{10, 172, testExportTime, 0, 0x01020304}) {
		t.Errorf("flow templates header %+v", h)
	}
	if len(recs) != 0 {
		t.Errorf("%d data records with the flow templates", len(recs))
	}
	h, otrs, recs := c.decode(t, msgs[1])
	if h != (header{10, 424, testExportTime, 0, OptionsDomain}) {
		t.Errorf("options header %+v", h)
	}
	if len(otrs) != 0 {
		t.Errorf("template records %+v with the options", otrs)
	}

	_, sets0 := splitMessage(t, msgs[0])
	_, sets1 := splitMessage(t, msgs[1])
	sets := append(sets0, sets1...)
	var ids []uint16
	for _, s := range sets {
		ids = append(ids, s.id)
	}
	if !reflect.DeepEqual(ids, []uint16{2, 3, 3, 258, 259}) {
		t.Fatalf("sets %v, want [2 3 3 258 259]", ids)
	}
	// One options template a set (pmacct reads only the first).
	sets[1].body = cat(sets[1].body[:22], sets[2].body[:14])
	sets = append(sets[:2], sets[3:]...)
	if want := cat(wantTemplate256, wantTemplate257); !bytes.Equal(sets[0].body, want) {
		t.Errorf("template set\n got % x\nwant % x", sets[0].body, want)
	}
	if want := cat(wantOptions258, wantOptions259); !bytes.Equal(sets[1].body, want) {
		t.Errorf("options template set\n got % x\nwant % x", sets[1].body, want)
	}
	wantStats := cat(u16(0x0102, 0x0304), u16(0, 0, 0, 11), u16(0, 0, 0, 222), u16(0, 0x100, 0, 0))
	if !bytes.Equal(sets[2].body, wantStats) {
		t.Errorf("statistics set\n got % x\nwant % x", sets[2].body, wantStats)
	}
	wantIfaces := cat(
		u16(0, 1), []byte{2}, []byte("lo"),
		u16(0, 2), []byte{4}, []byte("eth0"),
		u16(0, 7), []byte{255}, u16(300), []byte(long),
		[]byte{0}) // padding: 4 + 323 → 328
	if !bytes.Equal(sets[3].body, wantIfaces) {
		t.Errorf("interface set\n got % x\nwant % x", sets[3].body, wantIfaces)
	}

	// The flow templates as calmh/ipfix saw them.
	want := []calmh.TemplateRecord{
		{TemplateID: 256, FieldSpecifiers: specs(8, 4, 12, 4, 2, 8, 1, 8, 152, 8, 153, 8, 10, 4, 14, 4,
			7, 2, 32, 2, 11, 2, 6, 2, 58, 2, 4, 1, 5, 1, 61, 1, 136, 1, 60, 1)},
		{TemplateID: 257, FieldSpecifiers: specs(27, 16, 28, 16, 2, 8, 1, 8, 152, 8, 153, 8, 10, 4, 14, 4,
			7, 2, 139, 2, 11, 2, 6, 2, 58, 2, 4, 1, 5, 1, 61, 1, 136, 1, 60, 1)},
	}
	if !reflect.DeepEqual(trs, want) {
		t.Errorf("calmh/ipfix templates\n got %+v\nwant %+v", trs, want)
	}

	// The options records as calmh/ipfix decoded them.
	wantRecs := []record{
		{258, []string{"observationDomainId", "exportedMessageTotalCount", "exportedFlowRecordTotalCount", "exportedOctetTotalCount"},
			map[string]any{"observationDomainId": uint32(0x01020304), "exportedMessageTotalCount": uint64(11),
				"exportedFlowRecordTotalCount": uint64(222), "exportedOctetTotalCount": uint64(1 << 40)}},
		{259, []string{"ingressInterface", "interfaceName"}, map[string]any{"ingressInterface": uint32(1), "interfaceName": "lo"}},
		{259, []string{"ingressInterface", "interfaceName"}, map[string]any{"ingressInterface": uint32(2), "interfaceName": "eth0"}},
		{259, []string{"ingressInterface", "interfaceName"}, map[string]any{"ingressInterface": uint32(7), "interfaceName": long}},
	}
	if !reflect.DeepEqual(recs, wantRecs) {
		t.Errorf("options records\n got %+v\nwant %+v", recs, wantRecs)
	}

	// The 4 options data records count in domain 0's sequence number, not
	// in the flow domain's; the template records in neither.
	msgs = nil
	if err := e.Templates(testNow, st, nil, msgs.send); err != nil {
		t.Fatal(err)
	}
	if h, _ := splitMessage(t, msgs[0]); h.seq != 0 || h.length != 16+156 || h.domainID != 0x01020304 {
		t.Errorf("second flow templates message: sequence %d, length %d, domain %d; want 0, 172, %d", h.seq, h.length, h.domainID, 0x01020304)
	}
	if h, _ := splitMessage(t, msgs[1]); h.seq != 4 || h.length != 16+28+20+32 || h.domainID != 0 {
		t.Errorf("second options message: sequence %d, length %d, domain %d; want 4, 96, 0", h.seq, h.length, h.domainID)
	}
	msgs = nil
	if err := e.Encode(testNow, testRecords()[:1], msgs.send); err != nil {
		t.Fatal(err)
	}
	if h, _ := splitMessage(t, msgs[0]); h.seq != 0 || h.domainID != 0x01020304 {
		t.Errorf("flow records: sequence %d, domain %d; want 0, %d", h.seq, h.domainID, 0x01020304)
	}
}

// TestTemplatesDomain0 checks that with observation domain 0 configured,
// flows and options share domain 0 and its one sequence number.
func TestTemplatesDomain0(t *testing.T) {
	e := NewEncoder(Options{ObservationDomain: 0, MTU: 1400})
	var msgs messages
	ifaces := []flow.Interface{{Index: 1, Name: "lo"}}
	if err := e.Templates(testNow, Stats{}, ifaces, msgs.send); err != nil {
		t.Fatal(err)
	}
	if err := e.Encode(testNow, testRecords(), msgs.send); err != nil {
		t.Fatal(err)
	}
	if err := e.Templates(testNow, Stats{}, ifaces, msgs.send); err != nil {
		t.Fatal(err)
	}
	var got [][3]int
	for _, msg := range msgs {
		h, sets := splitMessage(t, msg)
		got = append(got, [3]int{int(h.domainID), int(h.seq), len(sets)})
	}
	// Templates and 2 options records; 6 flow records; templates again.
	if want := [][3]int{{0, 0, 5}, {0, 2, 2}, {0, 8, 5}}; !reflect.DeepEqual(got, want) {
		t.Errorf("messages (domain, sequence, sets) %v, want %v", got, want)
	}
}

func specs(vs ...uint16) []calmh.TemplateFieldSpecifier {
	var fs []calmh.TemplateFieldSpecifier
	for i := 0; i < len(vs); i += 2 {
		fs = append(fs, calmh.TemplateFieldSpecifier{FieldID: vs[i], Length: vs[i+1]})
	}
	return fs
}

// TestInterfaceNameLengths checks the two forms of the variable-length
// prefix (RFC 7011 §7) at their boundary: below 255 one length byte, from
// 255 on 255 and a 2-byte length.
func TestInterfaceNameLengths(t *testing.T) {
	n254, n255 := strings.Repeat("a", 254), strings.Repeat("b", 255)
	e := NewEncoder(Options{MTU: 1400})
	var msgs messages
	ifaces := []flow.Interface{{Index: 1, Name: n254}, {Index: 2, Name: n255}, {Index: 3, Name: ""}}
	if err := e.Templates(testNow, Stats{}, ifaces, msgs.send); err != nil {
		t.Fatal(err)
	}
	_, sets := splitMessage(t, msgs[0])
	want := cat(
		u16(0, 1), []byte{254}, []byte(n254),
		u16(0, 2), []byte{255}, u16(255), []byte(n255),
		u16(0, 3), []byte{0},
		[]byte{0, 0}) // 4 + 259 + 262 + 5 = 530, padded to 532
	if s := sets[len(sets)-1]; s.id != 259 || !bytes.Equal(s.body, want) {
		t.Errorf("interface set %d\n got % x\nwant % x", s.id, s.body, want)
	}
	_, _, recs := newCollector().decode(t, msgs[0])
	var got []string
	for _, r := range recs[1:] {
		got = append(got, r.fields["interfaceName"].(string))
	}
	if !reflect.DeepEqual(got, []string{n254, n255, ""}) {
		t.Errorf("calmh/ipfix decoded names of %d, %d, %d bytes", len(got[0]), len(got[1]), len(got[2]))
	}
}

// TestTemplatesSplit sends the templates and 20 interface records in
// 200-byte messages.
func TestTemplatesSplit(t *testing.T) {
	var ifaces []flow.Interface
	for i := range 20 {
		ifaces = append(ifaces, flow.Interface{Index: uint32(i + 1), Name: fmt.Sprintf("eth%d", i)})
	}
	e := NewEncoder(Options{ObservationDomain: 9, MTU: 200})
	var msgs messages
	if err := e.Templates(testNow, Stats{Messages: 1, Records: 2, Octets: 3}, ifaces, msgs.send); err != nil {
		t.Fatal(err)
	}
	// Message 1, domain 9: header 16, template set 4+76+76 = 156: 172
	// bytes. Message 2, domain 0: options template sets of one record each,
	// 4+22 padded to 28 and 4+14 padded to 20, statistics set 4+28 = 32,
	// interface set 4 + 10×9 (eth0-9) + 10 (eth10) = 104: 200 bytes.
	// Message 3, domain 0: interface set 4 + 9×10 = 94 padded to 96: 112
	// bytes, sequence 12 (1 statistics and 11 interface records before it).
	type want struct {
		length, seq, domain int
		sets                []int // set ID, set length, ...
	}
	wants := []want{
		{172, 0, 9, []int{2, 156}},
		{200, 0, 0, []int{3, 28, 3, 20, 258, 32, 259, 104}},
		{112, 12, 0, []int{259, 96}},
	}
	if len(msgs) != len(wants) {
		t.Fatalf("%d messages, want %d", len(msgs), len(wants))
	}
	c := newCollector()
	var names []string
	for i, msg := range msgs {
		h, sets := splitMessage(t, msg)
		var got []int
		for _, s := range sets {
			got = append(got, int(s.id), len(s.body)+4)
		}
		if int(h.length) != wants[i].length || int(h.seq) != wants[i].seq || !reflect.DeepEqual(got, wants[i].sets) {
			t.Errorf("message %d: length %d, sequence %d, sets %v; want %+v", i, h.length, h.seq, got, wants[i])
		}
		if h.exportTime != testExportTime || int(h.domainID) != wants[i].domain {
			t.Errorf("message %d: export time %d, domain %d", i, h.exportTime, h.domainID)
		}
		_, _, recs := c.decode(t, msg)
		for _, r := range recs {
			if r.template == 259 {
				names = append(names, fmt.Sprintf("%d=%s", r.fields["ingressInterface"], r.fields["interfaceName"]))
			}
		}
	}
	want20 := "1=eth0 2=eth1 3=eth2 4=eth3 5=eth4 6=eth5 7=eth6 8=eth7 9=eth8 10=eth9 11=eth10 12=eth11 13=eth12 14=eth13 15=eth14 16=eth15 17=eth16 18=eth17 19=eth18 20=eth19"
	if got := strings.Join(names, " "); got != want20 {
		t.Errorf("interfaces\n got %s\nwant %s", got, want20)
	}
}

// testRecords are flows of every kind, IPv4 and IPv6 interleaved.
func testRecords() []flow.Export {
	return []flow.Export{
		{ // IPv4 TCP, ingress
			Key: flow.Key{Src: addr16("10.0.0.1"), Dst: addr16("192.168.1.20"), SrcPort: 43210, DstPort: 443,
				IfIndex: 3, Proto: 6, IPVersion: 4, Direction: flow.Ingress},
			Packets: 10, Bytes: 5200, StartMs: 1700000000123, EndMs: 1700000004567,
			TCPFlags: 0x1b, TOS: 0x10, EndReason: flow.EndOfFlow,
		},
		{ // IPv6 TCP, egress, VLAN, NS flag
			Key: flow.Key{Src: addr16("2001:db8::1"), Dst: addr16("2001:db8:0:1::2"), SrcPort: 50000, DstPort: 22,
				IfIndex: 4, VLAN: 4094, Proto: 6, IPVersion: 6, Direction: flow.Egress},
			Packets: 1, Bytes: 80, StartMs: 1700000001000, EndMs: 1700000001000,
			TCPFlags: 0x112, TOS: 0xb8, EndReason: flow.ForcedEnd,
		},
		{ // IPv4 ICMP echo request, egress, VLAN: the source port goes to 0
			Key: flow.Key{Src: addr16("10.0.0.2"), Dst: addr16("8.8.8.8"), SrcPort: 777, DstPort: 8 << 8,
				IfIndex: 5, VLAN: 100, Proto: 1, IPVersion: 4, Direction: flow.Egress},
			Packets: 3, Bytes: 252, StartMs: 1700000002000, EndMs: 1700000004000,
			TCPFlags: 0x02, EndReason: flow.IdleTimeout,
		},
		{ // ICMPv6 echo request, ingress
			Key: flow.Key{Src: addr16("fe80::1"), Dst: addr16("ff02::1"), SrcPort: 99, DstPort: 128 << 8,
				IfIndex: 6, Proto: 58, IPVersion: 6, Direction: flow.Ingress},
			Packets: 2, Bytes: 208, StartMs: 1700000003000, EndMs: 1700000003500,
			EndReason: flow.ActiveTimeout,
		},
		{ // IPv4 UDP, 64-bit counters; TCP flags are dropped
			Key: flow.Key{Src: addr16("172.16.0.1"), Dst: addr16("172.16.0.9"), SrcPort: 53, DstPort: 5353,
				IfIndex: 2, Proto: 17, IPVersion: 4, Direction: flow.Ingress},
			Packets: 1 << 40, Bytes: 1<<41 + 7, StartMs: 1600000000000, EndMs: 1700000000000,
			TCPFlags: 0x10, TOS: 0x02, EndReason: flow.ActiveTimeout,
		},
		{ // protocol 1 over IPv6 is not ICMPv6: ports stay
			Key: flow.Key{Src: addr16("::1"), Dst: addr16("2001:db8::ff"), SrcPort: 1234, DstPort: 8 << 8,
				IfIndex: 1, Proto: 1, IPVersion: 6, Direction: flow.Egress},
			Packets: 4, Bytes: 400, StartMs: 1700000000000, EndMs: 1700000000001,
			EndReason: flow.LackOfResources,
		},
	}
}

func TestEncodeRecords(t *testing.T) {
	e := NewEncoder(Options{ObservationDomain: 42, MTU: 1400})
	c := newCollector()
	var msgs messages
	if err := e.Templates(testNow, Stats{}, nil, msgs.send); err != nil {
		t.Fatal(err)
	}
	if err := e.Encode(testNow, testRecords(), msgs.send); err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	c.decode(t, msgs[0])
	c.decode(t, msgs[1])
	h, trs, recs := c.decode(t, msgs[2])
	if len(trs) != 0 {
		t.Errorf("%d template records in a data message", len(trs))
	}
	// Sequence 0: the statistics record went before, but in domain 0.
	// Length: 16 + IPv4 set 4+3×63 = 193 padded to 196 + IPv6 set 4+3×87 =
	// 265 padded to 268.
	if h != (header{10, 480, testExportTime, 0, 42}) {
		t.Errorf("header %+v", h)
	}
	_, sets := splitMessage(t, msgs[2])
	if len(sets) != 2 || sets[0].id != 256 || len(sets[0].body) != 192 || sets[1].id != 257 || len(sets[1].body) != 264 {
		t.Fatalf("sets: want 256 of 196 bytes, 257 of 268 bytes")
	}
	if n := checkPadding(t, sets[0], 63); n != 3 {
		t.Errorf("%d IPv4 records", n)
	}
	if n := checkPadding(t, sets[1], 87); n != 3 {
		t.Errorf("%d IPv6 records", n)
	}

	want := []map[string]any{
		{ // IPv4 records first, in order
			"sourceIPv4Address": "10.0.0.1", "destinationIPv4Address": "192.168.1.20",
			"packetDeltaCount": uint64(10), "octetDeltaCount": uint64(5200),
			"flowStartMilliseconds": int64(1700000000123), "flowEndMilliseconds": int64(1700000004567),
			"ingressInterface": uint32(3), "egressInterface": uint32(0),
			"sourceTransportPort": uint16(43210), "destinationTransportPort": uint16(443),
			"icmpTypeCodeIPv4": uint16(0), "tcpControlBits": uint16(0x1b), "vlanId": uint16(0),
			"protocolIdentifier": uint8(6), "ipClassOfService": uint8(0x10), "flowDirection": uint8(0),
			"flowEndReason": uint8(3), "ipVersion": uint8(4),
		},
		{
			"sourceIPv4Address": "10.0.0.2", "destinationIPv4Address": "8.8.8.8",
			"packetDeltaCount": uint64(3), "octetDeltaCount": uint64(252),
			"flowStartMilliseconds": int64(1700000002000), "flowEndMilliseconds": int64(1700000004000),
			"ingressInterface": uint32(0), "egressInterface": uint32(5),
			"sourceTransportPort": uint16(0), "destinationTransportPort": uint16(0x0800),
			"icmpTypeCodeIPv4": uint16(0x0800), "tcpControlBits": uint16(0), "vlanId": uint16(100),
			"protocolIdentifier": uint8(1), "ipClassOfService": uint8(0), "flowDirection": uint8(1),
			"flowEndReason": uint8(1), "ipVersion": uint8(4),
		},
		{
			"sourceIPv4Address": "172.16.0.1", "destinationIPv4Address": "172.16.0.9",
			"packetDeltaCount": uint64(1099511627776), "octetDeltaCount": uint64(2199023255559),
			"flowStartMilliseconds": int64(1600000000000), "flowEndMilliseconds": int64(1700000000000),
			"ingressInterface": uint32(2), "egressInterface": uint32(0),
			"sourceTransportPort": uint16(53), "destinationTransportPort": uint16(5353),
			"icmpTypeCodeIPv4": uint16(0), "tcpControlBits": uint16(0), "vlanId": uint16(0),
			"protocolIdentifier": uint8(17), "ipClassOfService": uint8(2), "flowDirection": uint8(0),
			"flowEndReason": uint8(2), "ipVersion": uint8(4),
		},
		{ // then IPv6, in order
			"sourceIPv6Address": "2001:db8::1", "destinationIPv6Address": "2001:db8:0:1::2",
			"packetDeltaCount": uint64(1), "octetDeltaCount": uint64(80),
			"flowStartMilliseconds": int64(1700000001000), "flowEndMilliseconds": int64(1700000001000),
			"ingressInterface": uint32(0), "egressInterface": uint32(4),
			"sourceTransportPort": uint16(50000), "destinationTransportPort": uint16(22),
			"icmpTypeCodeIPv6": uint16(0), "tcpControlBits": uint16(0x112), "vlanId": uint16(4094),
			"protocolIdentifier": uint8(6), "ipClassOfService": uint8(0xb8), "flowDirection": uint8(1),
			"flowEndReason": uint8(4), "ipVersion": uint8(6),
		},
		{
			"sourceIPv6Address": "fe80::1", "destinationIPv6Address": "ff02::1",
			"packetDeltaCount": uint64(2), "octetDeltaCount": uint64(208),
			"flowStartMilliseconds": int64(1700000003000), "flowEndMilliseconds": int64(1700000003500),
			"ingressInterface": uint32(6), "egressInterface": uint32(0),
			"sourceTransportPort": uint16(0), "destinationTransportPort": uint16(0x8000),
			"icmpTypeCodeIPv6": uint16(0x8000), "tcpControlBits": uint16(0), "vlanId": uint16(0),
			"protocolIdentifier": uint8(58), "ipClassOfService": uint8(0), "flowDirection": uint8(0),
			"flowEndReason": uint8(2), "ipVersion": uint8(6),
		},
		{
			"sourceIPv6Address": "::1", "destinationIPv6Address": "2001:db8::ff",
			"packetDeltaCount": uint64(4), "octetDeltaCount": uint64(400),
			"flowStartMilliseconds": int64(1700000000000), "flowEndMilliseconds": int64(1700000000001),
			"ingressInterface": uint32(0), "egressInterface": uint32(1),
			"sourceTransportPort": uint16(1234), "destinationTransportPort": uint16(0x0800),
			"icmpTypeCodeIPv6": uint16(0), "tcpControlBits": uint16(0), "vlanId": uint16(0),
			"protocolIdentifier": uint8(1), "ipClassOfService": uint8(0), "flowDirection": uint8(1),
			"flowEndReason": uint8(5), "ipVersion": uint8(6),
		},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		wantID, wantNames := uint16(256), ipv4Names
		if i >= 3 {
			wantID, wantNames = 257, ipv6Names
		}
		if r.template != wantID || !reflect.DeepEqual(r.names, wantNames) {
			t.Errorf("record %d: template %d, fields %v", i, r.template, r.names)
		}
		for _, name := range wantNames {
			if got, w := r.fields[name], want[i][name]; got != w {
				t.Errorf("record %d: %s = %v (%T), want %v (%T)", i, name, got, got, w, w)
			}
		}
	}

	// The first record's bytes, by hand.
	wantRaw := cat(
		[]byte{10, 0, 0, 1, 192, 168, 1, 20},
		u16(0, 0, 0, 10), u16(0, 0, 0, 5200),
		u16(0, 0x18b, 0xcfe5, 0x687b), u16(0, 0x18b, 0xcfe5, 0x79d7), // 1700000000123, 1700000004567
		u16(0, 3), u16(0, 0),
		u16(43210, 0, 443, 0x1b, 0), // icmpTypeCodeIPv4 before the port
		[]byte{6, 0x10, 0, 3, 4})
	if !bytes.Equal(sets[0].body[:63], wantRaw) {
		t.Errorf("first record\n got % x\nwant % x", sets[0].body[:63], wantRaw)
	}
}

// TestPacking encodes 100 IPv4 and 50 IPv6 records in 1000-byte messages.
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
	e := NewEncoder(Options{ObservationDomain: 1, MTU: 1000})
	c := newCollector()

	// Templates: a message of flow templates, sequence 0, then one in
	// domain 0 with one options data record.
	var msgs messages
	if err := e.Templates(testNow, Stats{}, nil, msgs.send); err != nil {
		t.Fatal(err)
	}
	c.decode(t, msgs[0])
	c.decode(t, msgs[1])

	msgs = nil
	if err := e.Encode(testNow, recs, msgs.send); err != nil {
		t.Fatal(err)
	}
	// IPv4: 15 records a message: 16 + 4+15×63 = 949 padded to 952 = 968
	// (16 would need 1032). 100 = 6×15 + 10; the 7th message holds 10 IPv4
	// records (4+630 = 634 padded to 636) and 3 IPv6 (4+261 = 265 padded
	// to 268): 920 bytes, a 4th would need 1008. IPv6: 11 a message:
	// 16 + 4+957 = 961 padded to 964 = 980. 47 = 4×11 + 3: 16 + 268 = 284.
	wantLen := []int{968, 968, 968, 968, 968, 968, 920, 980, 980, 980, 980, 284}
	wantRecs := []int{15, 15, 15, 15, 15, 15, 13, 11, 11, 11, 11, 3}
	wantSeq := []uint32{0, 15, 30, 45, 60, 75, 90, 103, 114, 125, 136, 147}
	if len(msgs) != len(wantLen) {
		t.Fatalf("%d messages, want %d", len(msgs), len(wantLen))
	}
	var v4, v6 []uint64
	for i, msg := range msgs {
		if len(msg) > 1000 {
			t.Errorf("message %d: %d bytes, over the MTU", i, len(msg))
		}
		h, _, rs := c.decode(t, msg)
		if int(h.length) != wantLen[i] || len(rs) != wantRecs[i] || h.seq != wantSeq[i] {
			t.Errorf("message %d: %d bytes, %d records, sequence %d; want %d, %d, %d",
				i, h.length, len(rs), h.seq, wantLen[i], wantRecs[i], wantSeq[i])
		}
		_, sets := splitMessage(t, msg)
		for _, s := range sets {
			switch s.id {
			case 256:
				checkPadding(t, s, 63)
			case 257:
				checkPadding(t, s, 87)
			default:
				t.Errorf("message %d: set %d", i, s.id)
			}
		}
		for _, r := range rs {
			p := r.fields["packetDeltaCount"].(uint64)
			if r.fields["octetDeltaCount"] != uint64(0xffffffffffffffff) {
				t.Errorf("record %d: octets %v", p, r.fields["octetDeltaCount"])
			}
			if r.template == 256 {
				v4 = append(v4, p)
			} else {
				v6 = append(v6, p)
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

	// The sequence goes on: 150 flow records sent; templates and options
	// records (domain 0: 1 before, 1 now) don't count.
	msgs = nil
	if err := e.Templates(testNow, Stats{}, nil, msgs.send); err != nil {
		t.Fatal(err)
	}
	if err := e.Encode(testNow, recs[:1], msgs.send); err != nil {
		t.Fatal(err)
	}
	if h, _ := splitMessage(t, msgs[0]); h.seq != 150 {
		t.Errorf("templates after 150 records: sequence %d", h.seq)
	}
	if h, _ := splitMessage(t, msgs[1]); h.seq != 1 || h.domainID != 0 {
		t.Errorf("options after 1 options record: sequence %d, domain %d", h.seq, h.domainID)
	}
	if h, _ := splitMessage(t, msgs[2]); h.seq != 150 {
		t.Errorf("records after 150 records: sequence %d", h.seq)
	}

	// A new session starts again at 0.
	e.Reset()
	msgs = nil
	if err := e.Templates(testNow, Stats{}, nil, msgs.send); err != nil {
		t.Fatal(err)
	}
	if err := e.Encode(testNow, recs[:40], msgs.send); err != nil {
		t.Fatal(err)
	}
	if err := e.Encode(testNow, recs[:1], msgs.send); err != nil {
		t.Fatal(err)
	}
	var seqs []uint32
	for _, msg := range msgs {
		h, _ := splitMessage(t, msg)
		seqs = append(seqs, h.seq)
	}
	// 40 records: 27 IPv4, 13 IPv6. Templates: sequence 0 in both domains.
	// Then 15 IPv4 at 0; 12 IPv4 (16 + 4+756 = 776 bytes) and 2 IPv6 (4+174
	// padded to 180: 956; a 3rd would need 1044) at 15; 11 IPv6 at 29; the
	// next batch at 40.
	if want := []uint32{0, 0, 0, 15, 29, 40}; !reflect.DeepEqual(seqs, want) {
		t.Errorf("sequence numbers after Reset %v, want %v", seqs, want)
	}
}

// TestPaddingAtMTU checks that the padding of both sets counts towards the
// MTU: an IPv4 set of one record (4+63 = 67, padded to 68) and an IPv6 set
// of one record (4+87 = 91, padded to 92) make 16+68+92 = 176 bytes.
func TestPaddingAtMTU(t *testing.T) {
	recs := []flow.Export{testRecords()[0], testRecords()[1]} // IPv4, IPv6
	for _, c := range []struct {
		mtu  int
		lens []int
	}{
		{176, []int{176}},
		{175, []int{84, 108}},
	} {
		var msgs messages
		if err := NewEncoder(Options{MTU: c.mtu}).Encode(testNow, recs, msgs.send); err != nil {
			t.Fatal(err)
		}
		var lens []int
		for _, msg := range msgs {
			splitMessage(t, msg)
			lens = append(lens, len(msg))
		}
		if !reflect.DeepEqual(lens, c.lens) {
			t.Errorf("MTU %d: messages of %v bytes, want %v", c.mtu, lens, c.lens)
		}
	}
}

// TestHeaderLength checks, at several MTUs, that every message's header
// length is the size of the message handed to send, and that the message
// fits the MTU.
func TestHeaderLength(t *testing.T) {
	recs := testRecords()
	for range 5 {
		recs = append(recs, recs...)
	}
	ifaces := []flow.Interface{{Index: 1, Name: "lo"}, {Index: 2, Name: "eth0"}, {Index: 3, Name: "br-0123456789ab"}}
	mtus := []int{512, 1400, 1500, 9000, 65535, 100000}
	for mtu := 108; mtu < 400; mtu++ { // every padding case near the MTU
		mtus = append(mtus, mtu)
	}
	for _, mtu := range mtus {
		e := NewEncoder(Options{MTU: mtu})
		n := 0
		send := func(msg []byte) error {
			n++
			if got := int(binary.BigEndian.Uint16(msg[2:])); got != len(msg) {
				t.Errorf("MTU %d: header length %d, message of %d bytes", mtu, got, len(msg))
			}
			if len(msg) > mtu || len(msg) > 65535 {
				t.Errorf("MTU %d: message of %d bytes", mtu, len(msg))
			}
			splitMessage(t, msg)
			return nil
		}
		if err := e.Templates(testNow, Stats{}, ifaces, send); err != nil {
			t.Fatalf("MTU %d: %v", mtu, err)
		}
		if err := e.Encode(testNow, recs, send); err != nil {
			t.Fatalf("MTU %d: %v", mtu, err)
		}
		if n < 2 {
			t.Errorf("MTU %d: %d messages", mtu, n)
		}
	}
}

func TestErrors(t *testing.T) {
	recs := testRecords()
	fail := func(msg []byte) error { t.Error("sent a message"); return nil }

	// 100 bytes hold an IPv4 record (16 + 4+63 padded to 68 = 84), not an
	// IPv6 one (16 + 4+87 padded to 92 = 108).
	e := NewEncoder(Options{MTU: 100})
	if err := e.Encode(testNow, recs, fail); !errors.Is(err, ErrMTU) {
		t.Errorf("IPv6 record in 100 bytes: %v", err)
	}
	var msgs messages
	if err := e.Encode(testNow, recs[:1], msgs.send); err != nil || len(msgs) != 1 || len(msgs[0]) != 84 {
		t.Errorf("IPv4 record in 100 bytes: %v, %d messages", err, len(msgs))
	}
	// 107 bytes: one byte short for the IPv6 record and its padding.
	e = NewEncoder(Options{MTU: 107})
	if err := e.Encode(testNow, recs, fail); !errors.Is(err, ErrMTU) {
		t.Errorf("IPv6 record in 107 bytes: %v", err)
	}
	// The IPv6 template record: 16 + 4+76 = 96.
	e = NewEncoder(Options{MTU: 95})
	if err := e.Templates(testNow, Stats{}, nil, fail); !errors.Is(err, ErrMTU) {
		t.Errorf("templates in 95 bytes: %v", err)
	}
	e = NewEncoder(Options{MTU: 200})
	if err := e.Templates(testNow, Stats{}, []flow.Interface{{Index: 1, Name: strings.Repeat("x", 200)}}, fail); !errors.Is(err, ErrMTU) {
		t.Errorf("long interface name in 200 bytes: %v", err)
	}

	bad := append(testRecords(), flow.Export{})
	if err := NewEncoder(Options{}).Encode(testNow, bad, fail); err == nil || !strings.Contains(err.Error(), "IP version 0") {
		t.Errorf("IP version 0: %v", err)
	}
}

// TestSendError checks that a failed send stops Encode and that the lost
// records do not count in the sequence numbers.
func TestSendError(t *testing.T) {
	var recs []flow.Export
	for range 40 {
		recs = append(recs, flow.Export{Key: flow.Key{IPVersion: 4}})
	}
	e := NewEncoder(Options{MTU: 1000}) // 15 IPv4 records a message
	boom := errors.New("boom")
	calls := 0
	err := e.Encode(testNow, recs, func(msg []byte) error {
		calls++
		if calls == 2 {
			return boom
		}
		return nil
	})
	if err != boom || calls != 2 {
		t.Fatalf("Encode: %v after %d sends", err, calls)
	}
	var msgs messages
	if err := e.Encode(testNow, recs[:1], msgs.send); err != nil {
		t.Fatal(err)
	}
	if h, _ := splitMessage(t, msgs[0]); h.seq != 15 || h.length != 16+68 {
		t.Errorf("after a failed send: sequence %d, length %d; want 15, 84", h.seq, h.length)
	}
}

// TestPaddingZeroed checks that padding is zeroed even where the reused
// buffer held an earlier message's bytes.
func TestPaddingZeroed(t *testing.T) {
	full := testRecords()
	for i := range full {
		full[i].Packets, full[i].Bytes, full[i].StartMs, full[i].EndMs = ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)
	}
	e := NewEncoder(Options{MTU: 1400})
	var msgs messages
	for n := 1; n <= 6; n++ {
		if err := e.Encode(testNow, full, func([]byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if err := e.Encode(testNow, full[:n], msgs.send); err != nil {
			t.Fatal(err)
		}
	}
	for _, msg := range msgs {
		_, sets := splitMessage(t, msg)
		for _, s := range sets {
			if s.id == 256 {
				checkPadding(t, s, 63)
			} else {
				checkPadding(t, s, 87)
			}
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
	e := NewEncoder(Options{ObservationDomain: 1, MTU: 1472})
	total := 0
	send := func(msg []byte) error { total += len(msg); return nil }
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
	e := NewEncoder(Options{ObservationDomain: 1, MTU: 1472})
	send := func(msg []byte) error { return nil }
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
