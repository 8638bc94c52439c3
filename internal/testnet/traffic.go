package testnet

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Header sizes used in expectations.
const (
	IPv4HeaderLen = 20
	IPv6HeaderLen = 40
	UDPHeaderLen  = 8
	ICMPEchoLen   = 8 // ICMP/ICMPv6 echo header (type, code, csum, id, seq)
	MTU           = 1500
)

// Timeouts for the senders. All loops below are bounded by these.
const (
	deliveryTimeout = 10 * time.Second
	echoTimeout     = 2 * time.Second
)

func ipHeaderLen(v6 bool) int {
	if v6 {
		return IPv6HeaderLen
	}
	return IPv4HeaderLen
}

func other(s Side) Side {
	if s == SideA {
		return SideB
	}
	return SideA
}

// SendUDP opens `flows` UDP sockets in side from's namespace (each with its
// own kernel-chosen source port) and sends `packets` datagrams of `payload`
// bytes from each to the other side's address and dstPort (0: an ephemeral
// port of a listener it opens). A listener on the receiving side consumes the
// datagrams (so no ICMP port-unreachable is generated), and SendUDP returns
// only after all datagrams were received, or an error. Packets are sent
// round-robin over the flows.
//
// The returned Expect has one entry per flow with Packets=packets and
// Bytes=packets*(IP header + 8 + payload).
func (p *Pair) SendUDP(from Side, v6 bool, dstPort uint16, flows, packets, payload int) (Expect, error) {
	maxPayload := MTU - ipHeaderLen(v6) - UDPHeaderLen
	if flows < 1 || flows > 10000 || packets < 1 || packets > 1000000 || payload < 0 || payload > maxPayload {
		return nil, fmt.Errorf("SendUDP: bad arguments flows=%d packets=%d payload=%d (max %d)", flows, packets, payload, maxPayload)
	}
	to := other(from)
	src, dst := p.Addr(from, v6), p.Addr(to, v6)
	network := "udp4"
	if v6 {
		network = "udp6"
	}

	var ln *net.UDPConn
	if err := p.Do(p.NS(to), func() (err error) {
		ln, err = net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, dstPort)))
		return err
	}); err != nil {
		return nil, fmt.Errorf("SendUDP: listen: %w", err)
	}
	defer ln.Close()
	setRcvBufForce(ln, 8<<20)
	dstPort = uint16(ln.LocalAddr().(*net.UDPAddr).Port)

	conns := make([]*net.UDPConn, 0, flows)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err := p.Do(p.NS(from), func() error {
		for i := 0; i < flows; i++ {
			c, err := net.DialUDP(network,
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, dstPort)))
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("SendUDP: dial: %w", err)
	}

	total := flows * packets
	var received atomic.Int64
	perPort := make(map[uint16]int, flows)
	recvDone := make(chan error, 1)
	go func() {
		buf := make([]byte, 65536)
		deadline := time.Now().Add(deliveryTimeout + time.Duration(total)*time.Millisecond)
		_ = ln.SetReadDeadline(deadline)
		for i := 0; i < total; i++ { // bounded: total datagrams or the deadline
			n, from, err := ln.ReadFromUDPAddrPort(buf)
			if err != nil {
				recvDone <- fmt.Errorf("after %d of %d datagrams: %w", i, total, err)
				return
			}
			if n != payload || from.Addr().Unmap() != src {
				recvDone <- fmt.Errorf("stray datagram from %v len %d", from, n)
				return
			}
			perPort[from.Port()]++
			received.Add(1)
		}
		recvDone <- nil
	}()

	buf := make([]byte, payload)
	for i := range buf {
		buf[i] = byte(i)
	}
	sent := 0
	for j := 0; j < packets; j++ {
		for _, c := range conns {
			if _, err := c.Write(buf); err != nil {
				return nil, fmt.Errorf("SendUDP: write: %w", err)
			}
			sent++
			// Pace so the receiving backlog/socket never overflows: at most
			// 256 datagrams in flight.
			if sent-int(received.Load()) > 256 {
				limit := time.Now().Add(deliveryTimeout)
				for sent-int(received.Load()) > 64 && time.Now().Before(limit) {
					time.Sleep(200 * time.Microsecond)
				}
			}
		}
	}
	if err := <-recvDone; err != nil {
		return nil, fmt.Errorf("SendUDP: receive: %w", err)
	}
	exp := Expect{}
	per := uint64(ipHeaderLen(v6) + UDPHeaderLen + payload)
	for _, c := range conns {
		sport := uint16(c.LocalAddr().(*net.UDPAddr).Port)
		if perPort[sport] != packets {
			return nil, fmt.Errorf("SendUDP: port %d: received %d datagrams, sent %d", sport, perPort[sport], packets)
		}
		exp.Add(FlowID{Src: src, Dst: dst, SrcPort: sport, DstPort: dstPort, Proto: ProtoUDP},
			Count{Packets: uint64(packets), Bytes: uint64(packets) * per})
	}
	if len(exp) != flows {
		return nil, fmt.Errorf("SendUDP: %d distinct flows, want %d", len(exp), flows)
	}
	return exp, nil
}

