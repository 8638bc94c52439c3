// Package netflow9 encodes xflow's flow records as NetFlow version 9 export
// packets (RFC 3954; field types from RFC 3954 §8 and Cisco's NetFlow v9
// field type list).
//
// An Encoder packs records into packets of at most Options.MTU bytes in one
// reused buffer and hands each finished packet to a send callback; encoding
// flow records allocates nothing.
//
// # Packet layout
//
// Every packet is a 20-byte header followed by FlowSets. Four templates are
// used, all announced by Templates:
//
//	256  IPv4 flows           (template FlowSet, ID 0)          54-byte records
//	257  IPv6 flows           (template FlowSet, ID 0)          78-byte records
//	258  exporter statistics  (options template FlowSet, ID 1), 28-byte records
//	259  interface names      (options template FlowSet, ID 1), 72-byte records
//
// The header's count is the number of records of every kind in the packet:
// template and options template records as well as flow and options data
// records (RFC 3954 §5.1; a collector may stop reading a packet at that
// count, goflow2 reads at most that many FlowSets). Its sequence number
// counts the packets sent before it in the session, whatever they hold (RFC
// 3954 §5.1).
//
// Flow record fields are ordered by size, largest first, as in the IPFIX
// encoder, so that every field is naturally aligned relative to the start
// of its record; the IPv4 and IPv6 records differ only in their address
// fields and share the same tail:
//
//	offset IPv4 IPv6  field type (ID, length)
//	     0    0       IPV4_SRC_ADDR (8, 4)  / IPV6_SRC_ADDR (27, 16)
//	     4   16       IPV4_DST_ADDR (12, 4) / IPV6_DST_ADDR (28, 16)
//	     8   32       IN_PKTS (2, 8)
//	    16   40       IN_BYTES (1, 8)
//	    24   48       FIRST_SWITCHED (22, 4)
//	    28   52       LAST_SWITCHED (21, 4)
//	    32   56       INPUT_SNMP (10, 4)
//	    36   60       OUTPUT_SNMP (14, 4)
//	    40   64       L4_SRC_PORT (7, 2)
//	    42   66       L4_DST_PORT (11, 2)
//	    44   68       ICMP_TYPE (32, 2)
//	    46   70       SRC_VLAN (58, 2)
//	    48   72       PROTOCOL (4, 1)
//	    49   73       SRC_TOS (5, 1)
//	    50   74       TCP_FLAGS (6, 1)
//	    51   75       DIRECTION (61, 1)
//	    52   76       flowEndReason (136, 1)
//	    53   77       IP_PROTOCOL_VERSION (60, 1)
//
// ICMP_TYPE (32) holds type<<8|code for ICMP and ICMPv6 flows alike, and 0
// for other flows: RFC 3954 has no ICMPv6 field of its own (139, IPFIX's
// icmpTypeCodeIPv6, is not in its list), and nfdump, goflow2 and Wireshark
// read 32 as the type and code whatever the IP version. flowEndReason (136)
// is an IPFIX element beyond RFC 3954's list: nfdump and Wireshark know it
// in v9 too, and goflow2, like any template-driven collector, reads every
// field of a template by its length, whether it knows it or not. TCP_FLAGS
// is one byte, as in RFC 3954: the NS flag (0x100) of the record's 9 flags
// does not fit and is dropped.
//
// The options templates have one scope field, System (1, 4), holding the
// source ID, as Cisco exporters do. Statistics (258): TOTAL_PKTS_EXP (41, 8),
// TOTAL_FLOWS_EXP (42, 8), TOTAL_BYTES_EXP (40, 8), the packets, flow
// records and bytes sent to the collector so far. Interface names (259):
// INPUT_SNMP (10, 4), the ifindex, then the name twice, in IF_NAME (82, 32)
// and IF_DESC (83, 32), zero-padded: v9 has no variable-length fields, Linux
// has one name per interface, nfdump reads the name from IF_DESC only (with
// INPUT_SNMP, as Cisco IOS XR sends it), and other collectors show IF_NAME
// (Cisco IOS XE sends both). A name longer than 31 bytes is cut at a UTF-8
// character boundary, so that it always ends in a zero byte (nfdump
// overwrites the last byte of the field with one).
//
// Every FlowSet is padded with zero octets to a multiple of 4 bytes (RFC
// 3954 §5.3), so each FlowSet header starts 4-byte aligned; the padding (at
// most 3 octets) is shorter than the smallest record of any FlowSet, and
// FlowSet lengths include it. Records are never split across packets.
//
// # Times
//
// FIRST_SWITCHED and LAST_SWITCHED are milliseconds of system uptime, taken
// modulo 2^32 like sysUpTime: StartMs and EndMs minus Options.Boot in ms. A
// collector finds a record's wall-clock time as
//
//	unix_secs*1000 - (sysUpTime - FIRST_SWITCHED)
//
// The header has UNIX seconds only, so sysUpTime is computed from the
// packet's time rounded up to the next whole second: then unix_secs*1000 -
// sysUpTime is Boot exactly and the collector gets StartMs and EndMs back to
// the millisecond. (With sysUpTime taken at the exact time, the collector's
// times would all come out early by the time's fraction of a second, up to
// 999 ms.) Rounding up rather than down keeps every FIRST/LAST_SWITCHED at
// or before sysUpTime, so the subtraction above never goes negative,
// whatever width a collector computes it in; the header's time is then up
// to 999 ms ahead.
//
// As with any NetFlow v9 exporter, the uptimes wrap every 2^32 ms (49.7
// days). Computed modulo 2^32 as above, a time within 24.8 days of the
// packet's comes out exact. nfdump and goflow2 do not compute modulo 2^32:
// they are exact while sysUpTime has not wrapped since the record's time; a
// flow that started before Boot (with the default Boot, before the encoder
// was created) comes out 2^32 ms late there.
package netflow9

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/xflow-net/xflow/exporter/internal/setpack"

	"github.com/xflow-net/xflow/flow"
)

