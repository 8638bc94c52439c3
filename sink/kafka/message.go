package kafka

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	flowpb "github.com/netsampler/goflow2/v2/pb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/xflow-net/xflow/flow"
)

// Fields xflow knows that goflow2's FlowMessage has no field for travel as
// custom fields, the way goflow2's own mapping adds fields (its
// formatter.protobuf section): protobuf field numbers above 1000, kept by
// any FlowMessage decoder as unknown fields. A goflow2 consumer reads them
// with
//
//	formatter:
//	  protobuf:
//	    - {name: flow_direction,  index: 1100, type: varint}
//	    - {name: flow_end_reason, index: 1101, type: varint}
//	    - {name: in_if_name,      index: 1102, type: string}
//	    - {name: out_if_name,     index: 1103, type: string}
//
// and docs/kafka.md gives the ClickHouse schema with them.
const (
	FieldFlowDirection = 1100 // IPFIX flowDirection: 0 ingress, 1 egress
	FieldFlowEndReason = 1101 // IPFIX flowEndReason (flow.EndReason)
	FieldInIfName      = 1102 // name of in_if
	FieldOutIfName     = 1103 // name of out_if
)

// fill sets m to the FlowMessage of rec: what goflow2 itself produces from
// the same record received as IPFIX from xflow (exporter/ipfix), so that a
// pipeline sees the same values whichever way the flows arrive:
//
//   - type IPFIX; observation_domain_id; sequence_num counts the records
//     of this destination before this one (mod 2^32), as IPFIX does;
//   - sampler_address: the exporter's address, if known (4 or 16 bytes);
//   - sampling_rate: the rate the record's packets were sampled at (its
//     flow.Sampling, as IPFIX's samplingPacketInterval/Space carry it);
//     Options.SamplingRate for records that carry none, 1 by default;
//   - time_received_ns: when the record was encoded; time_flow_start_ns
//     and time_flow_end_ns: the record's first and last packet (ms
//     resolution);
//   - src_addr/dst_addr 4 or 16 bytes, etype 0x800 or 0x86dd, proto;
//   - ports; for ICMP src_port 0, dst_port type<<8|code and icmp_type,
//     icmp_code (IPFIX carries it in destinationTransportPort and
//     icmpTypeCode, and goflow2 maps both);
//   - in_if for ingress, out_if for egress (and their names, custom);
//   - vlan_id and src_vlan (goflow2 maps IPFIX vlanId to both);
//   - ip_tos, tcp_flags, bytes, packets.
func (e *encoder) fill(m *flowpb.FlowMessage, rec *flow.Export, seq uint32, nowNs uint64) {
	k := &rec.Key
	*m = flowpb.FlowMessage{
		Type:                flowpb.FlowMessage_IPFIX,
		TimeReceivedNs:      nowNs,
		SequenceNum:         seq,
		SamplingRate:        e.rate(rec.Sampling),
		SamplerAddress:      e.sampler,
		TimeFlowStartNs:     rec.StartMs * 1e6,
		TimeFlowEndNs:       rec.EndMs * 1e6,
		Bytes:               rec.Bytes,
		Packets:             rec.Packets,
		Proto:               uint32(k.Proto),
		SrcPort:             uint32(k.SrcPort),
		DstPort:             uint32(k.DstPort),
		VlanId:              uint32(k.VLAN),
		SrcVlan:             uint32(k.VLAN),
		IpTos:               uint32(rec.TOS),
		TcpFlags:            uint32(rec.TCPFlags),
		ObservationDomainId: e.domain,
	}
	if k.IPVersion == 4 {
		m.Etype = 0x800
		m.SrcAddr, m.DstAddr = e.slab4(k.Src), e.slab4(k.Dst)
	} else {
		m.Etype = 0x86dd
		m.SrcAddr, m.DstAddr = e.slab16(k.Src), e.slab16(k.Dst)
	}
	if k.IsICMP() {
		m.SrcPort = 0
		m.IcmpType, m.IcmpCode = uint32(k.DstPort>>8), uint32(k.DstPort&0xff)
	}
	if k.Direction == flow.Egress {
		m.OutIf = k.IfIndex
	} else {
		m.InIf = k.IfIndex
	}
}