func setRcvBufForce(c syscall.Conn, n int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	})
}

// SendICMPEcho sends `count` echo requests with `payload` data bytes from
// side from to the other side over a raw ICMP/ICMPv6 socket, one at a time,
// waiting for each reply (answered by the other side's kernel). It returns
// the request flow (SrcPort 0, DstPort 8<<8 for IPv4, 128<<8 for IPv6) and the
// reply flow (DstPort 0, or 129<<8 for IPv6), each with Packets=count and
// Bytes=count*(IP header + 8 + payload).
func (p *Pair) SendICMPEcho(from Side, v6 bool, count, payload int) (Expect, error) {
	maxPayload := MTU - ipHeaderLen(v6) - ICMPEchoLen
	if count < 1 || count > 100000 || payload < 0 || payload > maxPayload {
		return nil, fmt.Errorf("SendICMPEcho: bad arguments count=%d payload=%d", count, payload)
	}
	to := other(from)
	src, dst := p.Addr(from, v6), p.Addr(to, v6)
	network, reqType, repType, proto := "ip4:icmp", uint8(8), uint8(0), ProtoICMP
	if v6 {
		network, reqType, repType, proto = "ip6:ipv6-icmp", 128, 129, ProtoICMPv6
	}
	var conn *net.IPConn
	if err := p.Do(p.NS(from), func() error {
		c, err := net.ListenPacket(network, src.String())
		if err != nil {
			return err
		}
		conn = c.(*net.IPConn)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("SendICMPEcho: raw socket: %w", err)
	}
	defer conn.Close()

	var idb [2]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, err
	}
	id := binary.BigEndian.Uint16(idb[:])
	msg := make([]byte, ICMPEchoLen+payload)
	rbuf := make([]byte, 65536)
	dstAddr := &net.IPAddr{IP: dst.AsSlice()}
	for seq := 0; seq < count; seq++ {
		msg[0], msg[1] = reqType, 0
		msg[2], msg[3] = 0, 0
		binary.BigEndian.PutUint16(msg[4:], id)
		binary.BigEndian.PutUint16(msg[6:], uint16(seq))
		for i := ICMPEchoLen; i < len(msg); i++ {
			msg[i] = byte(i + seq)
		}
		if !v6 { // the kernel fills in the ICMPv6 checksum itself
			binary.BigEndian.PutUint16(msg[2:], inetChecksum(msg))
		}
		if _, err := conn.WriteTo(msg, dstAddr); err != nil {
			return nil, fmt.Errorf("SendICMPEcho: send: %w", err)
		}
		deadline := time.Now().Add(echoTimeout)
		_ = conn.SetReadDeadline(deadline)
		got := false
		for i := 0; i < 1000 && !got; i++ { // bounded by count and deadline
			n, _, err := conn.ReadFrom(rbuf)
			if err != nil {
				return nil, fmt.Errorf("SendICMPEcho: waiting for reply %d: %w", seq, err)
			}
			r := rbuf[:n]
			if n >= ICMPEchoLen && r[0] == repType && binary.BigEndian.Uint16(r[4:]) == id &&
				binary.BigEndian.Uint16(r[6:]) == uint16(seq) {
				if n != len(msg) {
					return nil, fmt.Errorf("SendICMPEcho: reply %d has %d bytes, want %d", seq, n, len(msg))
				}
				got = true
			}
		}
		if !got {
			return nil, fmt.Errorf("SendICMPEcho: no reply for seq %d", seq)
		}
	}
	per := uint64(ipHeaderLen(v6) + ICMPEchoLen + payload)
	c := Count{Packets: uint64(count), Bytes: uint64(count) * per}
	return Expect{
		{Src: src, Dst: dst, DstPort: ICMPPort(reqType, 0), Proto: proto}: c,
		{Src: dst, Dst: src, DstPort: ICMPPort(repType, 0), Proto: proto}: c,
	}, nil
}

func inetChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// SendRawFrames sends complete Ethernet frames out of ifname in namespace ns
// through an AF_PACKET SOCK_RAW socket, unchanged (VLAN tags stay in the
// frame). Each frame is one sendto; the frames are not checked.
func SendRawFrames(ns netns.NsHandle, ifname string, frames [][]byte) error {
	var fd = -1
	var ifindex int
	err := Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		// Protocol 0: this socket never receives anything.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("SendRawFrames: %w", err)
	}
	defer unix.Close(fd)
	for i, f := range frames {
		if len(f) < 14 {
			return fmt.Errorf("SendRawFrames: frame %d too short (%d bytes)", i, len(f))
		}
		sa := &unix.SockaddrLinklayer{
			Ifindex:  ifindex,
			Protocol: htons(binary.BigEndian.Uint16(f[12:14])),
			Halen:    6,
		}
		copy(sa.Addr[:], f[0:6])
		if err := unix.Sendto(fd, f, 0, sa); err != nil {
			return fmt.Errorf("SendRawFrames: frame %d: %w", i, err)
		}
	}
	return nil
}

// SendRawFrames sends frames out of side s's veth (see SendRawFrames).
func (p *Pair) SendRawFrames(s Side, frames [][]byte) error {
	return SendRawFrames(p.NS(s), p.Ifname(s), frames)
}

// VLANUDPFrame builds an 802.1Q-tagged Ethernet frame carrying an IPv4 or
// IPv6 (chosen by src) UDP datagram with correct lengths and checksums.
// Its IP bytes are IP header + 8 + len(payload).
func VLANUDPFrame(srcMAC, dstMAC net.HardwareAddr, vid uint16, src, dst netip.Addr, sport, dport uint16, payload []byte) ([]byte, error) {
	return UDPFrame(srcMAC, dstMAC, src, dst, sport, dport, payload, vid)
}

// UDPFrame builds an Ethernet frame with a UDP datagram, with zero or more
// 802.1Q tags (outermost first; all use TPID 0x8100).
func UDPFrame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte, vids ...uint16) ([]byte, error) {
	if src.Is4() != dst.Is4() {
		return nil, errors.New("UDPFrame: mixed address families")
	}
	etIP := layers.EthernetTypeIPv4
	if src.Is6() {
		etIP = layers.EthernetTypeIPv6
	}
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: etIP}
	ls = append(ls, eth)
	if len(vids) > 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		for i, vid := range vids {
			if vid > 4095 {
				return nil, fmt.Errorf("UDPFrame: bad VID %d", vid)
			}
			next := layers.EthernetTypeDot1Q
			if i == len(vids)-1 {
				next = etIP
			}
			ls = append(ls, &layers.Dot1Q{VLANIdentifier: vid, Type: next})
		}
	}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if src.Is4() {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		ls = append(ls, ip)
	}
	ls = append(ls, udp, gopacket.Payload(payload))
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, err
	}
	return append([]byte(nil), sb.Bytes()...), nil
}

