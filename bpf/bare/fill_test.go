package bare

import (
	"testing"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/flow"
	"github.com/xflow-net/xflow/internal/testenv"
)

// TestFillDrain fills every store kind with Fill and drains it:
// every flow once, with its counts, and the store empty after (more flows
// than one batch, so that the drain's buffers span batches).
func TestFillDrain(t *testing.T) {
	testenv.RequireRoot(t)
	for _, kind := range bpf.Kinds() {
		if kind == bpf.KindRingbuf {
			continue
		}
		t.Run(string(kind), func(t *testing.T) {
			d, err := bpf.Load(bpf.Options{Kind: kind, MaxFlows: 10000})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			recs := make([]flow.Record, 9000)
			for i := range recs {
				recs[i].Key.SrcPort, recs[i].Key.DstPort, recs[i].Key.IPVersion = uint16(i), uint16(i>>16), 4
				recs[i].Value = flow.Value{Packets: uint64(i + 1), Bytes: 7, FirstNs: 1, LastNs: 2}
			}
			if err := Fill(d, recs); err != nil {
				t.Fatal(err)
			}
			got := map[flow.Key]flow.Value{}
			n, err := drainAll(d, func(k *flow.Key, v *flow.Value) {
				if _, dup := got[*k]; dup {
					t.Errorf("flow %d twice", k.SrcPort)
				}
				got[*k] = *v
			})
			if err != nil || n != len(recs) || len(got) != len(recs) {
				t.Fatalf("drained %d (%d distinct), err %v; want %d", n, len(got), err, len(recs))
			}
			for _, r := range recs {
				if got[r.Key] != r.Value {
					t.Fatalf("flow %d: %+v, want %+v", r.Key.SrcPort, got[r.Key], r.Value)
				}
			}
			for i := 0; i < 2; i++ { // both stores empty
				if n, err := drainAll(d, func(*flow.Key, *flow.Value) {}); n != 0 || err != nil {
					t.Fatalf("drain %d after: %d flows, err %v", i+2, n, err)
				}
			}
		})
	}
}

// TestFillTakeMemory fills every store kind, takes the packets back (the
// sum, and the store empty after) and reads the stores' memory.
func TestFillTakeMemory(t *testing.T) {
	testenv.RequireRoot(t)
	for _, kind := range bpf.Kinds() {
		if kind == bpf.KindRingbuf {
			continue
		}
		t.Run(string(kind), func(t *testing.T) {
			d, err := bpf.Load(bpf.Options{Kind: kind, MaxFlows: 6000, SpareFlows: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			recs := make([]flow.Record, 5000)
			var want uint64
			for i := range recs {
				recs[i].Key.SrcPort, recs[i].Key.IPVersion = uint16(i), 4
				recs[i].Value = flow.Value{Packets: uint64(i%7 + 1), Bytes: 7, FirstNs: 1, LastNs: 2}
				want += recs[i].Value.Packets
			}
			if err := Fill(d, recs); err != nil {
				t.Fatal(err)
			}
			if got, err := Take(d); err != nil || got != want {
				t.Fatalf("took %d packets, err %v; want %d", got, err, want)
			}
			if got, err := Take(d); err != nil || got != 0 {
				t.Fatalf("took %d packets after, err %v; want 0", got, err)
			}
			if n, err := drainAll(d, func(*flow.Key, *flow.Value) {}); n != 0 || err != nil {
				t.Fatalf("drained %d flows after Take, err %v", n, err)
			}
			if stores, state := Memory(d); stores == 0 || state != 0 {
				t.Errorf("memory: stores %d, state %d (no pin path: want > 0, 0)", stores, state)
			}
		})
	}
}

// drainAll runs the scan's drain steps once: swap, read, clear.
func drainAll(d *bpf.Datapath, fn func(*flow.Key, *flow.Value)) (int, error) {
	dr, err := d.Swap()
	if err != nil {
		return 0, err
	}
	n, err := d.Read(dr, fn)
	if err != nil {
		return n, err
	}
	return n, d.Clear(dr)
}
