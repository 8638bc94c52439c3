package exporter

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"time"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/flow"
)

// Source is the data plane as the exporter sees it (bpf.Datapath): the
// steps of a drain (see bpf.Drained).
type Source interface {
	Counters() (bpf.Counters, error)
	// Swap leaves the data plane counting into an empty store and returns
	// the one it filled, which no program writes to any more.
	Swap() (bpf.Drained, error)
	// Read hands over every flow the drained store counted.
	Read(dr bpf.Drained, fn func(k *flow.Key, v *flow.Value)) (int, error)
	// SaveState persists the flow table, which includes dr, so that a
	// daemon that dies loses nothing (a no-op without a pin path).
	SaveState(dr bpf.Drained, each iter.Seq2[*flow.Key, *flow.State]) error
	// Clear empties the drained store, once its flows are in the saved
	// state.
	Clear(dr bpf.Drained) error
	// Restore hands over an earlier daemon's table, and returns what was
	// counted since, to be read, saved and cleared as after a Swap.
	Restore(state func(*flow.Key, *flow.State)) (bpf.Drained, error)
	// Peek hands over what the store being filled holds, without removing
	// anything.
	Peek(fn func(k *flow.Key, v *flow.Value)) error
}

// Sink takes the records for one collector. Enqueue must not block and
// must not keep recs beyond the call.
type Sink interface {
	Enqueue(recs []flow.Export)
	// Close sends what is queued, waiting at most until ctx ends.
	Close(ctx context.Context) error
}

// Options configure an Exporter.
type Options struct {
	Timeouts     Timeouts
	ScanInterval time.Duration
	MaxFlows     int  // flows kept in user space before the oldest end early
	LRU          bool // the store is an LRU hash: count its evictions
	// OnDrain, if set, is called after every drain with its duration.
	OnDrain func(time.Duration)
	Logger  *slog.Logger
}

// IfDir is an interface and direction.
type IfDir struct {
	IfIndex   uint32
	Direction flow.Direction
}

// Count is packets and bytes.
type Count struct{ Packets, Bytes uint64 }

// Stats are the exporter's running totals.
type Stats struct {
	Scans          uint64
	Drained        uint64 // flow entries read from the data plane
	Records        [6]uint64
	ActiveFlows    int
	LastDrain      time.Duration
	LastDrained    int           // entries in the last drain (the store's fill)
	LastLag        time.Duration // the last scan's longest wait from a flow's end to its record's export
	MissedPackets  uint64        // the data plane's store was full
	Evicted        uint64        // LRU kinds: entries the kernel evicted (their counts are lost)
	PressureEvents uint64        // scans that ended flows early
	Seen           map[IfDir]Count
}

// Exporter runs the export loop.
type Exporter struct {
	src   Source
	sinks []Sink
	lru   bool
	opts  Options
	log   *slog.Logger

	mu          sync.Mutex // guards everything below; held by scans and snapshots
	tab         *table
	out         []flow.Export
	stats       Stats
	lastMissed  uint64
	lastInserts uint64 // LRU kinds: the inserts counter after the last swap
	insertsOK   bool   // lastInserts was read
	seenID      IfDir  // add's running count for one interface and direction
	seen        Count
	seenOn      bool
}

// New makes an exporter that drains src and feeds sinks.
func New(src Source, sinks []Sink, o Options) *Exporter {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Timeouts.FinGrace == 0 {
		o.Timeouts.FinGrace = min(time.Second, o.Timeouts.Inactive)
	}
	e := &Exporter{src: src, sinks: sinks, opts: o, log: o.Logger, tab: newTable(o.MaxFlows), lru: o.LRU}
	e.stats.Seen = make(map[IfDir]Count)
	if c, err := src.Counters(); err == nil {
		e.lastMissed, e.lastInserts, e.insertsOK = c.MissedPackets, c.Inserts, true
	}
	return e
}

// Run scans every ScanInterval until ctx ends (then call Shutdown). While
// the data plane misses packets because its store is full, it scans twice
// as often (down to 1/8 of the interval).
func (e *Exporter) Run(ctx context.Context) error {
	interval := e.scanInterval()
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		pressure, err := e.Scan()
		if err != nil {
			return err
		}
		base := e.scanInterval()
		if pressure {
			interval = max(interval/2, base/8)
		} else {
			interval = min(interval*2, base)
		}
		t.Reset(interval)
	}
}

func (e *Exporter) scanInterval() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.opts.ScanInterval
}

// Reconfigure applies new timeouts and a new set of sinks from the next
// scan on (SIGHUP), without touching the data plane or the flows held.
// Closing the sinks no longer in use is the caller's.
func (e *Exporter) Reconfigure(to Timeouts, scan time.Duration, sinks []Sink) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if to.FinGrace == 0 {
		to.FinGrace = min(time.Second, to.Inactive)
	}
	e.opts.Timeouts, e.opts.ScanInterval = to, scan
	e.sinks = sinks
}

