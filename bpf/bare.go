package bpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/xflow-net/xflow/flow"
)

// This file is for benchmarks only (`xflow bench`, part 1): the bare map
// update of each kind, and what a benchmark reads from the data plane.

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// Bare is the bare map update of one store kind (bpf/bare.c): programs
// that ignore the packet and do only the kind's map operation on a fixed
// flow key, rotated as Options.BenchRotateFlows rotates the data plane's.
// It is the yardstick of the data plane's cost.
type Bare struct {
	kind Kind
	objs bareObjects
	cpus int

	ring    *ringbuf.Reader // ringbuf kind
	records atomic.Uint64   // ring records read by RunRing
}

// LoadBare loads the bare update for opts.Kind with a store of
// opts.MaxFlows entries (opts.RingSize bytes for ringbuf), rotating over
// opts.BenchRotateFlows flows (at least 1). The other fields are ignored.
func LoadBare(opts Options) (_ *Bare, err error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	spec, err := loadBare()
	if err != nil {
		return nil, err
	}
	for name, val := range map[string]uint32{
		"bare_kind":          opts.Kind.cKind(),
		"bare_slots_n":       opts.MaxFlows,
		"bench_rotate_flows": max(opts.BenchRotateFlows, 1),
	} {
		if err := spec.Variables[name].Set(val); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	switch {
	case opts.Kind == KindRingbuf:
		spec.Maps["bare_events"].MaxEntries = opts.RingSize
	case opts.Kind.isArray():
		spec.Maps["bare_slots"].Type = opts.Kind.mapType()
		spec.Maps["bare_slots"].MaxEntries = opts.MaxFlows
	default:
		spec.Maps["bare_hash"].Type = opts.Kind.mapType()
		spec.Maps["bare_hash"].MaxEntries = opts.MaxFlows
	}
	b := &Bare{kind: opts.Kind}
	if err := spec.LoadAndAssign(&b.objs, nil); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load bare %s: %+v", opts.Kind, ve)
		}
		return nil, fmt.Errorf("load bare %s: %w", opts.Kind, err)
	}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if b.cpus, err = ebpf.PossibleCPU(); err != nil {
		return nil, err
	}
	if opts.Kind == KindRingbuf {
		if b.ring, err = ringbuf.NewReader(b.objs.BareEvents); err != nil {
			return nil, fmt.Errorf("open ring buffer: %w", err)
		}
	}
	return b, nil
}

// BenchStoreSize is the store size (Options.MaxFlows) benchmarks use for
// flows flows of kind k, so that no packet misses: twice the flows for the
// hash kinds (and ringbuf's aggregate); eight times for the arrays, whose
// probing (8 slots from the key's hash) must find room, but at most 4Mi
// slots for array and 2Mi for percpu_array (allocating a per-CPU array
// takes seconds per million slots). At 1Mi flows the arrays therefore miss
// the few flows whose 8 probes all find a taken slot (about 0.005% at 4x,
// 0.5% at 2x).
func BenchStoreSize(k Kind, flows uint32) uint32 {
	switch k {
	case KindArray:
		return uint32(max(min(8*uint64(flows), 4<<20), 64))
	case KindPerCPUArray:
		return uint32(max(min(8*uint64(flows), 2<<20), 64))
	}
	return max(2*flows, 16)
}

// Kind is the store kind.
func (b *Bare) Kind() Kind { return b.kind }

// XDP and TC are the bare update as an XDP and as a TC program (for
// BPF_PROG_TEST_RUN: both count into the same store).
func (b *Bare) XDP() *ebpf.Program { return b.objs.BareXdp }
func (b *Bare) TC() *ebpf.Program  { return b.objs.BareTc }

// SetBenchStride sets how far the rotation advances per packet (see
// Options.BenchRotateFlows): 1 (the default) creates flows in order; a
// stride coprime to the flow count revisits them in another order.
func (b *Bare) SetBenchStride(stride uint32) error {
	return b.objs.BenchSkip.Set(max(stride, 1) - 1)
}

// Packets is how many times the programs ran.
func (b *Bare) Packets() (uint64, error) {
	var n uint64
	return n, b.objs.BenchPackets.Get(&n)
}

// Missed counts the updates that failed (ring full, no entry).
func (b *Bare) Missed() (uint64, error) {
	var n uint64
	return n, b.objs.BareMissed.Get(&n)
}

// Counted sums the packets in the store (summed over CPUs); for ringbuf,
// the records RunRing read.
func (b *Bare) Counted() (uint64, error) {
	switch {
	case b.kind == KindRingbuf:
		return b.records.Load(), nil
	case b.kind.isArray():
		return sumPackets(b.objs.BareSlots, make([]uint32, bareBatch), make([]bareSlot, bareBatch*b.ncpu()),
			func(s *bareSlot) uint64 { return s.Val.Packets })
	default:
		return sumPackets(b.objs.BareHash, make([]flow.Key, bareBatch), make([]flow.Value, bareBatch*b.ncpu()),
			func(v *flow.Value) uint64 { return v.Packets })
	}
}

// bareBatch is how many entries Counted reads per system call.
const bareBatch = 4096

const bareSlotReady = 2 // SLOT_READY

// bareSlot is struct flow_slot.
type bareSlot struct {
	Key   flow.Key
	State uint32
	Pad   uint32
	Val   flow.Value
}