// Template IDs. Data FlowSets carry their template's ID as FlowSet ID.
const (
	TemplateIPv4       = 256 // IPv4 flow records
	TemplateIPv6       = 257 // IPv6 flow records
	TemplateStats      = 258 // options: exporter statistics
	TemplateInterfaces = 259 // options: interface names
)

const (
	version                  = 9  // NetFlow v9 packet header version
	headerLen                = 20 // packet header
	setHeaderLen             = 4  // FlowSet ID, FlowSet length
	templateFlowSetID        = 0
	optionsTemplateFlowSetID = 1
	maxPacketLen             = 65535 // FlowSet lengths are 16 bits

	// DefaultMTU is the packet size used when Options.MTU is not set: it
	// leaves room for IP, UDP and a tunnel header or two within 1500 bytes.
	DefaultMTU = 1400

	ipv4RecordLen  = 54
	ipv6RecordLen  = 78
	statsRecordLen = 28 // System scope + 3 × 8-byte counters
	ifaceRecordLen = 72 // System scope, INPUT_SNMP, IF_NAME, IF_DESC

	// NameLen is the length of the IF_NAME and IF_DESC fields: a name of up
	// to NameLen-1 bytes, then zeros.
	NameLen = 32

	scopeSystem = 1 // option scope field type System (RFC 3954 §6.1)
)

// Options configures an Encoder.
type Options struct {
	// SourceID is the source ID of every packet (RFC 3954 §5.1): it tells
	// apart the exporters (observation domains) behind one address.
	SourceID uint32
	// MTU is the largest packet in bytes (the UDP datagram's payload). 0
	// means DefaultMTU; values above 65535 are capped to 65535, since
	// FlowSet lengths are 16 bits.
	MTU int
	// Boot is the time of the system's boot, from which sysUpTime,
	// FIRST_SWITCHED and LAST_SWITCHED count: time.Now() minus
	// CLOCK_MONOTONIC. The zero Time means the encoder's creation time, which
	// makes the times of flows that started before it wrap around 2^32 ms.
	Boot time.Time
}

// Stats are the exporter's statistics, sent in the options record of
// template 258.
type Stats = flow.ExportTotals

