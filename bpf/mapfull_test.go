package bpf

import (
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xflow-net/xflow/internal/testenv"
)

// TestMapFull sends 100 flows of 2 packets each through the XDP program
// with a store of 16 entries: whatever the kind, every packet is either
// counted in a flow or counted as missed (LRU kinds instead evict, and the
// evictions are counted).
func TestMapFull(t *testing.T) {
	const flows, pkts, size = 100, 2, 16
	base := tcpFrame(t)
	frame := func(i int) []byte {
		f := append([]byte(nil), base...)
		binary.BigEndian.PutUint16(f[14+20:], uint16(20000+i)) // TCP source port
		return f
	}
	ipLen := uint64(len(base) - 14)
	for _, kind := range Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			testenv.RequireRoot(t)
			d, err := Load(Options{Kind: kind, MaxFlows: size, RingSize: 4096})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			// One CPU sends every frame: the per-CPU array kind has a
			// store of size entries per CPU, and a thread that migrated
			// mid-loop would fill two of them. The thread stays locked:
			// it ends with the subtest's goroutine, affinity and all.
			runtime.LockOSThread()
			var one unix.CPUSet
			one.Set(0)
			if err := unix.SchedSetaffinity(0, &one); err != nil {
				t.Fatal(err)
			}
			for p := 0; p < pkts; p++ {
				for i := 0; i < flows; i++ {
					if _, err := d.Programs().XDP.Run(&ebpf.RunOptions{Data: frame(i)}); err != nil {
						t.Fatal(err)
					}
				}
			}
			var dropped uint64 // (included in MissedPackets too)
			if kind == KindRingbuf {
				if err := d.SyncRing(); err != nil {
					t.Fatal(err)
				}
				dropped = d.RingDropped()
			}
			recs, err := d.Flows()
			if err != nil {
				t.Fatal(err)
			}
			c, err := d.Counters()
			if err != nil {
				t.Fatal(err)
			}
			var counted uint64
			for _, r := range recs {
				counted += r.Value.Packets
				if r.Value.Bytes != r.Value.Packets*ipLen {
					t.Errorf("flow %d: %d bytes for %d packets", r.Key.SrcPort, r.Value.Bytes, r.Value.Packets)
				}
			}
			t.Logf("%d flows, %d packets counted, missed %d packets (%d bytes), ring consumer dropped %d, inserts %d",
				len(recs), counted, c.MissedPackets, c.MissedBytes, dropped, c.Inserts)
			if len(recs) > size {
				t.Errorf("%d flows in a store of %d", len(recs), size)
			}
			switch kind {
			case KindLRUHash, KindLRUPerCPUHash:
				if evicted := c.Inserts - uint64(len(recs)); evicted < flows-size {
					t.Errorf("inserts %d, live %d: evictions %d, want >= %d", c.Inserts, len(recs), evicted, flows-size)
				}
			default:
				if counted+c.MissedPackets != flows*pkts {
					t.Errorf("counted %d + missed %d (of which ring consumer %d) != sent %d", counted, c.MissedPackets, dropped, flows*pkts)
				}
				if c.MissedPackets < (flows-size)*pkts {
					t.Errorf("missed %d, want >= %d", c.MissedPackets, (flows-size)*pkts)
				}
				if c.MissedBytes != (c.MissedPackets-dropped)*ipLen {
					t.Errorf("missed bytes %d for %d packets", c.MissedBytes, c.MissedPackets)
				}
			}
		})
	}
}
