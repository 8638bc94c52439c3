package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/xflow-net/xflow/flow"
)

// slot is struct flow_slot: one entry of an array store.
type slot struct {
	Key   flow.Key
	State uint32
	Pad   uint32
	Val   flow.Value
}

const slotReady = 2

const batchSize = 4096

// reader reads flow stores (any kind but ringbuf) in batches, reusing its
// buffers, and remembers what it read so that clear can empty it. It is
// the one store reader: the drain, Peek, Flows, Pinned and Restore all read
// through it.
type reader struct {
	cpus int // possible CPUs: the values of a per-CPU map
	// Hash kinds: keys holds what read found (clear deletes it).
	keys []flow.Key
	vals []flow.Value
	// Array kinds: used holds the filled slots read found (clear zeroes
	// them); lastUsed, how many the previous read found.
	idx      []uint32
	slots    []slot
	used     []uint32
	lastUsed int
}

func newReader() (*reader, error) {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, err
	}
	return &reader{cpus: n}, nil
}

// ncpu is how many values m holds per key.
func (r *reader) ncpu(m *ebpf.Map) int {
	if perCPU(m.Type()) {
		return r.cpus
	}
	return 1
}

// read hands fn every flow of m that counted packets, with its counts
// summed over CPUs (and, for arrays, over the slots that hold the same
// key), and returns how many. The data plane may still be writing to m
// (then the counts are a snapshot, and clear must not follow).
func (r *reader) read(m *ebpf.Map, fn func(*flow.Key, *flow.Value)) (int, error) {
	switch m.Type() {
	case ebpf.Array, ebpf.PerCPUArray:
		return r.readArray(m, fn)
	}
	return r.readHash(m, fn)
}

func (r *reader) readHash(m *ebpf.Map, fn func(*flow.Key, *flow.Value)) (int, error) {
	ncpu := r.ncpu(m)
	if len(r.vals) < batchSize*ncpu {
		r.vals = make([]flow.Value, batchSize*ncpu)
	}
	// The keys are read straight into keys, which clear deletes.
	r.keys = r.keys[:0]
	var cursor ebpf.MapBatchCursor
	for {
		r.keys = slices.Grow(r.keys, batchSize)
		keys := r.keys[len(r.keys) : len(r.keys)+batchSize]
		n, err := m.BatchLookup(&cursor, keys, r.vals[:batchSize*ncpu], nil)
		for i := 0; i < n; i++ {
			v := &r.vals[i*ncpu]
			for c := 1; c < ncpu; c++ {
				v.Add(&r.vals[i*ncpu+c])
			}
			if v.Packets > 0 {
				fn(&keys[i], v)
			}
		}
		r.keys = r.keys[:len(r.keys)+n]
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return len(r.keys), nil
		}
		if err != nil {
			return len(r.keys), fmt.Errorf("read flow store: %w", err)
		}
	}
}

// readArray reads every slot and hands the filled ones to fn, merging
// slots that hold the same key.
func (r *reader) readArray(m *ebpf.Map, fn func(*flow.Key, *flow.Value)) (int, error) {
	ncpu := r.ncpu(m)
	if len(r.slots) < batchSize*ncpu {
		r.idx, r.slots = make([]uint32, batchSize), make([]slot, batchSize*ncpu)
	}
	// Sized for the slots the last read found.
	agg := make(map[flow.Key]flow.Value, r.lastUsed)
	r.used = r.used[:0]
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, r.idx, r.slots[:batchSize*ncpu], nil)
		for i := 0; i < n; i++ {
			filled := false
			for c := 0; c < ncpu; c++ {
				s := &r.slots[i*ncpu+c]
				if s.State != slotReady {
					continue
				}
				filled = true // cleared even if it counted nothing
				if s.Val.Packets == 0 {
					continue
				}
				if cur, ok := agg[s.Key]; ok {
					cur.Add(&s.Val)
					agg[s.Key] = cur
				} else {
					agg[s.Key] = s.Val
				}
			}
			if filled {
				r.used = append(r.used, r.idx[i])
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read flow store: %w", err)
		}
	}
	r.lastUsed = len(r.used)
	for k, v := range agg {
		fn(&k, &v)
	}
	return len(agg), nil
}