// Scan drains the data plane once, ends the flows that are due and sends
// their records. It reports whether the data plane missed packets.
//
// The order of its steps is what makes a restart exact: the records leave
// and the table is saved before the drained store is emptied (bpf.Drained).
func (e *Exporter) Scan() (pressure bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := flow.Now()
	start := time.Now()
	cnt, err := e.src.Counters()
	if err != nil {
		return false, err
	}
	pressure = e.missed(cnt)

	// 1. Swap: the data plane counts into the other store from here on.
	dr, err := e.src.Swap()
	if err != nil {
		e.insertsOK = false // which store took which inserts is unknown
		return false, fmt.Errorf("drain: %w", err)
	}
	// The drained store has no writer left: every insert counted from
	// here on goes into the fresh one (see evicted).
	afterSwap, afterOK := e.inserts()
	// 2. Read it into the table.
	n, err := e.src.Read(dr, e.add)
	if err != nil {
		e.insertsOK = false
		return false, fmt.Errorf("drain: %w", err)
	}
	e.flushSeen()
	// 3. End the flows that are due, and the oldest if the table is full.
	out := e.tab.expire(c, e.opts.Timeouts, e.out[:0])
	before := len(out)
	out = e.tab.relieve(c, pressure, out)
	if len(out) > before {
		e.stats.PressureEvents++
		e.log.Warn("flow table full: ended the least recently seen flows early", "flows", len(out)-before)
	}
	// 4. Send their records.
	e.send(c, out)
	// 5. Persist the table, which now includes the drained store.
	if err := e.src.SaveState(dr, e.tab.states); err != nil {
		e.insertsOK = false
		return false, fmt.Errorf("drain: %w", err)
	}
	// 6. Empty the drained store.
	if err := e.src.Clear(dr); err != nil {
		e.insertsOK = false
		return false, fmt.Errorf("drain: %w", err)
	}

	e.stats.LastDrain = time.Since(start)
	e.stats.LastDrained = n
	if e.opts.OnDrain != nil {
		e.opts.OnDrain(e.stats.LastDrain)
	}
	e.stats.Scans++
	e.stats.Drained += uint64(n)
	e.stats.ActiveFlows = e.tab.len()
	if e.evicted(cnt, n) {
		pressure = true
	}
	e.lastInserts, e.insertsOK = afterSwap, afterOK
	// A store nearly full within one scan interval: drain more often
	// before it overflows.
	if e.opts.MaxFlows > 0 && float64(n) >= highWater*float64(e.opts.MaxFlows) {
		pressure = true
	}
	return pressure, nil
}

// missed counts the packets the data plane missed since the last scan
// (its store was full), and says whether there were any.
func (e *Exporter) missed(cnt bpf.Counters) bool {
	if cnt.MissedPackets <= e.lastMissed {
		return false
	}
	missed := cnt.MissedPackets - e.lastMissed
	e.lastMissed = cnt.MissedPackets
	e.stats.MissedPackets += missed
	e.log.Warn("flow store full: packets not counted; scanning faster (raise datapath.max_flows)",
		"missed_packets", missed)
	return true
}

// inserts reads the LRU kinds' inserts counter.
func (e *Exporter) inserts() (uint64, bool) {
	if !e.lru {
		return 0, false
	}
	c, err := e.src.Counters()
	return c.Inserts, err == nil
}

// evicted counts what an LRU store evicted, and says whether it did:
// entries created in it minus the n the drain found. The store took every
// insert counted between the read after the previous swap (lastInserts)
// and the read before this one (cnt), and some more made around the swaps:
// so this is a lower bound, never a false alarm; it misses at most the
// inserts made during the swaps, and after a start, the entries created
// before it. Arrays may hold a flow in more than one slot, which this would
// count too: LRU kinds only.
func (e *Exporter) evicted(cnt bpf.Counters, n int) bool {
	if !e.lru || !e.insertsOK || cnt.Inserts < e.lastInserts {
		return false
	}
	ev := int64(cnt.Inserts-e.lastInserts) - int64(n)
	if ev <= 0 {
		return false
	}
	e.stats.Evicted += uint64(ev)
	e.log.Warn("LRU flow store evicted flows: their counts are lost (raise datapath.max_flows)",
		"evicted", ev)
	return true
}

// keepRecords is how many records' room Scan keeps for the next scan.
const keepRecords = 1 << 16