// custom appends the custom fields of rec in protobuf wire format.
func (e *encoder) custom(b []byte, rec *flow.Export) []byte {
	k := &rec.Key
	if k.Direction != 0 {
		b = protowire.AppendTag(b, FieldFlowDirection, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(k.Direction))
	}
	if rec.EndReason != 0 {
		b = protowire.AppendTag(b, FieldFlowEndReason, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(rec.EndReason))
	}
	if name := e.ifNames[k.IfIndex]; name != "" {
		f := protowire.Number(FieldInIfName)
		if k.Direction == flow.Egress {
			f = FieldOutIfName
		}
		b = protowire.AppendTag(b, f, protowire.BytesType)
		b = protowire.AppendString(b, name)
	}
	return b
}

// encoder turns records into Kafka record values. Not safe for concurrent
// use.
type encoder struct {
	json         bool
	domain       uint32
	samplingRate uint64
	sampler      []byte
	ifNames      map[uint32]string

	msg     flowpb.FlowMessage
	addrs   []byte // slab the message's addresses point into, reset per record
	scratch []byte
	mo      proto.MarshalOptions
}

// rate is a record's sampling rate: its own if it was sampled, else the
// destination's.
func (e *encoder) rate(s flow.Sampling) uint64 {
	if s != 0 {
		return uint64(s.Rate())
	}
	return e.samplingRate
}

func newEncoder(format string, domain uint32, samplingRate uint64, sampler netip.Addr, ifaces []flow.Interface) *encoder {
	e := &encoder{json: format == "json", domain: domain, samplingRate: samplingRate,
		ifNames: map[uint32]string{}, mo: proto.MarshalOptions{UseCachedSize: true}}
	if e.samplingRate == 0 {
		e.samplingRate = 1
	}
	if sampler.IsValid() {
		e.sampler = sampler.Unmap().AsSlice()
	}
	for _, i := range ifaces {
		e.ifNames[i.Index] = i.Name
	}
	return e
}

func (e *encoder) slab4(a [16]byte) []byte {
	n := len(e.addrs)
	e.addrs = append(e.addrs, a[12:16]...)
	return e.addrs[n:len(e.addrs):len(e.addrs)]
}

func (e *encoder) slab16(a [16]byte) []byte {
	n := len(e.addrs)
	e.addrs = append(e.addrs, a[:]...)
	return e.addrs[n:len(e.addrs):len(e.addrs)]
}

// appendRecord appends the Kafka record value of rec to dst: a
// length-delimited FlowMessage (varint length, then the message: what
// goflow2's Kafka output writes, protodelim) or one JSON object.
func (e *encoder) appendRecord(dst []byte, rec *flow.Export, seq uint32, now time.Time) []byte {
	e.addrs = e.addrs[:0]
	if cap(e.addrs) < 32 {
		e.addrs = make([]byte, 0, 32)
	}
	nowNs := uint64(now.UnixNano())
	if e.json {
		return e.appendJSON(dst, rec, seq, nowNs)
	}
	e.fill(&e.msg, rec, seq, nowNs)
	e.scratch = e.custom(e.scratch[:0], rec)
	if len(e.scratch) > 0 {
		e.msg.ProtoReflect().SetUnknown(e.scratch)
	}
	size := proto.Size(&e.msg)
	dst = protowire.AppendVarint(dst, uint64(size))
	dst, err := e.mo.MarshalAppend(dst, &e.msg)
	if err != nil {
		// FlowMessage has no required fields and no invalid UTF-8
		// strings (names are bytes of unknown fields): cannot happen.
		panic("kafka: marshal FlowMessage: " + err.Error())
	}
	return dst
}

