package bpf

// A corpus of crafted Ethernet frames for the parser tests. Frames are built
// with gopacket.SerializeLayers where it can express the case; headers it
// cannot write (UDP-Lite, AH, malformed fields) are added as raw bytes or
// patched in afterwards. Every frame uses its own addresses and ports: the
// IPv4 frame number N goes from 192.0.2.N to 198.51.100.N, the IPv6 one from
// 2001:db8::N:1 to 2001:db8::N:2 (N written in decimal digits).
//
// gopacket's Ethernet layer pads frames to the 60-byte minimum, so short
// packets carry padding past the end of the IP packet, as on the wire.

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

type namedFrame struct {
	Name string
	Data []byte
}

// truncations returns every proper prefix of f, lengths 0..len-1.
func truncations(f namedFrame) []namedFrame {
	cuts := make([]namedFrame, 0, len(f.Data))
	for n := range len(f.Data) {
		cuts = append(cuts, namedFrame{
			Name: fmt.Sprintf("%s/trunc=%d", f.Name, n),
			Data: append([]byte(nil), f.Data[:n]...),
		})
	}
	return cuts
}

// TCP flag bits as in header bytes 12..13.
const (
	fFIN = 0x001
	fSYN = 0x002
	fRST = 0x004
	fPSH = 0x008
	fACK = 0x010
	fECE = 0x040
	fCWR = 0x080
	fNS  = 0x100
)

// ethOff is where the IP header starts in an untagged frame.
const ethOff = 14

var (
	macA      = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x0a, 0x01}
	macB      = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x0b, 0x02}
	broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

// build serializes the layers, fixing lengths and checksums.
func build(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		panic(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ether(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: t}
}

func vlanTag(vid uint16, next layers.EthernetType) *layers.Dot1Q {
	return &layers.Dot1Q{VLANIdentifier: vid, Type: next}
}

// ip4 is IPv4 frame number n: 192.0.2.n -> 198.51.100.n.
func ip4(n int, proto layers.IPProtocol) *layers.IPv4 {
	return ip4Addrs(fmt.Sprintf("192.0.2.%d", n), fmt.Sprintf("198.51.100.%d", n), proto)
}

func ip4Addrs(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{
		Version: 4, TTL: 64, Id: 0x4000, Flags: layers.IPv4DontFragment,
		Protocol: proto, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4(),
	}
}

// ip6 is IPv6 frame number n: 2001:db8::n:1 -> 2001:db8::n:2.
func ip6(n int, next layers.IPProtocol) *layers.IPv6 {
	return ip6Addrs(fmt.Sprintf("2001:db8::%d:1", n), fmt.Sprintf("2001:db8::%d:2", n), next)
}

func ip6Addrs(src, dst string, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{
		Version: 6, HopLimit: 64, FlowLabel: 0x12345,
		NextHeader: next, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst),
	}
}

func tcp(ip gopacket.NetworkLayer, src, dst uint16, flags uint16) *layers.TCP {
	t := &layers.TCP{
		SrcPort: layers.TCPPort(src), DstPort: layers.TCPPort(dst),
		Seq: 0x1000, Window: 64240,
		FIN: flags&fFIN != 0, SYN: flags&fSYN != 0, RST: flags&fRST != 0,
		PSH: flags&fPSH != 0, ACK: flags&fACK != 0, ECE: flags&fECE != 0,
		CWR: flags&fCWR != 0, NS: flags&fNS != 0,
	}
	if t.ACK {
		t.Ack = 0x2000
	}
	if err := t.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	return t
}

func udp(ip gopacket.NetworkLayer, src, dst uint16) *layers.UDP {
	u := &layers.UDP{SrcPort: layers.UDPPort(src), DstPort: layers.UDPPort(dst)}
	if err := u.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	return u
}

func icmp6(ip gopacket.NetworkLayer, typ, code uint8) *layers.ICMPv6 {
	i := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	if err := i.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	return i
}

