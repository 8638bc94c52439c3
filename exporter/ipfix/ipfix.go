// Package ipfix encodes xflow's flow records as IPFIX messages (RFC 7011,
// information elements from RFC 7012 and the IANA IPFIX registry).
//
// An Encoder packs records into messages of at most Options.MTU bytes in one
// reused buffer and hands each finished message to a send callback; encoding
// flow records allocates nothing.
//
// # Message layout
//
// Every message is a 16-byte header followed by sets. Four templates are
// used, all announced by Templates:
//
//	256  IPv4 flows           (template set, ID 2)        63-byte records
//	257  IPv6 flows           (template set, ID 2)        87-byte records
//	258  exporting process statistics (options template set, ID 3), 28-byte records
//	259  interface names      (options template set, ID 3), variable-length records
//
// Flow record fields are ordered by size, largest first (addresses, then the
// 8-byte counters and times, then 4-, 2- and 1-byte fields), so that every
// field is naturally aligned relative to the start of its record; the IPv4
// and IPv6 records differ only in their address fields (and in the ICMP
// type/code element) and share the same tail:
//
//	offset IPv4 IPv6  element (IANA ID, length)
//	     0    0       sourceIPv4Address (8, 4)       / sourceIPv6Address (27, 16)
//	     4   16       destinationIPv4Address (12, 4) / destinationIPv6Address (28, 16)
//	     8   32       packetDeltaCount (2, 8)
//	    16   40       octetDeltaCount (1, 8)
//	    24   48       flowStartMilliseconds (152, 8)
//	    32   56       flowEndMilliseconds (153, 8)
//	    40   64       ingressInterface (10, 4)
//	    44   68       egressInterface (14, 4)
//	    48   72       sourceTransportPort (7, 2)
//	    50   74       destinationTransportPort (11, 2)
//	    52   76       icmpTypeCodeIPv4 (32, 2)       / icmpTypeCodeIPv6 (139, 2)
//	    54   78       tcpControlBits (6, 2)
//	    56   80       vlanId (58, 2)
//	    58   82       protocolIdentifier (4, 1)
//	    59   83       ipClassOfService (5, 1)
//	    60   84       flowDirection (61, 1)
//	    61   85       flowEndReason (136, 1)
//	    62   86       ipVersion (60, 1)
//
// Every set is padded with zero octets to a multiple of 4 bytes (RFC 7011
// §3.3.1), so each set header starts 4-byte aligned; the padding (at most 3
// octets) is shorter than the smallest record of any set, and set lengths
// include it. Records are never split across messages.
package ipfix

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/xflow-net/xflow/exporter/internal/setpack"

	"github.com/xflow-net/xflow/flow"
)

// Template IDs. Data sets carry their template's ID as set ID.
const (
	TemplateIPv4       = 256 // IPv4 flow records
	TemplateIPv6       = 257 // IPv6 flow records
	TemplateStats      = 258 // options: exporting process statistics
	TemplateInterfaces = 259 // options: interface names
)

const (
	version              = 10 // IPFIX message header version
	headerLen            = 16 // message header
	setHeaderLen         = 4  // set ID, set length
	templateSetID        = 2
	optionsTemplateSetID = 3
	maxMessageLen        = 65535 // the message header's length field is 16 bits

	// DefaultMTU is the message size used when Options.MTU is not set: it
	// leaves room for IP, UDP and a tunnel header or two within 1500 bytes.
	DefaultMTU = 1400

	ipv4RecordLen  = 63
	ipv6RecordLen  = 87
	statsRecordLen = 28 // observationDomainId + 3 × 8-byte counters
	ifaceFixedLen  = 4  // ingressInterface, before the variable-length name

	varLenField = 65535 // field length announcing a variable-length element
)

// Options configures an Encoder.
type Options struct {
	// ObservationDomain is the observation domain ID of every message.
	ObservationDomain uint32
	// MTU is the largest message in bytes (the UDP datagram's payload); TCP
	// sessions use the same packing. 0 means DefaultMTU; values above 65535
	// are capped to 65535, the most an IPFIX message can hold.
	MTU int
}

// Stats are the exporting process's statistics, sent in the options record
// of template 258.
type Stats = flow.ExportTotals

// ErrMTU is returned (wrapped) when a record cannot fit in a message of
// Options.MTU bytes. Nothing is sent then.
var ErrMTU = errors.New("ipfix: MTU too small for a record")