// appendJSON writes the same fields as the protobuf message as one JSON
// object: the FlowMessage field names (as goflow2's JSON format writes
// them), in the order of flow.proto, every field xflow fills even when
// zero, so that each object has the same keys. Numbers are JSON numbers
// (uint64 too: ClickHouse and jq read them exactly); addresses are text;
// type is the enum's name. Hand-written rather than protojson: protojson
// deliberately varies its output, writes 64-bit numbers as strings and
// bytes as base64, none of which a flow pipeline wants.
func (e *encoder) appendJSON(b []byte, rec *flow.Export, seq uint32, nowNs uint64) []byte {
	m := &e.msg
	e.fill(m, rec, seq, nowNs)
	k := &rec.Key
	u := func(name string, v uint64) {
		b = append(b, ',', '"')
		b = append(b, name...)
		b = append(b, '"', ':')
		b = strconv.AppendUint(b, v, 10)
	}
	s := func(name, v string) {
		b = append(b, ',', '"')
		b = append(b, name...)
		b = append(b, '"', ':')
		b = appendJSONString(b, v)
	}
	b = append(b, `{"type":"`...)
	b = append(b, m.Type.String()...)
	b = append(b, '"')
	u("time_received_ns", m.TimeReceivedNs)
	u("sequence_num", uint64(m.SequenceNum))
	u("sampling_rate", m.SamplingRate)
	sampler := ""
	if a, ok := netip.AddrFromSlice(m.SamplerAddress); ok {
		sampler = a.String()
	}
	s("sampler_address", sampler)
	u("time_flow_start_ns", m.TimeFlowStartNs)
	u("time_flow_end_ns", m.TimeFlowEndNs)
	u("bytes", m.Bytes)
	u("packets", m.Packets)
	s("src_addr", k.SrcAddr().String())
	s("dst_addr", k.DstAddr().String())
	u("etype", uint64(m.Etype))
	u("proto", uint64(m.Proto))
	u("src_port", uint64(m.SrcPort))
	u("dst_port", uint64(m.DstPort))
	u("in_if", uint64(m.InIf))
	u("out_if", uint64(m.OutIf))
	u("src_vlan", uint64(m.SrcVlan))
	u("vlan_id", uint64(m.VlanId))
	u("ip_tos", uint64(m.IpTos))
	u("tcp_flags", uint64(m.TcpFlags))
	u("icmp_type", uint64(m.IcmpType))
	u("icmp_code", uint64(m.IcmpCode))
	u("observation_domain_id", uint64(m.ObservationDomainId))
	u("flow_direction", uint64(k.Direction))
	u("flow_end_reason", uint64(rec.EndReason))
	in, out := "", ""
	if k.Direction == flow.Egress {
		out = e.ifNames[k.IfIndex]
	} else {
		in = e.ifNames[k.IfIndex]
	}
	s("in_if_name", in)
	s("out_if_name", out)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\t':
				b = append(b, '\\', 't')
			case '\r':
				b = append(b, '\\', 'r')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// partitionKey returns the Kafka record key of rec for the partition_key
// setting, appended to dst; nil for "none".
//
// Both keys are symmetric: the two directions of a conversation (A to B
// and B to A) have the same key and so land in the same partition, where a
// consumer can join them.
//   - addresses: the two addresses, lower first (all traffic between two
//     hosts);
//   - conversation: the two address:port endpoints, lower first, and the
//     protocol (ICMP: ports 0, as an echo and its reply have different
//     types).
func partitionKey(dst []byte, kind string, k *flow.Key) []byte {
	switch kind {
	case "addresses":
		a, b := k.Src[:], k.Dst[:]
		if string(b) < string(a) {
			a, b = b, a
		}
		dst = append(dst, a...)
		return append(dst, b...)
	case "conversation":
		var ea, eb [18]byte
		copy(ea[:], k.Src[:])
		copy(eb[:], k.Dst[:])
		if !k.IsICMP() {
			ea[16], ea[17] = byte(k.SrcPort>>8), byte(k.SrcPort)
			eb[16], eb[17] = byte(k.DstPort>>8), byte(k.DstPort)
		}
		if string(eb[:]) < string(ea[:]) {
			ea, eb = eb, ea
		}
		dst = append(dst, ea[:]...)
		dst = append(dst, eb[:]...)
		return append(dst, k.Proto)
	}
	return nil
}
