package exporter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
}

// CollectorOptions configure the sink of one collector.
type CollectorOptions struct {
	Address         string
	Transport       string      // "udp", "tcp" or "tls"
	TLS             *tls.Config // for "tls": verifies the collector (and may carry our certificate)
	Encoder         Encoder
	TemplateRefresh time.Duration // UDP: templates are resent this often
	Interfaces      []flow.Interface
	// QueueRecords bounds the records waiting for this collector (while a
	// TCP collector is down or slow); beyond it records are dropped and
	// counted. Default 262144; the daemon makes it at least twice
	// max_flows, so that one scan ending every flow always fits.
	QueueRecords int
	Logger       *slog.Logger
}

// CollectorStats are one collector's totals.
type CollectorStats struct {
	Messages, Records, Octets uint64 // sent (TCP: records acknowledged by the collector or still in flight)
	SendErrors                uint64 // messages that failed to send
	DroppedRecords            uint64 // records never delivered: queue full, left at shutdown, or lost with a TCP connection (not acknowledged)
	Unexportable              uint64 // records the protocol cannot carry (IPv6 to NetFlow v5)
	Connects, Disconnects     uint64 // TCP
	Queued                    int64  // records waiting
}

// Collector is the sink of one collector: a goroutine with its own
// encoder (templates, sequence numbers) and transport, fed through a
// bounded queue so that a slow or absent collector never holds up the
// export loop or the other collectors.
type Collector struct {
	o   CollectorOptions
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

// NewCollector starts the sink; it runs until Close.
func NewCollector(o CollectorOptions) (*Collector, error) {
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
	c := &Collector{o: o, log: o.Logger.With("collector", o.Address, "transport", o.Transport),
		q: make(chan []flow.Export, 4096), cancel: cancel, done: make(chan struct{})}
	var run func(context.Context)
	if o.Transport == "udp" {
		conn, err := transport.DialUDP(ctx, o.Address)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("collector %s: %w", o.Address, err)
		}
		run = func(ctx context.Context) { c.runUDP(ctx, conn) }
	} else {
		run = c.runTCP
	}
	go func() {
		defer close(c.done)
		run(ctx)
	}()
	return c, nil
}

// Enqueue queues a copy of recs, as many as the queue has room for; the
// rest are dropped and counted. One scan's batch larger than the whole
// queue therefore still sends the queue's worth.
func (c *Collector) Enqueue(recs []flow.Export) {
	// Only Enqueue adds to queued (the sender only takes away), so the
	// room can only grow between this check and the add below.
	room := int64(c.o.QueueRecords) - c.queued.Load()
	if room < int64(len(recs)) {
		room = max(room, 0)
		c.dropped.Add(uint64(int64(len(recs)) - room))
		recs = recs[:room]
	}
	if len(recs) == 0 {
		return
	}
	n := int64(len(recs))
	batch := append([]flow.Export(nil), recs...)
	select {
	case c.q <- batch:
		c.queued.Add(n)
	default:
		c.dropped.Add(uint64(n))
	}
}

// Close stops accepting records and sends what is queued, waiting at most
// until ctx ends.
func (c *Collector) Close(ctx context.Context) error {
	c.once.Do(func() { close(c.q) })
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		c.cancel()
		<-c.done
		return fmt.Errorf("collector %s: %d records not sent at shutdown", c.o.Address, c.queued.Load())
	}
}

// Stats returns the collector's totals.
func (c *Collector) Stats() CollectorStats {
	return CollectorStats{
		Messages: c.messages.Load(), Records: c.records.Load(), Octets: c.octets.Load(),
		SendErrors: c.sendErrs.Load(), DroppedRecords: c.dropped.Load(), Unexportable: c.unexportable.Load(),
		Connects: c.connects.Load(), Disconnects: c.disconnects.Load(), Queued: c.queued.Load(),
	}
}

func (c *Collector) totals() flow.ExportTotals {
	return flow.ExportTotals{Messages: c.messages.Load(), Records: c.records.Load(), Octets: c.octets.Load()}
}

// runUDP sends templates first and every TemplateRefresh, and data as it
// comes. A send error (collector absent: port unreachable) is counted and
// logged once per burst; sending goes on.
func (c *Collector) runUDP(ctx context.Context, conn transport.Conn) {
	defer conn.Close()
	var lastErrLog time.Time
	send := func(msg []byte) error {
		err := conn.Send(msg)
		if err != nil {
			c.sendErrs.Add(1)
			if time.Since(lastErrLog) > 10*time.Second {
				c.log.Warn("send failed", "err", err)
				lastErrLog = time.Now()
			}
			// A port unreachable reported for an earlier datagram: this
			// one went out. Anything else: it did not, and the rest of
			// the batch is dropped (and counted).
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return err
			}
		}
		c.messages.Add(1)
		c.octets.Add(uint64(len(msg)))
		return nil
	}
	templates := func() {
		if err := c.o.Encoder.Templates(time.Now(), c.totals(), c.o.Interfaces, send); err != nil {
			c.log.Error("encode templates", "err", err)
		}
	}
	templates()
	refresh := time.NewTicker(c.o.TemplateRefresh)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			templates()
		case batch, ok := <-c.q:
			if !ok {
				return
			}
			c.queued.Add(-int64(len(batch)))
			before := c.o.Encoder.Sent()
			err := c.o.Encoder.Encode(time.Now(), batch, send)
			sent := c.o.Encoder.Sent() - before
			c.records.Add(sent)
			c.dropped.Add(uint64(len(batch)) - sent - c.skipped())
			if err != nil && time.Since(lastErrLog) > 10*time.Second {
				c.log.Warn("records dropped", "err", err)
				lastErrLog = time.Now()
			}
		}
	}
}

