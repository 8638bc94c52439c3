package bpf

import (
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/xflow-net/xflow/flow"
)

// Restarts without loss.
//
// With a pin path, the maps, the links and the exporter's flow state
// outlive the daemon. The links keep the programs attached and counting
// while no daemon runs; the next `xflow run` with a compatible
// configuration adopts the maps (its new programs are loaded with them,
// and the pinned links are updated to the new programs, with no gap), reads
// back the state, and exports what was counted meanwhile.
//
// The state is the exporter's flow table after each scan, written to one of
// two state maps in turn; a one-entry meta map then says which state map is
// current and which flow store's counts it already includes. Only then is
// that store emptied. Whenever the daemon dies, the next one finds either
// the store not yet merged (it merges it) or merged but not yet emptied (it
// empties it): no counted packet is lost or counted twice. (Records handed
// to the collectors' sinks in the instant of death are another matter: the
// records of that scan are sent at least once.)

// meta is the value of the meta map.
type meta struct {
	State  uint32 // the current state map, 0 or 1
	Merged uint32 // the flow store (0 or 1) whose counts that state includes; noStore if none
}

const noStore = 2

// Pin names of the state.
const (
	pinMeta      = "meta"
	pinStatePref = "state_" // state_0, state_1
	pinLinks     = "links"  // a directory of pinned links
)

type persisted struct {
	meta  *ebpf.Map
	state [2]*ebpf.Map
	cur   meta
	// SaveState's batch buffers, reused.
	keys []flow.Key
	vals []flow.State
}

func newPersisted(maxFlows uint32) (*persisted, error) {
	p := &persisted{cur: meta{State: 0, Merged: noStore}}
	var err error
	p.meta, err = ebpf.NewMap(&ebpf.MapSpec{Name: "xflow_meta", Type: ebpf.Array, KeySize: 4, ValueSize: uint32(unsafe.Sizeof(meta{})), MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("create state map: %w", err)
	}
	for i := range p.state {
		// Room for a full table plus a full drained store (the exporter
		// relieves its table only after merging a drain).
		p.state[i], err = ebpf.NewMap(&ebpf.MapSpec{Name: fmt.Sprintf("xflow_state_%d", i), Type: ebpf.Hash,
			KeySize: stateKeySize, ValueSize: stateValueSize, MaxEntries: stateEntries(maxFlows), Flags: 1 /* BPF_F_NO_PREALLOC */})
		if err != nil {
			p.close()
			return nil, fmt.Errorf("create state map: %w", err)
		}
	}
	if err := p.meta.Put(uint32(0), p.cur); err != nil {
		p.close()
		return nil, fmt.Errorf("init state map: %w", err)
	}
	return p, nil
}

func stateEntries(maxFlows uint32) uint32 { return 2 * maxFlows }

// The state maps' key and value: a flow and its exporter state.
const (
	stateKeySize   = uint32(unsafe.Sizeof(flow.Key{}))
	stateValueSize = uint32(unsafe.Sizeof(flow.State{}))
)

func (p *persisted) close() {
	for _, m := range append(p.state[:], p.meta) {
		if m != nil {
			m.Close()
		}
	}
}

// previous is what an earlier daemon pinned under the pin path.
type previous struct {
	outer, counters, events *ebpf.Map
	stores                  [2]*ebpf.Map
	p                       *persisted
}

func (pr *previous) close() {
	for _, m := range []*ebpf.Map{pr.outer, pr.counters, pr.events, pr.stores[0], pr.stores[1]} {
		if m != nil {
			m.Close()
		}
	}
	if pr.p != nil {
		pr.p.close()
	}
}

// openPrevious opens an earlier daemon's pinned maps, or returns nil when
// there are none (or not all of them).
func openPrevious(dir string) *previous {
	load := func(name string) *ebpf.Map {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			return nil
		}
		return m
	}
	pr := &previous{counters: load(pinCounters), outer: load(pinStore), events: load(pinEvents),
		stores: [2]*ebpf.Map{load(pinStorePref + "0"), load(pinStorePref + "1")},
		p:      &persisted{meta: load(pinMeta), state: [2]*ebpf.Map{load(pinStatePref + "0"), load(pinStatePref + "1")}}}
	complete := pr.counters != nil && pr.p.meta != nil && pr.p.state[0] != nil && pr.p.state[1] != nil &&
		(pr.events != nil || (pr.outer != nil && pr.stores[0] != nil && pr.stores[1] != nil))
	if !complete || pr.p.meta.Lookup(uint32(0), &pr.p.cur) != nil {
		pr.close()
		return nil
	}
	return pr
}

// compatible says whether the new daemon can count on in the earlier
// daemon's maps: same kind and sizes.
func (pr *previous) compatible(o Options, spec *ebpf.CollectionSpec) bool {
	if pr.p.state[0].MaxEntries() != stateEntries(o.MaxFlows) || pr.p.state[0].KeySize() != stateKeySize || pr.p.state[0].ValueSize() != stateValueSize {
		return false
	}
	if spec.Maps["counters"].Compatible(pr.counters) != nil {
		return false
	}
	if o.Kind == KindRingbuf {
		return pr.events != nil && pr.outer == nil && spec.Maps["events"].Compatible(pr.events) == nil
	}
	outer, inner := spec.Maps["flows"], spec.Maps["flows"].InnerMap
	if o.Kind.isArray() {
		outer, inner = spec.Maps["slots"], spec.Maps["slots"].InnerMap
	}
	return pr.outer != nil && outer.Compatible(pr.outer) == nil &&
		inner.Compatible(pr.stores[0]) == nil && inner.Compatible(pr.stores[1]) == nil
}