// Encoder builds the IPFIX messages of one transport session (one
// collector connection) and one observation domain. It is not safe for
// concurrent use.
type Encoder struct {
	setpack.Packer // the message being built: its buffer and sets

	domain uint32
	seq    uint32 // data records sent in this session, mod 2^32

	// The message being built.
	records    uint32 // data records in the message, for the next sequence number
	flows      uint32 // of which flow records
	exportTime uint32

	sent uint64 // flow records in messages that send accepted, this session
}

// NewEncoder returns an encoder for a new transport session.
func NewEncoder(o Options) *Encoder {
	mtu := o.MTU
	switch {
	case mtu <= 0:
		mtu = DefaultMTU
	case mtu > maxMessageLen:
		mtu = maxMessageLen
	}
	e := &Encoder{Packer: setpack.New(mtu, headerLen), domain: o.ObservationDomain}
	e.begin()
	return e
}

// Reset starts a new transport session (a new TCP connection): the sequence
// number restarts at 0. The templates must be sent again.
func (e *Encoder) Reset() {
	e.seq = 0
	e.sent = 0
	e.begin()
}

// Templates encodes the template set (IPv4 and IPv6 flow templates), the
// options template set (exporting process statistics; interface names), and
// the options data records (one statistics record, one interface name record
// per interface), in as many messages as the MTU requires, calling send for
// each. The slice passed to send is only valid during the call.
//
// Options data records count in the sequence numbers; template records do
// not.
func (e *Encoder) Templates(now time.Time, st Stats, ifaces []flow.Interface, send func(msg []byte) error) error {
	// Check that every record fits before sending anything.
	for _, t := range templateRecords {
		if !e.FitsAlone(len(t)) {
			return fmt.Errorf("%w: %d-byte template record in %d-byte messages", ErrMTU, len(t), e.MTU)
		}
	}
	for _, t := range optionsTemplateRecords {
		if !e.FitsAlone(len(t)) {
			return fmt.Errorf("%w: %d-byte options template record in %d-byte messages", ErrMTU, len(t), e.MTU)
		}
	}
	if !e.FitsAlone(statsRecordLen) {
		return fmt.Errorf("%w: %d-byte statistics record in %d-byte messages", ErrMTU, statsRecordLen, e.MTU)
	}
	for i := range ifaces {
		if n := ifaceRecordLen(ifaces[i].Name); !e.FitsAlone(n) {
			return fmt.Errorf("%w: interface %d (%q): %d-byte record in %d-byte messages",
				ErrMTU, ifaces[i].Index, ifaces[i].Name, n, e.MTU)
		}
	}

	e.begin()
	e.exportTime = uint32(now.Unix())
	for _, t := range templateRecords {
		b, err := e.record(templateSetID, len(t), send)
		if err != nil {
			return err
		}
		copy(b, t)
	}
	for _, t := range optionsTemplateRecords {
		b, err := e.record(optionsTemplateSetID, len(t), send)
		if err != nil {
			return err
		}
		copy(b, t)
	}

	b, err := e.record(TemplateStats, statsRecordLen, send)
	if err != nil {
		return err
	}
	be.PutUint32(b[0:], e.domain)
	be.PutUint64(b[4:], st.Messages)
	be.PutUint64(b[12:], st.Records)
	be.PutUint64(b[20:], st.Octets)

	for i := range ifaces {
		ifc := &ifaces[i]
		b, err := e.record(TemplateInterfaces, ifaceRecordLen(ifc.Name), send)
		if err != nil {
			return err
		}
		be.PutUint32(b[0:], ifc.Index)
		putVarLen(b[ifaceFixedLen:], ifc.Name)
	}
	return e.flush(send)
}

// Encode packs records into data sets in messages of at most MTU bytes,
// calling send for each full message and for the last one (none if recs is
// empty). The slice passed to send is only valid during the call.
//
// IPv4 and IPv6 records go in separate sets (templates 256 and 257): the
// IPv4 records are encoded first, then the IPv6 ones, each in their original
// order, so that a message holds at most two sets. A record whose IP version
// is neither 4 nor 6, or a record that cannot fit in a message, is an error
// and then nothing is sent.
//
// If send fails, Encode returns its error at once; the records of the failed
// message and of the rest of recs are dropped and not counted in the
// sequence numbers.
func (e *Encoder) Encode(now time.Time, recs []flow.Export, send func(msg []byte) error) error {
	var n4, n6 int
	for i := range recs {
		switch recs[i].Key.IPVersion {
		case 4:
			n4++
		case 6:
			n6++
		default:
			return fmt.Errorf("ipfix: record %d: IP version %d", i, recs[i].Key.IPVersion)
		}
	}
	if n4 > 0 && !e.FitsAlone(ipv4RecordLen) {
		return fmt.Errorf("%w: %d-byte IPv4 record in %d-byte messages", ErrMTU, ipv4RecordLen, e.MTU)
	}
	if n6 > 0 && !e.FitsAlone(ipv6RecordLen) {
		return fmt.Errorf("%w: %d-byte IPv6 record in %d-byte messages", ErrMTU, ipv6RecordLen, e.MTU)
	}

	e.begin()
	e.exportTime = uint32(now.Unix())
	if err := e.encodeFamily(recs, 4, TemplateIPv4, ipv4RecordLen, n4, send); err != nil {
		return err
	}
	if err := e.encodeFamily(recs, 6, TemplateIPv6, ipv6RecordLen, n6, send); err != nil {
		return err
	}
	return e.flush(send)
}

