// Package exporter is xflow's export loop: it drains the data plane's flow
// store every scan interval, keeps each flow's state in user space, ends
// flows on their timeouts and hands the records to the collectors' sinks.
package exporter

import (
	"hash/maphash"
	"sort"
	"time"
	"unsafe"

	"github.com/xflow-net/xflow/flow"
)

// entry is a flow and its state between two drains, in the form it is
// persisted in (flow.State): 128 bytes, held inline in the table (no
// allocation per flow). Of st.Period, only the counts, times (0 when
// nothing is pending) and TCP flags are used; the flow's TOS and FIN/RST
// are st's own.
type entry struct {
	key flow.Key
	st  flow.State
}

// Timeouts decide when a flow's record leaves.
type Timeouts struct {
	Active   time.Duration // a long flow is reported at least this often
	Inactive time.Duration // a flow idle this long ends
	FinGrace time.Duration // a TCP flow that saw FIN or RST ends once idle this long
}

// table holds the flows between drains: what the kernel counted (deltas,
// since each drain empties the store) is added here.
//
// The flows are held densely, in chunks of entries (growing copies
// nothing; removal moves the last entry into the gap), and found through
// an open-addressing index with linear probing: each index slot holds an
// entry's hash (high 32 bits) and its position + 1 (low 32 bits; 0 is an
// empty slot). That is 128 bytes per flow and 8 per index slot, with no
// pointer for the garbage collector to follow; the index is at most 3/4
// full.
type table struct {
	chunks [][]entry // each chunkLen long; flows 0..n-1 are in use
	n      int
	index  []uint64 // len is a power of two, or 0
	seed   maphash.Seed
	max    int // above highWater(max), the least recently seen flows end early
}

const (
	chunkBits = 10
	chunkLen  = 1 << chunkBits // 128 KiB of entries
)

func newTable(max int) *table {
	return &table{seed: maphash.MakeSeed(), max: max}
}

// len is the number of flows held.
func (t *table) len() int { return t.n }

// at is the flow at position p (below len).
func (t *table) at(p int) *entry { return &t.chunks[p>>chunkBits][p&(chunkLen-1)] }

func (t *table) hash(k *flow.Key) uint32 {
	b := unsafe.Slice((*byte)(unsafe.Pointer(k)), unsafe.Sizeof(*k))
	h := maphash.Bytes(t.seed, b)
	return uint32(h ^ h>>32)
}

// find returns the index slot of k (whose hash is h), and whether it holds
// k: if not, the slot is the empty one where k would go.
func (t *table) find(k *flow.Key, h uint32) (int, bool) {
	mask := len(t.index) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := t.index[i]
		if s == 0 {
			return i, false
		}
		if uint32(s>>32) == h && t.at(int(uint32(s))-1).key == *k {
			return i, true
		}
	}
}

// get returns k's entry, making an empty one if there is none.
func (t *table) get(k *flow.Key) (e *entry, created bool) {
	if 4*(t.n+1) > 3*len(t.index) {
		t.reindex(indexLen(2 * (t.n + 1)))
	}
	h := t.hash(k)
	i, ok := t.find(k, h)
	if ok {
		return t.at(int(uint32(t.index[i])) - 1), false
	}
	if t.n == len(t.chunks)*chunkLen {
		t.chunks = append(t.chunks, make([]entry, chunkLen))
	}
	e = t.at(t.n)
	*e = entry{key: *k}
	t.n++
	t.index[i] = uint64(h)<<32 | uint64(t.n)
	return e, true
}

// lookup returns k's entry, or nil.
func (t *table) lookup(k *flow.Key) *entry {
	if t.n == 0 {
		return nil
	}
	if i, ok := t.find(k, t.hash(k)); ok {
		return t.at(int(uint32(t.index[i])) - 1)
	}
	return nil
}

// indexLen is the index size for n flows: a power of two, at least 64,
// at most 3/4 full.
func indexLen(n int) int {
	l := 64
	for 4*n > 3*l {
		l *= 2
	}
	return l
}

// reindex makes an index of l slots and enters every flow in it (with
// the hash the old index holds).
func (t *table) reindex(l int) {
	old := t.index
	t.index = make([]uint64, l)
	mask := l - 1
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := int(uint32(s>>32)) & mask
		for t.index[i] != 0 {
			i = (i + 1) & mask
		}
		t.index[i] = s
	}
}

// remove forgets the flow at position p: the last flow moves there, so
// the entry at p, if any, is another flow afterwards.
func (t *table) remove(p int) {
	mask := len(t.index) - 1
	e := t.at(p)
	i, _ := t.find(&e.key, t.hash(&e.key))
	// Backward-shift deletion: pull later slots of the probe sequence into
	// the gap, so that no lookup meets an empty slot before its key.
	for j := (i + 1) & mask; t.index[j] != 0; j = (j + 1) & mask {
		home := int(uint32(t.index[j]>>32)) & mask
		// The slot at j may move to i unless its home lies cyclically
		// within (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.index[i] = t.index[j]
			i = j
		}
	}
	t.index[i] = 0
	last := t.n - 1
	if p != last {
		l := t.at(last)
		k, _ := t.find(&l.key, t.hash(&l.key))
		t.index[k] = t.index[k]&^(1<<32-1) | uint64(p+1)
		*e = *l
	}
	*t.at(last) = entry{}
	t.n--
}