func (b *Bare) ncpu() int {
	if b.kind == KindPerCPUHash || b.kind == KindLRUPerCPUHash || b.kind == KindPerCPUArray {
		return b.cpus
	}
	return 1
}

func sumPackets[K, V any](m *ebpf.Map, keys []K, vals []V, packets func(*V) uint64) (uint64, error) {
	var total uint64
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		per := len(vals) / len(keys)
		for i := range n * per {
			total += packets(&vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return total, nil
		}
		if err != nil {
			return total, fmt.Errorf("read bare store: %w", err)
		}
	}
}

// RunRing consumes the ring (ringbuf kind), counting the records, until
// ctx ends; then it reads what is left. Other kinds return at once. It
// must not run twice at once.
func (b *Bare) RunRing(ctx context.Context) error {
	if b.ring == nil {
		return nil
	}
	var rec ringbuf.Record
	for {
		done := ctx.Err() != nil
		wait := pollInterval
		if done {
			wait = 0
		}
		b.ring.SetDeadline(time.Now().Add(wait))
		for {
			err := b.ring.ReadInto(&rec)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return fmt.Errorf("read ring buffer: %w", err)
			}
			if len(rec.RawSample) >= int(unsafe.Sizeof(event{})) {
				b.records.Add(uint64((*event)(unsafe.Pointer(&rec.RawSample[0])).Packets))
			}
		}
		if done {
			return nil
		}
	}
}

// Close releases the programs and maps.
func (b *Bare) Close() error {
	var errs []error
	if b.ring != nil {
		errs = append(errs, b.ring.Close())
	}
	errs = append(errs, b.objs.Close())
	return errors.Join(errs...)
}

// TCEgress is the loaded TC egress program (for BPF_PROG_TEST_RUN
// benchmarks).
func (d *Datapath) TCEgress() *ebpf.Program { return d.objs.XflowTcEgress }

// BenchPackets is how many packets the programs rotated
// (Options.BenchRotateFlows): what BPF_PROG_TEST_RUN really ran, retries
// after a signal included. 0 without rotation.
func (d *Datapath) BenchPackets() (uint64, error) {
	var n uint64
	return n, d.objs.BenchPackets.Get(&n)
}

// Pass is the baseline of the benchmarks: an XDP and a TC program that do
// nothing but pass the packet on.
type Pass struct {
	XDPProg *ebpf.Program `ebpf:"pass_xdp"`
	TCProg  *ebpf.Program `ebpf:"pass_tc"`
}

// LoadPass loads the pass programs.
func LoadPass() (*Pass, error) {
	spec, err := loadBare()
	if err != nil {
		return nil, err
	}
	p := &Pass{}
	if err := spec.LoadAndAssign(p, nil); err != nil {
		return nil, fmt.Errorf("load pass programs: %w", err)
	}
	return p, nil
}

// Close releases the programs.
func (p *Pass) Close() error { return errors.Join(p.XDPProg.Close(), p.TCProg.Close()) }

// SetBenchStride sets how far the rotation advances per packet (see
// Options.BenchRotateFlows): 1 (the default) creates flows in order; a
// stride coprime to the flow count revisits them in another order. At
// most the flow count.
func (d *Datapath) SetBenchStride(stride uint32) error {
	return d.objs.BenchSkip.Set(max(stride, 1) - 1)
}

// BenchTake sums the packets counted in the store in use and empties it,
// in one pass and without aggregating flows (benchmarks only: no program
// may run meanwhile, as between test runs). For ringbuf it takes the
// consumer's aggregate (RunRing must have returned).
func (d *Datapath) BenchTake() (uint64, error) {
	var total uint64
	if d.ring != nil {
		d.ring.take(func(_ *flow.Key, v *flow.Value) { total += v.Packets })
		return total, nil
	}
	m := d.stores[d.active]
	ncpu := 1
	switch d.opts.Kind {
	case KindPerCPUHash, KindLRUPerCPUHash, KindPerCPUArray:
		ncpu = d.cpus
	}
	var cursor ebpf.MapBatchCursor
	if !d.opts.Kind.isArray() {
		keys, vals := make([]flow.Key, bareBatch), make([]flow.Value, bareBatch*ncpu)
		for {
			n, err := m.BatchLookupAndDelete(&cursor, keys, vals, nil)
			for i := range n * ncpu {
				total += vals[i].Packets
			}
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return total, nil
			}
			if err != nil {
				return total, fmt.Errorf("empty flow store: %w", err)
			}
		}
	}
	idx, vals := make([]uint32, bareBatch), make([]bareSlot, bareBatch*ncpu)
	var used []uint32
	for {
		n, err := m.BatchLookup(&cursor, idx, vals, nil)
		for i := range n {
			filled := false
			for c := range ncpu {
				if s := &vals[i*ncpu+c]; s.State == bareSlotReady {
					total += s.Val.Packets
					filled = true
				}
			}
			if filled {
				used = append(used, idx[i])
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return total, fmt.Errorf("read flow store: %w", err)
		}
	}
	zero := make([]bareSlot, bareBatch*ncpu)
	for len(used) > 0 {
		chunk := used[:min(len(used), bareBatch)]
		used = used[len(chunk):]
		if _, err := m.BatchUpdate(chunk, zero[:len(chunk)*ncpu], nil); err != nil {
			return total, fmt.Errorf("empty flow store: %w", err)
		}
	}
	return total, nil
}