// encodeFamily writes the n records of IP version v in recs, in their
// order, into sets with template id, recLen bytes each.
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
				putIPv4(b, r)
			} else {
				putIPv6(b, r)
			}
			e.N += recLen
			e.records++
			e.flows++
			room--
			n--
		}
	}
	return nil
}

var be = binary.BigEndian

// putIPv4 writes r as a template 256 record: b holds ipv4RecordLen bytes.
func putIPv4(b []byte, r *flow.Export) {
	b = b[:ipv4RecordLen]
	copy(b[0:4], r.Key.Src[12:16]) // IPv4 is held v4-mapped: ::ffff:a.b.c.d
	copy(b[4:8], r.Key.Dst[12:16])
	putTail(b[8:], r)
}

// putIPv6 writes r as a template 257 record: b holds ipv6RecordLen bytes.
func putIPv6(b []byte, r *flow.Export) {
	b = b[:ipv6RecordLen]
	copy(b[0:16], r.Key.Src[:])
	copy(b[16:32], r.Key.Dst[:])
	putTail(b[32:], r)
}

// tailLen is the length of the fields after the addresses, common to both
// flow templates.
const tailLen = 55

// putTail writes the fields that follow the addresses in both flow
// templates.
func putTail(b []byte, r *flow.Export) {
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
	// ICMP flows hold type<<8|code in DstPort. As in NetFlow, collectors
	// expect it in destinationTransportPort too, with a zero source port;
	// it also goes in icmpTypeCodeIPv4/IPv6, which is 0 for other flows.
	sport, dport, icmp := k.SrcPort, k.DstPort, uint16(0)
	if k.IsICMP() {
		sport, icmp = 0, k.DstPort
	}
	var flags uint16
	if k.Proto == 6 { // TCP
		flags = r.TCPFlags
	}

	be.PutUint64(b[0:], r.Packets)
	be.PutUint64(b[8:], r.Bytes)
	be.PutUint64(b[16:], r.StartMs)
	be.PutUint64(b[24:], r.EndMs)
	be.PutUint32(b[32:], in)
	be.PutUint32(b[36:], out)
	be.PutUint16(b[40:], sport)
	be.PutUint16(b[42:], dport)
	be.PutUint16(b[44:], icmp)
	be.PutUint16(b[46:], flags)
	be.PutUint16(b[48:], k.VLAN)
	b[50] = k.Proto
	b[51] = r.TOS
	b[52] = uint8(k.Direction)
	b[53] = uint8(r.EndReason)
	b[54] = k.IPVersion
}

// ifaceRecordLen is the length of a template 259 record naming name.
func ifaceRecordLen(name string) int {
	return ifaceFixedLen + varLenPrefix(len(name)) + len(name)
}

// varLenPrefix is the length of the length prefix of an n-byte
// variable-length field (RFC 7011 §7): one byte below 255, else 255 and two
// bytes.
func varLenPrefix(n int) int {
	if n < 255 {
		return 1
	}
	return 3
}

// putVarLen writes s as a variable-length field (RFC 7011 §7) at the start
// of b.
func putVarLen(b []byte, s string) {
	if len(s) < 255 {
		b[0] = uint8(len(s))
		copy(b[1:], s)
		return
	}
	b[0] = 255
	be.PutUint16(b[1:], uint16(len(s)))
	copy(b[3:], s)
}

// begin starts a new, empty message.
func (e *Encoder) begin() {
	e.Packer.Reset()
	e.records = 0
	e.flows = 0
}

// room opens a set with ID id in the current message, or continues the
// open one, and returns how many n-byte records fit in it (at least one),
// sending the current message first if none does.
func (e *Encoder) room(id uint16, n int, send func([]byte) error) (int, error) {
	return e.Room(id, n, func() error { return e.flush(send) }, ErrMTU)
}

