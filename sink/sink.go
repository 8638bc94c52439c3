// Package sink is one configured export destination: a bounded queue, the
// destination's own encoder (templates, sequence numbers) and a goroutine
// that sends over UDP, TCP or TLS. A slow or absent destination never holds
// up the export loop or the other destinations.
package sink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xflow-net/xflow/exporter/transport"
	"github.com/xflow-net/xflow/flow"
)

// Encoder turns records into one protocol's messages for one transport
// session (ipfix.Encoder, netflow9.Encoder, netflow5.Encoder).
type Encoder interface {
	Reset()
	Templates(now time.Time, st flow.ExportTotals, ifaces []flow.Interface, send func(msg []byte) error) error
	Encode(now time.Time, recs []flow.Export, send func(msg []byte) error) error
	// Sent counts the flow records in messages that send accepted since
	// Reset (what went out of a failed Encode).
	Sent() uint64
	// Unexportable counts the records Encode skipped since the encoder
	// was made (Reset does not clear it) because the protocol cannot
	// carry them (NetFlow v5: IPv6); 0 for protocols that carry all.
	Unexportable() uint64
}

// Options configure one destination.
type Options struct {
	Address         string
	Transport       string      // "udp", "tcp" or "tls"
	TLS             *tls.Config // for "tls": verifies the collector (and may carry our certificate)
	Encoder         Encoder
	TemplateRefresh time.Duration // UDP: templates are resent this often
	Interfaces      []flow.Interface
	// QueueRecords bounds the records waiting for this destination (while
	// a TCP collector is down or slow); beyond it records are dropped and
	// counted. Default 262144; the daemon makes it at least twice
	// max_flows, so that one scan ending every flow always fits.
	QueueRecords int
	Logger       *slog.Logger
}

// Stats are one destination's totals.
type Stats struct {
	Messages, Records, Octets uint64 // sent (TCP: records acknowledged by the collector or still in flight)
	SendErrors                uint64 // messages that failed to send
	DroppedRecords            uint64 // records never delivered: queue full, left at shutdown, or lost with a TCP connection (not acknowledged)
	Unexportable              uint64 // records the protocol cannot carry (IPv6 to NetFlow v5)
	Connects, Disconnects     uint64 // TCP
	Queued                    int64  // records waiting
	// Latency is the time from Enqueue to delivery, for destinations that
	// see their records delivered (Kafka: acknowledged by the brokers);
	// nil Bounds for the others.
	Latency Histogram
}

// Histogram is a latency histogram, Prometheus style: Counts[i] is the
// number of observations within Bounds[i] (cumulative).
type Histogram struct {
	Bounds []time.Duration
	Counts []uint64
	Count  uint64
	Sum    time.Duration
}