// TCPCounters is the part of TCP_INFO the tests use.
type TCPCounters struct {
	State                   uint8
	SegsOut, SegsIn         uint32 // all segments, GSO super-packets counted as their segments
	DataSegsOut, DataSegsIn uint32
	BytesSent               uint64 // payload bytes sent, retransmissions included
	BytesRetrans            uint64
	BytesReceived           uint64
	TotalRetrans            uint32
	SndMSS                  uint32
}

func tcpCounters(c syscall.Conn) (TCPCounters, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return TCPCounters{}, err
	}
	var tc TCPCounters
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			ierr = err
			return
		}
		tc = TCPCounters{
			State:   info.State,
			SegsOut: info.Segs_out, SegsIn: info.Segs_in,
			DataSegsOut: info.Data_segs_out, DataSegsIn: info.Data_segs_in,
			BytesSent: info.Bytes_sent, BytesRetrans: info.Bytes_retrans,
			BytesReceived: info.Bytes_received,
			TotalRetrans:  info.Total_retrans,
			SndMSS:        info.Snd_mss,
		}
	}); err != nil {
		return tc, err
	}
	return tc, ierr
}

// TCP states from include/net/tcp_states.h.
const (
	tcpTimeWait = 6
	tcpClose    = 7
)

// TCPResult describes one TCPTransfer / TCPExchange.
type TCPResult struct {
	Client, Server         netip.AddrPort
	Forward, Reverse       FlowID // client→server and server→client
	ClientSent, ServerSent uint64 // application bytes written (and read by the peer)
	// TCP_INFO of both sockets once the connection was finished: the
	// kernel's own count of segments and retransmitted bytes, an oracle
	// independent of the capture's GSO expansion. Client.SegsOut counts every
	// client->server segment (SYN included) and Client.SegsIn every
	// server->client one; the server socket is created from the listener's
	// request socket, so its counters miss the SYN / SYN-ACK.
	ClientInfo, ServerInfo TCPCounters
}

// TCPTransfer runs TCPExchange over IPv4 with a server reply of bytes/10.
func TCPTransfer(p *Pair, bytes int) (TCPResult, error) {
	return p.TCPExchange(false, bytes, bytes/10)
}