// activeStore says which store the outer slot holds.
func activeStore(outer *ebpf.Map, stores [2]*ebpf.Map) (int, error) {
	var id uint32
	if err := outer.Lookup(uint32(0), &id); err != nil {
		return 0, fmt.Errorf("read the flow store slot: %w", err)
	}
	for i, s := range stores {
		info, err := s.Info()
		if err != nil {
			return 0, err
		}
		if sid, _ := info.ID(); uint32(sid) == id {
			return i, nil
		}
	}
	return 0, errors.New("the flow store slot holds neither pinned store")
}

// SaveState persists the exporter's flow table (each yields every flow's
// state), which includes what was read from dr: it writes the state map
// not current, then makes it current and records that it includes dr —
// after which dr may be cleared. Without a pin path it does nothing.
func (d *Datapath) SaveState(dr Drained, each iter.Seq2[*flow.Key, *flow.State]) error {
	p := d.persist
	if p == nil {
		return nil
	}
	next := 1 - p.cur.State
	m := p.state[next]
	if len(p.keys) < batchSize {
		p.keys, p.vals = make([]flow.Key, batchSize), make([]flow.State, batchSize)
	}
	// Empty it (what it holds is older than the current state), then
	// write the table in batches.
	var cursor ebpf.MapBatchCursor
	for {
		_, err := m.BatchLookupAndDelete(&cursor, p.keys, p.vals, nil)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("clear state map: %w", err)
		}
	}
	n := 0
	write := func() error {
		if n == 0 {
			return nil
		}
		_, err := m.BatchUpdate(p.keys[:n], p.vals[:n], nil)
		n = 0
		if err != nil {
			return fmt.Errorf("write state map: %w", err)
		}
		return nil
	}
	for k, st := range each {
		p.keys[n], p.vals[n] = *k, *st
		if n++; n == batchSize {
			if err := write(); err != nil {
				return err
			}
		}
	}
	if err := write(); err != nil {
		return err
	}
	cur := meta{State: next, Merged: p.cur.Merged}
	if dr.store > 0 {
		cur.Merged = uint32(dr.store - 1)
	}
	if err := p.meta.Put(uint32(0), cur); err != nil {
		return fmt.Errorf("write state meta: %w", err)
	}
	p.cur = cur
	return nil
}

// Restore hands state the flow table an earlier daemon persisted, and
// returns what the data plane counted since that table was saved: the
// caller reads it, saves the state and clears it, as after a Swap. A new
// data plane without an earlier one has nothing to restore.
func (d *Datapath) Restore(state func(*flow.Key, *flow.State)) (Drained, error) {
	src := d.persist
	if d.legacy != nil {
		src = d.legacy.p
	}
	if src == nil || !d.restorable {
		return Drained{}, nil
	}
	// The current state map is the state (SaveState empties the other
	// one before writing it).
	keys := make([]flow.Key, batchSize)
	vals := make([]flow.State, batchSize)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := src.state[src.cur.State].BatchLookup(&cursor, keys, vals, nil)
		for j := 0; j < n; j++ {
			state(&keys[j], &vals[j])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break
		}
		if err != nil {
			return Drained{}, fmt.Errorf("read state: %w", err)
		}
	}
	d.restorable = false
	if l := d.legacy; l != nil {
		// An incompatible earlier data plane: what it counted is read
		// once, then it is let go (Clear).
		if l.events != nil {
			// Its ring's records are gone with its consumer.
			d.legacy = nil
			l.close()
			return Drained{}, nil
		}
		return Drained{legacy: l}, nil
	}
	if d.ring != nil {
		return Drained{}, nil
	}
	// The store the programs are not filling: merged already (empty it),
	// or not (the caller merges it).
	idle := Drained{store: 2 - d.active}
	if uint32(idle.store-1) == d.persist.cur.Merged {
		// Its counts are in the state already: the earlier daemon died
		// before (or while) emptying it. Empty it, whatever it holds.
		if _, err := d.Read(idle, func(*flow.Key, *flow.Value) {}); err != nil {
			return Drained{}, err
		}
		return Drained{}, d.Clear(idle)
	}
	return idle, nil
}

// PruneLinks unpins the links pinned under the pin path that are not in
// keep (hooks or interfaces no longer configured): their programs detach.
func (d *Datapath) PruneLinks(keep map[string]bool) ([]string, error) {
	if d.opts.PinPath == "" {
		return nil, nil
	}
	dir := filepath.Join(d.opts.PinPath, pinLinks)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil
	}
	var removed []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if keep[p] {
			continue
		}
		if err := os.Remove(p); err != nil {
			return removed, fmt.Errorf("remove pinned link %s: %w", p, err)
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}

// pinLinkPath is where the link of one hook on one interface is pinned.
func pinLinkPath(dir, iface, hook string) string {
	return filepath.Join(dir, pinLinks, iface+"-"+hook)
}

func removeLinkPins(dir string) error {
	entries, err := os.ReadDir(filepath.Join(dir, pinLinks))
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, pinLinks, e.Name())); err != nil {
			return fmt.Errorf("remove pinned link: %w", err)
		}
	}
	os.Remove(filepath.Join(dir, pinLinks))
	return nil
}
