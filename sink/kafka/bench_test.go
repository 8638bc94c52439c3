package kafka

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/xflow-net/xflow/exporter/ipfix"
	"github.com/xflow-net/xflow/flow"
)

// The benchmarks give records per second; run them on one core, beside
// the IPFIX encoder in the same run:
//
//	go test -run '^$' -bench . -cpu 1 -benchtime 2s ./sink/kafka
//
// BenchmarkEncode* is encoding alone (the destination's goroutine, per
// record); BenchmarkProduce* is Enqueue to acknowledgement by a 3-broker
// kfake cluster in the same process (acks all, lz4), so the brokers' work
// shares the core and the number is a floor.

func benchRecords() []flow.Export { return testRecords(1024) }

func BenchmarkEncodeIPFIX(b *testing.B) {
	recs := benchRecords()
	enc := ipfix.NewEncoder(ipfix.Options{ObservationDomain: 1, MTU: 1400})
	send := func([]byte) error { return nil }
	now := time.Now()
	b.ResetTimer()
	n := 0
	for n < b.N {
		batch := recs[:min(len(recs), b.N-n)]
		if err := enc.Encode(now, batch, send); err != nil {
			b.Fatal(err)
		}
		n += len(batch)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func benchEncode(b *testing.B, format string) {
	recs := benchRecords()
	enc := newEncoder(format, 1, 0, netip.MustParseAddr("192.0.2.254"), testIfaces)
	buf := make([]byte, 0, 1<<20)
	now := time.Now()
	b.ResetTimer()
	for i := range b.N {
		if len(buf) > 1<<20-512 {
			buf = buf[:0]
		}
		r := &recs[i%len(recs)]
		buf = enc.appendRecord(buf, r, uint32(i), now)
		buf = partitionKey(buf, "conversation", &r.Key)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkEncodeProtobuf(b *testing.B) { benchEncode(b, "protobuf") }
func BenchmarkEncodeJSON(b *testing.B)     { benchEncode(b, "json") }

func benchProduce(b *testing.B, format string) {
	c := newCluster(b)
	const bound = 1 << 17
	d, err := New(Options{Brokers: c.ListenAddrs(), Topic: topic, Format: format, Compression: "lz4",
		PartitionKey: "conversation", QueueRecords: bound, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close(context.Background())
	recs := benchRecords()
	// Warm up: metadata, connections, producer ID.
	d.Enqueue(recs[:1])
	for d.Totals().Records < 1 {
		time.Sleep(time.Millisecond)
	}
	base := d.Totals().Records
	b.ResetTimer()
	for n := 0; n < b.N; {
		batch := recs[:min(len(recs), b.N-n)]
		for d.Totals().Queued > bound-int64(len(batch)) {
			time.Sleep(100 * time.Microsecond)
		}
		d.Enqueue(batch)
		n += len(batch)
	}
	for d.Totals().Records-base < uint64(b.N) {
		if st := d.Totals(); st.Dropped > 0 || st.Errors > 0 {
			b.Fatalf("stats %+v", st)
		}
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	st := d.Totals()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(st.Bytes)/float64(st.Records), "B/record")
}

func BenchmarkProduceProtobuf(b *testing.B) { benchProduce(b, "protobuf") }
func BenchmarkProduceJSON(b *testing.B)     { benchProduce(b, "json") }
