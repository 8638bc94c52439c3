// Package exporter is xflow's export loop: it drains the data plane's flow
// store every scan interval, keeps each flow's state in user space, ends
// flows on their timeouts and hands the records to the collectors' sinks.
package exporter

import (
	"sort"
	"time"

	"github.com/xflow-net/xflow/flow"
)

// entry is a flow's state between two drains.
type entry struct {
	// Since the flow's previous record.
	packets, bytes  uint64
	firstNs, lastNs uint64 // of this period; 0 when nothing is pending
	tcpFlags        uint32
	// The whole flow.
	startNs    uint64 // its first packet
	lastSeen   uint64 // its latest packet
	totPackets uint64
	totBytes   uint64
	totFlags   uint32
	tos        uint8
	finRst     bool
}

// Timeouts decide when a flow's record leaves.
type Timeouts struct {
	Active   time.Duration // a long flow is reported at least this often
	Inactive time.Duration // a flow idle this long ends
	FinGrace time.Duration // a TCP flow that saw FIN or RST ends once idle this long
}

// table holds the flows between drains: what the kernel counted (deltas,
// since each drain empties the store) is added here.
type table struct {
	flows map[flow.Key]*entry
	max   int // above highWater(max), the least recently seen flows end early
}

func newTable(max int) *table {
	return &table{flows: make(map[flow.Key]*entry), max: max}
}

// add merges counts drained from the data plane.
func (t *table) add(k *flow.Key, v *flow.Value) {
	e, ok := t.flows[*k]
	if !ok {
		e = &entry{startNs: v.FirstNs, tos: v.TOS}
		t.flows[*k] = e
	}
	if e.packets == 0 || v.FirstNs < e.firstNs {
		e.firstNs = v.FirstNs
	}
	if v.LastNs > e.lastNs {
		e.lastNs = v.LastNs
	}
	if v.LastNs > e.lastSeen {
		e.lastSeen = v.LastNs
	}
	if v.FirstNs < e.startNs {
		e.startNs = v.FirstNs
		e.tos = v.TOS
	}
	e.packets += v.Packets
	e.bytes += v.Bytes
	e.tcpFlags |= v.TCPFlags
	e.totPackets += v.Packets
	e.totBytes += v.Bytes
	e.totFlags |= v.TCPFlags
	if v.FinRst != 0 {
		e.finRst = true
	}
}

// clock converts kernel monotonic nanoseconds to wall-clock milliseconds.
type clock struct {
	monoNow uint64 // CLOCK_MONOTONIC, ns
	wallNow int64  // Unix ns at the same moment
}

func (c clock) ms(mono uint64) uint64 {
	return uint64(c.wallNow-int64(c.monoNow-mono)) / 1e6
}

// record makes the flow's record for the period since its previous one,
// and starts a new period.
func (e *entry) record(k *flow.Key, c clock, r flow.EndReason) flow.Export {
	x := flow.Export{
		Key: *k, Packets: e.packets, Bytes: e.bytes,
		StartMs: c.ms(e.firstNs), EndMs: c.ms(e.lastNs),
		TCPFlags: uint16(e.tcpFlags), TOS: e.tos, EndReason: r,
	}
	e.packets, e.bytes, e.tcpFlags, e.firstNs, e.lastNs = 0, 0, 0, 0, 0
	return x
}

// expire appends the records due at c.monoNow to out and forgets the flows
// that ended.
func (t *table) expire(c clock, to Timeouts, out []flow.Export) []flow.Export {
	now := c.monoNow
	since := func(ns uint64) time.Duration {
		if ns >= now {
			return 0
		}
		return time.Duration(now - ns)
	}
	for k, e := range t.flows {
		idle := since(e.lastSeen)
		switch {
		case e.finRst && idle >= to.FinGrace:
			if e.packets > 0 {
				out = append(out, e.record(&k, c, flow.EndOfFlow))
			}
			delete(t.flows, k)
		case idle >= to.Inactive:
			if e.packets > 0 {
				out = append(out, e.record(&k, c, flow.IdleTimeout))
			}
			delete(t.flows, k)
		case e.packets > 0 && since(e.firstNs) >= to.Active:
			out = append(out, e.record(&k, c, flow.ActiveTimeout))
		}
	}
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
func (t *table) relieve(c clock, force bool, out []flow.Export) []flow.Export {
	if t.max <= 0 || (!force && float64(len(t.flows)) <= highWater*float64(t.max)) {
		return out
	}
	target := int(lowWater * float64(t.max))
	if len(t.flows) <= target {
		return out
	}
	type aged struct {
		k    flow.Key
		seen uint64
	}
	all := make([]aged, 0, len(t.flows))
	for k, e := range t.flows {
		all = append(all, aged{k, e.lastSeen})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seen < all[j].seen })
	for _, a := range all[:len(all)-target] {
		e := t.flows[a.k]
		if e.packets > 0 {
			out = append(out, e.record(&a.k, c, flow.LackOfResources))
		}
		delete(t.flows, a.k)
	}
	return out
}

// flush ends every flow with reason r.
func (t *table) flush(c clock, r flow.EndReason, out []flow.Export) []flow.Export {
	for k, e := range t.flows {
		if e.packets > 0 {
			out = append(out, e.record(&k, c, r))
		}
		delete(t.flows, k)
	}
	return out
}

// snapshot gives each flow's cumulative counts since it started.
func (t *table) snapshot(into map[flow.Key]*flow.Value) {
	for k, e := range t.flows {
		v := flow.Value{Packets: e.totPackets, Bytes: e.totBytes, FirstNs: e.startNs,
			LastNs: e.lastSeen, TCPFlags: e.totFlags, TOS: e.tos}
		if e.finRst {
			v.FinRst = 1
		}
		if cur, ok := into[k]; ok {
			cur.Add(&v)
		} else {
			into[k] = &v
		}
	}
}
