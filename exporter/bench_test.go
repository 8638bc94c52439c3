package exporter

import (
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/exporter/ipfix"
	"github.com/xflow-net/xflow/flow"
)

// udpFrame is an Ethernet + IPv4 + UDP frame with 64 bytes of payload whose
// source address and port encode i (distinct flows for distinct i).
func udpFrame(i int) []byte {
	f := make([]byte, 14+20+8+64)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 20+8+64)
	copy(ip[12:], []byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	copy(ip[16:], []byte{10, 255, 0, 1})
	binary.BigEndian.PutUint16(ip[20:], uint16(1024+i%50000))
	binary.BigEndian.PutUint16(ip[22:], 4739)
	binary.BigEndian.PutUint16(ip[24:], 8+64)
	return f
}

// BenchmarkDrainEncode measures the export path for 100k flows: drain the
// data plane's store (swap, batch lookup, batch delete), merge into the flow
// table, end every flow, and encode IPFIX messages. The flows are counted
// first by the real XDP program (BPF_PROG_TEST_RUN), outside the timer.
func BenchmarkDrainEncode(b *testing.B) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			b.Fatal("needs root")
		}
		b.Skip("needs root")
	}
	for _, kind := range []bpf.Kind{bpf.KindPerCPUHash, bpf.KindHash, bpf.KindPerCPUArray} {
		b.Run(fmt.Sprintf("%s/flows=100k", kind), func(b *testing.B) {
			const flows = 100_000
			d, err := bpf.Load(bpf.Options{Kind: kind, MaxFlows: 2 * flows})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			frames := make([][]byte, flows)
			for i := range frames {
				frames[i] = udpFrame(i)
			}
			enc := ipfix.NewEncoder(ipfix.Options{ObservationDomain: 1, MTU: 1400})
			var msgs, bytes, missed int
			send := func(m []byte) error { msgs++; bytes += len(m); return nil }
			var elapsed time.Duration
			for it := 0; it < b.N; it++ {
				for _, f := range frames {
					if _, err := d.XDP().Run(&ebpf.RunOptions{Data: f}); err != nil {
						b.Fatal(err)
					}
				}
				start := time.Now()
				tab := newTable(0)
				n, err := d.Drain(tab.add, nil)
				if err != nil {
					b.Fatal(err)
				}
				// Arrays probe a bounded number of slots: a few flows may
				// find none, and are counted as missed.
				if c, _ := d.Counters(); n+int(c.MissedPackets)-missed != flows {
					b.Fatalf("drained %d flows + missed %d, want %d", n, int(c.MissedPackets)-missed, flows)
				} else {
					missed = int(c.MissedPackets)
				}
				recs := tab.flush(now(), flow.ForcedEnd, make([]flow.Export, 0, flows))
				if err := enc.Encode(time.Now(), recs, send); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(start)
			}
			b.ReportMetric(float64(flows*b.N)/elapsed.Seconds(), "flows/s")
			b.ReportMetric(float64(elapsed.Nanoseconds())/float64(flows*b.N), "ns/flow")
			b.ReportMetric(0, "ns/op")
		})
	}
}
