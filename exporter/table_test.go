package exporter

import (
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/xflow-net/xflow/flow"
)

const ms = uint64(time.Millisecond)

func key(port uint16) flow.Key {
	k := flow.Key{SrcPort: port, DstPort: 80, Proto: 17, IPVersion: 4}
	k.Src[10], k.Src[11], k.Src[15] = 0xff, 0xff, 1
	return k
}

// at is a clock whose monotonic "now" is t ns, with wall time = mono + 1e12 ns.
func at(t uint64) flow.Clock { return flow.Clock{Mono: t, Wall: int64(t) + 1e12} }

var testTimeouts = Timeouts{Active: time.Second, Inactive: 500 * time.Millisecond, FinGrace: 100 * time.Millisecond}

func add(tab *table, port uint16, first, last, pkts uint64, flags uint32) {
	k := key(port)
	tab.add(&k, &flow.Value{Packets: pkts, Bytes: pkts * 100, FirstNs: first, LastNs: last, TCPFlags: flags})
}

func TestIdleTimeout(t *testing.T) {
	tab := newTable(0)
	add(tab, 1, 10*ms, 20*ms, 3, 0)
	if out := tab.expire(at(519*ms), testTimeouts, nil); len(out) != 0 {
		t.Fatalf("expired early: %+v", out)
	}
	out := tab.expire(at(520*ms), testTimeouts, nil)
	if len(out) != 1 {
		t.Fatalf("want 1 record, got %+v", out)
	}
	r := out[0]
	want := flow.Export{Key: key(1), Packets: 3, Bytes: 300, StartMs: 1000000 + 10, EndMs: 1000000 + 20, EndReason: flow.IdleTimeout}
	if r != want {
		t.Fatalf("record\n got %+v\nwant %+v", r, want)
	}
	if tab.len() != 0 {
		t.Fatal("flow not forgotten")
	}
}

func TestActiveTimeoutReportsDeltas(t *testing.T) {
	tab := newTable(0)
	add(tab, 1, 0, 900*ms, 10, 0x02)
	add(tab, 1, 950*ms, 1000*ms, 5, 0x10) // a later drain of the same flow
	out := tab.expire(at(1000*ms), testTimeouts, nil)
	if len(out) != 1 || out[0].EndReason != flow.ActiveTimeout || out[0].Packets != 15 || out[0].TCPFlags != 0x12 ||
		out[0].StartMs != 1000000 || out[0].EndMs != 1001000 {
		t.Fatalf("first report: %+v", out)
	}
	// The flow goes on: the next report has only what came since.
	add(tab, 1, 1100*ms, 2100*ms, 7, 0x10)
	if out := tab.expire(at(2050*ms), testTimeouts, nil); len(out) != 0 {
		t.Fatalf("reported before its period was %v long: %+v", testTimeouts.Active, out)
	}
	out = tab.expire(at(2100*ms), testTimeouts, nil)
	if len(out) != 1 || out[0].Packets != 7 || out[0].Bytes != 700 || out[0].TCPFlags != 0x10 || out[0].StartMs != 1001100 {
		t.Fatalf("second report: %+v", out)
	}
	// Idle with nothing pending: forgotten without an empty record.
	if out := tab.expire(at(2700*ms), testTimeouts, nil); len(out) != 0 || tab.len() != 0 {
		t.Fatalf("after idle: %+v, %d flows", out, tab.len())
	}
}

func TestEndOfFlow(t *testing.T) {
	tab := newTable(0)
	k := key(1)
	tab.add(&k, &flow.Value{Packets: 4, Bytes: 400, FirstNs: 0, LastNs: 10 * ms, TCPFlags: 0x11, FinRst: 1})
	if out := tab.expire(at(50*ms), testTimeouts, nil); len(out) != 0 {
		t.Fatalf("ended before the grace: %+v", out)
	}
	out := tab.expire(at(110*ms), testTimeouts, nil)
	if len(out) != 1 || out[0].EndReason != flow.EndOfFlow || out[0].Packets != 4 {
		t.Fatalf("%+v", out)
	}
}

