package bpf

// A Go reference for the eBPF frame parser: it turns one Ethernet frame into
// what the parser should have produced (a flow key with its counters, or one
// of the drop counters), following the parser's rules exactly. The layers are
// decoded one at a time with gopacket's decoders so that every truncation
// check is ours; where gopacket rejects a header the rules accept, the few
// fields the rules need are read from the bytes directly (each such place
// says why).

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// refResult is what the parser should have done with one frame.
type refResult struct {
	Counter string // "" (frame became a flow update) or one of "non_ip", "truncated", "malformed"

	// Set only when Counter == "":
	Src, Dst         [16]byte // IPv6, or IPv4 v4-mapped ::ffff:a.b.c.d
	SrcPort, DstPort uint16
	Proto            uint8
	IPVersion        uint8
	VLAN             uint16 // outer VLAN ID (tci & 0x0fff), 0 if none
	Bytes            uint64 // IPv4 total length, IPv6 40 + payload length
	TCPFlags         uint32
	TOS              uint8
	FinRst           bool
	L4Truncated      bool // flow counted under ports 0 because the L4 header is missing
	Fragment         bool // non-first fragment
	ExtLimit         bool // IPv6 extension header walk exceeded its bound
}

// The counters a frame can end in instead of a flow update.
const (
	counterNonIP     = "non_ip"
	counterTruncated = "truncated"
	counterMalformed = "malformed"
)

const (
	maxVLANTags       = 2 // VLAN tags walked; a third one makes the frame non-IP
	maxIPv6ExtHeaders = 6 // IPv6 extension headers walked; a 7th sets ExtLimit
	ipv4MinHeader     = 20
	ipv6Header        = 40
	tcpFlagMask       = 0x01ff // NS, CWR, ECE, URG, ACK, PSH, RST, SYN, FIN
	tcpFIN            = 0x001
	tcpRST            = 0x004
)

// noFeedback: truncation is judged by the rules, not by gopacket's flag.
var noFeedback = gopacket.NilDecodeFeedback

// lazy decodes a single layer for the decoders gopacket only offers through
// NewPacket (IPv6Routing, UDPLite have no DecodeFromBytes).
var lazy = gopacket.DecodeOptions{Lazy: true, NoCopy: true}

// reference returns what the eBPF parser must make of frame.
func reference(frame []byte) refResult {
	var r refResult
	if counter := decodeFrame(&r, frame); counter != "" {
		return refResult{Counter: counter}
	}
	return r
}

// decodeFrame fills r from frame, or returns the counter the frame ends in.
func decodeFrame(r *refResult, frame []byte) string {
	var eth layers.Ethernet
	if eth.DecodeFromBytes(frame, noFeedback) != nil {
		return counterTruncated
	}
	// An 802.3 length instead of an ethertype comes back as EthernetTypeLLC
	// (with the payload cut to that length): non-IP either way.
	etype, rest := eth.EthernetType, eth.Payload

	for tags := 0; etype == layers.EthernetTypeDot1Q || etype == layers.EthernetTypeQinQ; tags++ {
		if tags == maxVLANTags {
			return counterNonIP
		}
		var tag layers.Dot1Q
		if tag.DecodeFromBytes(rest, noFeedback) != nil {
			return counterTruncated
		}
		if tags == 0 {
			r.VLAN = tag.VLANIdentifier // tci & 0x0fff
		}
		etype, rest = tag.Type, tag.Payload
	}

	// rest now runs from the IP header to the end of the frame ("avail").
	switch etype {
	case layers.EthernetTypeIPv4:
		return decodeIPv4(r, rest)
	case layers.EthernetTypeIPv6:
		return decodeIPv6(r, rest)
	default:
		return counterNonIP
	}
}

