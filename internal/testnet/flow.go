package testnet

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// IP protocol numbers used in FlowID.Proto.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// FlowID identifies a unidirectional flow. For ICMP/ICMPv6, SrcPort is 0 and
// DstPort is type<<8|code. VLAN is the outermost 802.1Q VID (0 if untagged).
type FlowID struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
	VLAN             uint16
}

func (f FlowID) String() string {
	s := fmt.Sprintf("%s %s:%d > %s:%d", protoName(f.Proto),
		f.Src, f.SrcPort, f.Dst, f.DstPort)
	if f.Proto == ProtoICMP || f.Proto == ProtoICMPv6 {
		s = fmt.Sprintf("%s %s > %s type %d code %d", protoName(f.Proto),
			f.Src, f.Dst, f.DstPort>>8, f.DstPort&0xff)
	}
	if f.VLAN != 0 {
		s += fmt.Sprintf(" vlan %d", f.VLAN)
	}
	return s
}

// Reverse returns the flow in the opposite direction (ports swapped; for
// ICMP the type/code is kept, callers must set the reply type themselves).
func (f FlowID) Reverse() FlowID {
	return FlowID{Src: f.Dst, Dst: f.Src, SrcPort: f.DstPort, DstPort: f.SrcPort, Proto: f.Proto, VLAN: f.VLAN}
}

func protoName(p uint8) string {
	switch p {
	case ProtoICMP:
		return "icmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMPv6:
		return "icmp6"
	}
	return fmt.Sprintf("proto%d", p)
}

// ICMPPort returns the FlowID.DstPort encoding of an ICMP type and code.
func ICMPPort(typ, code uint8) uint16 { return uint16(typ)<<8 | uint16(code) }

// Count is a packet and byte count. Bytes are IP bytes: the IPv4 total length
// or 40 + the IPv6 payload length, summed over wire packets (L2 excluded).
type Count struct {
	Packets, Bytes uint64
}

func (c Count) String() string { return fmt.Sprintf("%d pkts/%d B", c.Packets, c.Bytes) }

// Expect maps flows to their counts.
type Expect map[FlowID]Count

// Add adds c to flow f.
func (e Expect) Add(f FlowID, c Count) {
	old := e[f]
	e[f] = Count{old.Packets + c.Packets, old.Bytes + c.Bytes}
}

// Merge adds all counts of o into e.
func (e Expect) Merge(o Expect) {
	for f, c := range o {
		e.Add(f, c)
	}
}

// Total sums all flows.
func (e Expect) Total() Count {
	var t Count
	for _, c := range e {
		t.Packets += c.Packets
		t.Bytes += c.Bytes
	}
	return t
}

// Keys returns the flows sorted by their String form (stable output).
func (e Expect) Keys() []FlowID {
	ks := make([]FlowID, 0, len(e))
	for k := range e {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].String() < ks[j].String() })
	return ks
}

func (e Expect) String() string {
	var b strings.Builder
	for _, k := range e.Keys() {
		fmt.Fprintf(&b, "%v: %v\n", k, e[k])
	}
	return b.String()
}

// Diff compares got against want on want's keys only. It returns one line per
// mismatching or missing flow, and separately the flows present in got but
// not in want (typically background traffic). Both slices are sorted.
func Diff(want, got Expect) (mismatches []string, unexpected []FlowID) {
	for _, k := range want.Keys() {
		w := want[k]
		g, ok := got[k]
		switch {
		case !ok:
			mismatches = append(mismatches, fmt.Sprintf("%v: missing, want %v", k, w))
		case g != w:
			mismatches = append(mismatches, fmt.Sprintf("%v: got %v, want %v", k, g, w))
		}
	}
	for _, k := range got.Keys() {
		if _, ok := want[k]; !ok {
			unexpected = append(unexpected, k)
		}
	}
	return mismatches, unexpected
}
