package exporter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/bpf/bare"
	"github.com/xflow-net/xflow/exporter/ipfix"
	"github.com/xflow-net/xflow/flow"
	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/sink"
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
	testenv.RequireRoot(b)
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
					if _, err := d.Programs().XDP.Run(&ebpf.RunOptions{Data: f}); err != nil {
						b.Fatal(err)
					}
				}
				start := time.Now()
				tab := newTable(0)
				dr, err := d.Swap()
				if err != nil {
					b.Fatal(err)
				}
				n, err := d.Read(dr, tab.add)
				if err != nil {
					b.Fatal(err)
				}
				if err := d.Clear(dr); err != nil {
					b.Fatal(err)
				}
				// Arrays probe a bounded number of slots: a few flows may
				// find none, and are counted as missed.
				if c, _ := d.Counters(); n+int(c.MissedPackets)-missed != flows {
					b.Fatalf("drained %d flows + missed %d, want %d", n, int(c.MissedPackets)-missed, flows)
				} else {
					missed = int(c.MissedPackets)
				}
				recs := tab.flush(flow.Now(), flow.ForcedEnd, make([]flow.Export, 0, flows))
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

// benchFlows makes n distinct IPv4 UDP flows, last seen idle ago and first
// seen a second before (kernel monotonic clock).
func benchFlows(n int, idle time.Duration) []flow.Record {
	now := flow.Now().Mono
	recs := make([]flow.Record, n)
	for i := range recs {
		k := &recs[i].Key
		k.Src = [16]byte{10: 0xff, 11: 0xff, 12: 10, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}
		k.Dst = [16]byte{10: 0xff, 11: 0xff, 12: 192, 15: 1}
		k.SrcPort, k.DstPort, k.IfIndex, k.Proto, k.IPVersion = uint16(1024+i%50000), 4739, 2, 17, 4
		recs[i].Value = flow.Value{Packets: 10, Bytes: 14000, FirstNs: now - uint64(idle+time.Second), LastNs: now - uint64(idle)}
	}
	return recs
}

// BenchmarkTable measures the flow table alone: n drained flows merged
// into it (new flows, or flows it holds already), then a look for due
// flows that ends them all (new) or none (merge).
func BenchmarkTable(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		recs := benchFlows(n, 10*time.Second)
		for _, mode := range []string{"new", "merge"} {
			b.Run(fmt.Sprintf("flows=%d/%s", n, mode), func(b *testing.B) {
				to := Timeouts{Active: time.Hour, Inactive: time.Second, FinGrace: time.Second}
				if mode == "merge" {
					to.Inactive = time.Hour
				}
				tab := newTable(0)
				out := make([]flow.Export, 0, n)
				b.ReportAllocs()
				b.ResetTimer()
				for it := 0; it < b.N; it++ {
					for i := range recs {
						tab.add(&recs[i].Key, &recs[i].Value)
					}
					out = tab.expire(flow.Now(), to, out[:0])
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*b.N), "ns/flow")
			})
		}
	}
}

// BenchmarkScan measures Exporter.Scan as `xflow run` does it, state saved
// to pinned maps: "end" drains n new flows that all end (idle), into a
// collector sending IPFIX over UDP to 127.0.0.1, until it has sent them;
// "steady" drains n flows the table holds, and none ends.
func BenchmarkScan(b *testing.B) {
	testenv.RequireRoot(b)
	rcv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer rcv.Close()
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, err := rcv.Read(buf); errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}()
	coll, err := sink.New(sink.Options{Address: rcv.LocalAddr().String(), Transport: "udp",
		Encoder: ipfix.NewEncoder(ipfix.Options{ObservationDomain: 1}), TemplateRefresh: time.Hour,
		QueueRecords: 1 << 21, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer coll.Close(context.Background())
	for _, kind := range []bpf.Kind{bpf.KindPerCPUHash, bpf.KindHash, bpf.KindPerCPUArray} {
		for _, n := range []int{100_000, 1_000_000} {
			if n > 100_000 && kind != bpf.KindPerCPUHash {
				continue // the default kind only: a million flows take long to fill
			}
			for _, mode := range []string{"end", "steady"} {
				b.Run(fmt.Sprintf("%s/flows=%d/%s", kind, n, mode), func(b *testing.B) {
					pin := b.TempDir()
					if err := os.MkdirAll("/sys/fs/bpf", 0o755); err == nil {
						pin, _ = os.MkdirTemp("/sys/fs/bpf", "xflow-benchscan-")
						defer os.RemoveAll(pin)
					}
					d, err := bpf.Load(bpf.Options{Kind: kind, MaxFlows: uint32(n + n/4), PinPath: pin})
					if err != nil {
						b.Fatal(err)
					}
					defer func() { d.Unpin(); d.Close() }()
					inactive := time.Second
					if mode == "steady" {
						inactive = time.Hour
					}
					e := New(d, []Sink{coll}, Options{Timeouts: Timeouts{Active: time.Hour, Inactive: inactive},
						MaxFlows: 2 * n, Logger: slog.New(slog.DiscardHandler)})
					recs := benchFlows(n, 10*time.Second)
					if mode == "steady" {
						if err := bare.Fill(d, recs); err != nil {
							b.Fatal(err)
						}
						if _, err := e.Scan(); err != nil {
							b.Fatal(err)
						}
					}
					var elapsed time.Duration
					for it := 0; it < b.N; it++ {
						if err := bare.Fill(d, recs); err != nil {
							b.Fatal(err)
						}
						want := coll.Stats().Records + uint64(n)
						start := time.Now()
						if _, err := e.Scan(); err != nil {
							b.Fatal(err)
						}
						for mode == "end" && coll.Stats().Records < want {
							time.Sleep(100 * time.Microsecond)
						}
						elapsed += time.Since(start)
					}
					if st := e.Stats(); st.Drained != uint64(n*b.N) && mode == "end" {
						b.Fatalf("drained %d, want %d", st.Drained, n*b.N)
					}
					b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "flows/s")
					b.ReportMetric(float64(elapsed.Nanoseconds())/float64(n*b.N), "ns/flow")
					b.ReportMetric(0, "ns/op")
				})
			}
		}
	}
}
