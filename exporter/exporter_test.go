package exporter

import (
	"log/slog"
	"testing"
	"time"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/flow"
)

// lruSource is a data plane whose drains and insert counter the test
// scripts: before each scan, the inserts the counter gains and the entries
// the drain finds.
type lruSource struct {
	inserts, pending uint64
	drained          int
}

func (s *lruSource) Drain(fn func(*flow.Key, *flow.Value), commit func() error) (int, error) {
	for i := 0; i < s.drained; i++ {
		k := flow.Key{SrcPort: uint16(i), IPVersion: 4}
		fn(&k, &flow.Value{Packets: 1, Bytes: 60, FirstNs: 1, LastNs: 1})
	}
	return s.drained, commit()
}

func (s *lruSource) Counters() (bpf.Counters, error) {
	s.inserts += s.pending
	s.pending = 0
	return bpf.Counters{Inserts: s.inserts}, nil
}

func (s *lruSource) SaveState(func(func(*flow.Key, *flow.State))) error { return nil }
func (s *lruSource) Restore(func(*flow.Key, *flow.State), func(*flow.Key, *flow.Value), func() error) error {
	return nil
}
func (s *lruSource) Peek(func(*flow.Key, *flow.Value)) error { return nil }

// TestLRUEvictions: entries inserted between the counter read and the
// swap are drained one scan before they are counted; that is no eviction.
// Entries counted but never drained are.
func TestLRUEvictions(t *testing.T) {
	src := &lruSource{}
	e := New(src, nil, Options{Timeouts: Timeouts{Active: time.Hour, Inactive: time.Hour}, LRU: true, Logger: slog.New(slog.DiscardHandler)})
	steps := []struct {
		inserts uint64
		drained int
	}{
		{100, 100}, // all drained
		{50, 60},   // 10 inserted after the counter read, before the swap
		{60, 50},   // ... and counted now
		{100, 70},  // 30 evicted
	}
	want := []uint64{0, 0, 0, 30}
	for i, w := range want {
		src.pending, src.drained = steps[i].inserts, steps[i].drained
		if _, err := e.Scan(); err != nil {
			t.Fatal(err)
		}
		if got := e.stats.Evicted; got != w {
			t.Errorf("after scan %d: evicted %d, want %d", i+1, got, w)
		}
	}
}
