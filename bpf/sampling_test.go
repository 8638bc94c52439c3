package bpf

import (
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xflow-net/xflow/flow"
	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/internal/testnet"
)

func loadOpts(t testing.TB, o Options) *Datapath {
	t.Helper()
	testenv.RequireRoot(t)
	if o.MaxFlows == 0 {
		o.MaxFlows = 4096
	}
	d, err := Load(o)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// flowsOf reads the data plane's flows, summed by key.
func flowsOf(t testing.TB, d *Datapath) map[flow.Key]flow.Value {
	t.Helper()
	recs, err := d.Flows()
	if err != nil {
		t.Fatal(err)
	}
	out := map[flow.Key]flow.Value{}
	for _, r := range recs {
		v := out[r.Key]
		v.Add(&r.Value)
		out[r.Key] = v
	}
	return out
}

// ifaceConfs reads ifindex's per-CPU sampling state.
func ifaceConfs(t testing.TB, d *Datapath, ifindex uint32) []xflowIfaceConf {
	t.Helper()
	var per []xflowIfaceConf
	if err := d.objs.Ifaces.Lookup(ifindex, &per); err != nil {
		t.Fatal(err)
	}
	return per
}

// TestSamplingTestRun runs the XDP program on one frame a million times
// (BPF_PROG_TEST_RUN, one CPU): deterministic 1:10 keeps exactly a tenth,
// random 1:100 keeps a count within 3 sigma of a hundredth, 1:1 keeps all;
// the interface totals count every packet, and the flow carries the rate.
func TestSamplingTestRun(t *testing.T) {
	const n = 1_000_000
	frame := tcpFrame(t)
	ipBytes := uint64(len(frame) - 14)
	for _, tc := range []struct {
		name string
		s    Sampling
	}{
		{"unsampled", Sampling{}},
		{"deterministic-10", Sampling{Rate: 10, Mode: SampleDeterministic}},
		{"random-100", Sampling{Rate: 100, Mode: SampleRandom}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := loadOpts(t, Options{Sampling: tc.s})
			if _, err := d.Programs().XDP.Run(&ebpf.RunOptions{Data: frame, Repeat: n}); err != nil {
				t.Fatal(err)
			}
			fl := flowsOf(t, d)
			if len(fl) != 1 {
				t.Fatalf("%d flows, want 1", len(fl))
			}
			var got flow.Value
			for _, v := range fl {
				got = v
			}
			rate := uint64(max(tc.s.Rate, 1))
			switch tc.s.Mode {
			case SampleRandom:
				p := 1 / float64(rate)
				sigma := math.Sqrt(n * p * (1 - p))
				scaled := float64(got.Packets * rate)
				if math.Abs(float64(got.Packets)-n*p) > 3*sigma {
					t.Errorf("random 1:%d kept %d of %d packets, want %.0f ± %.0f (3 sigma)", rate, got.Packets, n, n*p, 3*sigma)
				}
				t.Logf("random 1:%d: kept %d, scaled %.0f (truth %d, 3 sigma of the scaled total %.0f)", rate, got.Packets, scaled, n, 3*sigma*float64(rate))
			default:
				if got.Packets != n/rate {
					t.Errorf("kept %d packets, want exactly %d", got.Packets, n/rate)
				}
			}
			if got.Bytes != got.Packets*ipBytes {
				t.Errorf("bytes %d for %d packets of %d", got.Bytes, got.Packets, ipBytes)
			}
			if got.Sampling.Rate() != uint32(rate) || rate > 1 && got.Sampling.Mode() != flow.SampleMode(tc.s.Mode) {
				t.Errorf("flow sampling 1:%d %s, want 1:%d %s", got.Sampling.Rate(), got.Sampling.Mode(), rate, tc.s.Mode)
			}
			tot, err := d.IfaceTotals()
			if err != nil {
				t.Fatal(err)
			}
			if len(tot) != 1 || tot[0].Packets != n || tot[0].Bytes != n*ipBytes {
				t.Errorf("interface totals %+v, want %d packets, %d bytes", tot, n, n*ipBytes)
			}
		})
	}
}