// udpLite is a UDP-Lite header (gopacket cannot serialize one) with its
// checksum covering the header only (coverage 8); the checksum is left 0.
func udpLite(src, dst uint16, data string) gopacket.Payload {
	b := make([]byte, 8, 8+len(data))
	binary.BigEndian.PutUint16(b[0:], src)
	binary.BigEndian.PutUint16(b[2:], dst)
	binary.BigEndian.PutUint16(b[4:], 8)
	return append(b, data...)
}

func sctp(src, dst uint16, data string) []gopacket.SerializableLayer {
	return []gopacket.SerializableLayer{
		&layers.SCTP{SrcPort: layers.SCTPPort(src), DstPort: layers.SCTPPort(dst), VerificationTag: 0x5c7b0001},
		&layers.SCTPData{
			SCTPChunk:     layers.SCTPChunk{Type: layers.SCTPChunkTypeData, Length: uint16(16 + len(data))},
			BeginFragment: true, EndFragment: true, TSN: 1, Payload: []byte(data),
		},
	}
}

// ipsecAH is an authentication header of size bytes (a multiple of 4, at
// least 8; gopacket cannot serialize one). 8 bytes leave out the sequence
// number, which only the rules, not gopacket's decoder, accept.
func ipsecAH(next layers.IPProtocol, size int) gopacket.Payload {
	b := make([]byte, size)
	b[0] = byte(next)
	b[1] = byte(size/4 - 2)
	binary.BigEndian.PutUint32(b[4:], 0x00000a11) // SPI
	if size >= 12 {
		binary.BigEndian.PutUint32(b[8:], 1) // sequence number
		for i := 12; i < size; i++ {
			b[i] = 0xa5 // ICV
		}
	}
	return b
}

// experimentalOption is a 6-byte TLV option (RFC 4727 type 0x1e, "skip if
// unknown") that fills an 8-byte hop-by-hop or destination options header
// exactly (gopacket's own padding of these headers is off for some sizes).
var experimentalOption = struct {
	typ  uint8
	data []byte
}{0x1e, []byte{0xde, 0xad, 0xbe, 0xef}}

func hopByHop(next layers.IPProtocol) *layers.IPv6HopByHop {
	h := &layers.IPv6HopByHop{}
	h.NextHeader = next
	h.Options = []*layers.IPv6HopByHopOption{{OptionType: experimentalOption.typ, OptionData: experimentalOption.data}}
	return h
}

func destOpts(next layers.IPProtocol) *layers.IPv6Destination {
	d := &layers.IPv6Destination{}
	d.NextHeader = next
	d.Options = []*layers.IPv6DestinationOption{{OptionType: experimentalOption.typ, OptionData: experimentalOption.data}}
	return d
}

// routing is a type 0 routing header with no segments left, 8 bytes plus 16
// per address.
func routing(next layers.IPProtocol, addrs ...string) *layers.IPv6Routing {
	r := &layers.IPv6Routing{Reserved: make([]byte, 4)}
	r.NextHeader = next
	for _, a := range addrs {
		r.SourceRoutingIPs = append(r.SourceRoutingIPs, net.ParseIP(a))
	}
	return r
}

func fragment6(next layers.IPProtocol, offset uint16, more bool) *layers.IPv6Fragment {
	return &layers.IPv6Fragment{NextHeader: next, FragmentOffset: offset, MoreFragments: more, Identification: 0xf0f0}
}

func payload(s string) gopacket.Payload { return gopacket.Payload(s) }