// shrink gives memory back once the table holds much less than it did:
// the chunks beyond the flows and one spare, and an index 1/8 full.
func (t *table) shrink() {
	keep := (t.n+chunkLen-1)/chunkLen + 1
	if keep < len(t.chunks) {
		clear(t.chunks[keep:])
		t.chunks = t.chunks[:keep]
	}
	if l := len(t.index); l > 64 && 8*t.n < l {
		t.reindex(indexLen(2 * t.n))
	}
}

// clear forgets every flow.
func (t *table) clear() {
	for p := 0; p < t.n; p++ {
		*t.at(p) = entry{}
	}
	t.n = 0
	clear(t.index)
	t.shrink()
}

// add merges counts drained from the data plane.
func (t *table) add(k *flow.Key, v *flow.Value) {
	e, created := t.get(k)
	st := &e.st
	if created {
		st.StartNs, st.TOS = v.FirstNs, v.TOS
	}
	if st.Period.Packets == 0 || v.FirstNs < st.Period.FirstNs {
		st.Period.FirstNs = v.FirstNs
	}
	if v.LastNs > st.Period.LastNs {
		st.Period.LastNs = v.LastNs
	}
	if v.LastNs > st.LastSeen {
		st.LastSeen = v.LastNs
	}
	if v.FirstNs < st.StartNs {
		st.StartNs = v.FirstNs
		st.TOS = v.TOS
	}
	st.Period.Packets += v.Packets
	st.Period.Bytes += v.Bytes
	st.Period.TCPFlags |= v.TCPFlags
	st.TotPackets += v.Packets
	st.TotBytes += v.Bytes
	st.TotFlags |= v.TCPFlags
	st.FinRst |= v.FinRst
}

// set puts a flow's persisted state in the table (Restore).
func (t *table) set(k *flow.Key, st *flow.State) {
	e, _ := t.get(k)
	e.st = *st
}

// states yields every flow's state, for SaveState.
func (t *table) states(yield func(*flow.Key, *flow.State) bool) {
	for p := 0; p < t.n; p++ {
		if e := t.at(p); !yield(&e.key, &e.st) {
			return
		}
	}
}

// record makes the flow's record for the period since its previous one,
// and starts a new period.
func (e *entry) record(c flow.Clock, r flow.EndReason) flow.Export {
	per := &e.st.Period
	x := flow.Export{
		Key: e.key, Packets: per.Packets, Bytes: per.Bytes,
		StartMs: c.UnixMilli(per.FirstNs), EndMs: c.UnixMilli(per.LastNs),
		TCPFlags: uint16(per.TCPFlags), TOS: e.st.TOS, EndReason: r,
	}
	*per = flow.Value{}
	return x
}

// expire appends the records due at c.monoNow to out and forgets the flows
// that ended.
func (t *table) expire(c flow.Clock, to Timeouts, out []flow.Export) []flow.Export {
	now := c.Mono
	since := func(ns uint64) time.Duration {
		if ns >= now {
			return 0
		}
		return time.Duration(now - ns)
	}
	for p := 0; p < t.n; {
		e := t.at(p)
		idle := since(e.st.LastSeen)
		switch {
		case e.st.FinRst != 0 && idle >= to.FinGrace:
			if e.st.Period.Packets > 0 {
				out = append(out, e.record(c, flow.EndOfFlow))
			}
			t.remove(p)
			continue // another flow is at p now
		case idle >= to.Inactive:
			if e.st.Period.Packets > 0 {
				out = append(out, e.record(c, flow.IdleTimeout))
			}
			t.remove(p)
			continue
		case e.st.Period.Packets > 0 && since(e.st.Period.FirstNs) >= to.Active:
			out = append(out, e.record(c, flow.ActiveTimeout))
		}
		p++
	}
	t.shrink()
	return out
}

// Watermarks of the flow table, as fractions of max.
const (
	highWater = 0.9
	lowWater  = 0.75
)

// relieve ends the least recently seen flows (flowEndReason 5, lack of
// resources) while the table is above its high watermark, down to the low
// one, or when force is set (the data plane missed packets).
func (t *table) relieve(c flow.Clock, force bool, out []flow.Export) []flow.Export {
	if t.max <= 0 || (!force && float64(t.n) <= highWater*float64(t.max)) {
		return out
	}
	target := int(lowWater * float64(t.max))
	if t.n <= target {
		return out
	}
	type aged struct {
		k    flow.Key
		seen uint64
	}
	all := make([]aged, 0, t.n)
	for p := 0; p < t.n; p++ {
		all = append(all, aged{t.at(p).key, t.at(p).st.LastSeen})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seen < all[j].seen })
	for _, a := range all[:len(all)-target] {
		i, _ := t.find(&a.k, t.hash(&a.k))
		p := int(uint32(t.index[i])) - 1
		if e := t.at(p); e.st.Period.Packets > 0 {
			out = append(out, e.record(c, flow.LackOfResources))
		}
		t.remove(p)
	}
	t.shrink()
	return out
}

// flush ends every flow with reason r.
func (t *table) flush(c flow.Clock, r flow.EndReason, out []flow.Export) []flow.Export {
	for p := 0; p < t.n; p++ {
		if e := t.at(p); e.st.Period.Packets > 0 {
			out = append(out, e.record(c, r))
		}
	}
	t.clear()
	return out
}

// snapshot gives each flow's cumulative counts since it started.
func (t *table) snapshot(into map[flow.Key]*flow.Value) {
	for p := 0; p < t.n; p++ {
		e := t.at(p)
		v := e.st.Total()
		if cur, ok := into[e.key]; ok {
			cur.Add(&v)
		} else {
			into[e.key] = &v
		}
	}
}