// clear empties what the last read of m found (m has no writer left).
func (r *reader) clear(m *ebpf.Map) error {
	switch m.Type() {
	case ebpf.Array, ebpf.PerCPUArray:
		ncpu := r.ncpu(m)
		var zero []slot
		for used := r.used; len(used) > 0; {
			chunk := used[:min(len(used), batchSize)]
			used = used[len(chunk):]
			if zero == nil {
				zero = make([]slot, len(chunk)*ncpu)
			}
			if _, err := m.BatchUpdate(chunk, zero[:len(chunk)*ncpu], nil); err != nil {
				return fmt.Errorf("clear flow store: %w", err)
			}
		}
		if cap(r.used) > keepKeys {
			r.used = nil // as for the keys below
		}
		r.used = r.used[:0]
		return nil
	}
	for keys := r.keys; len(keys) > 0; {
		chunk := keys[:min(len(keys), batchSize)]
		keys = keys[len(chunk):]
		if _, err := m.BatchDelete(chunk, nil); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear flow store: %w", err)
		}
	}
	// What a large read found is not kept between drains: memory that
	// would grow with the flow count for nothing.
	if cap(r.keys) > keepKeys {
		r.keys = nil
	}
	r.keys = r.keys[:0]
	return nil
}

// keepKeys is how many read keys' room clear keeps for the next drain.
const keepKeys = 16 * batchSize

// collect reads stores that may still be written to, merging their flows.
func collect(stores ...*ebpf.Map) ([]flow.Record, error) {
	r, err := newReader()
	if err != nil {
		return nil, err
	}
	agg := make(map[flow.Key]*flow.Value)
	for _, m := range stores {
		if m == nil {
			continue
		}
		if _, err := r.read(m, func(k *flow.Key, v *flow.Value) {
			if cur, ok := agg[*k]; ok {
				cur.Add(v)
			} else {
				nv := *v
				agg[*k] = &nv
			}
		}); err != nil {
			return nil, err
		}
	}
	out := make([]flow.Record, 0, len(agg))
	for k, v := range agg {
		out = append(out, flow.Record{Key: k, Value: *v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Value.FirstNs < out[j].Value.FirstNs })
	return out, nil
}

// Flows reads every flow counted since the last drain (all of them if
// nothing drains). For the ringbuf kind that is what the consumer has
// aggregated so far.
func (d *Datapath) Flows() ([]flow.Record, error) {
	if d.ring != nil {
		var out []flow.Record
		d.ring.peek(func(k *flow.Key, v *flow.Value) { out = append(out, flow.Record{Key: *k, Value: *v}) })
		return out, nil
	}
	return collect(d.stores[:]...)
}

// Pinned gives read access to the maps an xflow daemon pinned, whether or
// not it still runs.
type Pinned struct {
	counters *ebpf.Map
	stores   []*ebpf.Map
}

// OpenPinned opens the maps pinned under dir.
func OpenPinned(dir string) (*Pinned, error) {
	open := func(name string) (*ebpf.Map, error) {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			return nil, err
		}
		return m, nil
	}
	p := &Pinned{}
	var err error
	if p.counters, err = open(pinCounters); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no xflow maps pinned under %s (is `xflow run` configured with this pin_path?)", dir)
		}
		return nil, fmt.Errorf("open pinned maps under %s: %w", dir, err)
	}
	for _, name := range []string{pinStorePref + "0", pinStorePref + "1"} {
		m, err := open(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("open pinned map %s: %w", filepath.Join(dir, name), err)
		}
		p.stores = append(p.stores, m)
	}
	if len(p.stores) == 0 {
		p.Close()
		if _, err := os.Stat(filepath.Join(dir, pinEvents)); err == nil {
			return nil, fmt.Errorf("%s holds a ring buffer (map: ringbuf): its flows are aggregated by the daemon, and none answered", dir)
		}
		return nil, fmt.Errorf("no flow store pinned under %s", dir)
	}
	return p, nil
}

// Flows reads every flow, with cumulative counts.
func (p *Pinned) Flows() ([]flow.Record, error) { return collect(p.stores...) }

// Counters reads the data plane's counters.
func (p *Pinned) Counters() (Counters, error) { return readCounters(p.counters) }

// Close closes the maps.
func (p *Pinned) Close() error {
	errs := []error{}
	for _, m := range append(p.stores, p.counters) {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}