func decodeIPv4(r *refResult, pkt []byte) string {
	if len(pkt) < ipv4MinHeader {
		return counterTruncated
	}
	// gopacket's IPv4 decoder does not check the version, takes a total
	// length of 0 to mean "the rest of the frame" (TSO) and reports the bad
	// lengths the rules tell apart as one error, so these checks read the
	// header fields directly.
	version := pkt[0] >> 4
	headerLen := int(pkt[0]&0x0f) * 4
	totalLen := int(binary.BigEndian.Uint16(pkt[2:4]))
	switch {
	case version != 4:
		return counterMalformed
	case headerLen < ipv4MinHeader:
		return counterMalformed
	case headerLen > len(pkt):
		return counterTruncated
	case totalLen < headerLen:
		return counterMalformed
	case totalLen > len(pkt):
		return counterTruncated
	}

	// Bytes past the total length (Ethernet padding, trailers) are not ours.
	ip := ipv4Fields(pkt[:totalLen])
	r.IPVersion = 4
	r.Src = netip.AddrFrom4([4]byte(ip.SrcIP)).As16() // v4-mapped
	r.Dst = netip.AddrFrom4([4]byte(ip.DstIP)).As16()
	r.Proto = uint8(ip.Protocol)
	r.TOS = ip.TOS
	r.Bytes = uint64(totalLen)
	if ip.FragOffset != 0 {
		r.Fragment = true // non-first fragment: no L4 header, ports 0
		return ""
	}
	decodeL4(r, ip.Protocol, 4, ip.Payload) // [IHL*4, total length)
	return ""
}

// ipv4Fields decodes an IPv4 header whose lengths already passed the rules.
func ipv4Fields(pkt []byte) *layers.IPv4 {
	ip := &layers.IPv4{}
	if ip.DecodeFromBytes(pkt, noFeedback) == nil {
		return ip
	}
	// The lengths are fine, so gopacket failed on malformed IP options,
	// which the rules skip without reading: take the fixed header fields.
	headerLen := int(pkt[0]&0x0f) * 4
	return &layers.IPv4{
		BaseLayer:  layers.BaseLayer{Contents: pkt[:headerLen], Payload: pkt[headerLen:]},
		Version:    pkt[0] >> 4,
		IHL:        pkt[0] & 0x0f,
		TOS:        pkt[1],
		Length:     binary.BigEndian.Uint16(pkt[2:4]),
		FragOffset: binary.BigEndian.Uint16(pkt[6:8]) & 0x1fff,
		Protocol:   layers.IPProtocol(pkt[9]),
		SrcIP:      pkt[12:16],
		DstIP:      pkt[16:20],
	}
}

func decodeIPv6(r *refResult, pkt []byte) string {
	if len(pkt) < ipv6Header {
		return counterTruncated
	}
	ip := ipv6Fields(pkt)
	if ip.Version != 6 {
		return counterMalformed
	}
	size := ipv6Header + int(ip.Length) // payload length 0 (jumbo or not): just the header
	if size > len(pkt) {
		return counterTruncated
	}

	r.IPVersion = 6
	r.Src = [16]byte(ip.SrcIP)
	r.Dst = [16]byte(ip.DstIP)
	r.TOS = ip.TrafficClass
	r.Bytes = uint64(size)

	// gopacket's IPv6 layer consumes a leading hop-by-hop header itself; the
	// rules count it like any other extension header, so the walk starts at
	// the fixed header's Next Header over the whole payload area [40, Bytes).
	proto, l4, ok := walkIPv6Extensions(r, ip.NextHeader, pkt[ipv6Header:size])
	r.Proto = uint8(proto)
	if ok {
		decodeL4(r, proto, 6, l4)
	}
	return ""
}

