package testnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// virtio_net_hdr gso_type values (include/uapi/linux/virtio_net.h).
const (
	VnetGSONone  = 0
	VnetGSOTCPv4 = 1
	VnetGSOUDP   = 3 // UFO, obsolete
	VnetGSOTCPv6 = 4
	VnetGSOUDPL4 = 5
	VnetGSOECN   = 0x80
)

const vnetHdrLen = 10 // sizeof(struct virtio_net_hdr), the PACKET_VNET_HDR default

// VnetHdr is struct virtio_net_hdr as delivered by PACKET_VNET_HDR.
type VnetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // for GSO: the kernel fills in skb_headlen(), a hint, not the real header length
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
}

func parseVnetHdr(b []byte) VnetHdr {
	// virtio_net_hdr fields are in host byte order for PACKET_VNET_HDR on
	// little-endian hosts (virtio legacy endianness == native).
	return VnetHdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.NativeEndian.Uint16(b[2:4]),
		GSOSize:    binary.NativeEndian.Uint16(b[4:6]),
		CsumStart:  binary.NativeEndian.Uint16(b[6:8]),
		CsumOffset: binary.NativeEndian.Uint16(b[8:10]),
	}
}

// Record is one captured frame (possibly a GSO/GRO super-packet) after
// decoding.
type Record struct {
	Egress   bool // PACKET_OUTGOING
	PktType  uint8
	Flow     FlowID
	FrameLen int // captured frame length, L2 header included (VLAN tags stripped by the kernel are not)
	L2Len    int // Ethernet header + in-frame VLAN tags
	L3L4Len  int // IP header (incl. IPv6 hop-by-hop) + L4 header
	Vnet     VnetHdr
	Segs     uint64 // wire packets this frame stands for
	Bytes    uint64 // IP bytes of those wire packets
	Payload  uint64 // L4 payload bytes (TCP/UDP data; for ICMP the bytes after the 4-byte ICMP header)
	TCPFlags uint8  // for TCP: FIN=1 SYN=2 RST=4 PSH=8 ACK=16
	AuxVLAN  bool   // VLAN came from PACKET_AUXDATA (tag stripped by the kernel)
	At       time.Time
}

// CaptureStats counts what the capture saw besides flows.
type CaptureStats struct {
	Frames     uint64 // frames read
	NonIP      uint64 // frames ignored (ARP, unknown ethertypes)
	DecodeErrs uint64 // IP frames that failed to decode
	GSOFrames  uint64 // frames with gso_type != NONE
	// HdrLenMismatch counts GSO frames whose virtio hdr_len differed from
	// the parsed L2+L3+L4 header length (hdr_len is only skb_headlen()).
	HdrLenMismatch uint64
	Truncated      uint64 // frames larger than the read buffer (counted wrongly)
	RecvErrs       uint64 // recvmsg errors other than timeouts (e.g. EINVAL for GSO types virtio cannot express)
	KernelDrops    uint32 // PACKET_STATISTICS tp_drops (socket buffer overruns)
	KernelPackets  uint32 // PACKET_STATISTICS tp_packets
	RecordsDropped uint64 // records beyond MaxRecords (counts still included)
}

// MaxRecords bounds the number of Records a Capturer keeps in memory. Counts
// are always complete.
const MaxRecords = 200000

// MaxCaptureDuration bounds how long a capture goroutine runs if Stop is
// never called.
const MaxCaptureDuration = 10 * time.Minute

// Capturer reads every frame crossing one interface via AF_PACKET.
type Capturer struct {
	fd      int
	ifname  string
	ifindex int

	stopOnce sync.Once
	stopReq  chan struct{}
	done     chan struct{}

	mu              sync.Mutex
	ingress, egress Expect
	payIn, payOut   map[FlowID]uint64
	records         []Record
	stats           CaptureStats
	err             error
}

