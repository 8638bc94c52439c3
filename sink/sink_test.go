package sink

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xflow-net/xflow/collector"
	"github.com/xflow-net/xflow/exporter/ipfix"
	"github.com/xflow-net/xflow/flow"
)

func testRecords(n int) []flow.Export {
	recs := make([]flow.Export, n)
	for i := range recs {
		k := flow.Key{SrcPort: uint16(1000 + i), DstPort: 80, Proto: 17, IPVersion: 4}
		k.Src[10], k.Src[11], k.Src[15] = 0xff, 0xff, 1
		recs[i] = flow.Export{Key: k, Packets: uint64(i + 1), Bytes: uint64(100 * (i + 1)),
			StartMs: 1_700_000_000_000, EndMs: 1_700_000_000_500, EndReason: flow.IdleTimeout}
	}
	return recs
}

// TestUDPTemplateRefresh: over UDP the templates go first and then again
// every TemplateRefresh; the records all arrive, decodable.
func TestUDPTemplateRefresh(t *testing.T) {
	var got atomic.Int64
	coll, err := collector.Listen(t.Context(), collector.Options{Listen: "udp://127.0.0.1:0",
		OnRecord: func(collector.Record) { got.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	c, err := New(Options{Address: coll.Addr().String(), Transport: "udp",
		Encoder:         ipfix.NewEncoder(ipfix.Options{ObservationDomain: 7, MTU: 512}),
		TemplateRefresh: 100 * time.Millisecond,
		Interfaces:      []flow.Interface{{Index: 1, Name: "eth0"}}})
	if err != nil {
		t.Fatal(err)
	}
	c.Enqueue(testRecords(50))
	// The first templates and at least four refreshes (4 template records
	// each: 2 templates, 2 options templates), however loaded the machine.
	for end := time.Now().Add(5 * time.Second); coll.Stats().TemplateRecords < 5*4 && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	c.Enqueue(testRecords(20))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	st := coll.Stats()
	if st.TemplateRecords < 5*4 {
		t.Errorf("template records %d, want >= 20 (refreshed every 100 ms)", st.TemplateRecords)
	}
	if got.Load() != 70 || st.SequenceGaps != 0 || st.MissingTemplate != 0 || st.DecodeErrors != 0 {
		t.Errorf("received %d records, want 70; collector %+v", got.Load(), st)
	}
	cs := c.Stats()
	if cs.Records != 70 || cs.DroppedRecords != 0 {
		t.Errorf("destination stats %+v", cs)
	}
}

// TestQueueBound: a TCP collector that never answers gets at most
// QueueRecords records queued; the rest are dropped and counted, and
// Enqueue never blocks.
func TestQueueBound(t *testing.T) {
	c, err := New(Options{Address: "127.0.0.1:9", Transport: "tcp",
		Encoder: ipfix.NewEncoder(ipfix.Options{}), QueueRecords: 1000, TemplateRefresh: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < 30; i++ {
		c.Enqueue(testRecords(100))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Enqueue took %v", d)
	}
	st := c.Stats()
	if st.Queued > 1000 || st.DroppedRecords < 2000 || uint64(st.Queued)+st.DroppedRecords != 3000 {
		t.Errorf("queued %d, dropped %d, want <= 1000 queued and the rest of 3000 dropped", st.Queued, st.DroppedRecords)
	}
	// A batch larger than the room left is cut, not dropped whole.
	before := c.Stats()
	c.Enqueue(testRecords(1500))
	if st := c.Stats(); st.Queued+int64(st.DroppedRecords)-before.Queued-int64(before.DroppedRecords) != 1500 || st.Queued != 1000 {
		t.Errorf("a 1500-record batch: queued %d (want 1000), dropped %d more", st.Queued, st.DroppedRecords-before.DroppedRecords)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c.Close(ctx)
	if st := c.Stats(); st.DroppedRecords != 4500 || st.Queued != 0 {
		t.Errorf("after close: %+v", st)
	}
}
