package bare

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/flow"
)

// DatapathOptions configure LoadDatapath.
type DatapathOptions struct {
	bpf.Options
	// RotateFlows, when n > 0, makes the programs XOR a rotation r < n into
	// the low 32 bits of each packet's source address, r advancing by 1
	// per packet (mod n), or by the stride SetStride sets: one repeated
	// test frame makes n flows, n packets create them all and every later
	// packet updates one (bpf/include/bench.h).
	RotateFlows uint32
	// ParseOnly makes the programs parse each packet and fill in its flow
	// key, then return without storing it (the cost of parsing alone).
	ParseOnly bool
}

// LoadDatapath loads the production data plane (bpf.Load) with its
// benchmark constants (bench_rotate_flows, bench_parse_only) set in its
// spec.
func LoadDatapath(opts DatapathOptions) (*bpf.Datapath, error) {
	spec := opts.Spec
	if spec == nil {
		var err error
		if spec, err = bpf.Spec(); err != nil {
			return nil, err
		}
	} else {
		spec = spec.Copy()
	}
	parseOnly := uint32(0)
	if opts.ParseOnly {
		parseOnly = 1
	}
	for name, val := range map[string]uint32{"bench_rotate_flows": opts.RotateFlows, "bench_parse_only": parseOnly} {
		v, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("data plane has no %s", name)
		}
		if err := v.Set(val); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	opts.Spec = spec
	return bpf.Load(opts.Options)
}

// Packets is how many packets d's programs rotated (RotateFlows): what
// BPF_PROG_TEST_RUN really ran, retries after a signal included. 0 without
// rotation.
func Packets(d *bpf.Datapath) (uint64, error) {
	v := d.Variable("bench_packets")
	if v == nil {
		return 0, errors.New("data plane has no bench_packets")
	}
	var n uint64
	return n, v.Get(&n)
}

// SetStride sets how far d's rotation advances per packet (see
// RotateFlows): 1 (the default) creates flows in order; a stride coprime
// to the flow count revisits them in another order. At most the flow
// count.
func SetStride(d *bpf.Datapath, stride uint32) error {
	v := d.Variable("bench_skip")
	if v == nil {
		return errors.New("data plane has no bench_skip")
	}
	return v.Set(max(stride, 1) - 1)
}

// Take sums the packets counted in d's store in use and empties it, in one
// pass and without aggregating flows (no program may run meanwhile, as
// between test runs). For ringbuf it takes the consumer's aggregate
// (RunRing must have returned).
func Take(d *bpf.Datapath) (uint64, error) {
	var total uint64
	m := d.Maps().Store
	if m == nil {
		dr, err := d.Swap()
		if err != nil {
			return 0, err
		}
		if _, err := d.Read(dr, func(_ *flow.Key, v *flow.Value) { total += v.Packets }); err != nil {
			return 0, err
		}
		return total, d.Clear(dr)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return 0, err
	}
	ncpu := ncpu(m.Type(), cpus)
	var cursor ebpf.MapBatchCursor
	if !isArray(d.Kind()) {
		keys, vals := make([]flow.Key, batch), make([]flow.Value, batch*ncpu)
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
	idx, vals := make([]uint32, batch), make([]slot, batch*ncpu)
	var used []uint32
	for {
		n, err := m.BatchLookup(&cursor, idx, vals, nil)
		for i := range n {
			filled := false
			for c := range ncpu {
				if s := &vals[i*ncpu+c]; s.State == slotReady {
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
	zero := make([]slot, batch*ncpu)
	for len(used) > 0 {
		chunk := used[:min(len(used), batch)]
		used = used[len(chunk):]
		if _, err := m.BatchUpdate(chunk, zero[:len(chunk)*ncpu], nil); err != nil {
			return total, fmt.Errorf("empty flow store: %w", err)
		}
	}
	return total, nil
}

// Fill writes recs into the store d's programs are filling, as if the data
// plane had counted them: it lets benchmarks of the export path fill a
// store with exactly len(recs) distinct flows in one batch update instead
// of a packet per flow. Per-CPU kinds get each flow on one CPU, in turn;
// array kinds get flow i in slot i (len(recs) must not exceed MaxFlows).
// Not for the ringbuf kind: it overwrites what the store holds for those
// keys.
func Fill(d *bpf.Datapath, recs []flow.Record) error {
	m := d.Maps().Store
	if m == nil {
		return errors.New("fill: the ringbuf kind has no store")
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	ncpu := ncpu(m.Type(), cpus)
	for start := 0; start < len(recs); start += batch {
		chunk := recs[start:min(len(recs), start+batch)]
		var keys, vals any
		if isArray(d.Kind()) {
			idx := make([]uint32, len(chunk))
			slots := make([]slot, len(chunk)*ncpu)
			for i := range chunk {
				idx[i] = uint32(start + i)
				s := &slots[i*ncpu+(start+i)%ncpu]
				s.Key, s.State, s.Val = chunk[i].Key, slotReady, chunk[i].Value
			}
			keys, vals = idx, slots
			if ncpu > 1 {
				vals = pointers(slots) // cilium/ebpf marshals per-CPU values by reflection, pointers at once
			}
		} else {
			ks := make([]flow.Key, len(chunk))
			vs := make([]flow.Value, len(chunk)*ncpu)
			for i := range chunk {
				ks[i] = chunk[i].Key
				vs[i*ncpu+(start+i)%ncpu] = chunk[i].Value
			}
			keys, vals = ks, vs
			if ncpu > 1 {
				vals = pointers(vs)
			}
		}
		if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
			return fmt.Errorf("fill: %w", err)
		}
	}
	return nil
}

func pointers[T any](s []T) []*T {
	p := make([]*T, len(s))
	for i := range s {
		p[i] = &s[i]
	}
	return p
}

// Memory is the kernel memory (memlock, as the kernel accounts it) of d's
// two flow stores and, with a pin path, of its two state maps.
func Memory(d *bpf.Datapath) (stores, state uint64) {
	memlock := func(m *ebpf.Map) uint64 {
		if m == nil {
			return 0
		}
		info, err := m.Info()
		if err != nil {
			return 0
		}
		n, _ := info.Memlock()
		return n
	}
	maps := d.Maps()
	for _, m := range maps.Stores {
		stores += memlock(m)
	}
	for _, m := range maps.State {
		state += memlock(m)
	}
	return stores, state
}