// Capture opens an AF_PACKET socket (ETH_P_ALL, PACKET_VNET_HDR,
// PACKET_AUXDATA) bound to ifname inside namespace ns, and starts a reader
// goroutine. Open it before the traffic starts. p may be nil; if not, the
// capture is closed by p's test cleanup if the test forgets Stop.
func Capture(p *Pair, ns netns.NsHandle, ifname string) (*Capturer, error) {
	c := &Capturer{
		fd: -1, ifname: ifname,
		stopReq: make(chan struct{}), done: make(chan struct{}),
		ingress: Expect{}, egress: Expect{},
		payIn: map[FlowID]uint64{}, payOut: map[FlowID]uint64{},
	}
	err := Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		c.ifindex = ifi.Index
		// Protocol 0: receive nothing until bound to the interface below,
		// so no frame of another interface slips in.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		c.fd = fd
		for _, o := range []struct {
			level, opt, val int
		}{
			{unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1},
			{unix.SOL_PACKET, unix.PACKET_AUXDATA, 1},
			{unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64 << 20},
		} {
			if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil {
				return fmt.Errorf("setsockopt %d/%d: %w", o.level, o.opt, err)
			}
		}
		tv := unix.NsecToTimeval((20 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
		if err := unix.Bind(fd, sa); err != nil {
			return fmt.Errorf("bind to %s: %w", ifname, err)
		}
		// Reset statistics (reading them clears them).
		_, _ = unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
		return nil
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		return nil, fmt.Errorf("capture on %s: %w", ifname, err)
	}
	go c.run()
	if p != nil && p.t != nil {
		p.t.Cleanup(func() { c.Stop() })
	}
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// quietPeriod: after Stop is requested, reading continues until one receive
// that started after the request timed out (SO_RCVTIMEO, 20 ms) with nothing
// to read, or drainLimit elapsed.
const drainLimit = 2 * time.Second

func (c *Capturer) run() {
	defer close(c.done)
	buf := make([]byte, vnetHdrLen+1<<20)
	oob := make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.TpacketAuxdata{})))+64)
	start := time.Now()
	var stopAt time.Time
	for {
		if stopAt.IsZero() {
			select {
			case <-c.stopReq:
				stopAt = time.Now()
			default:
			}
		}
		if !stopAt.IsZero() && time.Since(stopAt) > drainLimit {
			c.setErr(errors.New("capture: drain limit reached while frames kept arriving"))
			return
		}
		if time.Since(start) > MaxCaptureDuration {
			c.setErr(errors.New("capture: MaxCaptureDuration reached"))
			return
		}
		recvStart := time.Now()
		n, oobn, flags, from, err := unix.Recvmsg(c.fd, buf, oob, unix.MSG_TRUNC)
		if err != nil {
			if err == unix.EAGAIN || err == unix.EWOULDBLOCK || err == unix.EINTR {
				if !stopAt.IsZero() && recvStart.After(stopAt) {
					return // drained: quiet for a whole timeout after Stop
				}
				continue
			}
			c.mu.Lock()
			c.stats.RecvErrs++
			c.mu.Unlock()
			if err == unix.EBADF {
				return
			}
			continue
		}
		c.handle(buf, n, oob[:oobn], flags, from)
	}
}

func (c *Capturer) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