// ErrMTU is returned (wrapped) when a record cannot fit in a packet of
// Options.MTU bytes. Nothing is sent then.
var ErrMTU = errors.New("netflow9: MTU too small for a record")

// Encoder builds the NetFlow v9 packets of one transport session and one
// source ID. It is not safe for concurrent use.
type Encoder struct {
	setpack.Packer // the packet being built: its buffer and FlowSets

	source uint32
	boot   int64  // Options.Boot, ms since the Unix epoch
	boot32 uint32 // the same, mod 2^32: FIRST_SWITCHED = StartMs - boot32
	seq    uint32 // packets sent in this session, mod 2^32

	// The packet being built.
	count    uint16 // records of every kind, for the header's count
	flows    uint32 // of which flow records
	unixSecs uint32
	uptime   uint32

	sent uint64 // flow records in packets that send accepted, this session
}

// NewEncoder returns an encoder for a new transport session.
func NewEncoder(o Options) *Encoder {
	mtu := o.MTU
	switch {
	case mtu <= 0:
		mtu = DefaultMTU
	case mtu > maxPacketLen:
		mtu = maxPacketLen
	}
	boot := o.Boot
	if boot.IsZero() {
		boot = time.Now()
	}
	e := &Encoder{Packer: setpack.New(mtu, headerLen), source: o.SourceID}
	e.boot = boot.UnixMilli()
	e.boot32 = uint32(e.boot)
	e.begin()
	return e
}

// Reset starts a new transport session: the sequence number restarts at 0.
// The templates must be sent again.
func (e *Encoder) Reset() {
	e.seq = 0
	e.sent = 0
	e.begin()
}

// Templates encodes the template FlowSet (IPv4 and IPv6 flow templates), the
// options template FlowSet (exporter statistics; interface names), and the
// options data records (one statistics record, one interface name record per
// interface), in as many packets as the MTU requires, calling send for each.
// The slice passed to send is only valid during the call.
func (e *Encoder) Templates(now time.Time, st Stats, ifaces []flow.Interface, send func(msg []byte) error) error {
	// Check that every record fits before sending anything.
	for _, t := range templateRecords {
		if !e.FitsAlone(len(t)) {
			return fmt.Errorf("%w: %d-byte template record in %d-byte packets", ErrMTU, len(t), e.MTU)
		}
	}
	for _, t := range optionsTemplateRecords {
		if !e.FitsAlone(len(t)) {
			return fmt.Errorf("%w: %d-byte options template record in %d-byte packets", ErrMTU, len(t), e.MTU)
		}
	}
	if !e.FitsAlone(statsRecordLen) {
		return fmt.Errorf("%w: %d-byte statistics record in %d-byte packets", ErrMTU, statsRecordLen, e.MTU)
	}
	if len(ifaces) > 0 && !e.FitsAlone(ifaceRecordLen) {
		return fmt.Errorf("%w: %d-byte interface record in %d-byte packets", ErrMTU, ifaceRecordLen, e.MTU)
	}

	e.begin()
	e.setTime(now)
	for _, t := range templateRecords {
		b, err := e.record(templateFlowSetID, len(t), send)
		if err != nil {
			return err
		}
		copy(b, t)
	}
	for _, t := range optionsTemplateRecords {
		b, err := e.record(optionsTemplateFlowSetID, len(t), send)
		if err != nil {
			return err
		}
		copy(b, t)
	}

	b, err := e.record(TemplateStats, statsRecordLen, send)
	if err != nil {
		return err
	}
	be.PutUint32(b[0:], e.source)
	be.PutUint64(b[4:], st.Messages)
	be.PutUint64(b[12:], st.Records)
	be.PutUint64(b[20:], st.Octets)

	for i := range ifaces {
		ifc := &ifaces[i]
		b, err := e.record(TemplateInterfaces, ifaceRecordLen, send)
		if err != nil {
			return err
		}
		be.PutUint32(b[0:], e.source)
		be.PutUint32(b[4:], ifc.Index)
		putName(b[8:8+NameLen], ifc.Name)
		putName(b[8+NameLen:8+2*NameLen], ifc.Name)
	}
	return e.flush(send)
}