// Restore takes over what an earlier daemon left: its flow table and what
// the data plane counted since (read, saved and cleared as in a scan).
// Call it once, before Run.
func (e *Exporter) Restore() (flows int, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	defer func() { e.stats.ActiveFlows = e.tab.len() }()
	dr, err := e.src.Restore(e.tab.set)
	if err != nil {
		return e.tab.len(), err
	}
	if _, err := e.src.Read(dr, e.add); err != nil {
		return e.tab.len(), err
	}
	if err := e.src.SaveState(dr, e.tab.states); err != nil {
		return e.tab.len(), err
	}
	if err := e.src.Clear(dr); err != nil {
		return e.tab.len(), err
	}
	if c, err := e.src.Counters(); err == nil {
		e.lastMissed, e.lastInserts, e.insertsOK = c.MissedPackets, c.Inserts, true
	}
	return e.tab.len(), nil
}

// add takes one drained flow into the table and the per-interface totals.
func (e *Exporter) add(k *flow.Key, v *flow.Value) {
	e.tab.add(k, v)
	id := IfDir{k.IfIndex, k.Direction}
	if !e.seenOn || e.seenID != id {
		e.flushSeen()
		e.seenID, e.seenOn = id, true
	}
	e.seen.Packets += v.Packets
	e.seen.Bytes += v.Bytes
}

// flushSeen adds the counts add gathered for one interface and direction
// (drained flows come mostly in runs of one) to the totals.
func (e *Exporter) flushSeen() {
	if !e.seenOn {
		return
	}
	c := e.stats.Seen[e.seenID]
	c.Packets += e.seen.Packets
	c.Bytes += e.seen.Bytes
	e.stats.Seen[e.seenID] = c
	e.seen, e.seenOn = Count{}, false
}

// send hands the records to the sinks (which copy them), noting the
// longest wait from a flow's end to its record's export.
func (e *Exporter) send(c flow.Clock, recs []flow.Export) {
	e.stats.LastLag = 0
	for i := range recs {
		e.stats.Records[recs[i].EndReason]++
		if lag := time.Duration(int64(c.Wall/1e6)-int64(recs[i].EndMs)) * time.Millisecond; lag > e.stats.LastLag {
			e.stats.LastLag = lag
		}
	}
	if len(recs) > 0 {
		for _, s := range e.sinks {
			s.Enqueue(recs)
		}
	}
	// A large scan's room is not kept.
	if cap(recs) > keepRecords {
		recs = nil
	}
	e.out = recs[:0]
}

// Shutdown drains the data plane a last time (call it once the programs are
// detached, so that nothing counts any more), ends every flow with reason
// 4 (forced end) and closes the sinks, waiting at most until ctx ends.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	err := e.final(func(c flow.Clock) {
		e.send(c, e.tab.flush(c, flow.ForcedEnd, e.out[:0])) // nothing left for a next daemon
	})
	e.stats.ActiveFlows = 0
	sinks := e.sinks
	e.mu.Unlock()
	return errors.Join(err, closeSinks(ctx, sinks))
}

// Suspend is Shutdown for an upgrade (--keep-attached): the data plane
// keeps counting, and the flows are saved, not ended, for the next daemon
// to restore. The sinks send what they have queued.
func (e *Exporter) Suspend(ctx context.Context) error {
	e.mu.Lock()
	err := e.final(func(flow.Clock) {})
	sinks := e.sinks
	e.mu.Unlock()
	return errors.Join(err, closeSinks(ctx, sinks))
}

// final is the last drain: swap, read, end (ends the flows, or not), save,
// clear.
func (e *Exporter) final(end func(flow.Clock)) error {
	c := flow.Now()
	dr, err := e.src.Swap()
	if err == nil {
		_, err = e.src.Read(dr, e.add)
	}
	if err == nil {
		e.flushSeen()
		end(c)
		err = e.src.SaveState(dr, e.tab.states)
	}
	if err == nil {
		err = e.src.Clear(dr)
	}
	if err != nil {
		return fmt.Errorf("final drain: %w", err)
	}
	return nil
}

func closeSinks(ctx context.Context, sinks []Sink) error {
	var errs []error
	for _, s := range sinks {
		errs = append(errs, s.Close(ctx))
	}
	return errors.Join(errs...)
}

// Snapshot returns every live flow with its cumulative counts since it
// started: what was drained already plus what the data plane holds now.
func (e *Exporter) Snapshot() ([]flow.Record, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	agg := make(map[flow.Key]*flow.Value, e.tab.len())
	e.tab.snapshot(agg)
	err := e.src.Peek(func(k *flow.Key, v *flow.Value) {
		if cur, ok := agg[*k]; ok {
			cur.Add(v)
		} else {
			vv := *v
			agg[*k] = &vv
		}
	})
	if err != nil {
		return nil, err
	}
	out := make([]flow.Record, 0, len(agg))
	for k, v := range agg {
		out = append(out, flow.Record{Key: k, Value: *v})
	}
	return out, nil
}

// Stats returns the running totals.
func (e *Exporter) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.flushSeen()
	st := e.stats
	st.Seen = make(map[IfDir]Count, len(e.stats.Seen))
	for k, v := range e.stats.Seen {
		st.Seen[k] = v
	}
	return st
}
