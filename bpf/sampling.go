package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/xflow-net/xflow/flow"
)

// SampleMode is how 1:N packets are selected (enum xflow_sample_mode).
type SampleMode uint32

const (
	// SampleRandom selects each packet with probability 1/N
	// (bpf_get_prandom_u32 per packet).
	SampleRandom = SampleMode(xflowXflowSampleModeSAMPLE_RANDOM)
	// SampleDeterministic selects every Nth packet, counted per CPU.
	SampleDeterministic = SampleMode(xflowXflowSampleModeSAMPLE_DETERMINISTIC)
	// SampleHash selects whole flows: those whose FlowHash is 0 mod N.
	SampleHash = SampleMode(xflowXflowSampleModeSAMPLE_HASH)
)

// ParseSampleMode reads "random", "deterministic" or "hash".
func ParseSampleMode(s string) (SampleMode, error) {
	switch s {
	case "random", "":
		return SampleRandom, nil
	case "deterministic":
		return SampleDeterministic, nil
	case "hash":
		return SampleHash, nil
	}
	return 0, fmt.Errorf("sampling mode %q: want random, deterministic or hash", s)
}

func (m SampleMode) String() string {
	switch m {
	case SampleRandom:
		return "random"
	case SampleDeterministic:
		return "deterministic"
	case SampleHash:
		return "hash"
	}
	return fmt.Sprintf("mode(%d)", uint32(m))
}

// MaxSamplingRate is the largest 1:N: a flow entry keeps N in 14 bits
// (beside the mode), as NetFlow v5's header does.
const MaxSamplingRate = flow.MaxSamplingRate

// Sampling is 1:Rate packet sampling; Rate 0 or 1 counts every packet.
type Sampling struct {
	Rate uint32
	Mode SampleMode
	Seed uint32 // SampleHash: hosts with the same seed select the same flows
}

func (s Sampling) check() error {
	if s.Rate > MaxSamplingRate {
		return fmt.Errorf("sampling rate %d: at most %d", s.Rate, MaxSamplingRate)
	}
	if s.Mode > SampleHash {
		return fmt.Errorf("sampling mode %d unknown", s.Mode)
	}
	return nil
}

// FlowHash is the hash the data plane's hash sampling selects flows by
// (flow_hash in include/sample.h): a flow is selected at 1:N when
// FlowHash(k, seed) % N == 0. It reads the addresses, ports (not for ICMP)
// and protocol only, and is the same for both directions of a flow.
func FlowHash(k *flow.Key, seed uint32) uint32 {
	mix := func(h uint64) uint64 {
		h ^= h >> 33
		h *= 0xff51afd7ed558ccd
		h ^= h >> 33
		h *= 0xc4ceb9fe1a85ec53
		h ^= h >> 33
		return h
	}
	le := binary.LittleEndian // the data plane reads the addresses as host-order u64s
	sp, dp := uint64(k.SrcPort), uint64(k.DstPort)
	if k.Proto == 1 || k.Proto == 58 {
		sp, dp = 0, 0
	}
	a := mix(le.Uint64(k.Src[:8]) ^ mix(le.Uint64(k.Src[8:])^sp))
	b := mix(le.Uint64(k.Dst[:8]) ^ mix(le.Uint64(k.Dst[8:])^dp))
	return uint32(mix(a ^ b ^ (uint64(seed)<<8 | uint64(k.Proto))))
}

// FilterRule is one in-kernel filter rule. A packet matches when every
// field set matches; the first rule (in order) that matches decides.
type FilterRule struct {
	Src, Dst  netip.Prefix    // the zero Prefix: any
	Proto     uint8           // IP protocol; with AnyProto false
	AnyProto  bool            // match every protocol
	SrcPort   uint16          // 0: any
	DstPort   uint16          // 0: any
	Direction *flow.Direction // nil: both
	Skip      bool            // skip: no flow; else count
	Rate      uint32          // count: 1:Rate sampling for what it matches; 0: the interface's
}