func TestRelieveEndsLeastRecentlySeen(t *testing.T) {
	tab := newTable(10)
	for i := uint16(1); i <= 10; i++ {
		add(tab, i, uint64(i)*ms, uint64(i)*ms, 1, 0)
	}
	out := tab.relieve(at(20*ms), false, nil)
	if len(out) != 3 || tab.len() != 7 {
		t.Fatalf("want 3 ended, 7 left; got %d ended, %d left", len(out), tab.len())
	}
	for i, r := range out {
		if r.EndReason != flow.LackOfResources {
			t.Errorf("reason %v", r.EndReason)
		}
		if r.Key.SrcPort > 3 {
			t.Errorf("record %d: ended flow %d, want the oldest (1..3)", i, r.Key.SrcPort)
		}
	}
	// Below the high watermark nothing happens unless forced.
	if out := tab.relieve(at(20*ms), false, nil); len(out) != 0 {
		t.Fatalf("relieved below the watermark: %d", len(out))
	}
}

func TestFlushForcedEnd(t *testing.T) {
	tab := newTable(0)
	add(tab, 1, 0, ms, 1, 0)
	add(tab, 2, 0, ms, 2, 0)
	out := tab.flush(at(2*ms), flow.ForcedEnd, nil)
	if len(out) != 2 || out[0].EndReason != flow.ForcedEnd || out[1].EndReason != flow.ForcedEnd || tab.len() != 0 {
		t.Fatalf("%+v", out)
	}
}

func TestSnapshotIsCumulative(t *testing.T) {
	tab := newTable(0)
	add(tab, 1, 0, 900*ms, 10, 0)
	tab.expire(at(1000*ms), testTimeouts, nil) // an active report resets the period
	add(tab, 1, 1000*ms, 1100*ms, 5, 0)
	snap := map[flow.Key]*flow.Value{}
	tab.snapshot(snap)
	k := key(1)
	if v := snap[k]; v == nil || v.Packets != 15 || v.Bytes != 1500 || v.FirstNs != 0 || v.LastNs != 1100*ms {
		t.Fatalf("snapshot %+v", snap[k])
	}
}

// TestTableAgainstMap drives the table and a plain map with the same
// random adds and expiries: the same flows, counts and records, and every
// flow found through the index.
func TestTableAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tab := newTable(0)
	type ref struct{ pkts, tot, last uint64 }
	want := map[flow.Key]*ref{}
	to := Timeouts{Active: time.Hour, Inactive: time.Duration(50 * ms), FinGrace: time.Hour}
	now := uint64(0)
	for round := 0; round < 200; round++ {
		now += 10 * ms
		for i := 0; i < 1+rng.IntN(3000); i++ {
			k := key(uint16(rng.IntN(20000)))
			p := uint64(1 + rng.IntN(5))
			tab.add(&k, &flow.Value{Packets: p, Bytes: p, FirstNs: now, LastNs: now})
			r := want[k]
			if r == nil {
				r = &ref{}
				want[k] = r
			}
			r.pkts += p
			r.tot += p
			r.last = now
		}
		out := tab.expire(at(now+uint64(rng.IntN(60))*ms), to, nil)
		for _, x := range out {
			r := want[x.Key]
			if r == nil || r.pkts != x.Packets || x.EndReason != flow.IdleTimeout {
				t.Fatalf("round %d: record %+v, want %+v", round, x, r)
			}
			delete(want, x.Key)
		}
		if tab.len() != len(want) {
			t.Fatalf("round %d: %d flows, want %d", round, tab.len(), len(want))
		}
		for k, r := range want {
			e := tab.lookup(&k)
			if e == nil || e.key != k || e.st.Period.Packets != r.pkts || e.st.TotPackets != r.tot {
				t.Fatalf("round %d: flow %v: %+v, want %+v", round, k.SrcPort, e, r)
			}
		}
	}
	if out := tab.flush(at(now), flow.ForcedEnd, nil); len(out) != len(want) || tab.len() != 0 {
		t.Fatalf("flush: %d records, want %d; %d left", len(out), len(want), tab.len())
	}
	k := key(1)
	if tab.lookup(&k) != nil {
		t.Fatal("found a flow after flush")
	}
}

// TestEntrySize: a flow costs the table 128 bytes (plus its index slot).
func TestEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n != 128 {
		t.Errorf("entry is %d bytes, want 128", n)
	}
}