func (c *Capturer) handle(buf []byte, n int, oob []byte, flags int, from unix.Sockaddr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Frames++
	if flags&unix.MSG_TRUNC != 0 || n > len(buf) {
		c.stats.Truncated++
		return
	}
	if n < vnetHdrLen {
		c.stats.DecodeErrs++
		return
	}
	var pkttype uint8
	if ll, ok := from.(*unix.SockaddrLinklayer); ok {
		pkttype = ll.Pkttype
	}
	var aux *unix.TpacketAuxdata
	if cmsgs, err := unix.ParseSocketControlMessage(oob); err == nil {
		for _, m := range cmsgs {
			if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA &&
				len(m.Data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
				a := *(*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
				aux = &a
			}
		}
	}
	vh := parseVnetHdr(buf[:vnetHdrLen])
	rec, ok, err := Decode(buf[vnetHdrLen:n], vh, aux)
	if err != nil {
		c.stats.DecodeErrs++
		return
	}
	if !ok {
		c.stats.NonIP++
		return
	}
	rec.PktType = pkttype
	rec.Egress = pkttype == unix.PACKET_OUTGOING
	rec.At = time.Now()
	if vh.GSOType != VnetGSONone {
		c.stats.GSOFrames++
		if int(vh.HdrLen) != rec.L2Len+rec.L3L4Len {
			c.stats.HdrLenMismatch++
		}
	}
	cnt := Count{Packets: rec.Segs, Bytes: rec.Bytes}
	if rec.Egress {
		c.egress.Add(rec.Flow, cnt)
		c.payOut[rec.Flow] += rec.Payload
	} else {
		c.ingress.Add(rec.Flow, cnt)
		c.payIn[rec.Flow] += rec.Payload
	}
	if len(c.records) < MaxRecords {
		c.records = append(c.records, rec)
	} else {
		c.stats.RecordsDropped++
	}
}

// Decode turns one captured frame (starting at the Ethernet header) into a
// Record. vh is the frame's virtio_net_hdr (zero value for non-GSO) and aux
// the PACKET_AUXDATA (nil if none). ok is false for non-IP frames.
//
// For a non-GSO frame Segs is 1 and Bytes the IP length from the header. For
// a GSO frame, with H = IP header + L4 header (parsed, not vh.HdrLen) and
// P = frame length - L2 - H: Segs = ceil(P / gso_size) and
// Bytes = (frame length - L2) + (Segs-1)*H, i.e. what the segments would
// carry on the wire.
func Decode(frame []byte, vh VnetHdr, aux *unix.TpacketAuxdata) (rec Record, ok bool, err error) {
	var (
		eth   layers.Ethernet
		dot1q layers.Dot1Q
		ip4   layers.IPv4
		ip6   layers.IPv6
		tcp   layers.TCP
		udp   layers.UDP
		icmp4 layers.ICMPv4
		icmp6 layers.ICMPv6
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet,
		&eth, &dot1q, &ip4, &ip6, &tcp, &udp, &icmp4, &icmp6)
	parser.IgnoreUnsupported = true
	decoded := make([]gopacket.LayerType, 0, 8)
	if err := parser.DecodeLayers(frame, &decoded); err != nil {
		// A truncated L4 header etc.; treat as decode error only if we got IP.
		hasIP := false
		for _, lt := range decoded {
			if lt == layers.LayerTypeIPv4 || lt == layers.LayerTypeIPv6 {
				hasIP = true
			}
		}
		if !hasIP {
			return rec, false, nil
		}
		return rec, false, err
	}
	rec.FrameLen = len(frame)
	rec.Vnet = vh
	var (
		l2Len  = 14
		gotIP  bool
		ipHdr  int
		ipLen  int // IP bytes according to the header
		l4Hdr  int
		l4Done bool
		proto  uint8
		vlan   uint16
		vlanOK bool
	)
	if aux != nil && aux.Status&unix.TP_STATUS_VLAN_VALID != 0 {
		vlan, vlanOK = aux.Vlan_tci&0x0fff, true
		rec.AuxVLAN = true
	}
	for _, lt := range decoded {
		switch lt {
		case layers.LayerTypeDot1Q:
			if !gotIP {
				l2Len += 4
				if !vlanOK {
					// Outermost in-frame tag. The parser reuses one Dot1Q
					// value for all tags, so read the outer one from the frame.
					vlan, vlanOK = binary.BigEndian.Uint16(frame[14:16])&0x0fff, true
				}
			}
		case layers.LayerTypeIPv4:
			if gotIP {
				continue // tunnelled inner header: keep the outer one
			}
			gotIP = true
			rec.Flow.Src, _ = netip.AddrFromSlice(ip4.SrcIP.To4())
			rec.Flow.Dst, _ = netip.AddrFromSlice(ip4.DstIP.To4())
			proto = uint8(ip4.Protocol)
			ipHdr = int(ip4.IHL) * 4
			ipLen = int(ip4.Length)
			if ipLen == 0 || binary.BigEndian.Uint16(frame[l2Len+2:l2Len+4]) == 0 {
				ipLen = len(frame) - l2Len // TSO/BIG TCP: length left 0
			}
		case layers.LayerTypeIPv6:
			if gotIP {
				continue
			}
			gotIP = true
			rec.Flow.Src, _ = netip.AddrFromSlice(ip6.SrcIP)
			rec.Flow.Dst, _ = netip.AddrFromSlice(ip6.DstIP)
			proto = uint8(ip6.NextHeader)
			ipHdr = 40
			if ip6.HopByHop != nil {
				proto = uint8(ip6.HopByHop.NextHeader)
				ipHdr += ip6.HopByHop.ActualLength
			}
			ipLen = 40 + int(ip6.Length)
			if ip6.Length == 0 {
				ipLen = len(frame) - l2Len
			}
		case layers.LayerTypeTCP:
			if !l4Done {
				l4Done = true
				rec.Flow.SrcPort, rec.Flow.DstPort = uint16(tcp.SrcPort), uint16(tcp.DstPort)
				l4Hdr = int(tcp.DataOffset) * 4
				rec.TCPFlags = tcpFlags(&tcp)
			}
		case layers.LayerTypeUDP:
			if !l4Done {
				l4Done = true
				rec.Flow.SrcPort, rec.Flow.DstPort = uint16(udp.SrcPort), uint16(udp.DstPort)
				l4Hdr = 8
			}
		case layers.LayerTypeICMPv4:
			if !l4Done {
				l4Done = true
				rec.Flow.DstPort = uint16(icmp4.TypeCode)
				l4Hdr = 4
			}
		case layers.LayerTypeICMPv6:
			if !l4Done {
				l4Done = true
				rec.Flow.DstPort = uint16(icmp6.TypeCode)
				l4Hdr = 4
			}
		}
	}
	if !gotIP {
		return rec, false, nil
	}
	rec.Flow.Proto = proto
	rec.Flow.VLAN = vlan
	rec.L2Len = l2Len
	rec.L3L4Len = ipHdr + l4Hdr
	if vh.GSOType == VnetGSONone || vh.GSOSize == 0 {
		rec.Segs = 1
		rec.Bytes = uint64(ipLen)
		if ipLen >= rec.L3L4Len {
			rec.Payload = uint64(ipLen - rec.L3L4Len)
		}
		return rec, true, nil
	}
	hdr := rec.L3L4Len
	pay := len(frame) - l2Len - hdr
	if pay <= 0 {
		return rec, false, fmt.Errorf("GSO frame without payload (len %d, headers %d)", len(frame), l2Len+hdr)
	}
	segs := (pay + int(vh.GSOSize) - 1) / int(vh.GSOSize)
	rec.Segs = uint64(segs)
	rec.Bytes = uint64(len(frame)-l2Len) + uint64(segs-1)*uint64(hdr)
	rec.Payload = uint64(pay)
	return rec, true, nil
}

func tcpFlags(t *layers.TCP) uint8 {
	var f uint8
	for i, b := range []bool{t.FIN, t.SYN, t.RST, t.PSH, t.ACK, t.URG, t.ECE, t.CWR} {
		if b {
			f |= 1 << i
		}
	}
	return f
}

// Stop ends the capture: it keeps reading until the socket has been quiet for
// one receive timeout (20 ms) after the call, bounded by 2 s, closes the
// socket and returns per-flow counts. ingress holds frames the interface
// received (every pkttype except PACKET_OUTGOING), egress what it sent.
// Stop is idempotent; check Err afterwards.
func (c *Capturer) Stop() (ingress, egress Expect) {
	c.stopOnce.Do(func() {
		close(c.stopReq)
		<-c.done
		c.mu.Lock()
		if st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			c.stats.KernelDrops = st.Drops
			c.stats.KernelPackets = st.Packets
		}
		unix.Close(c.fd)
		c.fd = -1
		c.mu.Unlock()
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return copyExpect(c.ingress), copyExpect(c.egress)
}

func copyExpect(e Expect) Expect {
	o := make(Expect, len(e))
	for k, v := range e {
		o[k] = v
	}
	return o
}

// Err reports conditions that make the counts unreliable: kernel drops,
// truncated frames, receive errors, or a drain that never went quiet. Call it
// after Stop.
func (c *Capturer) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	if c.err != nil {
		errs = append(errs, c.err)
	}
	if c.stats.KernelDrops > 0 {
		errs = append(errs, fmt.Errorf("capture on %s: kernel dropped %d frames", c.ifname, c.stats.KernelDrops))
	}
	if c.stats.Truncated > 0 {
		errs = append(errs, fmt.Errorf("capture on %s: %d truncated frames", c.ifname, c.stats.Truncated))
	}
	if c.stats.RecvErrs > 0 {
		errs = append(errs, fmt.Errorf("capture on %s: %d receive errors", c.ifname, c.stats.RecvErrs))
	}
	return errors.Join(errs...)
}

// Stats returns capture statistics (complete after Stop).
func (c *Capturer) Stats() CaptureStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Records returns a copy of the decoded frames, in arrival order (at most
// MaxRecords).
func (c *Capturer) Records() []Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Record(nil), c.records...)
}

// Payload returns the L4 payload bytes per flow, split like Stop. For TCP
// this is the application data carried (retransmissions included).
func (c *Capturer) Payload() (ingress, egress map[FlowID]uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ingress = make(map[FlowID]uint64, len(c.payIn))
	egress = make(map[FlowID]uint64, len(c.payOut))
	for k, v := range c.payIn {
		ingress[k] = v
	}
	for k, v := range c.payOut {
		egress[k] = v
	}
	return ingress, egress
}
