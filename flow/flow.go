// Package flow defines what xflow counts: a flow key and its counters, in
// the exact memory layout the eBPF data plane writes (see bpf/include/types.h).
package flow

import (
	"fmt"
	"net/netip"
	"structs"
)

// Direction is where a packet was seen, with IPFIX flowDirection's values.
type Direction uint8

const (
	Ingress Direction = 0
	Egress  Direction = 1
)

func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// Key identifies a flow. Its layout is struct flow_key's: 48 bytes, padding
// explicit, so it can be read from BPF maps as is and used as a Go map key.
type Key struct {
	_         structs.HostLayout
	Src       [16]byte // IPv6, or IPv4 as ::ffff:a.b.c.d
	Dst       [16]byte
	SrcPort   uint16
	DstPort   uint16 // ICMP: type<<8 | code
	IfIndex   uint32
	VLAN      uint16
	Proto     uint8
	IPVersion uint8
	Direction Direction
	Pad       [3]uint8
}

// SrcAddr is the source address (IPv4 unmapped).
func (k *Key) SrcAddr() netip.Addr { return addr(k.Src, k.IPVersion) }

// DstAddr is the destination address (IPv4 unmapped).
func (k *Key) DstAddr() netip.Addr { return addr(k.Dst, k.IPVersion) }

func addr(b [16]byte, version uint8) netip.Addr {
	a := netip.AddrFrom16(b)
	if version == 4 {
		return a.Unmap()
	}
	return a
}

// IsICMP says whether the ports hold an ICMP or ICMPv6 type and code.
func (k *Key) IsICMP() bool {
	return (k.Proto == 1 && k.IPVersion == 4) || (k.Proto == 58 && k.IPVersion == 6)
}

// Value is struct flow_value: the counters of one flow (one CPU's share of
// them, in per-CPU maps).
type Value struct {
	_        structs.HostLayout
	Packets  uint64
	Bytes    uint64 // IP bytes
	FirstNs  uint64 // kernel monotonic clock (CLOCK_MONOTONIC), ns
	LastNs   uint64
	TCPFlags uint32   // OR of the TCP flags seen (9 bits, NS..FIN)
	TOS      uint8    // of the first packet
	FinRst   uint8    // 1 once a FIN or RST was seen
	Sampling Sampling // the rate and mode the packets were sampled at
}

// Sampling is how a flow's packets were sampled, as the data plane keeps
// it: mode << 14 | N, for 1:N (N 0 or 1: every packet counted).
type Sampling uint16

// MaxSamplingRate is the largest N a Sampling holds.
const MaxSamplingRate = 0x3fff

// SampleMode is how packets were selected (enum xflow_sample_mode).
type SampleMode uint8

const (
	SampleRandom        SampleMode = 0 // each packet with probability 1/N
	SampleDeterministic SampleMode = 1 // every Nth packet (per CPU)
	SampleHash          SampleMode = 2 // whole flows, by a hash of the flow
)

func (m SampleMode) String() string {
	switch m {
	case SampleRandom:
		return "random"
	case SampleDeterministic:
		return "deterministic"
	case SampleHash:
		return "hash"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// Rate is N, 1 when every packet was counted.
func (s Sampling) Rate() uint32 { return max(uint32(s)&MaxSamplingRate, 1) }

// Mode is the selection mode (meaningful when Rate > 1).
func (s Sampling) Mode() SampleMode { return SampleMode(s >> 14) }

// Add merges o into v: counts add up, times widen, flags accumulate, and the
// TOS of whichever saw the earlier first packet is kept.
func (v *Value) Add(o *Value) {
	if o.Packets == 0 {
		return
	}
	if v.Packets == 0 || o.FirstNs < v.FirstNs {
		v.FirstNs = o.FirstNs
		v.TOS = o.TOS
	}
	if o.LastNs > v.LastNs {
		v.LastNs = o.LastNs
	}
	v.Packets += o.Packets
	v.Bytes += o.Bytes
	v.TCPFlags |= o.TCPFlags
	v.FinRst |= o.FinRst
	if o.Sampling != 0 {
		v.Sampling = o.Sampling
	}
}

// Record is one flow with its counters summed over CPUs.
type Record struct {
	Key   Key
	Value Value
}

// ProtoName names the common IP protocols ("tcp", "udp", ...), or gives the
// number.
func ProtoName(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 47:
		return "gre"
	case 50:
		return "esp"
	case 58:
		return "icmpv6"
	case 132:
		return "sctp"
	case 136:
		return "udplite"
	}
	return fmt.Sprintf("%d", p)
}