// filler is n recognisable payload bytes.
func filler(n int) gopacket.Payload {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// patched returns a copy of frame with b written at off.
func patched(frame []byte, off int, b ...byte) []byte {
	out := append([]byte(nil), frame...)
	copy(out[off:], b)
	return out
}

// patched16 returns a copy of frame with v written big endian at off.
func patched16(frame []byte, off int, v uint16) []byte {
	return patched(frame, off, byte(v>>8), byte(v))
}

// withIPv4Checksum recomputes the header checksum of the IPv4 header at off
// after a patch (the parser does not check it, but keep the frames honest
// wherever the patched field is not the point).
func withIPv4Checksum(frame []byte, off int) []byte {
	out := append([]byte(nil), frame...)
	hdr := out[off : off+int(out[off]&0x0f)*4]
	hdr[10], hdr[11] = 0, 0
	var sum uint32
	for i := 0; i+1 < len(hdr); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(hdr[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(hdr[10:], ^uint16(sum))
	return out
}

// testFrames returns the crafted corpus.
func testFrames() []namedFrame {
	var frames []namedFrame
	add := func(name string, data []byte) {
		frames = append(frames, namedFrame{name, data})
	}

	// IPv4 TCP handshakes and teardowns, every flag the key records.
	{
		ip := ip4(1, layers.IPProtocolTCP)
		add("ipv4_tcp_syn", build(ether(layers.EthernetTypeIPv4), ip, tcp(ip, 40001, 80, fSYN)))
	}
	{
		ip := ip4Addrs("198.51.100.2", "192.0.2.2", layers.IPProtocolTCP)
		add("ipv4_tcp_synack", build(ether(layers.EthernetTypeIPv4), ip, tcp(ip, 443, 40002, fSYN|fACK)))
	}
	{
		ip := ip4(3, layers.IPProtocolTCP)
		add("ipv4_tcp_fin_ack", build(ether(layers.EthernetTypeIPv4), ip, tcp(ip, 40003, 8080, fFIN|fPSH|fACK), payload("bye")))
	}
	{
		ip := ip4(4, layers.IPProtocolTCP)
		add("ipv4_tcp_rst", build(ether(layers.EthernetTypeIPv4), ip, tcp(ip, 40004, 22, fRST)))
	}
	{
		ip := ip4(5, layers.IPProtocolTCP)
		add("ipv4_tcp_ecn_ns", build(ether(layers.EthernetTypeIPv4), ip, tcp(ip, 40005, 25, fSYN|fECE|fCWR|fNS)))
	}

	// IPv4 UDP, UDP-Lite, SCTP, ICMP.
	{
		ip := ip4(6, layers.IPProtocolUDP)
		add("ipv4_udp", build(ether(layers.EthernetTypeIPv4), ip, udp(ip, 53000, 53), payload("dns?query")))
	}
	add("ipv4_udplite", build(ether(layers.EthernetTypeIPv4), ip4(7, layers.IPProtocolUDPLite), udpLite(5004, 5005, "lite")))
	add("ipv4_sctp", build(append([]gopacket.SerializableLayer{ether(layers.EthernetTypeIPv4), ip4(8, layers.IPProtocolSCTP)},
		sctp(36412, 38412, "sctp")...)...))
	add("ipv4_icmp_echo_request", build(ether(layers.EthernetTypeIPv4), ip4(9, layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x0909, Seq: 1}, payload("ping")))
	add("ipv4_icmp_echo_reply", build(ether(layers.EthernetTypeIPv4), ip4(10, layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0), Id: 0x0a0a, Seq: 1}, payload("pong")))
	{
		// A router's port unreachable about a UDP probe, quoting its IP
		// header and first 8 bytes.
		probeIP := ip4(11, layers.IPProtocolUDP)
		probe := build(probeIP, udp(probeIP, 1011, 33434), payload("probe"))[:28]
		ip := ip4Addrs("198.51.100.11", "192.0.2.11", layers.IPProtocolICMPv4)
		ip.TOS = 0xc0
		add("ipv4_icmp_dest_unreachable", build(ether(layers.EthernetTypeIPv4), ip,
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)},
			gopacket.Payload(probe)))
	}

	// IPv4 options: IHL 6 (router alert), IHL 15 (record route), and an
	// option gopacket refuses (timestamp of length 1) but the parser skips.
	{
		ip := ip4(12, layers.IPProtocolUDP)
		ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
		add("ipv4_options_ihl6", build(ether(layers.EthernetTypeIPv4), ip, udp(ip, 1012, 2012), payload("ihl6")))
	}
	{
		ip := ip4(13, layers.IPProtocolTCP)
		ip.Options = []layers.IPv4Option{
			{OptionType: 7, OptionLength: 39, OptionData: append([]byte{4}, make([]byte, 36)...)},
			{OptionType: 0},
		}
		add("ipv4_options_ihl15", build(ether(layers.EthernetTypeIPv4), ip, tcp(ip, 40013, 443, fACK), payload("rr")))
	}
	{
		ip := ip4(14, layers.IPProtocolUDP)
		ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
		f := build(ether(layers.EthernetTypeIPv4), ip, udp(ip, 1014, 2014), payload("opt!"))
		add("ipv4_options_malformed", withIPv4Checksum(patched(f, ethOff+20, 0x44, 0x01), ethOff))
	}

	// IPv4 fragments: the first one carries the UDP header, a later one not.
	{
		ip := ip4(15, layers.IPProtocolUDP)
		ip.Flags, ip.Id = layers.IPv4MoreFragments, 0x1515
		add("ipv4_frag_first", build(ether(layers.EthernetTypeIPv4), ip, udp(ip, 1015, 2015), filler(24)))
	}
	{
		ip := ip4(16, layers.IPProtocolUDP)
		ip.Flags, ip.Id, ip.FragOffset = 0, 0x1515, 185
		add("ipv4_frag_later", build(ether(layers.EthernetTypeIPv4), ip, filler(32)))
	}

	// Bytes after the IP packet: Ethernet padding of a minimum-size frame,
	// and a trailer.
	{
		ip := ip4(17, layers.IPProtocolUDP)
		f := build(ether(layers.EthernetTypeIPv4), ip, udp(ip, 1017, 2017), payload("hi"))
		if len(f) != 60 {
			panic("ipv4_udp_eth_padding is not a padded 60-byte frame")
		}
		add("ipv4_udp_eth_padding", f)
	}
	{
		ip := ip4(18, layers.IPProtocolUDP)
		f := build(ether(layers.EthernetTypeIPv4), ip, udp(ip, 1018, 2018), filler(40))
		add("ipv4_trailer_bytes", append(f, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee))
	}

	// TOS, TCP options, TCP headers the rules read differently from gopacket.
	{
		ip := ip4(19, layers.IPProtocolTCP)
		ip.TOS = 0xb8 // DSCP EF
		add("ipv4_tos_b8", build(ether(layers.EthernetTypeIPv4), ip, tcp(ip, 40019, 5060, fPSH|fACK), payload("voice")))
	}
	{
		ip := ip4(20, layers.IPProtocolTCP)
		t := tcp(ip, 40020, 443, fSYN)
		t.Options = []layers.TCPOption{ // 40 bytes: data offset 15
			{OptionType: layers.TCPOptionKindMSS, OptionData: []byte{0x05, 0xb4}},
			{OptionType: layers.TCPOptionKindSACKPermitted},
			{OptionType: layers.TCPOptionKindTimestamps, OptionData: make([]byte, 8)},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindWindowScale, OptionData: []byte{7}},
			{OptionType: layers.TCPOptionKindSACK, OptionData: make([]byte, 16)},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindNop},
		}
		f := build(ether(layers.EthernetTypeIPv4), ip, t)
		if f[ethOff+20+12]>>4 != 15 {
			panic("ipv4_tcp_doff15 has the wrong data offset")
		}
		add("ipv4_tcp_doff15", f)
	}
	{
		// Total length 32 leaves 12 of the 20 TCP header bytes in the
		// packet; the rest of the header stays in the frame.
		ip := ip4(21, layers.IPProtocolTCP)
		f := build(ether(layers.EthernetTypeIPv4), ip, tcp(ip, 40021, 80, fSYN))
		add("ipv4_tcp_cut_by_ip_length", withIPv4Checksum(patched16(f, ethOff+2, 32), ethOff))
	}
	{
		// Data offset 3: gopacket rejects the header, the rules read it.
		ip := ip4(22, layers.IPProtocolTCP)
		f := build(ether(layers.EthernetTypeIPv4), ip, tcp(ip, 40022, 80, fACK))
		add("ipv4_tcp_doff_below_5", patched(f, ethOff+20+12, 3<<4))
	}
	{
		// UDP length field 3: gopacket rejects the header, the rules read it.
		ip := ip4(23, layers.IPProtocolUDP)
		f := build(ether(layers.EthernetTypeIPv4), ip, udp(ip, 1023, 2023), payload("len3"))
		add("ipv4_udp_length_field_3", patched16(f, ethOff+20+4, 3))
	}
	// A 4-byte ICMP message (time exceeded): enough for the rules, gopacket
	// wants 8.
	add("ipv4_icmp_4_bytes", build(ether(layers.EthernetTypeIPv4), ip4(24, layers.IPProtocolICMPv4),
		payload("\x0b\x00\xf4\xff")))
	{
		// GRE carrying an IPv4 header: a protocol without ports.
		inner := build(ip4Addrs("10.25.0.1", "10.25.0.2", layers.IPProtocolICMPv4))
		add("ipv4_gre", build(ether(layers.EthernetTypeIPv4), ip4(25, layers.IPProtocolGRE),
			&layers.GRE{Protocol: layers.EthernetTypeIPv4}, gopacket.Payload(inner)))
	}
	// ICMPv6 over IPv4 is not ICMP: ports 0, not an L4 truncation.
	add("ipv4_proto58_not_icmp", build(ether(layers.EthernetTypeIPv4), ip4(26, layers.IPProtocolICMPv6),
		payload("\x80\x00\x00\x00\x00\x01\x00\x01")))
	// 6 bytes of a UDP header.
	add("ipv4_udp_l4_truncated", build(ether(layers.EthernetTypeIPv4), ip4(27, layers.IPProtocolUDP),
		payload("\x04\x1b\x07\xeb\x00\x08")))

	// Broken IPv4 headers.
	udp4 := func(n int) []byte {
		ip := ip4(n, layers.IPProtocolUDP)
		return build(ether(layers.EthernetTypeIPv4), ip, udp(ip, uint16(1000+n), uint16(2000+n)), payload("x"))
	}
	add("ipv4_bad_version5", withIPv4Checksum(patched(udp4(28), ethOff, 0x55), ethOff))
	add("ipv4_bad_ihl3", patched(udp4(29), ethOff, 0x43))
	add("ipv4_bad_total_length10", withIPv4Checksum(patched16(udp4(30), ethOff+2, 10), ethOff))
	add("ipv4_total_length_beyond_frame", withIPv4Checksum(patched16(udp4(31), ethOff+2, 20+8+1+100), ethOff))
	// IHL 15 (60 bytes) in a 60-byte frame: 46 bytes from the IP header on.
	add("ipv4_ihl_beyond_frame", patched(udp4(32), ethOff, 0x4f))
	// Total length 0: malformed for the rules; gopacket would take the rest
	// of the frame (TSO).
	add("ipv4_total_length_0", withIPv4Checksum(patched16(udp4(33), ethOff+2, 0), ethOff))
	{
		ip := ip6(34, layers.IPProtocolUDP)
		add("ipv4_ethertype_ipv6_packet", build(ether(layers.EthernetTypeIPv4), ip, udp(ip, 1034, 2034), payload("v6")))
	}

	// IPv6 transports.
	{
		ip := ip6(35, layers.IPProtocolTCP)
		add("ipv6_tcp", build(ether(layers.EthernetTypeIPv6), ip, tcp(ip, 40035, 443, fPSH|fACK), payload("GET /")))
	}
	{
		ip := ip6(36, layers.IPProtocolUDP)
		add("ipv6_udp", build(ether(layers.EthernetTypeIPv6), ip, udp(ip, 1036, 53), payload("query")))
	}
	add("ipv6_sctp", build(append([]gopacket.SerializableLayer{ether(layers.EthernetTypeIPv6), ip6(37, layers.IPProtocolSCTP)},
		sctp(1037, 2037, "sctp6")...)...))
	add("ipv6_udplite", build(ether(layers.EthernetTypeIPv6), ip6(38, layers.IPProtocolUDPLite), udpLite(1038, 2038, "lite6")))
	{
		ip := ip6(39, layers.IPProtocolICMPv6)
		add("ipv6_icmpv6_echo_request", build(ether(layers.EthernetTypeIPv6), ip, icmp6(ip, layers.ICMPv6TypeEchoRequest, 0),
			&layers.ICMPv6Echo{Identifier: 0x0039, SeqNumber: 1}, payload("ping6")))
	}
	{
		ip := ip6Addrs("fe80::40:1", "ff02::1:ff40:2", layers.IPProtocolICMPv6)
		ip.HopLimit = 255
		add("ipv6_icmpv6_neighbor_solicitation", build(ether(layers.EthernetTypeIPv6), ip,
			icmp6(ip, layers.ICMPv6TypeNeighborSolicitation, 0),
			&layers.ICMPv6NeighborSolicitation{
				TargetAddress: net.ParseIP("fe80::40:2"),
				Options:       layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: macA}},
			}))
	}
	{
		ip := ip6(41, layers.IPProtocolUDP)
		ip.TrafficClass = 0x2e
		add("ipv6_tclass_2e", build(ether(layers.EthernetTypeIPv6), ip, udp(ip, 1041, 2041), payload("tc2e")))
	}

	// IPv6 extension headers.
	{
		ip := ip6(42, layers.IPProtocolIPv6HopByHop)
		add("ipv6_hbh_tcp", build(ether(layers.EthernetTypeIPv6), ip,
			hopByHop(layers.IPProtocolTCP), tcp(ip, 40042, 22, fSYN)))
	}
	{
		// hop-by-hop 8, routing 24, destination options 8, AH 24, UDP.
		ip := ip6(43, layers.IPProtocolIPv6HopByHop)
		add("ipv6_ext_chain", build(ether(layers.EthernetTypeIPv6), ip,
			hopByHop(layers.IPProtocolIPv6Routing),
			routing(layers.IPProtocolIPv6Destination, "2001:db8::43:99"),
			destOpts(layers.IPProtocolAH),
			ipsecAH(layers.IPProtocolUDP, 24),
			udp(ip, 1043, 2043), payload("ext!")))
	}
	{
		ip := ip6(44, layers.IPProtocolAH)
		add("ipv6_ah_tcp", build(ether(layers.EthernetTypeIPv6), ip,
			ipsecAH(layers.IPProtocolTCP, 24), tcp(ip, 40044, 179, fACK)))
	}
	{
		ip := ip6(45, layers.IPProtocolAH)
		add("ipv6_ah_8_bytes", build(ether(layers.EthernetTypeIPv6), ip,
			ipsecAH(layers.IPProtocolUDP, 8), udp(ip, 1045, 2045), payload("ah8!")))
	}
	{
		ip := ip6(46, layers.IPProtocolIPv6Fragment)
		add("ipv6_frag_first", build(ether(layers.EthernetTypeIPv6), ip,
			fragment6(layers.IPProtocolUDP, 0, true), udp(ip, 1046, 2046), filler(24)))
	}
	add("ipv6_frag_later", build(ether(layers.EthernetTypeIPv6), ip6(47, layers.IPProtocolIPv6Fragment),
		fragment6(layers.IPProtocolUDP, 185, false), filler(32)))
	{
		// Exactly as many extension headers as the parser walks (with an
		// atomic fragment header among them), then TCP.
		ip := ip6(48, layers.IPProtocolIPv6HopByHop)
		add("ipv6_ext_6_headers", build(ether(layers.EthernetTypeIPv6), ip,
			hopByHop(layers.IPProtocolIPv6Destination),
			destOpts(layers.IPProtocolIPv6Routing),
			routing(layers.IPProtocolIPv6Destination),
			destOpts(layers.IPProtocolIPv6Fragment),
			fragment6(layers.IPProtocolIPv6Destination, 0, false),
			destOpts(layers.IPProtocolTCP),
			tcp(ip, 40048, 80, fSYN)))
	}
	{
		// One more than the parser walks.
		ip := ip6(49, layers.IPProtocolIPv6HopByHop)
		add("ipv6_ext_7_headers", build(ether(layers.EthernetTypeIPv6), ip,
			hopByHop(layers.IPProtocolIPv6Destination),
			destOpts(layers.IPProtocolIPv6Routing),
			routing(layers.IPProtocolIPv6Destination),
			destOpts(layers.IPProtocolIPv6Destination),
			destOpts(layers.IPProtocolIPv6Destination),
			destOpts(layers.IPProtocolIPv6Destination),
			destOpts(layers.IPProtocolTCP),
			tcp(ip, 40049, 80, fSYN)))
	}
	add("ipv6_no_next_header", build(ether(layers.EthernetTypeIPv6), ip6(50, layers.IPProtocolNoNextHeader), filler(8)))
	add("ipv6_esp", build(ether(layers.EthernetTypeIPv6), ip6(51, layers.IPProtocolESP),
		payload("\x00\x00\x0e\x51\x00\x00\x00\x01"), filler(24)))

	// IPv6 payload lengths.
	add("ipv6_payload_length_0_nh59", build(ether(layers.EthernetTypeIPv6), ip6(52, layers.IPProtocolNoNextHeader)))
	{
		// A jumbogram as gopacket accepts it: payload length 0 and a
		// jumbo payload option. The rules take payload length 0 as an
		// empty payload, so the hop-by-hop header does not fit.
		ip := ip6(53, layers.IPProtocolIPv6HopByHop)
		hbh := &layers.IPv6HopByHop{}
		hbh.NextHeader = layers.IPProtocolUDP
		jumbo := &layers.IPv6HopByHopOption{}
		jumbo.SetJumboLength(8 + 8 + 5)
		hbh.Options = []*layers.IPv6HopByHopOption{jumbo}
		f := build(ether(layers.EthernetTypeIPv6), ip, hbh, udp(ip, 1053, 2053), payload("jumbo"))
		add("ipv6_jumbo_hbh_payload_length_0", patched16(f, ethOff+4, 0))
	}
	{
		ip := ip6(54, layers.IPProtocolUDP)
		f := build(ether(layers.EthernetTypeIPv6), ip, udp(ip, 1054, 2054), payload("long"))
		add("ipv6_payload_length_beyond_frame", patched16(f, ethOff+4, 8+4+100))
	}
	{
		ip := ip6(55, layers.IPProtocolUDP)
		f := build(ether(layers.EthernetTypeIPv6), ip, udp(ip, 1055, 2055), payload("v4?"))
		add("ipv6_bad_version", patched(f, ethOff, 0x40|f[ethOff]&0x0f))
	}
	{
		// A 24-byte destination options header in a 16-byte payload (the
		// frame holds all of it and the UDP header behind it).
		ip := ip6(56, layers.IPProtocolIPv6Destination)
		dest := make([]byte, 24)
		dest[0], dest[1] = byte(layers.IPProtocolUDP), 2
		dest[2], dest[3] = 1, 20 // PadN over the rest
		f := build(ether(layers.EthernetTypeIPv6), ip, gopacket.Payload(dest), udp(ip, 1056, 2056), payload("cut"))
		add("ipv6_ext_cut_by_payload_length", patched16(f, ethOff+4, 16))
	}
	{
		ip := ip6(57, layers.IPProtocolTCP)
		f := build(ether(layers.EthernetTypeIPv6), ip, tcp(ip, 40057, 80, fSYN))
		add("ipv6_tcp_cut_by_payload_length", patched16(f, ethOff+4, 12))
	}
	// ICMP (for IPv4) over IPv6 is not ICMP: ports 0.
	add("ipv6_proto1_not_icmp", build(ether(layers.EthernetTypeIPv6), ip6(58, layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x0058, Seq: 1}))
	{
		// A hop-by-hop option running past its header: gopacket rejects the
		// header (and the IPv6 packet), the rules skip it by its length.
		ip := ip6(59, layers.IPProtocolIPv6HopByHop)
		hbh := gopacket.Payload{byte(layers.IPProtocolUDP), 0, 0x1e, 10, 0, 0, 0, 0}
		add("ipv6_hbh_bad_option", build(ether(layers.EthernetTypeIPv6), ip, hbh, udp(ip, 1059, 2059), payload("bad!")))
	}
	{
		ip := ip6(60, layers.IPProtocolUDP)
		f := build(ether(layers.EthernetTypeIPv6), ip, udp(ip, 1060, 2060), payload("trailer"))
		add("ipv6_trailer_bytes", append(f, 0xee, 0xee, 0xee, 0xee))
	}

	// VLAN tags.
	{
		ip := ip4(61, layers.IPProtocolUDP)
		tag := vlanTag(100, layers.EthernetTypeIPv4)
		tag.Priority = 5
		add("vlan_ipv4_udp", build(ether(layers.EthernetTypeDot1Q), tag, ip, udp(ip, 1061, 2061), payload("vlan!")))
	}
	{
		ip := ip6(62, layers.IPProtocolTCP)
		add("qinq_ipv6_tcp", build(ether(layers.EthernetTypeQinQ),
			vlanTag(200, layers.EthernetTypeDot1Q), vlanTag(300, layers.EthernetTypeIPv6),
			ip, tcp(ip, 40062, 443, fSYN|fACK)))
	}
	{
		ip := ip4(63, layers.IPProtocolUDP)
		add("vlan_3_tags_ipv4", build(ether(layers.EthernetTypeDot1Q),
			vlanTag(10, layers.EthernetTypeDot1Q), vlanTag(20, layers.EthernetTypeDot1Q), vlanTag(30, layers.EthernetTypeIPv4),
			ip, udp(ip, 1063, 2063), payload("3tags")))
	}
	{
		// Priority tag: VLAN ID 0 with a priority.
		ip := ip6(64, layers.IPProtocolUDP)
		tag := vlanTag(0, layers.EthernetTypeIPv6)
		tag.Priority = 6
		add("vlan_priority_tag_ipv6_udp", build(ether(layers.EthernetTypeDot1Q), tag, ip, udp(ip, 1064, 2064), payload("prio")))
	}
	{
		// All TCI bits set: only the low 12 are the VLAN ID.
		ip := ip4(65, layers.IPProtocolTCP)
		tag := vlanTag(4095, layers.EthernetTypeIPv4)
		tag.Priority, tag.DropEligible = 7, true
		add("vlan_4095_ipv4_tcp", build(ether(layers.EthernetTypeDot1Q), tag, ip, tcp(ip, 40065, 80, fSYN)))
	}

	// Not IP.
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: macA, SourceProtAddress: []byte{192, 0, 2, 66},
		DstHwAddress: make([]byte, 6), DstProtAddress: []byte{192, 0, 2, 1},
	}
	{
		e := ether(layers.EthernetTypeARP)
		e.DstMAC = broadcast
		add("arp_request", build(e, arp))
	}
	add("vlan_arp", build(ether(layers.EthernetTypeDot1Q), vlanTag(100, layers.EthernetTypeARP), arp))
	{
		e := ether(layers.EthernetTypeLinkLayerDiscovery)
		e.DstMAC = net.HardwareAddr{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}
		add("lldp", build(e, &layers.LinkLayerDiscovery{
			ChassisID: layers.LLDPChassisID{Subtype: layers.LLDPChassisIDSubTypeMACAddr, ID: macA},
			PortID:    layers.LLDPPortID{Subtype: layers.LLDPPortIDSubtypeIfaceName, ID: []byte("eth0")},
			TTL:       120,
		}))
	}
	{
		// 802.3 with a length instead of an ethertype, LLC (STP's SAPs).
		e := ether(layers.EthernetTypeLLC)
		e.DstMAC = net.HardwareAddr{0x01, 0x80, 0xc2, 0x00, 0x00, 0x00}
		add("ethernet_802_3_llc", build(e, &layers.LLC{DSAP: 0x42, SSAP: 0x42, Control: 0x03}, filler(35)))
	}

	return frames
}
