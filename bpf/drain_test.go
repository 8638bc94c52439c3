package bpf

import (
	"testing"

	"github.com/xflow-net/xflow/flow"
)

// TestBenchFillDrain fills every store kind with BenchFill and drains it:
// every flow once, with its counts, and the store empty after (more flows
// than one batch, so that the drain's buffers span batches).
func TestBenchFillDrain(t *testing.T) {
	for _, kind := range Kinds() {
		if kind == KindRingbuf {
			continue
		}
		t.Run(string(kind), func(t *testing.T) {
			d := loadKind(t, kind, 10000)
			recs := make([]flow.Record, 9000)
			for i := range recs {
				recs[i].Key.SrcPort, recs[i].Key.DstPort, recs[i].Key.IPVersion = uint16(i), uint16(i>>16), 4
				recs[i].Value = flow.Value{Packets: uint64(i + 1), Bytes: 7, FirstNs: 1, LastNs: 2}
			}
			if err := d.BenchFill(recs); err != nil {
				t.Fatal(err)
			}
			got := map[flow.Key]flow.Value{}
			n := drain(t, d, func(k *flow.Key, v *flow.Value) {
				if _, dup := got[*k]; dup {
					t.Errorf("flow %d twice", k.SrcPort)
				}
				got[*k] = *v
			})
			if n != len(recs) || len(got) != len(recs) {
				t.Fatalf("drained %d (%d distinct); want %d", n, len(got), len(recs))
			}
			for _, r := range recs {
				if got[r.Key] != r.Value {
					t.Fatalf("flow %d: %+v, want %+v", r.Key.SrcPort, got[r.Key], r.Value)
				}
			}
			for i := 0; i < 2; i++ { // both stores empty
				if n := drain(t, d, func(*flow.Key, *flow.Value) {}); n != 0 {
					t.Fatalf("drain %d after: %d flows", i+2, n)
				}
			}
		})
	}
}

// drain runs the drain steps without state: swap, read, clear.
func drain(t testing.TB, d *Datapath, fn func(*flow.Key, *flow.Value)) int {
	t.Helper()
	dr, err := d.Swap()
	if err != nil {
		t.Fatal(err)
	}
	n, err := d.Read(dr, fn)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Clear(dr); err != nil {
		t.Fatal(err)
	}
	return n
}
