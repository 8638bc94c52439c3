package exporter

import (
	"iter"
	"log/slog"
	"testing"
	"time"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/flow"
)

// lruSource is a data plane whose insert counter and drains the test
// scripts. Each scan reads the counter twice: before the swap (gaining
// before) and after the swap (gaining window: inserts made between the
// first read and the swap, which the drained store holds).
type lruSource struct {
	inserts, before, window uint64
	drained                 int
	reads                   int
}

func (s *lruSource) Swap() (bpf.Drained, error) {
	s.inserts += s.window // made before the swap, read after it
	return bpf.Drained{}, nil
}

func (s *lruSource) Read(_ bpf.Drained, fn func(*flow.Key, *flow.Value)) (int, error) {
	for i := 0; i < s.drained; i++ {
		k := flow.Key{SrcPort: uint16(i), IPVersion: 4}
		fn(&k, &flow.Value{Packets: 1, Bytes: 60, FirstNs: 1, LastNs: 1})
	}
	return s.drained, nil
}

func (s *lruSource) Counters() (bpf.Counters, error) {
	s.reads++
	s.inserts += s.before
	s.before = 0
	return bpf.Counters{Inserts: s.inserts}, nil
}

func (s *lruSource) SaveState(bpf.Drained, iter.Seq2[*flow.Key, *flow.State]) error { return nil }
func (s *lruSource) Clear(bpf.Drained) error                                        { return nil }
func (s *lruSource) Restore(func(*flow.Key, *flow.State)) (bpf.Drained, error) {
	return bpf.Drained{}, nil
}
func (s *lruSource) Peek(func(*flow.Key, *flow.Value)) error { return nil }

// TestLRUEvictions: evictions are entries created minus entries drained,
// with the inserts made around a swap attributed to the right store: no
// false alarm, and no deficit carried from one scan to later ones (a store
// that already held flows at start must not hide later evictions).
func TestLRUEvictions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []struct {
			before, window uint64
			drained        int
		}
		want []uint64
	}{
		{"window", []struct {
			before, window uint64
			drained        int
		}{
			{100, 0, 100}, // all drained
			{50, 10, 60},  // 10 made after the counter read, before the swap
			{50, 0, 50},
			{100, 0, 70}, // 30 evicted
		}, []uint64{0, 0, 0, 30}},
		{"store not empty at start", []struct {
			before, window uint64
			drained        int
		}{
			{1000, 0, 1500}, // 1000 created before the start, 500 evicted: not seen
			{1000, 0, 500},  // 500 evicted
			{1000, 0, 500},  // 500 evicted
		}, []uint64{0, 500, 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &lruSource{}
			e := New(src, nil, Options{Timeouts: Timeouts{Active: time.Hour, Inactive: time.Hour}, LRU: true, Logger: slog.New(slog.DiscardHandler)})
			for i, st := range tc.steps {
				src.before, src.window, src.drained = st.before, st.window, st.drained
				if _, err := e.Scan(); err != nil {
					t.Fatal(err)
				}
				if got := e.stats.Evicted; got != tc.want[i] {
					t.Errorf("after scan %d: evicted %d, want %d", i+1, got, tc.want[i])
				}
			}
			if src.reads != 1+2*len(tc.steps) {
				t.Errorf("%d counter reads, want one at start and two a scan", src.reads)
			}
		})
	}
}