// putName writes name into b zero-padded, cut to at most len(b)-1 bytes at a
// UTF-8 character boundary so that at least one zero byte ends it.
func putName(b []byte, name string) {
	if len(name) >= len(b) {
		k := len(b) - 1
		for k > 0 && !utf8.RuneStart(name[k]) {
			k-- // name[k], the first byte cut off, continues a character: cut it all
		}
		name = name[:k]
	}
	clear(b[copy(b, name):])
}

// Encode packs records into data FlowSets in packets of at most MTU bytes,
// calling send for each full packet and for the last one (none if recs is
// empty). The slice passed to send is only valid during the call.
//
// IPv4 and IPv6 records go in separate FlowSets (templates 256 and 257): the
// IPv4 records are encoded first, then the IPv6 ones, each in their original
// order, so that a packet holds at most two FlowSets. A record whose IP
// version is neither 4 nor 6, or a record that cannot fit in a packet, is an
// error and then nothing is sent.
//
// If send fails, Encode returns its error at once; the records of the failed
// packet and of the rest of recs are dropped, and the failed packet does not
// count in the sequence numbers.
func (e *Encoder) Encode(now time.Time, recs []flow.Export, send func(msg []byte) error) error {
	var n4, n6 int
	for i := range recs {
		switch recs[i].Key.IPVersion {
		case 4:
			n4++
		case 6:
			n6++
		default:
			return fmt.Errorf("netflow9: record %d: IP version %d", i, recs[i].Key.IPVersion)
		}
	}
	if n4 > 0 && !e.FitsAlone(ipv4RecordLen) {
		return fmt.Errorf("%w: %d-byte IPv4 record in %d-byte packets", ErrMTU, ipv4RecordLen, e.MTU)
	}
	if n6 > 0 && !e.FitsAlone(ipv6RecordLen) {
		return fmt.Errorf("%w: %d-byte IPv6 record in %d-byte packets", ErrMTU, ipv6RecordLen, e.MTU)
	}

	e.begin()
	e.setTime(now)
	if err := e.encodeFamily(recs, 4, TemplateIPv4, ipv4RecordLen, n4, send); err != nil {
		return err
	}
	if err := e.encodeFamily(recs, 6, TemplateIPv6, ipv6RecordLen, n6, send); err != nil {
		return err
	}
	return e.flush(send)
}

// encodeFamily writes the n records of IP version v in recs, in their
// order, into FlowSets with template id, recLen bytes each.
func (e *Encoder) encodeFamily(recs []flow.Export, v uint8, id uint16, recLen, n int, send func([]byte) error) error {
	for i := 0; n > 0; {
		room, err := e.room(id, recLen, send)
		if err != nil {
			return err
		}
		for ; room > 0 && n > 0; i++ {
			r := &recs[i]
			if r.Key.IPVersion != v {
				continue
			}
			b := e.Buf[e.N : e.N+recLen]
			if v == 4 {
				e.putIPv4(b, r)
			} else {
				e.putIPv6(b, r)
			}
			e.N += recLen
			e.count++
			e.flows++
			room--
			n--
		}
	}
	return nil
}

// setTime sets the header times of the packets to come: now's UNIX seconds,
// and the uptime at that whole second, so that unix_secs*1000 - sysUpTime is
// Boot to the millisecond (see the package documentation).
func (e *Encoder) setTime(now time.Time) {
	secs := now.Unix()
	if now.Nanosecond() != 0 {
		secs++ // rounded up: see the package doc
	}
	e.unixSecs = uint32(secs)
	e.uptime = uint32(secs*1000 - e.boot)
}

var be = binary.BigEndian

// putIPv4 writes r as a template 256 record: b holds ipv4RecordLen bytes.
func (e *Encoder) putIPv4(b []byte, r *flow.Export) {
	b = b[:ipv4RecordLen]
	copy(b[0:4], r.Key.Src[12:16]) // IPv4 is held v4-mapped: ::ffff:a.b.c.d
	copy(b[4:8], r.Key.Dst[12:16])
	e.putTail(b[8:], r)
}

