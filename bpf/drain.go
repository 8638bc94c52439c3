package bpf

import (
	"fmt"

	"github.com/xflow-net/xflow/flow"
)

// Drained is a flow store that no program writes to any more, which the
// caller reads, persists and empties, in this order:
//
//	dr, err := d.Swap()        // the data plane counts into the other store
//	n, err := d.Read(dr, fn)   // every flow dr counted
//	err = d.SaveState(dr, tab) // the table, which now includes dr
//	err = d.Clear(dr)          // empty dr, which is then swapped in again
//
// A daemon that dies anywhere in between loses nothing: the next one finds
// dr either not yet included in the saved state (it reads it again) or
// included but not emptied (it empties it). Restore returns what an earlier
// daemon left in the same form. The zero Drained holds nothing.
type Drained struct {
	store  int                      // 1 + the index of the store in Datapath.stores; 0 if none of them
	ring   map[flow.Key]*flow.Value // ringbuf kind: the consumer's aggregate
	legacy *previous                // an incompatible earlier data plane's stores
}

// Swap points the programs at the other, empty store and returns the one
// they filled, with no writer left. For the ringbuf kind it takes what the
// ring consumer aggregated.
//
// It is exact: the store is swapped through the map-in-map slot, and the
// kernel returns from that update only once every program that could still
// hold the old store has finished (maybe_wait_bpf_programs:
// synchronize_rcu). No packet is lost between the read and the clear, and
// none is counted twice.
func (d *Datapath) Swap() (Drained, error) {
	if d.ring != nil {
		return Drained{ring: d.ring.swap()}, nil
	}
	next := 1 - d.active
	if err := d.outer.Put(uint32(0), d.stores[next]); err != nil {
		return Drained{}, fmt.Errorf("swap flow store: %w", err)
	}
	old := d.active
	d.active = next
	return Drained{store: old + 1}, nil
}

// Read hands fn every flow dr counted (counts summed over CPUs), and
// returns how many.
func (d *Datapath) Read(dr Drained, fn func(k *flow.Key, v *flow.Value)) (int, error) {
	switch {
	case dr.ring != nil:
		for k, v := range dr.ring {
			fn(&k, v)
		}
		return len(dr.ring), nil
	case dr.legacy != nil:
		n := 0
		for i, s := range dr.legacy.stores {
			if uint32(i) == dr.legacy.p.cur.Merged {
				continue
			}
			r, err := d.rd.read(s, fn)
			if n += r; err != nil {
				return n, err
			}
		}
		return n, nil
	case dr.store > 0:
		return d.rd.read(d.stores[dr.store-1], fn)
	}
	return 0, nil
}

// Clear empties what Read found in dr: after SaveState, so that the
// state includes it.
func (d *Datapath) Clear(dr Drained) error {
	switch {
	case dr.legacy != nil:
		// An incompatible earlier data plane: let it go.
		if d.legacy == dr.legacy {
			d.legacy = nil
		}
		dr.legacy.close()
	case dr.store > 0:
		return d.rd.clear(d.stores[dr.store-1])
	}
	return nil
}

// Peek hands fn every flow counted since the last Swap without removing
// anything (the data plane keeps writing meanwhile).
func (d *Datapath) Peek(fn func(k *flow.Key, v *flow.Value)) error {
	if d.ring != nil {
		d.ring.peek(fn)
		return nil
	}
	r, err := newReader() // not the drain's: it may read meanwhile
	if err != nil {
		return err
	}
	_, err = r.read(d.stores[d.active], fn)
	return err
}