// MaxFilterRules is how many rules the data plane holds.
const MaxFilterRules = 1024

// prefix16 turns p into the data plane's 128-bit form (IPv4 as ::ffff:a.b.c.d).
func prefix16(p netip.Prefix) xflowLpmKey {
	if !p.IsValid() {
		return xflowLpmKey{}
	}
	bits := p.Bits()
	a := p.Masked().Addr()
	if a.Is4() {
		bits += 96
		a = netip.AddrFrom16(a.As16())
	}
	return xflowLpmKey{Prefixlen: uint32(bits), Addr: a.As16()}
}

// contains says whether LPM prefix outer contains inner.
func contains(outer, inner xflowLpmKey) bool {
	if outer.Prefixlen > inner.Prefixlen {
		return false
	}
	p := netip.PrefixFrom(netip.AddrFrom16(outer.Addr), int(outer.Prefixlen))
	return p.Contains(netip.AddrFrom16(inner.Addr))
}

// setFilters writes rules into the filter maps (empty maps, just loaded).
func (d *Datapath) setFilters(rules []FilterRule) error {
	if len(rules) == 0 {
		return nil
	}
	if len(rules) > MaxFilterRules {
		return fmt.Errorf("%d filter rules: at most %d", len(rules), MaxFilterRules)
	}
	type set = xflowRuleSet
	add := func(s *set, i int) { s.W[i/64] |= 1 << (i % 64) }
	// The LPM tries: every prefix a rule names, plus /0, each mapped to
	// the rules whose prefix contains it.
	for _, side := range []struct {
		m   *ebpf.Map
		get func(r *FilterRule) netip.Prefix
	}{
		{d.objs.FilterSrc, func(r *FilterRule) netip.Prefix { return r.Src }},
		{d.objs.FilterDst, func(r *FilterRule) netip.Prefix { return r.Dst }},
	} {
		keys := map[xflowLpmKey]bool{{}: true}
		for i := range rules {
			keys[prefix16(side.get(&rules[i]))] = true
		}
		for k := range keys {
			var s set
			for i := range rules {
				if contains(prefix16(side.get(&rules[i])), k) {
					add(&s, i)
				}
			}
			if err := side.m.Put(k, s); err != nil {
				return fmt.Errorf("filter: write prefix: %w", err)
			}
		}
	}
	var sets [xflowXflowFilterSetFSET_MAX]set
	ports := map[uint32]*set{}
	for i := range rules {
		r := &rules[i]
		for p := 0; p < 256; p++ {
			if r.AnyProto || int(r.Proto) == p {
				add(&sets[p], i)
			}
		}
		if r.Direction == nil || *r.Direction == flow.Ingress {
			add(&sets[xflowXflowFilterSetFSET_DIR_INGRESS], i)
		}
		if r.Direction == nil || *r.Direction == flow.Egress {
			add(&sets[xflowXflowFilterSetFSET_DIR_EGRESS], i)
		}
		for side, port := range []uint16{r.SrcPort, r.DstPort} {
			if port == 0 {
				add(&sets[xflowXflowFilterSetFSET_SPORT_ANY+xflowXflowFilterSet(side)], i)
				continue
			}
			k := uint32(side)<<16 | uint32(port)
			if ports[k] == nil {
				ports[k] = &set{}
			}
			add(ports[k], i)
		}
	}
	// A port's set holds the rules without a port on that side too.
	for k, s := range ports {
		anyPort := &sets[xflowXflowFilterSetFSET_SPORT_ANY+xflowXflowFilterSet(k>>16)]
		for w := range s.W {
			s.W[w] |= anyPort.W[w]
		}
		if err := d.objs.FilterPorts.Put(k, s); err != nil {
			return fmt.Errorf("filter: write port: %w", err)
		}
	}
	for i := range sets {
		if err := d.objs.FilterSets.Put(uint32(i), sets[i]); err != nil {
			return fmt.Errorf("filter: write set: %w", err)
		}
	}
	for i, r := range rules {
		fr := xflowFilterRule{Action: uint32(xflowXflowFilterActionFILTER_COUNT), Rate: r.Rate}
		if r.Skip {
			fr.Action = uint32(xflowXflowFilterActionFILTER_SKIP)
		}
		if err := d.objs.FilterRules.Put(uint32(i), fr); err != nil {
			return fmt.Errorf("filter: write rule: %w", err)
		}
	}
	return nil
}

