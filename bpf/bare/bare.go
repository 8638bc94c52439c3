package bare

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

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/flow"
)

// Options configure Load.
type Options struct {
	Kind     bpf.Kind
	MaxFlows uint32 // store entries (not used by ringbuf)
	RingSize uint32 // ringbuf bytes: a power of two, at least 4096
	// RotateFlows is how many flows the programs rotate over (at least 1),
	// as DatapathOptions.RotateFlows rotates the data plane's.
	RotateFlows uint32
}

// Update is the bare map update of one store kind (bare.c): programs that
// ignore the packet and do only the kind's map operation on a fixed flow
// key, rotated as the data plane's is. It is the yardstick of the data
// plane's cost.
type Update struct {
	kind bpf.Kind
	objs bareObjects
	cpus int

	ring    *ringbuf.Reader // ringbuf kind
	records atomic.Uint64   // ring records read by RunRing
}

// cKind is the kind's value of enum xflow_map_kind (include/types.h).
func cKind(k bpf.Kind) (uint32, error) {
	for i, kk := range []bpf.Kind{bpf.KindPerCPUHash, bpf.KindHash, bpf.KindLRUHash, bpf.KindLRUPerCPUHash,
		bpf.KindArray, bpf.KindPerCPUArray, bpf.KindRingbuf} {
		if k == kk {
			return uint32(i), nil
		}
	}
	return 0, fmt.Errorf("unknown map kind %q", k)
}

func isArray(k bpf.Kind) bool { return k == bpf.KindArray || k == bpf.KindPerCPUArray }

// Load loads the bare update for opts.Kind.
func Load(opts Options) (_ *Update, err error) {
	ck, err := cKind(opts.Kind)
	if err != nil {
		return nil, err
	}
	if opts.MaxFlows == 0 {
		return nil, errors.New("bare update: MaxFlows must be at least 1")
	}
	if opts.Kind == bpf.KindRingbuf && (opts.RingSize < 4096 || opts.RingSize&(opts.RingSize-1) != 0) {
		return nil, fmt.Errorf("bare update: ring size %d: want a power of two >= 4096", opts.RingSize)
	}
	spec, err := loadBare()
	if err != nil {
		return nil, err
	}
	for name, val := range map[string]uint32{
		"bare_kind":          ck,
		"bare_slots_n":       opts.MaxFlows,
		"bench_rotate_flows": max(opts.RotateFlows, 1),
	} {
		if err := spec.Variables[name].Set(val); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	switch {
	case opts.Kind == bpf.KindRingbuf:
		spec.Maps["bare_events"].MaxEntries = opts.RingSize
	case isArray(opts.Kind):
		spec.Maps["bare_slots"].Type = opts.Kind.MapType()
		spec.Maps["bare_slots"].MaxEntries = opts.MaxFlows
	default:
		spec.Maps["bare_hash"].Type = opts.Kind.MapType()
		spec.Maps["bare_hash"].MaxEntries = opts.MaxFlows
	}
	b := &Update{kind: opts.Kind}
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
	if opts.Kind == bpf.KindRingbuf {
		if b.ring, err = ringbuf.NewReader(b.objs.BareEvents); err != nil {
			return nil, fmt.Errorf("open ring buffer: %w", err)
		}
	}
	return b, nil
}

// StoreSize is the store size (MaxFlows) benchmarks use for flows flows of
// kind k, so that no packet misses: twice the flows for the hash kinds
// (and ringbuf's aggregate); eight times for the arrays, whose probing (8
// slots from the key's hash) must find room, but at most 4Mi slots for
// array and 2Mi for percpu_array (allocating a per-CPU array takes seconds
// per million slots). At 1Mi flows the arrays therefore miss the few flows
// whose 8 probes all find a taken slot (about 0.005% at 4x, 0.5% at 2x).
func StoreSize(k bpf.Kind, flows uint32) uint32 {
	switch k {
	case bpf.KindArray:
		return uint32(max(min(8*uint64(flows), 4<<20), 64))
	case bpf.KindPerCPUArray:
		return uint32(max(min(8*uint64(flows), 2<<20), 64))
	}
	return max(2*flows, 16)
}

// Kind is the store kind.
func (b *Update) Kind() bpf.Kind { return b.kind }

// XDP and TC are the bare update as an XDP and as a TC program (for
// BPF_PROG_TEST_RUN: both count into the same store).
func (b *Update) XDP() *ebpf.Program { return b.objs.BareXdp }
func (b *Update) TC() *ebpf.Program  { return b.objs.BareTc }

// SetStride sets how far the rotation advances per packet: 1 (the
// default) creates flows in order; a stride coprime to the flow count
// revisits them in another order.
func (b *Update) SetStride(stride uint32) error {
	return b.objs.BenchSkip.Set(max(stride, 1) - 1)
}

// Packets is how many times the programs ran.
func (b *Update) Packets() (uint64, error) {
	var n uint64
	return n, b.objs.BenchPackets.Get(&n)
}

// Missed counts the updates that failed (ring full, no entry).
func (b *Update) Missed() (uint64, error) {
	var n uint64
	return n, b.objs.BareMissed.Get(&n)
}

// Counted sums the packets in the store (summed over CPUs); for ringbuf,
// the records RunRing read.
func (b *Update) Counted() (uint64, error) {
	switch {
	case b.kind == bpf.KindRingbuf:
		return b.records.Load(), nil
	case isArray(b.kind):
		return sumPackets(b.objs.BareSlots, make([]uint32, batch), make([]slot, batch*b.ncpu()),
			func(s *slot) uint64 { return s.Val.Packets })
	default:
		return sumPackets(b.objs.BareHash, make([]flow.Key, batch), make([]flow.Value, batch*b.ncpu()),
			func(v *flow.Value) uint64 { return v.Packets })
	}
}

// batch is how many entries a batch operation handles per system call.
const batch = 4096

const slotReady = 2 // SLOT_READY

// slot is struct flow_slot (include/types.h).
type slot struct {
	Key   flow.Key
	State uint32
	Pad   uint32
	Val   flow.Value
}

// event is the head of struct flow_event (include/types.h), up to its
// packet count.
type event struct {
	Key     flow.Key
	TsNs    uint64
	Bytes   uint32
	Packets uint32
}

func (b *Update) ncpu() int {
	return ncpu(b.kind.MapType(), b.cpus)
}

// ncpu is how many values one entry of a map of type t has.
func ncpu(t ebpf.MapType, cpus int) int {
	switch t {
	case ebpf.PerCPUHash, ebpf.LRUCPUHash, ebpf.PerCPUArray:
		return cpus
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

// pollInterval is how long RunRing waits for records at a time.
const pollInterval = 50 * time.Millisecond

// RunRing consumes the ring (ringbuf kind), counting the records, until
// ctx ends; then it reads what is left. Other kinds return at once. It
// must not run twice at once.
func (b *Update) RunRing(ctx context.Context) error {
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
func (b *Update) Close() error {
	var errs []error
	if b.ring != nil {
		errs = append(errs, b.ring.Close())
	}
	errs = append(errs, b.objs.Close())
	return errors.Join(errs...)
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
