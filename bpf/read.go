package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// readStore adds every flow of one store map (any kind but ringbuf) to
// into, summing per-CPU values and, for arrays, entries that share a key.
// It only reads: the data plane may still be writing to m.
func readStore(m *ebpf.Map, into map[flow.Key]*flow.Value) error {
	ncpu := 1
	switch m.Type() {
	case ebpf.PerCPUHash, ebpf.LRUCPUHash, ebpf.PerCPUArray:
		n, err := ebpf.PossibleCPU()
		if err != nil {
			return err
		}
		ncpu = n
	}
	add := func(k *flow.Key, v *flow.Value) {
		if v.Packets == 0 {
			return
		}
		if cur, ok := into[*k]; ok {
			cur.Add(v)
			return
		}
		nv := *v
		into[*k] = &nv
	}
	var cursor ebpf.MapBatchCursor
	switch m.Type() {
	case ebpf.Array, ebpf.PerCPUArray:
		idx := make([]uint32, batchSize)
		vals := make([]slot, batchSize*ncpu)
		for {
			n, err := m.BatchLookup(&cursor, idx, vals, nil)
			for i := 0; i < n*ncpu; i++ {
				if s := &vals[i]; s.State == slotReady {
					add(&s.Key, &s.Val)
				}
			}
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", m, err)
			}
		}
	default:
		keys := make([]flow.Key, batchSize)
		vals := make([]flow.Value, batchSize*ncpu)
		for {
			n, err := m.BatchLookup(&cursor, keys, vals, nil)
			for i := 0; i < n; i++ {
				for c := 0; c < ncpu; c++ {
					add(&keys[i], &vals[i*ncpu+c])
				}
			}
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", m, err)
			}
		}
	}
}

func collect(stores ...*ebpf.Map) ([]flow.Record, error) {
	agg := make(map[flow.Key]*flow.Value)
	for _, m := range stores {
		if m == nil {
			continue
		}
		if err := readStore(m, agg); err != nil {
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

// Flows reads every flow counted since the last Drain (all of them if
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