// putIPv6 writes r as a template 257 record: b holds ipv6RecordLen bytes.
func (e *Encoder) putIPv6(b []byte, r *flow.Export) {
	b = b[:ipv6RecordLen]
	copy(b[0:16], r.Key.Src[:])
	copy(b[16:32], r.Key.Dst[:])
	e.putTail(b[32:], r)
}

// tailLen is the length of the fields after the addresses, common to both
// flow templates.
const tailLen = 46

// putTail writes the fields that follow the addresses in both flow
// templates.
func (e *Encoder) putTail(b []byte, r *flow.Export) {
	b = b[:tailLen] // one bounds check for all the writes below
	k := &r.Key

	// Interfaces: the flow's ifindex is the interface it was seen entering
	// (ingress) or leaving (egress).
	var in, out uint32
	switch k.Direction {
	case flow.Ingress:
		in = k.IfIndex
	case flow.Egress:
		out = k.IfIndex
	}
	// ICMP flows hold type<<8|code in DstPort. Collectors expect it in
	// L4_DST_PORT, with a zero source port, and in ICMP_TYPE, which is 0
	// for other flows.
	sport, dport, icmp := k.SrcPort, k.DstPort, uint16(0)
	if k.IsICMP() {
		sport, icmp = 0, k.DstPort
	}
	var flags uint8
	if k.Proto == 6 { // TCP
		flags = uint8(r.TCPFlags) // CWR..FIN; NS does not fit
	}

	be.PutUint64(b[0:], r.Packets)
	be.PutUint64(b[8:], r.Bytes)
	be.PutUint32(b[16:], uint32(r.StartMs)-e.boot32) // mod 2^32, as sysUpTime
	be.PutUint32(b[20:], uint32(r.EndMs)-e.boot32)
	be.PutUint32(b[24:], in)
	be.PutUint32(b[28:], out)
	be.PutUint16(b[32:], sport)
	be.PutUint16(b[34:], dport)
	be.PutUint16(b[36:], icmp)
	be.PutUint16(b[38:], k.VLAN)
	b[40] = k.Proto
	b[41] = r.TOS
	b[42] = flags
	b[43] = uint8(k.Direction)
	b[44] = uint8(r.EndReason)
	b[45] = k.IPVersion
}

// begin starts a new, empty packet.
func (e *Encoder) begin() {
	e.Packer.Reset()
	e.count = 0
	e.flows = 0
}

// room opens a FlowSet with ID id in the current packet, or continues the
// open one, and returns how many n-byte records fit in it (at least one),
// sending the current packet first if none does.
func (e *Encoder) room(id uint16, n int, send func([]byte) error) (int, error) {
	return e.Room(id, n, func() error { return e.flush(send) }, ErrMTU)
}

// record reserves n bytes for a record in a FlowSet with ID id, sending the
// current packet first if the record does not fit in it, and returns them
// for the caller to fill.
func (e *Encoder) record(id uint16, n int, send func([]byte) error) ([]byte, error) {
	if _, err := e.room(id, n, send); err != nil {
		return nil, err
	}
	b := e.Buf[e.N : e.N+n]
	e.N += n
	e.count++ // template records count too
	return b, nil
}

// flush completes the current packet, if it holds any FlowSet, and sends
// it. The sequence number advances by one if send succeeds.
func (e *Encoder) flush(send func([]byte) error) error {
	e.CloseSet()
	if e.Empty() {
		return nil
	}
	h := e.Buf[:headerLen]
	be.PutUint16(h[0:], version)
	be.PutUint16(h[2:], e.count)
	be.PutUint32(h[4:], e.uptime)
	be.PutUint32(h[8:], e.unixSecs)
	be.PutUint32(h[12:], e.seq)
	be.PutUint32(h[16:], e.source)
	err := send(e.Buf[:e.N])
	if err == nil {
		e.seq++
		e.sent += uint64(e.flows)
	}
	e.begin()
	return err
}