// FilterHits are the packets each rule matched first (Rules[i] for rule
// i), and those no rule matched.
type FilterHits struct {
	Rules  []uint64
	Misses uint64
}

// FilterHits reads the filter counters (nil Rules without filters).
func (d *Datapath) FilterHits() (FilterHits, error) {
	var h FilterHits
	n := len(d.opts.Filters)
	if n == 0 {
		return h, nil
	}
	h.Rules = make([]uint64, n)
	var per []uint64
	read := func(i uint32) (uint64, error) {
		if err := d.objs.FilterHits.Lookup(i, &per); err != nil {
			return 0, fmt.Errorf("read filter hits %d: %w", i, err)
		}
		var s uint64
		for _, v := range per {
			s += v
		}
		return s, nil
	}
	var err error
	for i := range h.Rules {
		if h.Rules[i], err = read(uint32(i)); err != nil {
			return h, err
		}
	}
	h.Misses, err = read(MaxFilterRules)
	return h, err
}

// setSampling writes s as the sampling of ifindex (0: the default for
// interfaces without their own), into every CPU's copy, keeping the
// totals counted so far.
func (d *Datapath) setSampling(ifindex uint32, s Sampling) error {
	if err := s.check(); err != nil {
		return err
	}
	per := make([]xflowIfaceConf, d.cpus)
	if err := d.objs.Ifaces.Lookup(ifindex, &per); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("read sampling of ifindex %d: %w", ifindex, err)
	}
	for i := range per {
		per[i].Rate, per[i].Mode, per[i].Seed = s.Rate, uint32(s.Mode), s.Seed
	}
	if err := d.objs.Ifaces.Put(ifindex, per); err != nil {
		return fmt.Errorf("set sampling of ifindex %d: %w", ifindex, err)
	}
	return nil
}

// SamplingRate is the 1:N the data plane samples ifindex at (1 if it
// counts every packet). Filter rules with their own rate override it.
func (d *Datapath) SamplingRate(ifindex uint32) uint32 {
	per := make([]xflowIfaceConf, d.cpus)
	if err := d.objs.Ifaces.Lookup(ifindex, &per); err != nil {
		if d.objs.Ifaces.Lookup(uint32(0), &per) != nil {
			return 1
		}
	}
	return max(per[0].Rate, 1)
}

// IfaceTotal is every IP packet an interface's programs saw in one
// direction, before filters and sampling.
type IfaceTotal struct {
	IfIndex   uint32 // 0: interfaces attached without Attach
	Direction flow.Direction
	Packets   uint64
	Bytes     uint64
}

// IfaceTotals reads the per-interface totals.
func (d *Datapath) IfaceTotals() ([]IfaceTotal, error) {
	var out []IfaceTotal
	var k uint32
	var per []xflowIfaceConf
	it := d.objs.Ifaces.Iterate()
	for it.Next(&k, &per) {
		var t [2]IfaceTotal
		for _, c := range per {
			for dir := range t {
				t[dir].Packets += c.Packets[dir]
				t[dir].Bytes += c.Bytes[dir]
			}
		}
		for dir := range t {
			if t[dir].Packets > 0 {
				t[dir].IfIndex, t[dir].Direction = k, flow.Direction(dir)
				out = append(out, t[dir])
			}
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read interface totals: %w", err)
	}
	return out, nil
}
