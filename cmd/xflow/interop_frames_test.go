package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xflow-net/xflow/internal/testnet"
)

// The interop suite's crafted frames: one or more of every protocol and
// encapsulation the parser handles (docs/design.md, "Counting rules")
// beyond what the kernel's own sockets send: SCTP, UDP-Lite, ICMP and ICMPv6
// errors, GRE, IPv4 options and fragments, IPv6 extension headers and
// fragments, QinQ, and frames with bytes after the IP packet. Each frame
// goes from its own addresses (192.0.2.N -> 198.51.100.N, 2001:db8::N:1 ->
// 2001:db8::N:2), which neither namespace owns: the receiving kernel drops
// them without answering.

// iframe is one crafted frame, sent from side Side, and the flow it must
// come out as (ports 0 where the parser has no transport header, type<<8 |
// code for ICMP; VLAN the outer tag) with its IP length.
type iframe struct {
	name  string
	side  testnet.Side
	frame []byte
	id    testnet.FlowID
	bytes uint64
}

func ifAddr4(n int) (netip.Addr, netip.Addr) {
	return netip.AddrFrom4([4]byte{192, 0, 2, byte(n)}), netip.AddrFrom4([4]byte{198, 51, 100, byte(n)})
}

func ifAddr6(n int) (netip.Addr, netip.Addr) {
	return netip.MustParseAddr(fmt.Sprintf("2001:db8::%d:1", n)), netip.MustParseAddr(fmt.Sprintf("2001:db8::%d:2", n))
}

// serialize builds a frame, fixing lengths and checksums.
func serialize(ls ...gopacket.SerializableLayer) ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, err
	}
	return append([]byte(nil), buf.Bytes()...), nil
}

// l4 is a transport header as raw bytes: source and destination port (the
// first 4 bytes of TCP, UDP, UDP-Lite, SCTP and DCCP headers) and rest.
func l4(sport, dport uint16, rest ...byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	return append(b, rest...)
}

// ipLen is the IP length of the packet in an Ethernet frame (after any VLAN
// tags): IPv4 total length, or IPv6 payload length + 40.
func ipLen(f []byte) uint64 {
	off := 12
	for binary.BigEndian.Uint16(f[off:]) == 0x8100 || binary.BigEndian.Uint16(f[off:]) == 0x88a8 {
		off += 4
	}
	ip := f[off+2:]
	if ip[0]>>4 == 4 {
		return uint64(binary.BigEndian.Uint16(ip[2:]))
	}
	return uint64(binary.BigEndian.Uint16(ip[4:])) + 40
}