// Sent is the number of flow records in packets that send accepted since
// the session started: after a failed Encode, what did go out.
func (e *Encoder) Sent() uint64 { return e.sent }

// Unexportable is 0: NetFlow v9 carries every record.
func (e *Encoder) Unexportable() uint64 { return 0 }

// field is a field specifier: a field type and its length.
type field struct{ typ, length uint16 }

// The templates' records, as sent in template and options template
// FlowSets.
var (
	templateRecords = [][]byte{
		templateRecord(TemplateIPv4,
			field{8, 4},   // IPV4_SRC_ADDR
			field{12, 4},  // IPV4_DST_ADDR
			field{2, 8},   // IN_PKTS
			field{1, 8},   // IN_BYTES
			field{22, 4},  // FIRST_SWITCHED
			field{21, 4},  // LAST_SWITCHED
			field{10, 4},  // INPUT_SNMP
			field{14, 4},  // OUTPUT_SNMP
			field{7, 2},   // L4_SRC_PORT
			field{11, 2},  // L4_DST_PORT
			field{32, 2},  // ICMP_TYPE
			field{58, 2},  // SRC_VLAN
			field{4, 1},   // PROTOCOL
			field{5, 1},   // SRC_TOS
			field{6, 1},   // TCP_FLAGS
			field{61, 1},  // DIRECTION
			field{136, 1}, // flowEndReason
			field{60, 1}), // IP_PROTOCOL_VERSION
		templateRecord(TemplateIPv6,
			field{27, 16}, // IPV6_SRC_ADDR
			field{28, 16}, // IPV6_DST_ADDR
			field{2, 8},   // IN_PKTS
			field{1, 8},   // IN_BYTES
			field{22, 4},  // FIRST_SWITCHED
			field{21, 4},  // LAST_SWITCHED
			field{10, 4},  // INPUT_SNMP
			field{14, 4},  // OUTPUT_SNMP
			field{7, 2},   // L4_SRC_PORT
			field{11, 2},  // L4_DST_PORT
			field{32, 2},  // ICMP_TYPE (ICMPv6 type and code)
			field{58, 2},  // SRC_VLAN
			field{4, 1},   // PROTOCOL
			field{5, 1},   // SRC_TOS
			field{6, 1},   // TCP_FLAGS
			field{61, 1},  // DIRECTION
			field{136, 1}, // flowEndReason
			field{60, 1}), // IP_PROTOCOL_VERSION
	}
	optionsTemplateRecords = [][]byte{
		optionsTemplateRecord(TemplateStats,
			[]field{{scopeSystem, 4}}, // the source ID
			field{41, 8},              // TOTAL_PKTS_EXP
			field{42, 8},              // TOTAL_FLOWS_EXP
			field{40, 8}),             // TOTAL_BYTES_EXP
		optionsTemplateRecord(TemplateInterfaces,
			[]field{{scopeSystem, 4}}, // the source ID
			field{10, 4},              // INPUT_SNMP (the ifindex)
			field{82, NameLen},        // IF_NAME
			field{83, NameLen}),       // IF_DESC
	}
)

// templateRecord encodes a template record (RFC 3954 §5.2).
func templateRecord(id uint16, fields ...field) []byte {
	var b []byte
	b = be.AppendUint16(b, id)
	b = be.AppendUint16(b, uint16(len(fields)))
	for _, f := range fields {
		b = be.AppendUint16(b, f.typ)
		b = be.AppendUint16(b, f.length)
	}
	return b
}

// optionsTemplateRecord encodes an options template record (RFC 3954
// §6.1): the lengths in bytes of the scope and option field specifiers,
// then the specifiers.
func optionsTemplateRecord(id uint16, scopes []field, fields ...field) []byte {
	var b []byte
	b = be.AppendUint16(b, id)
	b = be.AppendUint16(b, uint16(4*len(scopes)))
	b = be.AppendUint16(b, uint16(4*len(fields)))
	for _, fs := range [][]field{scopes, fields} {
		for _, f := range fs {
			b = be.AppendUint16(b, f.typ)
			b = be.AppendUint16(b, f.length)
		}
	}
	return b
}