// TCPExchange starts a TCP server on side A and a client on side B. The
// client sends clientBytes and half-closes; the server reads everything,
// answers with serverBytes and half-closes; the client reads the answer to
// EOF. Both sockets' TCP_INFO is recorded once the connection is over on the
// wire (client in TIME_WAIT, server in CLOSE after the last ACK), so when it
// returns no further packet of the connection will be sent. Packet counts
// depend on TSO/GSO/GRO and retransmissions (even an idle veth sees the
// occasional tail-loss-probe retransmission), so they are not known by
// construction: use the capture oracle and the TCP_INFO counters.
func (p *Pair) TCPExchange(v6 bool, clientBytes, serverBytes int) (TCPResult, error) {
	if clientBytes < 0 || serverBytes < 0 || clientBytes > 1<<30 || serverBytes > 1<<30 {
		return TCPResult{}, fmt.Errorf("TCPExchange: bad sizes %d/%d", clientBytes, serverBytes)
	}
	network := "tcp4"
	if v6 {
		network = "tcp6"
	}
	srvAddr, cliAddr := p.Addr(SideA, v6), p.Addr(SideB, v6)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var ln *net.TCPListener
	if err := p.Do(p.NSA, func() error {
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		l, err := lc.Listen(ctx, network, netip.AddrPortFrom(srvAddr, 0).String())
		if err != nil {
			return err
		}
		ln = l.(*net.TCPListener)
		return nil
	}); err != nil {
		return TCPResult{}, fmt.Errorf("TCPExchange: listen: %w", err)
	}
	defer ln.Close()
	srv := ln.Addr().(*net.TCPAddr).AddrPort()

	type srvResult struct {
		got  uint64
		info TCPCounters
		err  error
	}
	srvDone := make(chan srvResult, 1)
	go func() {
		var r srvResult
		defer func() { srvDone <- r }()
		_ = ln.SetDeadline(time.Now().Add(30 * time.Second))
		c, err := ln.AcceptTCP()
		if err != nil {
			r.err = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		n, err := io.Copy(io.Discard, c)
		r.got = uint64(n)
		if err != nil {
			r.err = err
			return
		}
		if _, err := c.Write(pattern(serverBytes)); err != nil {
			r.err = err
			return
		}
		if err := c.CloseWrite(); err != nil {
			r.err = err
			return
		}
		// LAST_ACK -> CLOSE when the client's final ACK arrives.
		limit := time.Now().Add(5 * time.Second)
		for {
			r.info, r.err = tcpCounters(c)
			if r.err != nil || r.info.State == tcpClose {
				return
			}
			if time.Now().After(limit) {
				r.err = fmt.Errorf("server socket still in state %d", r.info.State)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()

	var conn *net.TCPConn
	if err := p.Do(p.NSB, func() error {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(cliAddr, 0)), Timeout: 10 * time.Second}
		d.SetMultipathTCP(false)
		c, err := d.DialContext(ctx, network, srv.String())
		if err != nil {
			return err
		}
		conn = c.(*net.TCPConn)
		return nil
	}); err != nil {
		return TCPResult{}, fmt.Errorf("TCPExchange: dial: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	cli := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	res := TCPResult{
		Client:  netip.AddrPortFrom(cli.Addr().Unmap(), cli.Port()),
		Server:  netip.AddrPortFrom(srv.Addr().Unmap(), srv.Port()),
		Forward: FlowID{Src: cliAddr, Dst: srvAddr, SrcPort: cli.Port(), DstPort: srv.Port(), Proto: ProtoTCP},
	}
	res.Reverse = res.Forward.Reverse()

	if _, err := conn.Write(pattern(clientBytes)); err != nil {
		return res, fmt.Errorf("TCPExchange: client write: %w", err)
	}
	res.ClientSent = uint64(clientBytes)
	if err := conn.CloseWrite(); err != nil {
		return res, fmt.Errorf("TCPExchange: client shutdown: %w", err)
	}
	n, err := io.Copy(io.Discard, conn)
	if err != nil {
		return res, fmt.Errorf("TCPExchange: client read: %w", err)
	}
	sr := <-srvDone
	if sr.err != nil {
		return res, fmt.Errorf("TCPExchange: server: %w", sr.err)
	}
	if sr.got != uint64(clientBytes) || n != int64(serverBytes) {
		return res, fmt.Errorf("TCPExchange: server got %d of %d, client got %d of %d", sr.got, clientBytes, n, serverBytes)
	}
	res.ServerSent = uint64(serverBytes)
	res.ServerInfo = sr.info
	// The server reached CLOSE, so the client's last ACK went out and the
	// client (TIME_WAIT) will send nothing more; its counters are final.
	if res.ClientInfo, err = tcpCounters(conn); err != nil {
		return res, fmt.Errorf("TCPExchange: TCP_INFO: %w", err)
	}
	// A socket that entered TIME_WAIT was replaced by a timewait
	// mini-socket and reports CLOSE.
	if res.ClientInfo.State != tcpTimeWait && res.ClientInfo.State != tcpClose {
		return res, fmt.Errorf("TCPExchange: client in state %d, want TIME_WAIT/CLOSE", res.ClientInfo.State)
	}
	return res, nil
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}
