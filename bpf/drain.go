package bpf

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/xflow-net/xflow/flow"
)

// Drain hands every flow counted since the previous Drain to fn (counts
// summed over CPUs), calls commit, then empties what it read, and leaves
// the data plane counting into the other store.
//
// It is exact: it first points the programs at the other, empty store
// through the map-in-map slot. The kernel returns from that update only
// once every program that could still hold the old store has finished
// (maybe_wait_bpf_programs: synchronize_rcu), so the old store has no
// writer left when it is read and emptied with batch operations. No packet
// is lost between the read and the delete, and none is counted twice.
// commit (may be nil) runs between the two: the exporter persists its state
// there (SaveState), so that a daemon that dies at any point loses nothing.
//
// For the ringbuf kind it takes what the ring consumer aggregated.
func (d *Datapath) Drain(fn func(k *flow.Key, v *flow.Value), commit func() error) (int, error) {
	if d.ring != nil {
		n := d.ring.take(fn)
		if commit != nil {
			return n, commit()
		}
		return n, nil
	}
	old := d.active
	next := 1 - d.active
	if err := d.outer.Put(uint32(0), d.stores[next]); err != nil {
		return 0, fmt.Errorf("swap flow store: %w", err)
	}
	d.active = next
	d.draining = old
	defer func() { d.draining = -1 }()
	n, err := d.read(d.stores[old], fn)
	if err != nil {
		return n, err
	}
	if commit != nil {
		if err := commit(); err != nil {
			return n, err
		}
	}
	return n, d.clear(d.stores[old])
}

// read hands fn every flow of a store no program writes to, remembering
// what to empty.
func (d *Datapath) read(m *ebpf.Map, fn func(*flow.Key, *flow.Value)) (int, error) {
	if d.opts.Kind.isArray() {
		return d.readArray(m, fn)
	}
	return d.readHash(m, fn)
}

// clear empties what read found.
func (d *Datapath) clear(m *ebpf.Map) error {
	if d.opts.Kind.isArray() {
		ncpu := d.ncpu(m)
		var zero []slot
		for used := d.used; len(used) > 0; {
			chunk := used[:min(len(used), batchSize)]
			used = used[len(chunk):]
			if zero == nil {
				zero = make([]slot, len(chunk)*ncpu)
			}
			if _, err := m.BatchUpdate(chunk, zero[:len(chunk)*ncpu], nil); err != nil {
				return fmt.Errorf("clear flow store: %w", err)
			}
		}
		d.lastUsed = len(d.used)
		if cap(d.used) > keepKeys {
			d.used = nil // as for the keys below
		}
		d.used = d.used[:0]
		return nil
	}
	for keys := d.readKeys; len(keys) > 0; {
		chunk := keys[:min(len(keys), batchSize)]
		keys = keys[len(chunk):]
		if _, err := m.BatchDelete(chunk, nil); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("clear flow store: %w", err)
		}
	}
	// What a large drain read is not kept between drains: memory that
	// would grow with the flow count for nothing.
	if cap(d.readKeys) > keepKeys {
		d.readKeys = nil
	}
	d.readKeys = d.readKeys[:0]
	return nil
}

// keepKeys is how many read keys' room clear keeps for the next drain.
const keepKeys = 16 * batchSize

func (d *Datapath) readHash(m *ebpf.Map, fn func(*flow.Key, *flow.Value)) (int, error) {
	ncpu := d.ncpu(m)
	if len(d.vals) < batchSize*ncpu {
		d.vals = make([]flow.Value, batchSize*ncpu)
	}
	// The keys are read straight into readKeys, which clear deletes.
	d.readKeys = d.readKeys[:0]
	var cursor ebpf.MapBatchCursor
	for {
		d.readKeys = slices.Grow(d.readKeys, batchSize)
		keys := d.readKeys[len(d.readKeys) : len(d.readKeys)+batchSize]
		n, err := m.BatchLookup(&cursor, keys, d.vals[:batchSize*ncpu], nil)
		for i := 0; i < n; i++ {
			v := &d.vals[i*ncpu]
			for c := 1; c < ncpu; c++ {
				v.Add(&d.vals[i*ncpu+c])
			}
			if v.Packets > 0 {
				fn(&keys[i], v)
			}
		}
		d.readKeys = d.readKeys[:len(d.readKeys)+n]
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return len(d.readKeys), nil
		}
		if err != nil {
			return len(d.readKeys), fmt.Errorf("drain flow store: %w", err)
		}
	}
}

// readArray reads every slot and hands the filled ones to fn, merging
// slots that hold the same key.
func (d *Datapath) readArray(m *ebpf.Map, fn func(*flow.Key, *flow.Value)) (int, error) {
	ncpu := d.ncpu(m)
	idx := make([]uint32, batchSize)
	vals := make([]slot, batchSize*ncpu)
	// Sized for the slots the last drain found.
	agg := make(map[flow.Key]flow.Value, d.lastUsed)
	d.used = d.used[:0]
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, idx, vals, nil)
		for i := 0; i < n; i++ {
			filled := false
			for c := 0; c < ncpu; c++ {
				s := &vals[i*ncpu+c]
				if s.State != slotReady {
					continue
				}
				filled = true
				if cur, ok := agg[s.Key]; ok {
					cur.Add(&s.Val)
					agg[s.Key] = cur
				} else {
					agg[s.Key] = s.Val
				}
			}
			if filled {
				d.used = append(d.used, idx[i])
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("drain flow store: %w", err)
		}
	}
	for k, v := range agg {
		fn(&k, &v)
	}
	return len(agg), nil
}

func (d *Datapath) ncpu(m *ebpf.Map) int {
	switch m.Type() {
	case ebpf.PerCPUHash, ebpf.LRUCPUHash, ebpf.PerCPUArray:
		return d.cpus
	}
	return 1
}

// Peek hands fn every flow counted since the last Drain without removing
// anything (the data plane keeps writing meanwhile).
func (d *Datapath) Peek(fn func(k *flow.Key, v *flow.Value)) error {
	if d.ring != nil {
		d.ring.peek(fn)
		return nil
	}
	agg := make(map[flow.Key]*flow.Value)
	if err := readStore(d.stores[d.active], agg); err != nil {
		return err
	}
	for k, v := range agg {
		fn(&k, v)
	}
	return nil
}