// ipv6Fields decodes the fixed IPv6 header of pkt (at least 40 bytes).
func ipv6Fields(pkt []byte) *layers.IPv6 {
	ip := &layers.IPv6{}
	if ip.DecodeFromBytes(pkt, noFeedback) == nil {
		return ip
	}
	// gopacket also rejects a payload length of 0 without a jumbogram option
	// and a hop-by-hop header it cannot parse; the rules accept both (and
	// read nothing but the fixed header here), so take its fields directly.
	return &layers.IPv6{
		BaseLayer:    layers.BaseLayer{Contents: pkt[:ipv6Header], Payload: pkt[ipv6Header:]},
		Version:      pkt[0] >> 4,
		TrafficClass: uint8(binary.BigEndian.Uint16(pkt[0:2]) >> 4),
		Length:       binary.BigEndian.Uint16(pkt[4:6]),
		NextHeader:   layers.IPProtocol(pkt[6]),
		SrcIP:        pkt[8:24],
		DstIP:        pkt[24:40],
	}
}

func isIPv6Extension(p layers.IPProtocol) bool {
	switch p {
	case layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing,
		layers.IPProtocolIPv6Destination, layers.IPProtocolAH,
		layers.IPProtocolIPv6Fragment:
		return true
	}
	return false
}

// walkIPv6Extensions follows the extension header chain that starts with
// next header nh in payload (the IPv6 payload area). It returns the protocol
// for the flow key and, when ok, the L4 header's bytes; when the walk stops
// short of an L4 header the reason is recorded in r.
func walkIPv6Extensions(r *refResult, nh layers.IPProtocol, payload []byte) (proto layers.IPProtocol, l4 []byte, ok bool) {
	for walked := 0; isIPv6Extension(nh); walked++ {
		if walked == maxIPv6ExtHeaders {
			r.ExtLimit = true
			return nh, nil, false
		}
		next, size, fragOffset, fits := ipv6Extension(nh, payload)
		if !fits {
			r.L4Truncated = true
			return nh, nil, false
		}
		if fragOffset != 0 {
			r.Fragment = true // non-first fragment: protocol from its header, no ports
			return next, nil, false
		}
		nh, payload = next, payload[size:]
	}
	// Any other protocol ends the walk, also 59 (no next header) and 50 (ESP).
	return nh, payload, true
}

// ipv6Extension decodes the extension header nh at the start of b: its next
// header, its size, and for a fragment header its fragment offset (in 8-byte
// units; nonzero exactly when the rules' (field & 0xfff8) is). fits is false
// when the header does not fit inside b.
func ipv6Extension(nh layers.IPProtocol, b []byte) (next layers.IPProtocol, size int, fragOffset uint16, fits bool) {
	switch nh {
	case layers.IPProtocolIPv6HopByHop:
		var h layers.IPv6HopByHop
		if h.DecodeFromBytes(b, noFeedback) == nil {
			return h.NextHeader, h.ActualLength, 0, true
		}
		return skipIPv6Extension(b)
	case layers.IPProtocolIPv6Destination:
		var d layers.IPv6Destination
		if d.DecodeFromBytes(b, noFeedback) == nil {
			return d.NextHeader, d.ActualLength, 0, true
		}
		return skipIPv6Extension(b)
	case layers.IPProtocolIPv6Routing:
		// Routing data is never parsed, so gopacket fails only where the
		// rules do: fewer than 2 bytes, or less than (len+1)*8.
		p := gopacket.NewPacket(b, layers.LayerTypeIPv6Routing, lazy)
		if rt, ok := p.Layer(layers.LayerTypeIPv6Routing).(*layers.IPv6Routing); ok {
			return rt.NextHeader, rt.ActualLength, 0, true
		}
		return 0, 0, 0, false
	case layers.IPProtocolAH:
		var ah layers.IPSecAH
		if ah.DecodeFromBytes(b, noFeedback) == nil {
			return ah.NextHeader, ah.ActualLength, 0, true
		}
		// gopacket wants the 12 fixed bytes (SPI, sequence number) and a
		// size of at least 12; the rules read only next header and length,
		// size (len+2)*4.
		if len(b) < 2 || (int(b[1])+2)*4 > len(b) {
			return 0, 0, 0, false
		}
		return layers.IPProtocol(b[0]), (int(b[1]) + 2) * 4, 0, true
	case layers.IPProtocolIPv6Fragment:
		var f layers.IPv6Fragment
		if f.DecodeFromBytes(b, noFeedback) != nil {
			return 0, 0, 0, false
		}
		return f.NextHeader, 8, f.FragmentOffset, true
	}
	panic("not an IPv6 extension header: " + nh.String())
}