// interopFrames builds the crafted frames for pair p.
func interopFrames(p *testnet.Pair) ([]iframe, error) {
	var out []iframe
	var err error
	// add builds a frame whose Ethernet header goes from side's MAC to the
	// other side's, with VLAN tags vids (outermost first, the first of two
	// an 802.1ad S-tag), then the layers.
	add := func(name string, side testnet.Side, id testnet.FlowID, vids []uint16, ls ...gopacket.SerializableLayer) []byte {
		if err != nil {
			return nil
		}
		src, dst := p.MACB, p.MACA
		if side == testnet.SideA {
			src, dst = p.MACA, p.MACB
		}
		et := layers.EthernetTypeIPv4
		if id.Src.Is6() {
			et = layers.EthernetTypeIPv6
		}
		eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: et}
		hdrs := []gopacket.SerializableLayer{eth}
		for i, vid := range vids {
			tag := &layers.Dot1Q{VLANIdentifier: vid, Type: et}
			if i+1 < len(vids) {
				tag.Type = layers.EthernetTypeDot1Q
			}
			if i == 0 {
				eth.EthernetType = layers.EthernetTypeDot1Q
				if len(vids) > 1 {
					eth.EthernetType = layers.EthernetTypeQinQ
				}
			}
			hdrs = append(hdrs, tag)
		}
		var f []byte
		f, err = serialize(append(hdrs, ls...)...)
		if err != nil {
			err = fmt.Errorf("frame %s: %w", name, err)
			return nil
		}
		if len(vids) > 0 {
			id.VLAN = vids[0]
		}
		out = append(out, iframe{name: name, side: side, frame: f, id: id, bytes: ipLen(f)})
		return f
	}
	ip4 := func(n int, proto layers.IPProtocol) *layers.IPv4 {
		s, d := ifAddr4(n)
		return &layers.IPv4{Version: 4, TTL: 64, Id: uint16(0x4000 + n), Flags: layers.IPv4DontFragment,
			Protocol: proto, SrcIP: net.IP(s.AsSlice()), DstIP: net.IP(d.AsSlice())}
	}
	ip6 := func(n int, next layers.IPProtocol) *layers.IPv6 {
		s, d := ifAddr6(n)
		return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: net.IP(s.AsSlice()), DstIP: net.IP(d.AsSlice())}
	}
	id4 := func(n int, proto uint8, sport, dport uint16) testnet.FlowID {
		s, d := ifAddr4(n)
		return testnet.FlowID{Src: s, Dst: d, SrcPort: sport, DstPort: dport, Proto: proto}
	}
	id6 := func(n int, proto uint8, sport, dport uint16) testnet.FlowID {
		s, d := ifAddr6(n)
		return testnet.FlowID{Src: s, Dst: d, SrcPort: sport, DstPort: dport, Proto: proto}
	}
	pay := func(b []byte) gopacket.Payload { return gopacket.Payload(b) }
	filler := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + i%26)
		}
		return b
	}
	B, A := testnet.SideB, testnet.SideA

	// SCTP: common header (ports, verification tag, checksum) and a DATA
	// chunk. The parser takes SCTP's ports, as nfdump must.
	sctpPkt := append(l4(36412, 38412, 0x5c, 0x7b, 0, 1, 0, 0, 0, 0), // tag, checksum 0
		0, 0x03, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 's', 'c', 't', 'p') // DATA, 20 bytes
	add("ipv4_sctp", B, id4(101, 132, 36412, 38412), nil, ip4(101, layers.IPProtocolSCTP), pay(sctpPkt))
	add("ipv6_sctp", B, id6(102, 132, 36412, 38412), nil, ip6(102, layers.IPProtocolSCTP), pay(sctpPkt))
	// UDP-Lite: checksum coverage 8 (the header), checksum left 0.
	lite := l4(5004, 5005, 0, 8, 0, 0, 'l', 'i', 't', 'e')
	add("ipv4_udplite", B, id4(103, 136, 5004, 5005), nil, ip4(103, layers.IPProtocolUDPLite), pay(lite))
	add("ipv6_udplite", A, id6(104, 136, 5004, 5005), nil, ip6(104, layers.IPProtocolUDPLite), pay(lite))

	// ICMP errors: port unreachable (3/3) quoting a UDP probe's headers;
	// ICMPv6 destination unreachable, port (1/4).
	{
		probe := append([]byte{0x45, 0, 0, 33, 0, 1, 0, 0, 64, 17, 0, 0, 198, 51, 100, 105, 192, 0, 2, 105}, l4(33434, 1105, 0, 13, 0, 0)...)
		add("ipv4_icmp_port_unreachable", B, id4(105, 1, 0, testnet.ICMPPort(3, 3)), nil, ip4(105, layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, pay(probe))
	}
	{
		ip := ip6(106, layers.IPProtocolICMPv6)
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(1, 4)}
		if e := icmp.SetNetworkLayerForChecksum(ip); e != nil {
			return nil, e
		}
		add("ipv6_icmpv6_port_unreachable", A, id6(106, 58, 0, testnet.ICMPPort(1, 4)), nil, ip,
			icmp, pay(append([]byte{0, 0, 0, 0}, filler(48)...))) // unused, then the quoted packet
	}

	// GRE carrying IPv4: a protocol without ports.
	add("ipv4_gre", B, id4(107, 47, 0, 0), nil, ip4(107, layers.IPProtocolGRE),
		&layers.GRE{Protocol: layers.EthernetTypeIPv4}, pay([]byte{0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}))

	// IPv4 options: router alert (IHL 6), record route (IHL 15).
	{
		ip := ip4(108, layers.IPProtocolUDP)
		ip.Options = []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
		add("ipv4_options_ihl6", B, id4(108, 17, 1108, 2108), nil, ip, pay(l4(1108, 2108, 0, 12, 0, 0, 'o', 'p', 't', '6')))
	}
	{
		ip := ip4(109, layers.IPProtocolTCP)
		ip.Options = []layers.IPv4Option{
			{OptionType: 7, OptionLength: 39, OptionData: append([]byte{4}, make([]byte, 36)...)},
			{OptionType: 0},
		}
		tcp := l4(40109, 443, 0, 0, 0x10, 0, 0, 0, 0x20, 0, 0x50, 0x10, 0xfa, 0xf0, 0, 0, 0, 0) // ACK
		add("ipv4_options_ihl15", A, id4(109, 6, 40109, 443), nil, ip, pay(tcp))
	}

	// IPv4 fragments: the first carries the UDP header, a later one does not
	// (ports 0).
	{
		ip := ip4(110, layers.IPProtocolUDP)
		ip.Flags, ip.Id = layers.IPv4MoreFragments, 0x1110
		add("ipv4_fragment_first", B, id4(110, 17, 1110, 2110), nil, ip, pay(append(l4(1110, 2110, 0, 72, 0, 0), filler(24)...)))
		ip = ip4(110, layers.IPProtocolUDP)
		ip.Flags, ip.Id, ip.FragOffset = 0, 0x1110, 4 // 32 bytes in
		add("ipv4_fragment_later", B, id4(110, 17, 0, 0), nil, ip, pay(filler(40)))
	}

	// IPv6 extension headers: hop-by-hop (PadN), routing (type 0, no
	// segments left), destination options (PadN), then UDP; and the fragment
	// header, first and later fragment.
	{
		hbh := []byte{byte(layers.IPProtocolIPv6Routing), 0, 1, 4, 0, 0, 0, 0}
		rt := []byte{byte(layers.IPProtocolIPv6Destination), 0, 0, 0, 0, 0, 0, 0}
		dst := []byte{byte(layers.IPProtocolUDP), 0, 1, 4, 0, 0, 0, 0}
		ext := append(append(append(hbh, rt...), dst...), l4(1111, 2111, 0, 12, 0, 0, 'e', 'x', 't', '!')...)
		add("ipv6_extension_headers", B, id6(111, 17, 1111, 2111), nil, ip6(111, layers.IPProtocolIPv6HopByHop), pay(ext))
	}
	{
		first := append([]byte{byte(layers.IPProtocolUDP), 0, 0, 1, 0, 0, 0x11, 0x12}, // offset 0, M
			append(l4(1112, 2112, 0, 72, 0, 0), filler(24)...)...)
		add("ipv6_fragment_first", B, id6(112, 17, 1112, 2112), nil, ip6(112, layers.IPProtocolIPv6Fragment), pay(first))
		later := append([]byte{byte(layers.IPProtocolUDP), 0, 0, 4 << 3, 0, 0, 0x11, 0x12}, filler(40)...) // offset 32 bytes
		add("ipv6_fragment_later", B, id6(112, 17, 0, 0), nil, ip6(112, layers.IPProtocolIPv6Fragment), pay(later))
	}

	// 802.1Q (one tag, ingress) and QinQ (802.1ad S-tag over an 802.1Q
	// C-tag, both hooks): the flow's VLAN is the outer tag.
	add("vlan_ipv6_udp", B, id6(113, 17, 1113, 2113), []uint16{113}, ip6(113, layers.IPProtocolUDP), pay(l4(1113, 2113, 0, 13, 0, 0, 'v', 'l', 'a', 'n', '!')))
	add("qinq_ipv4_udp", B, id4(114, 17, 1114, 2114), []uint16{300, 114}, ip4(114, layers.IPProtocolUDP), pay(l4(1114, 2114, 0, 12, 0, 0, 'q', 'i', 'n', 'q')))
	add("qinq_ipv6_tcp", A, id6(115, 6, 40115, 443), []uint16{301, 115}, ip6(115, layers.IPProtocolTCP),
		pay(l4(40115, 443, 0, 0, 0x10, 0, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0))) // SYN

	// Bytes after the IP packet: a short IPv4 packet (30 bytes) in a frame
	// padded to the 60-byte minimum; an IPv6 packet with an 8-byte trailer.
	if f := add("ipv4_udp_ethernet_padding", B, id4(116, 17, 1116, 2116), nil, ip4(116, layers.IPProtocolUDP), pay(l4(1116, 2116, 0, 10, 0, 0, 'h', 'i'))); f != nil && len(f) != 60 {
		return nil, fmt.Errorf("ipv4_udp_ethernet_padding: %d-byte frame, want 60 (padded)", len(f))
	}
	if f := add("ipv6_udp_trailer", A, id6(117, 17, 1117, 2117), nil, ip6(117, layers.IPProtocolUDP), pay(l4(1117, 2117, 0, 15, 0, 0, 't', 'r', 'a', 'i', 'l', 'e', 'r'))); f != nil {
		out[len(out)-1].frame = append(f, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee)
	}
	return out, err
}

// sendInteropFrames sends each crafted frame once and records it in sent
// (without its VLAN, as sendInteropMix does).
func sendInteropFrames(p *testnet.Pair, frames []iframe, sent testnet.Expect) error {
	for _, f := range frames {
		if err := p.SendRawFrames(f.side, [][]byte{f.frame}); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		id := f.id
		id.VLAN = 0
		sent.Add(id, testnet.Count{Packets: 1, Bytes: f.bytes})
	}
	return nil
}