// Destination is one collector as the exporter sends to it: a goroutine
// with its own encoder and transport, fed through a bounded queue.
type Destination struct {
	o   Options
	log *slog.Logger
	q   chan []flow.Export

	queued                                       atomic.Int64
	messages, records, octets, sendErrs, dropped atomic.Uint64
	connects, disconnects                        atomic.Uint64
	unexportable                                 atomic.Uint64

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// New starts the destination's goroutine; it runs until Close.
func New(o Options) (*Destination, error) {
	if o.QueueRecords <= 0 {
		o.QueueRecords = 1 << 18
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	switch {
	case o.Transport == "tls" && o.TLS == nil:
		return nil, fmt.Errorf("collector %s: transport tls without a TLS configuration", o.Address)
	case o.Transport != "udp" && o.Transport != "tcp" && o.Transport != "tls":
		return nil, fmt.Errorf("collector %s: transport %q: want udp, tcp or tls", o.Address, o.Transport)
	}
	// Resolve now: a collector that cannot be named is a start-up error,
	// before anything is loaded or attached.
	if _, err := net.ResolveUDPAddr("udp", o.Address); err != nil {
		return nil, fmt.Errorf("collector %s: %w", o.Address, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Destination{o: o, log: o.Logger.With("collector", o.Address, "transport", o.Transport),
		q: make(chan []flow.Export, 4096), cancel: cancel, done: make(chan struct{})}
	var run func(context.Context)
	if o.Transport == "udp" {
		conn, err := transport.DialUDP(ctx, o.Address)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("collector %s: %w", o.Address, err)
		}
		run = func(ctx context.Context) { d.runUDP(ctx, conn) }
	} else {
		run = func(ctx context.Context) { newTCPSender(d).run(ctx) }
	}
	go func() {
		defer close(d.done)
		run(ctx)
	}()
	return d, nil
}

// Enqueue queues a copy of recs, as many as the queue has room for; the
// rest are dropped and counted. One scan's batch larger than the whole
// queue therefore still sends the queue's worth.
func (d *Destination) Enqueue(recs []flow.Export) {
	// Only Enqueue adds to queued (the sender only takes away), so the
	// room can only grow between this check and the add below.
	room := int64(d.o.QueueRecords) - d.queued.Load()
	if room < int64(len(recs)) {
		room = max(room, 0)
		d.dropped.Add(uint64(int64(len(recs)) - room))
		recs = recs[:room]
	}
	if len(recs) == 0 {
		return
	}
	n := int64(len(recs))
	batch := append([]flow.Export(nil), recs...)
	select {
	case d.q <- batch:
		d.queued.Add(n)
	default:
		d.dropped.Add(uint64(n))
	}
}

// Close stops accepting records and sends what is queued, waiting at most
// until ctx ends.
func (d *Destination) Close(ctx context.Context) error {
	d.once.Do(func() { close(d.q) })
	select {
	case <-d.done:
		return nil
	case <-ctx.Done():
		d.cancel()
		<-d.done
		return fmt.Errorf("collector %s: %d records not sent at shutdown", d.o.Address, d.queued.Load())
	}
}

// Stats returns the destination's totals.
func (d *Destination) Stats() Stats {
	return Stats{
		Messages: d.messages.Load(), Records: d.records.Load(), Octets: d.octets.Load(),
		SendErrors: d.sendErrs.Load(), DroppedRecords: d.dropped.Load(), Unexportable: d.unexportable.Load(),
		Connects: d.connects.Load(), Disconnects: d.disconnects.Load(), Queued: d.queued.Load(),
	}
}

func (d *Destination) totals() flow.ExportTotals {
	return flow.ExportTotals{Messages: d.messages.Load(), Records: d.records.Load(), Octets: d.octets.Load()}
}

// sent counts one message that went out.
func (d *Destination) sent(msg []byte) {
	d.messages.Add(1)
	d.octets.Add(uint64(len(msg)))
}

// skipped takes the count of records the encoder skipped since the last
// call because its protocol cannot carry them (NetFlow v5: IPv6), logging
// the first time.
func (d *Destination) skipped() uint64 {
	total := d.o.Encoder.Unexportable()
	prev := d.unexportable.Swap(total)
	if prev == 0 && total > 0 {
		d.log.Warn("this collector's protocol cannot carry some flows (NetFlow v5: IPv6); they are counted, not sent", "records", total)
	}
	return total - prev
}

// encode encodes batch through send and counts what went out and what was
// dropped; it returns how many records send accepted.
func (d *Destination) encode(batch []flow.Export, send func([]byte) error) (sent int, err error) {
	before := d.o.Encoder.Sent()
	err = d.o.Encoder.Encode(time.Now(), batch, send)
	n := d.o.Encoder.Sent() - before
	d.records.Add(n)
	d.dropped.Add(uint64(len(batch)) - n - d.skipped()) // never written
	d.queued.Add(-int64(len(batch)))
	return int(n), err
}

// runUDP sends templates first and every TemplateRefresh, and data as it
// comes. A send error (collector absent: port unreachable) is counted and
// logged once per burst; sending goes on.
func (d *Destination) runUDP(ctx context.Context, conn transport.Conn) {
	defer conn.Close()
	var lastErrLog time.Time
	send := func(msg []byte) error {
		err := conn.Send(msg)
		if err != nil {
			d.sendErrs.Add(1)
			if time.Since(lastErrLog) > 10*time.Second {
				d.log.Warn("send failed", "err", err)
				lastErrLog = time.Now()
			}
			// A port unreachable reported for an earlier datagram: this
			// one went out. Anything else: it did not, and the rest of
			// the batch is dropped (and counted).
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return err
			}
		}
		d.sent(msg)
		return nil
	}
	templates := func() {
		if err := d.o.Encoder.Templates(time.Now(), d.totals(), d.o.Interfaces, send); err != nil {
			d.log.Error("encode templates", "err", err)
		}
	}
	templates()
	refresh := time.NewTicker(d.o.TemplateRefresh)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			templates()
		case batch, ok := <-d.q:
			if !ok {
				return
			}
			if _, err := d.encode(batch, send); err != nil && time.Since(lastErrLog) > 10*time.Second {
				d.log.Warn("records dropped", "err", err)
				lastErrLog = time.Now()
			}
		}
	}
}
