package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/flow"
)

// Source is the data plane as the exporter sees it (bpf.Datapath).
type Source interface {
	// Drain hands over every flow counted since the last Drain, calls
	// commit, and leaves the data plane counting into an empty store.
	Drain(fn func(k *flow.Key, v *flow.Value), commit func() error) (int, error)
	// SaveState persists the flow table so that a daemon that dies loses
	// nothing (a no-op without a pin path).
	SaveState(each func(yield func(*flow.Key, *flow.State))) error
	// Restore hands over an earlier daemon's table and counts.
	Restore(state func(*flow.Key, *flow.State), counts func(*flow.Key, *flow.Value), commit func() error) error
	// Peek hands over the same without removing anything.
	Peek(fn func(k *flow.Key, v *flow.Value)) error
	Counters() (bpf.Counters, error)
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

func now() clock {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return clock{monoNow: uint64(ts.Nano()), wallNow: time.Now().UnixNano()}
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
func (e *Exporter) Scan() (pressure bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := now()
	start := time.Now()
	cnt, err := e.src.Counters()
	if err != nil {
		return false, err
	}
	if cnt.MissedPackets > e.lastMissed {
		missed := cnt.MissedPackets - e.lastMissed
		e.lastMissed = cnt.MissedPackets
		e.stats.MissedPackets += missed
		e.log.Warn("flow store full: packets not counted; scanning faster (raise datapath.max_flows)",
			"missed_packets", missed)
		pressure = true
	}
	// The records leave, and the state is saved, before the drained store
	// is emptied (see bpf.Datapath.Drain).
	afterSwap, afterOK := uint64(0), false
	n, err := e.src.Drain(e.add, func() error {
		// The drained store has no writer left: every insert counted
		// from here on went into the fresh store (see the LRU check).
		if e.lru {
			if c, err := e.src.Counters(); err == nil {
				afterSwap, afterOK = c.Inserts, true
			}
		}
		e.flushSeen()
		out := e.tab.expire(c, e.opts.Timeouts, e.out[:0])
		before := len(out)
		out = e.tab.relieve(c, pressure, out)
		if len(out) > before {
			e.stats.PressureEvents++
			e.log.Warn("flow table full: ended the least recently seen flows early", "flows", len(out)-before)
		}
		e.stats.LastLag = 0
		for i := range out {
			if lag := time.Duration(int64(c.wallNow/1e6)-int64(out[i].EndMs)) * time.Millisecond; lag > e.stats.LastLag {
				e.stats.LastLag = lag
			}
		}
		e.send(out)
		// The sinks copied the records: a large scan's room is not kept.
		if cap(out) > keepRecords {
			out = nil
		}
		e.out = out[:0]
		return e.save()
	})
	if err != nil {
		e.insertsOK = false // which store took which inserts is unknown
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
	// What an LRU store evicted: entries created in it minus those the
	// drain found. The store took every insert counted between the read
	// after the previous swap (lastInserts) and the read before this one
	// (cnt), and some more made around the swaps: so this is a lower
	// bound, never a false alarm; it misses at most the inserts made
	// during the swaps, and after a start, the entries created before it.
	// Arrays may hold a flow in more than one slot, which this would count
	// too: LRU kinds only.
	if e.lru && e.insertsOK && cnt.Inserts >= e.lastInserts {
		if ev := int64(cnt.Inserts-e.lastInserts) - int64(n); ev > 0 {
			e.stats.Evicted += uint64(ev)
			e.log.Warn("LRU flow store evicted flows: their counts are lost (raise datapath.max_flows)",
				"evicted", ev)
			pressure = true
		}
	}
	e.lastInserts, e.insertsOK = afterSwap, afterOK
	// A store nearly full within one scan interval: drain more often
	// before it overflows.
	if e.opts.MaxFlows > 0 && float64(n) >= highWater*float64(e.opts.MaxFlows) {
		pressure = true
	}
	return pressure, nil
}

// keepRecords is how many records' room Scan keeps for the next scan.
const keepRecords = 1 << 16

// save persists the flow table (when the source keeps state).
func (e *Exporter) save() error {
	return e.src.SaveState(func(yield func(*flow.Key, *flow.State)) {
		var st flow.State
		for p := 0; p < e.tab.len(); p++ {
			en := e.tab.at(p)
			st = flow.State{
				Period:     flow.Value{Packets: en.packets, Bytes: en.bytes, FirstNs: en.firstNs, LastNs: en.lastNs, TCPFlags: en.tcpFlags},
				StartNs:    en.startNs,
				LastSeen:   en.lastSeen,
				TotPackets: en.totPackets,
				TotBytes:   en.totBytes,
				TotFlags:   en.totFlags,
				TOS:        en.tos,
			}
			if en.finRst {
				st.FinRst = 1
			}
			yield(&en.key, &st)
		}
	})
}

// Restore takes over what an earlier daemon left: its flow table and what
// the data plane counted since. Call it once, before Run.
func (e *Exporter) Restore() (flows int, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	err = e.src.Restore(func(k *flow.Key, st *flow.State) {
		en, _ := e.tab.get(k)
		*en = entry{
			key: en.key, hash: en.hash, packets: st.Period.Packets, bytes: st.Period.Bytes, firstNs: st.Period.FirstNs, lastNs: st.Period.LastNs,
			tcpFlags: st.Period.TCPFlags, startNs: st.StartNs, lastSeen: st.LastSeen,
			totPackets: st.TotPackets, totBytes: st.TotBytes, totFlags: st.TotFlags, tos: st.TOS, finRst: st.FinRst != 0,
		}
	}, e.add, e.save)
	if c, cerr := e.src.Counters(); cerr == nil {
		e.lastMissed, e.lastInserts, e.insertsOK = c.MissedPackets, c.Inserts, true
	}
	e.stats.ActiveFlows = e.tab.len()
	return e.tab.len(), err
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

func (e *Exporter) send(recs []flow.Export) {
	if len(recs) == 0 {
		return
	}
	for i := range recs {
		e.stats.Records[recs[i].EndReason]++
	}
	for _, s := range e.sinks {
		s.Enqueue(recs)
	}
}

// Shutdown drains the data plane a last time (call it once the programs are
// detached, so that nothing counts any more), ends every flow with reason
// 4 (forced end) and closes the sinks, waiting at most until ctx ends.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	c := now()
	_, err := e.src.Drain(e.add, func() error {
		e.send(e.tab.flush(c, flow.ForcedEnd, e.out[:0]))
		return e.save() // nothing left for a next daemon
	})
	e.stats.ActiveFlows = 0
	sinks := e.sinks
	e.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("final drain: %w", err)
	}
	return errors.Join(err, closeSinks(ctx, sinks))
}

// Suspend is Shutdown for an upgrade (--keep-attached): the data plane
// keeps counting, and the flows are saved, not ended, for the next daemon
// to restore. The sinks send what they have queued.
func (e *Exporter) Suspend(ctx context.Context) error {
	e.mu.Lock()
	_, err := e.src.Drain(e.add, e.save)
	sinks := e.sinks
	e.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("final drain: %w", err)
	}
	return errors.Join(err, closeSinks(ctx, sinks))
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