// record reserves n bytes for a record in a set with ID id, sending the
// current message first if the record does not fit in it, and returns them
// for the caller to fill.
func (e *Encoder) record(id uint16, n int, send func([]byte) error) ([]byte, error) {
	if _, err := e.room(id, n, send); err != nil {
		return nil, err
	}
	b := e.Buf[e.N : e.N+n]
	e.N += n
	if id >= TemplateIPv4 {
		e.records++
	}
	return b, nil
}

// flush completes the current message, if it holds any set, and sends it.
// The sequence number advances by its data records if send succeeds.
func (e *Encoder) flush(send func([]byte) error) error {
	e.CloseSet()
	if e.Empty() {
		return nil
	}
	h := e.Buf[:headerLen]
	be.PutUint16(h[0:], version)
	be.PutUint16(h[2:], uint16(e.N))
	be.PutUint32(h[4:], e.exportTime)
	be.PutUint32(h[8:], e.seq)
	be.PutUint32(h[12:], e.domain)
	err := send(e.Buf[:e.N])
	if err == nil {
		e.seq += e.records
		e.sent += uint64(e.flows)
	}
	e.begin()
	return err
}

// Sent is the number of flow records in messages that send accepted since
// the session started: after a failed Encode, what did go out.
func (e *Encoder) Sent() uint64 { return e.sent }

// Unexportable is 0: IPFIX carries every record.
func (e *Encoder) Unexportable() uint64 { return 0 }

// field is a field specifier: an IANA information element and its length.
type field struct{ id, length uint16 }

// The templates' records, as sent in template and options template sets.
var (
	templateRecords = [][]byte{
		templateRecord(TemplateIPv4, 0,
			field{8, 4},   // sourceIPv4Address
			field{12, 4},  // destinationIPv4Address
			field{2, 8},   // packetDeltaCount
			field{1, 8},   // octetDeltaCount
			field{152, 8}, // flowStartMilliseconds
			field{153, 8}, // flowEndMilliseconds
			field{10, 4},  // ingressInterface
			field{14, 4},  // egressInterface
			field{7, 2},   // sourceTransportPort
			field{11, 2},  // destinationTransportPort
			field{32, 2},  // icmpTypeCodeIPv4
			field{6, 2},   // tcpControlBits
			field{58, 2},  // vlanId
			field{4, 1},   // protocolIdentifier
			field{5, 1},   // ipClassOfService
			field{61, 1},  // flowDirection
			field{136, 1}, // flowEndReason
			field{60, 1}), // ipVersion
		templateRecord(TemplateIPv6, 0,
			field{27, 16}, // sourceIPv6Address
			field{28, 16}, // destinationIPv6Address
			field{2, 8},   // packetDeltaCount
			field{1, 8},   // octetDeltaCount
			field{152, 8}, // flowStartMilliseconds
			field{153, 8}, // flowEndMilliseconds
			field{10, 4},  // ingressInterface
			field{14, 4},  // egressInterface
			field{7, 2},   // sourceTransportPort
			field{11, 2},  // destinationTransportPort
			field{139, 2}, // icmpTypeCodeIPv6
			field{6, 2},   // tcpControlBits
			field{58, 2},  // vlanId
			field{4, 1},   // protocolIdentifier
			field{5, 1},   // ipClassOfService
			field{61, 1},  // flowDirection
			field{136, 1}, // flowEndReason
			field{60, 1}), // ipVersion
	}
	optionsTemplateRecords = [][]byte{
		templateRecord(TemplateStats, 1,
			field{149, 4}, // scope: observationDomainId
			field{41, 8},  // exportedMessageTotalCount
			field{42, 8},  // exportedFlowRecordTotalCount
			field{40, 8}), // exportedOctetTotalCount
		templateRecord(TemplateInterfaces, 1,
			field{10, 4},            // scope: ingressInterface (the ifindex)
			field{82, varLenField}), // interfaceName
	}
)

// templateRecord encodes a template record (RFC 7011 §3.4.1), or an options
// template record (§3.4.2.2) if scope, the number of scope fields, which
// come first, is not 0.
func templateRecord(id uint16, scope int, fields ...field) []byte {
	var b []byte
	b = be.AppendUint16(b, id)
	b = be.AppendUint16(b, uint16(len(fields)))
	if scope > 0 {
		b = be.AppendUint16(b, uint16(scope))
	}
	for _, f := range fields {
		b = be.AppendUint16(b, f.id)
		b = be.AppendUint16(b, f.length)
	}
	return b
}
