package bpf

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xflow-net/xflow/flow"
)

// progRunner runs one of the real programs over single frames with
// BPF_PROG_TEST_RUN and reports what it wrote: the one flow (if any) and
// which counters moved.
type progRunner struct {
	d    *Datapath
	prog *ebpf.Program
	dir  flow.Direction
}

type runResult struct {
	flows    []flow.Record
	counters Counters // deltas
}

func (r *progRunner) run(frame []byte) (runResult, error) {
	before, err := r.d.Counters()
	if err != nil {
		return runResult{}, err
	}
	ret, err := r.prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil && r.prog.Type() != ebpf.XDP && errors.Is(err, unix.EINVAL) {
		// The skb test run refuses frames whose IP header it cannot
		// pull; the XDP runner covers those frames.
		return runResult{}, errRefused
	}
	if err != nil {
		return runResult{}, fmt.Errorf("test run: %w", err)
	}
	if want := passVerdict(r.prog); ret != want {
		return runResult{}, fmt.Errorf("program returned %d, want %d (pass)", ret, want)
	}
	after, err := r.d.Counters()
	if err != nil {
		return runResult{}, err
	}
	flows, err := r.d.Flows()
	if err != nil {
		return runResult{}, err
	}
	if err := clearStore(r.d.stores[0]); err != nil {
		return runResult{}, err
	}
	return runResult{flows: flows, counters: after.sub(before)}, nil
}

var errRefused = errors.New("the kernel's test run refused the frame")

func passVerdict(p *ebpf.Program) uint32 {
	if p.Type() == ebpf.XDP {
		return 2 // XDP_PASS
	}
	return ^uint32(0) // TC_ACT_UNSPEC (-1)
}

func (c Counters) sub(o Counters) Counters {
	return Counters{
		NonIP: c.NonIP - o.NonIP, Truncated: c.Truncated - o.Truncated,
		Malformed: c.Malformed - o.Malformed, L4Truncated: c.L4Truncated - o.L4Truncated,
		IPv6ExtLimit: c.IPv6ExtLimit - o.IPv6ExtLimit, Fragments: c.Fragments - o.Fragments,
		MissedPackets: c.MissedPackets - o.MissedPackets, MissedBytes: c.MissedBytes - o.MissedBytes,
		Inserts: c.Inserts - o.Inserts,
	}
}

// clearStore deletes every entry of a hash store.
func clearStore(m *ebpf.Map) error {
	var k flow.Key
	for {
		if err := m.NextKey(nil, &k); errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		if err := m.Delete(&k); err != nil {
			return err
		}
	}
}

// compare checks what the program did with a frame against the reference
// decoder's verdict.
func (r *progRunner) compare(frame []byte) error {
	ref := reference(frame)
	got, err := r.run(frame)
	if err != nil {
		return err
	}
	c := got.counters
	if c.MissedPackets != 0 {
		return fmt.Errorf("missed %d packets", c.MissedPackets)
	}
	wantCounter := func(name string, got, want bool) error {
		if got != want {
			return fmt.Errorf("counter %s: moved=%v, want %v (reference %+v)", name, got, want, ref)
		}
		return nil
	}
	if err := errors.Join(
		wantCounter("non_ip", c.NonIP == 1, ref.Counter == "non_ip"),
		wantCounter("truncated", c.Truncated == 1, ref.Counter == "truncated"),
		wantCounter("malformed", c.Malformed == 1, ref.Counter == "malformed"),
	); err != nil {
		return err
	}
	if ref.Counter != "" {
		if len(got.flows) != 0 {
			return fmt.Errorf("reference says %s, but the program counted flow %+v", ref.Counter, got.flows[0])
		}
		return nil
	}
	if err := errors.Join(
		wantCounter("l4_truncated", c.L4Truncated == 1, ref.L4Truncated),
		wantCounter("fragments", c.Fragments == 1, ref.Fragment),
		wantCounter("ipv6_ext_limit", c.IPv6ExtLimit == 1, ref.ExtLimit),
	); err != nil {
		return err
	}
	if len(got.flows) != 1 {
		return fmt.Errorf("want 1 flow, program counted %d", len(got.flows))
	}
	k, v := got.flows[0].Key, got.flows[0].Value
	want := flow.Key{Src: ref.Src, Dst: ref.Dst, SrcPort: ref.SrcPort, DstPort: ref.DstPort,
		Proto: ref.Proto, IPVersion: ref.IPVersion, VLAN: ref.VLAN, Direction: r.dir, IfIndex: k.IfIndex}
	if k != want {
		return fmt.Errorf("key\n got %+v\nwant %+v", k, want)
	}
	wantFin := uint8(0)
	if ref.FinRst {
		wantFin = 1
	}
	if v.Packets != 1 || v.Bytes != ref.Bytes || v.TCPFlags != ref.TCPFlags || v.TOS != ref.TOS || v.FinRst != wantFin {
		return fmt.Errorf("value %+v, want packets 1 bytes %d tcp_flags %#x tos %#x fin_rst %d",
			v, ref.Bytes, ref.TCPFlags, ref.TOS, wantFin)
	}
	if v.FirstNs == 0 || v.LastNs < v.FirstNs {
		return fmt.Errorf("timestamps first %d last %d", v.FirstNs, v.LastNs)
	}
	return nil
}

func parserRunners(t testing.TB) []*progRunner {
	d := loadKind(t, KindPerCPUHash, 1024)
	return []*progRunner{
		{d: d, prog: d.objs.XflowXdp, dir: flow.Ingress},
		{d: d, prog: d.objs.XflowTcEgress, dir: flow.Egress},
		{d: d, prog: d.objs.XflowTcIngress, dir: flow.Ingress},
	}
}

// The kernel's test run refuses frames shorter than an Ethernet header.
const minRunLen = 14

// TestParserDifferential runs the real XDP and TC programs over the crafted
// corpus and every truncation of each frame, and compares the key and
// counters they wrote with the gopacket-based reference decoder.
func TestParserDifferential(t *testing.T) {
	runners := parserRunners(t)
	frames := testFrames()
	if len(frames) < 40 {
		t.Fatalf("corpus has only %d frames", len(frames))
	}
	var total, refused int
	for _, r := range runners {
		for _, f := range frames {
			cases := append([]namedFrame{f}, truncations(f)...)
			for _, c := range cases {
				if len(c.Data) < minRunLen {
					continue
				}
				total++
				err := r.compare(c.Data)
				if errors.Is(err, errRefused) {
					refused++
					continue
				}
				if err != nil {
					t.Errorf("%s %s: %v\nframe % x", r.prog, c.Name, err, c.Data)
				}
			}
		}
	}
	t.Logf("%d frame runs over %d programs; %d refused by the skb test run (all run on XDP)", total, len(runners), refused)
	if refused > total/2 {
		t.Errorf("too many refused runs: %d of %d", refused, total)
	}
}

// FuzzParser compares the XDP program with the reference decoder on
// arbitrary frames.
func FuzzParser(f *testing.F) {
	for _, fr := range testFrames() {
		f.Add(fr.Data)
	}
	runners := parserRunners(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < minRunLen || len(frame) > 4096 {
			return
		}
		for _, r := range runners[:2] {
			if err := r.compare(frame); err != nil && !errors.Is(err, errRefused) {
				t.Fatalf("%s: %v\nframe % x", r.prog, err, frame)
			}
		}
	})
}