// skipped takes the count of records the encoder skipped since the last
// call because its protocol cannot carry them (NetFlow v5: IPv6), logging
// the first time.
func (c *Collector) skipped() uint64 {
	u, ok := c.o.Encoder.(interface{ Unexportable() uint64 })
	if !ok {
		return 0
	}
	total := u.Unexportable()
	prev := c.unexportable.Swap(total)
	if prev == 0 && total > 0 {
		c.log.Warn("this collector's protocol cannot carry some flows (NetFlow v5: IPv6); they are counted, not sent", "records", total)
	}
	return total - prev
}

// TCP session timing.
const (
	dialTimeout  = 3 * time.Second
	writeTimeout = 5 * time.Second // a collector that takes nothing this long is stalled
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 30 * time.Second
)

// runTCP keeps a connection to the collector: on every connection the
// encoder starts a new session and sends the templates, then the records
// queued meanwhile. Records are encoded only once there is a connection,
// so sequence numbers always count from the start of the connection they
// travel on. When a connection fails, the records written to it that the
// collector's TCP had not acknowledged are counted as dropped.
func (c *Collector) runTCP(ctx context.Context) {
	var (
		st       *transport.Stream
		pending  []flow.Export
		backoff  = minBackoff
		nextDial time.Time
		inflight []struct {
			end uint64
			n   int
		}
		closing bool
	)
	send := func(msg []byte) error {
		if err := st.Send(msg); err != nil {
			return err
		}
		c.messages.Add(1)
		c.octets.Add(uint64(len(msg)))
		return nil
	}
	drop := func(err error) {
		if errors.Is(err, transport.ErrPeerClosed) {
			// The collector is closing gracefully and still reads what
			// was sent: give its acknowledgements a moment to arrive.
			for i := 0; i < 20 && st.Acked() < st.Written(); i++ {
				time.Sleep(25 * time.Millisecond)
			}
		}
		acked := st.Acked()
		lost := 0
		for _, b := range inflight {
			if b.end > acked {
				lost += b.n
			}
		}
		inflight = inflight[:0]
		// Lost records move from "sent" to "dropped".
		c.records.Add(-uint64(lost))
		c.dropped.Add(uint64(lost))
		c.disconnects.Add(1)
		c.log.Warn("connection lost", "err", err, "records_lost", lost)
		st.Close()
		st = nil
		nextDial = time.Now().Add(minBackoff)
	}
	dial := func() {
		var s *transport.Stream
		var err error
		if c.o.TLS != nil {
			s, err = transport.DialTLSStream(ctx, c.o.Address, c.o.TLS, dialTimeout, writeTimeout)
		} else {
			s, err = transport.DialStream(ctx, c.o.Address, dialTimeout, writeTimeout)
		}
		if err != nil {
			if backoff == minBackoff || backoff >= maxBackoff {
				c.log.Warn("connect failed", "err", err, "retry_in", backoff)
			}
			nextDial = time.Now().Add(backoff + time.Duration(rand.Int64N(int64(backoff/4)+1)))
			backoff = min(2*backoff, maxBackoff)
			return
		}
		st, backoff = s, minBackoff
		c.connects.Add(1)
		c.o.Encoder.Reset()
		if err := c.o.Encoder.Templates(time.Now(), c.totals(), c.o.Interfaces, send); err != nil {
			drop(err)
			return
		}
		c.log.Info("connected")
	}
	flush := func() {
		if st == nil || len(pending) == 0 {
			return
		}
		// A collector that closed since the last look gets nothing: the
		// records wait for the next connection.
		if err := st.Alive(); err != nil {
			drop(err)
			return
		}
		n := len(pending)
		before := c.o.Encoder.Sent()
		err := c.o.Encoder.Encode(time.Now(), pending, send)
		sent := int(c.o.Encoder.Sent() - before)
		inflight = append(inflight, struct {
			end uint64
			n   int
		}{st.Written(), sent})
		c.records.Add(uint64(sent))
		c.dropped.Add(uint64(n-sent) - c.skipped()) // never written
		c.queued.Add(-int64(n))
		pending = pending[:0]
		if err != nil {
			drop(err)
			return
		}
		// Forget what the collector acknowledged.
		if len(inflight) > 64 {
			acked := st.Acked()
			i := 0
			for i < len(inflight) && inflight[i].end <= acked {
				i++
			}
			inflight = append(inflight[:0], inflight[i:]...)
		}
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Time{}
	for {
		if st == nil && !time.Now().Before(nextDial) {
			dial()
		}
		flush()
		if closing {
			if len(pending) == 0 || time.Now().After(deadline) {
				break
			}
		}
		select {
		case <-ctx.Done():
			closing, deadline = true, time.Now()
		case batch, ok := <-c.q:
			if !ok {
				if !closing {
					closing, deadline = true, time.Now().Add(2*time.Second)
				}
				c.q = nil
				continue
			}
			pending = append(pending, batch...)
		case <-tick.C:
			if st != nil && len(pending) == 0 {
				if err := st.Alive(); err != nil {
					drop(err)
				}
			}
		}
	}
	if len(pending) > 0 {
		c.dropped.Add(uint64(len(pending)))
		c.queued.Add(-int64(len(pending)))
	}
	if st != nil {
		// Let the collector read the last messages before the FIN.
		st.Close()
	}
}
