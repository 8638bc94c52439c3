package bpf

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xflow-net/xflow/flow"
	"github.com/xflow-net/xflow/internal/testnet"
)

// TestFiltersVeth checks a table of filter rules (IPv4 and IPv6 CIDRs,
// ports, protocols, directions, skip and count, a per-rule rate) on real
// traffic through a veth (XDP ingress, TC egress): skipped traffic makes no
// flow, counted traffic is exact, and every packet is one rule's hit or a
// miss.
func TestFiltersVeth(t *testing.T) {
	p := testnet.NewPair(t, "smpf")
	egress := flow.Egress
	pfx := netip.MustParsePrefix
	rules := []FilterRule{
		// 0: skip UDP to port 5001 from B's /32.
		{Src: pfx("10.199.0.2/32"), AnyProto: false, Proto: 17, DstPort: 5001, Skip: true},
		// 1: skip IPv6 UDP from B's /64 to port 6001.
		{Src: pfx("fd00:199::/64"), Proto: 17, DstPort: 6001, Skip: true},
		// 2: skip every ICMP leaving A (the echo replies).
		{AnyProto: true, Direction: &egress, Dst: pfx("10.199.0.0/24"), Skip: true},
		// 3: count UDP to A's /32 port 5002 (counted exactly, a hit).
		{Dst: pfx("10.199.0.1/32"), Proto: 17, DstPort: 5002},
		// 4: count UDP to port 5004 at 1:5 (deterministic, the default mode).
		{Proto: 17, DstPort: 5004, Rate: 5},
		// 5: never reached for 5001 (rule 0 comes first).
		{Proto: 17, DstPort: 5001},
	}
	d := loadOpts(t, Options{Filters: rules, Sampling: Sampling{Mode: SampleDeterministic}})
	attachA(t, p, d, Hooks{Ingress: "xdp", Egress: "tc", XDPMode: "native", TCMode: "auto"})

	send := func(v6 bool, port uint16, flows, packets int) testnet.Expect {
		t.Helper()
		e, err := p.SendUDP(testnet.SideB, v6, port, flows, packets, 100)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	skip5001 := send(false, 5001, 3, 7)
	skip6001 := send(true, 6001, 2, 5)
	count5002 := send(false, 5002, 2, 9)
	miss5003 := send(false, 5003, 2, 4)
	miss6002 := send(true, 6002, 1, 6)
	rate5004 := send(false, 5004, 1, 100)
	icmp, err := p.SendICMPEcho(testnet.SideB, false, 3, 56)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)

	fl := flowsOf(t, d)
	got := testnet.Expect{}
	for k, v := range fl {
		got.Add(testnet.FlowID{Src: k.SrcAddr(), Dst: k.DstAddr(), SrcPort: k.SrcPort, DstPort: k.DstPort, Proto: k.Proto, VLAN: k.VLAN}, testnet.Count{Packets: v.Packets, Bytes: v.Bytes})
	}
	for _, e := range []testnet.Expect{skip5001, skip6001} {
		for id := range e {
			if c, ok := got[id]; ok {
				t.Errorf("skipped flow %v made a flow: %v", id, c)
			}
		}
	}
	for _, e := range []testnet.Expect{count5002, miss5003, miss6002} {
		for id, want := range e {
			if c := got[id]; c != want {
				t.Errorf("counted flow %v: %v, want %v", id, c, want)
			}
		}
	}
	var replies uint64
	for id, want := range icmp {
		c, ok := got[id]
		if id.Src == p.A4 { // the reply, leaving A: skipped
			replies += want.Packets
			if ok {
				t.Errorf("skipped ICMP reply %v made a flow: %v", id, c)
			}
		} else if c != want {
			t.Errorf("ICMP request %v: %v, want %v", id, c, want)
		}
	}
	for id, sent := range rate5004 {
		var v flow.Value
		for k, fv := range fl {
			if k.DstPort == 5004 && k.SrcPort == id.SrcPort {
				v = fv
			}
		}
		cpus := uint64(d.cpus)
		if v.Sampling.Rate() != 5 || v.Sampling.Mode() != flow.SampleDeterministic || v.Packets > sent.Packets/5 || v.Packets+cpus < sent.Packets/5 {
			t.Errorf("1:5 rule: %d of %d packets at 1:%d, want %d at 1:5", v.Packets, sent.Packets, v.Sampling.Rate(), sent.Packets/5)
		}
	}
	h, err := d.FilterHits()
	if err != nil {
		t.Fatal(err)
	}
	pk := func(e testnet.Expect) uint64 { return e.Total().Packets }
	want := []uint64{pk(skip5001), pk(skip6001), replies, pk(count5002), pk(rate5004), 0}
	for i, w := range want {
		if h.Rules[i] != w {
			t.Errorf("rule %d: %d hits, want %d", i, h.Rules[i], w)
		}
	}
	// Misses: the unmatched UDP, the ICMP requests, whatever else (ND)
	// went through: at least those, and together with the hits every
	// packet the interface totals saw.
	var total, hits uint64
	tot, err := d.IfaceTotals()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tot {
		total += tt.Packets
	}
	for _, n := range h.Rules {
		hits += n
	}
	if minMiss := pk(miss5003) + pk(miss6002) + 3; h.Misses < minMiss || hits+h.Misses != total {
		t.Errorf("misses %d (want >= %d), hits %d, total seen %d", h.Misses, minMiss, hits, total)
	}
	t.Logf("hits %v misses %d of %d packets", h.Rules, h.Misses, total)
}

// manyRules is n rules, none of which matches tcpFrame but the last
// (n > 0), which skips it when skip is set.
func manyRules(n int, skip bool) []FilterRule {
	rules := make([]FilterRule, n)
	for i := range rules {
		rules[i] = FilterRule{Src: netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}), 32),
			Proto: 6, DstPort: uint16(1000 + i%50)}
	}
	if n > 0 {
		rules[n-1] = FilterRule{Src: netip.MustParsePrefix("10.0.0.0/8"), Proto: 6, DstPort: 80, Skip: skip}
	}
	return rules
}

// TestFiltersMaxRules: with MaxFilterRules rules the program loads and the
// last rule still decides (BPF_PROG_TEST_RUN).
func TestFiltersMaxRules(t *testing.T) {
	d := loadOpts(t, Options{Filters: manyRules(MaxFilterRules, false)})
	const n = 1000
	if _, err := d.Programs().XDP.Run(&ebpf.RunOptions{Data: tcpFrame(t), Repeat: n}); err != nil {
		t.Fatal(err)
	}
	h, err := d.FilterHits()
	if err != nil {
		t.Fatal(err)
	}
	if h.Rules[MaxFilterRules-1] != n || h.Misses != 0 {
		t.Errorf("last rule %d hits, misses %d; want %d, 0", h.Rules[MaxFilterRules-1], h.Misses, n)
	}
	if fl := flowsOf(t, d); len(fl) != 1 {
		t.Errorf("%d flows, want 1", len(fl))
	}
	if _, err := Load(Options{MaxFlows: 1, Filters: make([]FilterRule, MaxFilterRules+1)}); err == nil {
		t.Error("Load took more than MaxFilterRules rules")
	}
}