// TestHashSamplingTestRun: hash sampling over 4096 flows (the benchmark
// rotation) keeps exactly the flows bpf.FlowHash selects, each whole.
func TestHashSamplingTestRun(t *testing.T) {
	const flows, rounds, rate, seed = 4096, 4, 8, 12345
	spec, err := Spec()
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Variables["bench_rotate_flows"].Set(uint32(flows)); err != nil {
		t.Fatal(err)
	}
	d := loadOpts(t, Options{Spec: spec, MaxFlows: 2 * flows, Sampling: Sampling{Rate: rate, Mode: SampleHash, Seed: seed}})
	if _, err := d.Programs().XDP.Run(&ebpf.RunOptions{Data: tcpFrame(t), Repeat: flows * rounds}); err != nil {
		t.Fatal(err)
	}
	fl := flowsOf(t, d)
	want := 0
	base := flowsKey(t)
	for r := uint32(0); r < flows; r++ {
		k := base
		b := k.Src[12:16]
		x := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
		x ^= r
		b[0], b[1], b[2], b[3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
		v, ok := fl[k]
		if sel := FlowHash(&k, seed)%rate == 0; sel != ok {
			t.Errorf("flow %v: selected %v, FlowHash says %v", k.SrcAddr(), ok, sel)
		} else if ok {
			want++
			if v.Packets != rounds {
				t.Errorf("flow %v: %d packets, want all %d", k.SrcAddr(), v.Packets, rounds)
			}
		}
	}
	if len(fl) != want {
		t.Errorf("%d flows kept, FlowHash selects %d", len(fl), want)
	}
	t.Logf("hash 1:%d kept %d of %d flows (expected about %d)", rate, want, flows, flows/rate)
}

// flowsKey is the flow key of tcpFrame on XDP test runs (which report
// ingress ifindex 1, loopback).
func flowsKey(t *testing.T) flow.Key {
	t.Helper()
	k := flow.Key{SrcPort: 1000, DstPort: 80, Proto: 6, IPVersion: 4, IfIndex: 1}
	k.Src = netip.AddrFrom4([4]byte{10, 0, 0, 1}).As16()
	k.Dst = netip.AddrFrom4([4]byte{10, 0, 0, 2}).As16()
	k.Src[10], k.Src[11], k.Dst[10], k.Dst[11] = 0xff, 0xff, 0xff, 0xff
	return k
}

// sendFlows sends flows UDP flows of packets frames each from B to A as raw
// frames, flow after flow (not interleaved: interleaving would make every
// Nth packet a question of which flow comes when).
func sendFlows(t *testing.T, p *testnet.Pair, flows, packets int) map[uint16]int {
	t.Helper()
	sent := map[uint16]int{}
	var frames [][]byte
	for f := 0; f < flows; f++ {
		sport := uint16(20000 + f)
		fr, err := testnet.UDPFrame(p.MACB, p.MACA, p.B4, p.A4, sport, 9, make([]byte, 18))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < packets; i++ {
			frames = append(frames, fr)
		}
		sent[sport] = packets
	}
	if err := p.SendRawFrames(testnet.SideB, frames); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // veth delivers asynchronously
	return sent
}

func attachA(t *testing.T, p *testnet.Pair, d *Datapath, h Hooks) {
	t.Helper()
	var a *Attachment
	h.Iface = p.NameA
	if err := p.Do(p.NSA, func() (err error) { a, err = d.Attach(h); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Do(p.NSA, a.Detach) })
}

// testFlows picks the test's UDP flows (B:2xxxx -> A:9) out of fl.
func testFlows(p *testnet.Pair, fl map[flow.Key]flow.Value) map[uint16]flow.Value {
	out := map[uint16]flow.Value{}
	for k, v := range fl {
		if k.SrcAddr() == p.B4 && k.DstPort == 9 && k.Proto == 17 && k.SrcPort >= 20000 {
			out[k.SrcPort] = v
		}
	}
	return out
}

// TestSamplingDeterministicVeth: 1:10 deterministic on a veth's XDP
// ingress over 100,000 packets in 50 flows keeps exactly one packet in 10
// on each CPU (the count is per CPU: every CPU's totals and remainder are
// checked), and the interface totals count every packet.
func TestSamplingDeterministicVeth(t *testing.T) {
	const flows, packets, rate = 50, 2000, 10
	p := testnet.NewPair(t, "smpd")
	d := loadOpts(t, Options{})
	attachA(t, p, d, Hooks{Ingress: "xdp", Egress: "none", XDPMode: "native",
		Sampling: &Sampling{Rate: rate, Mode: SampleDeterministic}})
	sent := sendFlows(t, p, flows, packets)
	fl := flowsOf(t, d)
	var kept, seen uint64
	for _, v := range fl {
		kept += v.Packets
		if v.Sampling.Rate() != rate || v.Sampling.Mode() != flow.SampleDeterministic {
			t.Errorf("flow sampling 1:%d %s, want 1:%d deterministic", v.Sampling.Rate(), v.Sampling.Mode(), rate)
		}
	}
	var want, cpus uint64
	for cpu, c := range ifaceConfs(t, d, uint32(p.IfA)) {
		n := c.Packets[0] + c.Packets[1]
		seen += n
		if n > 0 {
			cpus++
		}
		want += n / rate
		if uint64(c.Count) != n%rate {
			t.Errorf("cpu %d: %d packets, remainder %d, want %d", cpu, n, c.Count, n%rate)
		}
	}
	if kept != want {
		t.Errorf("kept %d packets of %d seen, want exactly %d (every 10th per CPU)", kept, seen, want)
	}
	tf := testFlows(p, fl)
	var testKept uint64
	for _, v := range tf {
		testKept += v.Packets
	}
	// Other packets (IPv6 neighbour discovery, say) share the count, and
	// each CPU that saw packets leaves a remainder: the test flows' share
	// is a tenth give or take one per stray packet and per CPU.
	if total := uint64(flows * packets); seen < total || testKept+(seen-total)+cpus < total/rate || testKept > total/rate+(seen-total) {
		t.Errorf("test flows kept %d of %d sent (seen %d), want %d", testKept, total, seen, total/rate)
	}
	t.Logf("sent %d in %d flows, seen %d on %d CPUs, kept %d (test flows %d in %d flows)", flows*packets, len(sent), seen, cpus, kept, testKept, len(tf))
}

// TestSamplingHashVeth: hash 1:4 on a veth keeps whole flows only, exactly
// those bpf.FlowHash selects, and a second data plane with the same seed
// keeps the same flows.
func TestSamplingHashVeth(t *testing.T) {
	const flows, packets, rate, seed = 50, 20, 4, 7
	p := testnet.NewPair(t, "smph")
	var sets [2]map[uint16]bool
	for i := range sets {
		d := loadOpts(t, Options{Sampling: Sampling{Rate: rate, Mode: SampleHash, Seed: seed}})
		var a *Attachment
		if err := p.Do(p.NSA, func() (err error) {
			a, err = d.Attach(Hooks{Iface: p.NameA, Ingress: "tc", Egress: "none", TCMode: "auto"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		sendFlows(t, p, flows, packets)
		tf := testFlows(p, flowsOf(t, d))
		if err := p.Do(p.NSA, a.Detach); err != nil {
			t.Fatal(err)
		}
		sets[i] = map[uint16]bool{}
		for f := 0; f < flows; f++ {
			sport := uint16(20000 + f)
			k := flow.Key{Src: p.B4.As16(), Dst: p.A4.As16(), SrcPort: sport, DstPort: 9, Proto: 17, IPVersion: 4}
			v, ok := tf[sport]
			if sel := FlowHash(&k, seed)%rate == 0; sel != ok {
				t.Errorf("load %d flow %d: selected %v, FlowHash says %v", i, sport, ok, sel)
			}
			if ok && (v.Packets != packets || v.Sampling.Rate() != rate || v.Sampling.Mode() != flow.SampleHash) {
				t.Errorf("load %d flow %d: %d packets at 1:%d %s, want all %d at 1:%d hash", i, sport, v.Packets, v.Sampling.Rate(), v.Sampling.Mode(), packets, rate)
			}
			sets[i][sport] = ok
		}
	}
	n := 0
	for sport, sel := range sets[0] {
		if sets[1][sport] != sel {
			t.Errorf("flow %d: load 1 selected %v, load 2 %v", sport, sel, sets[1][sport])
		}
		if sel {
			n++
		}
	}
	if n == 0 || n == flows {
		t.Errorf("hash 1:%d selected %d of %d flows", rate, n, flows)
	}
	t.Logf("hash 1:%d seed %d selected %d of %d flows, the same in both loads", rate, seed, n, flows)
}

// TestSampleModes: the data plane's modes are package flow's.
func TestSampleModes(t *testing.T) {
	for _, m := range []struct {
		b SampleMode
		f flow.SampleMode
	}{{SampleRandom, flow.SampleRandom}, {SampleDeterministic, flow.SampleDeterministic}, {SampleHash, flow.SampleHash}} {
		if uint32(m.b) != uint32(m.f) || m.b.String() != m.f.String() {
			t.Errorf("bpf mode %s (%d), flow mode %s (%d)", m.b, m.b, m.f, m.f)
		}
	}
}

// TestSamplingKinds: every store kind keeps the rate with the flow
// (deterministic 1:10 over 10,000 test runs: exactly 1,000 packets).
func TestSamplingKinds(t *testing.T) {
	const n, rate = 10_000, 10
	frame := tcpFrame(t)
	for _, k := range Kinds() {
		t.Run(string(k), func(t *testing.T) {
			d := loadOpts(t, Options{Kind: k, RingSize: 1 << 20, Sampling: Sampling{Rate: rate, Mode: SampleDeterministic}})
			if _, err := d.Programs().XDP.Run(&ebpf.RunOptions{Data: frame, Repeat: n}); err != nil {
				t.Fatal(err)
			}
			if err := d.SyncRing(); err != nil {
				t.Fatal(err)
			}
			fl := flowsOf(t, d)
			if len(fl) != 1 {
				t.Fatalf("%d flows", len(fl))
			}
			for _, v := range fl {
				if v.Packets != n/rate || v.Sampling.Rate() != rate || v.Sampling.Mode() != flow.SampleDeterministic {
					t.Errorf("%d packets at 1:%d %s, want %d at 1:%d deterministic", v.Packets, v.Sampling.Rate(), v.Sampling.Mode(), n/rate, rate)
				}
			}
		})
	}
}