// skipIPv6Extension skips a hop-by-hop or destination options header that
// gopacket's typed decoder rejected: it also parses the TLV options and
// refuses malformed ones, while the rules skip them unread. The skipper makes
// only the rules' two checks (2 bytes, then (len+1)*8 bytes).
func skipIPv6Extension(b []byte) (next layers.IPProtocol, size int, fragOffset uint16, fits bool) {
	var s layers.IPv6ExtensionSkipper
	if s.DecodeFromBytes(b, noFeedback) != nil {
		return 0, 0, 0, false
	}
	return s.NextHeader, len(s.Contents), 0, true
}

// l4MinHeader is the number of bytes the parser needs to read proto's ports
// (0: proto has none). ICMP counts only on its own IP version.
func l4MinHeader(proto layers.IPProtocol, ipVersion uint8) int {
	switch {
	case proto == layers.IPProtocolTCP:
		return 20
	case proto == layers.IPProtocolUDP, proto == layers.IPProtocolUDPLite:
		return 8
	case proto == layers.IPProtocolSCTP:
		return 12
	case proto == layers.IPProtocolICMPv4 && ipVersion == 4,
		proto == layers.IPProtocolICMPv6 && ipVersion == 6:
		return 4
	}
	return 0
}

// decodeL4 reads ports (and TCP flags) from l4, the bytes from the L4 header
// to the end of the IP packet.
func decodeL4(r *refResult, proto layers.IPProtocol, ipVersion uint8, l4 []byte) {
	need := l4MinHeader(proto, ipVersion)
	if need == 0 {
		return // no ports
	}
	if len(l4) < need {
		r.L4Truncated = true
		return
	}
	switch proto {
	case layers.IPProtocolTCP:
		var tcp layers.TCP
		if tcp.DecodeFromBytes(l4, noFeedback) == nil {
			r.SrcPort, r.DstPort = uint16(tcp.SrcPort), uint16(tcp.DstPort)
			r.TCPFlags = tcpFlags(&tcp)
		} else {
			// gopacket rejects a data offset below 5 or past the end of
			// the packet; the rules read only the fixed 20 bytes.
			r.SrcPort, r.DstPort = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
			r.TCPFlags = uint32(binary.BigEndian.Uint16(l4[12:14]) & tcpFlagMask)
		}
		r.FinRst = r.TCPFlags&(tcpFIN|tcpRST) != 0
	case layers.IPProtocolUDP:
		var udp layers.UDP
		if udp.DecodeFromBytes(l4, noFeedback) == nil {
			r.SrcPort, r.DstPort = uint16(udp.SrcPort), uint16(udp.DstPort)
		} else {
			// gopacket rejects a UDP length field of 1..7; the rules
			// ignore that field.
			r.SrcPort, r.DstPort = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
		}
	case layers.IPProtocolUDPLite:
		// Never fails on 8 bytes.
		p := gopacket.NewPacket(l4, layers.LayerTypeUDPLite, lazy)
		udp := p.Layer(layers.LayerTypeUDPLite).(*layers.UDPLite)
		r.SrcPort, r.DstPort = uint16(udp.SrcPort), uint16(udp.DstPort)
	case layers.IPProtocolSCTP:
		var sctp layers.SCTP // needs 12 bytes, as the rules do
		if sctp.DecodeFromBytes(l4, noFeedback) != nil {
			panic("SCTP common header with 12 bytes rejected")
		}
		r.SrcPort, r.DstPort = uint16(sctp.SrcPort), uint16(sctp.DstPort)
	case layers.IPProtocolICMPv4:
		var icmp layers.ICMPv4
		if icmp.DecodeFromBytes(l4, noFeedback) == nil {
			r.DstPort = uint16(icmp.TypeCode) // type<<8 | code
		} else {
			// gopacket wants 8 bytes (id, sequence); the rules need only
			// type and code.
			r.DstPort = uint16(l4[0])<<8 | uint16(l4[1])
		}
	case layers.IPProtocolICMPv6:
		var icmp layers.ICMPv6 // needs 4 bytes, as the rules do
		if icmp.DecodeFromBytes(l4, noFeedback) != nil {
			panic("ICMPv6 header with 4 bytes rejected")
		}
		r.DstPort = uint16(icmp.TypeCode) // type<<8 | code
	}
}

