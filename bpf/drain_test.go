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
			n, err := d.Drain(func(k *flow.Key, v *flow.Value) {
				if _, dup := got[*k]; dup {
					t.Errorf("flow %d twice", k.SrcPort)
				}
				got[*k] = *v
			}, nil)
			if err != nil || n != len(recs) || len(got) != len(recs) {
				t.Fatalf("drained %d (%d distinct), err %v; want %d", n, len(got), err, len(recs))
			}
			for _, r := range recs {
				if got[r.Key] != r.Value {
					t.Fatalf("flow %d: %+v, want %+v", r.Key.SrcPort, got[r.Key], r.Value)
				}
			}
			for i := 0; i < 2; i++ { // both stores empty
				if n, err := d.Drain(func(*flow.Key, *flow.Value) {}, nil); n != 0 || err != nil {
					t.Fatalf("drain %d after: %d flows, err %v", i+2, n, err)
				}
			}
		})
	}
}