// tcpFlags packs the decoded flags as the 9 low bits of TCP header bytes
// 12..13.
func tcpFlags(tcp *layers.TCP) uint32 {
	var flags uint32
	for _, f := range []struct {
		set bool
		bit uint32
	}{
		{tcp.FIN, 0x001}, {tcp.SYN, 0x002}, {tcp.RST, 0x004},
		{tcp.PSH, 0x008}, {tcp.ACK, 0x010}, {tcp.URG, 0x020},
		{tcp.ECE, 0x040}, {tcp.CWR, 0x080}, {tcp.NS, 0x100},
	} {
		if f.set {
			flags |= f.bit
		}
	}
	return flags
}

// addr spells an address for the expected results below (IPv4 comes out
// v4-mapped).
func addr(s string) [16]byte { return netip.MustParseAddr(s).As16() }

// TestReferenceCorpus checks the reference against results worked out by
// hand for a few frames, and that no frame or truncation makes it panic.
func TestReferenceCorpus(t *testing.T) {
	frames := map[string][]byte{}
	for _, f := range testFrames() {
		if _, dup := frames[f.Name]; dup {
			t.Errorf("duplicate frame name %q", f.Name)
		}
		if len(f.Data) < 14 {
			t.Errorf("%s: %d bytes, shorter than an Ethernet header", f.Name, len(f.Data))
		}
		frames[f.Name] = f.Data
	}

	cases := []struct {
		name string
		want refResult
	}{
		{"ipv4_tcp_syn", refResult{
			Src: addr("192.0.2.1"), Dst: addr("198.51.100.1"), SrcPort: 40001, DstPort: 80,
			Proto: 6, IPVersion: 4, Bytes: 40, TCPFlags: 0x002,
		}},
		{"ipv4_tcp_fin_ack", refResult{
			Src: addr("192.0.2.3"), Dst: addr("198.51.100.3"), SrcPort: 40003, DstPort: 8080,
			Proto: 6, IPVersion: 4, Bytes: 43, TCPFlags: 0x019, FinRst: true, // "bye"
		}},
		{"ipv4_tcp_ecn_ns", refResult{
			Src: addr("192.0.2.5"), Dst: addr("198.51.100.5"), SrcPort: 40005, DstPort: 25,
			Proto: 6, IPVersion: 4, Bytes: 40, TCPFlags: 0x1c2,
		}},
		{"ipv4_tcp_doff_below_5", refResult{ // gopacket rejects the TCP header
			Src: addr("192.0.2.22"), Dst: addr("198.51.100.22"), SrcPort: 40022, DstPort: 80,
			Proto: 6, IPVersion: 4, Bytes: 40, TCPFlags: 0x010,
		}},
		{"ipv4_icmp_dest_unreachable", refResult{
			Src: addr("198.51.100.11"), Dst: addr("192.0.2.11"), DstPort: 0x0303,
			Proto: 1, IPVersion: 4, Bytes: 20 + 8 + 28, TOS: 0xc0,
		}},
		{"ipv4_icmp_4_bytes", refResult{ // gopacket wants 8 ICMP bytes
			Src: addr("192.0.2.24"), Dst: addr("198.51.100.24"), DstPort: 0x0b00,
			Proto: 1, IPVersion: 4, Bytes: 24,
		}},
		{"ipv4_options_malformed", refResult{ // gopacket rejects the option
			Src: addr("192.0.2.14"), Dst: addr("198.51.100.14"), SrcPort: 1014, DstPort: 2014,
			Proto: 17, IPVersion: 4, Bytes: 24 + 8 + 4,
		}},
		{"ipv4_frag_later", refResult{
			Src: addr("192.0.2.16"), Dst: addr("198.51.100.16"),
			Proto: 17, IPVersion: 4, Bytes: 20 + 32, Fragment: true,
		}},
		{"ipv4_udp_eth_padding", refResult{
			Src: addr("192.0.2.17"), Dst: addr("198.51.100.17"), SrcPort: 1017, DstPort: 2017,
			Proto: 17, IPVersion: 4, Bytes: 30,
		}},
		{"ipv4_tcp_cut_by_ip_length", refResult{
			Src: addr("192.0.2.21"), Dst: addr("198.51.100.21"),
			Proto: 6, IPVersion: 4, Bytes: 32, L4Truncated: true,
		}},
		{"ipv4_gre", refResult{
			Src: addr("192.0.2.25"), Dst: addr("198.51.100.25"),
			Proto: 47, IPVersion: 4, Bytes: 20 + 4 + 20,
		}},
		{"ipv4_bad_version5", refResult{Counter: "malformed"}},
		{"ipv4_bad_ihl3", refResult{Counter: "malformed"}},
		{"ipv4_total_length_0", refResult{Counter: "malformed"}},
		{"ipv4_total_length_beyond_frame", refResult{Counter: "truncated"}},
		{"ipv4_ihl_beyond_frame", refResult{Counter: "truncated"}},
		{"vlan_ipv4_udp", refResult{
			Src: addr("192.0.2.61"), Dst: addr("198.51.100.61"), SrcPort: 1061, DstPort: 2061,
			Proto: 17, IPVersion: 4, VLAN: 100, Bytes: 20 + 8 + 5,
		}},
		{"qinq_ipv6_tcp", refResult{
			Src: addr("2001:db8::62:1"), Dst: addr("2001:db8::62:2"), SrcPort: 40062, DstPort: 443,
			Proto: 6, IPVersion: 6, VLAN: 200, Bytes: 40 + 20, TCPFlags: 0x012,
		}},
		{"vlan_3_tags_ipv4", refResult{Counter: "non_ip"}},
		{"arp_request", refResult{Counter: "non_ip"}},
		{"lldp", refResult{Counter: "non_ip"}},
		{"ipv6_icmpv6_neighbor_solicitation", refResult{
			Src: addr("fe80::40:1"), Dst: addr("ff02::1:ff40:2"), DstPort: 0x8700,
			Proto: 58, IPVersion: 6, Bytes: 40 + 4 + 20 + 8,
		}},
		{"ipv6_tclass_2e", refResult{
			Src: addr("2001:db8::41:1"), Dst: addr("2001:db8::41:2"), SrcPort: 1041, DstPort: 2041,
			Proto: 17, IPVersion: 6, Bytes: 40 + 8 + 4, TOS: 0x2e,
		}},
		{"ipv6_ext_chain", refResult{ // HBH 8 + routing 24 + dest 8 + AH 24, UDP
			Src: addr("2001:db8::43:1"), Dst: addr("2001:db8::43:2"), SrcPort: 1043, DstPort: 2043,
			Proto: 17, IPVersion: 6, Bytes: 40 + 8 + 24 + 8 + 24 + 8 + 4,
		}},
		{"ipv6_ah_8_bytes", refResult{ // gopacket wants 12 AH bytes
			Src: addr("2001:db8::45:1"), Dst: addr("2001:db8::45:2"), SrcPort: 1045, DstPort: 2045,
			Proto: 17, IPVersion: 6, Bytes: 40 + 8 + 8 + 4,
		}},
		{"ipv6_hbh_bad_option", refResult{ // gopacket rejects the option
			Src: addr("2001:db8::59:1"), Dst: addr("2001:db8::59:2"), SrcPort: 1059, DstPort: 2059,
			Proto: 17, IPVersion: 6, Bytes: 40 + 8 + 8 + 4,
		}},
		{"ipv6_frag_later", refResult{
			Src: addr("2001:db8::47:1"), Dst: addr("2001:db8::47:2"),
			Proto: 17, IPVersion: 6, Bytes: 40 + 8 + 32, Fragment: true,
		}},
		{"ipv6_ext_6_headers", refResult{
			Src: addr("2001:db8::48:1"), Dst: addr("2001:db8::48:2"), SrcPort: 40048, DstPort: 80,
			Proto: 6, IPVersion: 6, Bytes: 40 + 6*8 + 20, TCPFlags: 0x002,
		}},
		{"ipv6_ext_7_headers", refResult{
			Src: addr("2001:db8::49:1"), Dst: addr("2001:db8::49:2"),
			Proto: 60, IPVersion: 6, Bytes: 40 + 7*8 + 20, ExtLimit: true,
		}},
		{"ipv6_payload_length_0_nh59", refResult{
			Src: addr("2001:db8::52:1"), Dst: addr("2001:db8::52:2"),
			Proto: 59, IPVersion: 6, Bytes: 40,
		}},
		{"ipv6_jumbo_hbh_payload_length_0", refResult{
			Src: addr("2001:db8::53:1"), Dst: addr("2001:db8::53:2"),
			Proto: 0, IPVersion: 6, Bytes: 40, L4Truncated: true,
		}},
		{"ipv6_ext_cut_by_payload_length", refResult{
			Src: addr("2001:db8::56:1"), Dst: addr("2001:db8::56:2"),
			Proto: 60, IPVersion: 6, Bytes: 40 + 16, L4Truncated: true,
		}},
		{"ipv6_proto1_not_icmp", refResult{
			Src: addr("2001:db8::58:1"), Dst: addr("2001:db8::58:2"),
			Proto: 1, IPVersion: 6, Bytes: 40 + 8,
		}},
		{"ipv6_bad_version", refResult{Counter: "malformed"}},
		{"ipv6_payload_length_beyond_frame", refResult{Counter: "truncated"}},
	}
	for _, c := range cases {
		frame, ok := frames[c.name]
		if !ok {
			t.Errorf("no frame %q in the corpus", c.name)
			continue
		}
		if got := reference(frame); got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}

	// Cut frames: cut in the Ethernet header, the VLAN tag and the IP header.
	for _, c := range []struct {
		name string
		n    int
		want string
	}{
		{"ipv4_tcp_syn", 0, "truncated"},
		{"ipv4_tcp_syn", 13, "truncated"},
		{"ipv4_tcp_syn", 14 + 19, "truncated"},
		{"ipv4_tcp_syn", 14 + 39, "truncated"}, // total length 40 > 39
		{"vlan_ipv4_udp", 17, "truncated"},
		{"qinq_ipv6_tcp", 21, "truncated"},
		{"vlan_3_tags_ipv4", 22, "non_ip"}, // third tag is never read
		{"ipv6_udp", 14 + 39, "truncated"},
	} {
		if c.n >= len(frames[c.name]) {
			t.Errorf("%s: no truncation to %d bytes", c.name, c.n)
			continue
		}
		tf := truncations(namedFrame{c.name, frames[c.name]})[c.n]
		if got := reference(tf.Data); got != (refResult{Counter: c.want}) {
			t.Errorf("%s: got %+v, want counter %q", tf.Name, got, c.want)
		}
	}

	// Every frame and every prefix of it decodes without a panic.
	for _, f := range testFrames() {
		cuts := truncations(f)
		if len(cuts) != len(f.Data) {
			t.Errorf("%s: %d truncations, want %d", f.Name, len(cuts), len(f.Data))
		}
		for _, tf := range append(cuts, f) {
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Errorf("%s: panic: %v", tf.Name, p)
					}
				}()
				reference(tf.Data)
			}()
		}
	}
}
