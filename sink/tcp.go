package sink

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/xflow-net/xflow/exporter/transport"
	"github.com/xflow-net/xflow/flow"
)

// TCP session timing.
const (
	dialTimeout  = 3 * time.Second
	writeTimeout = 5 * time.Second // a collector that takes nothing this long is stalled
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 30 * time.Second
	aliveCheck   = 250 * time.Millisecond // how often an idle connection is checked
	closeGrace   = 2 * time.Second        // Close: how long the queued records may take
)

// tcpSender keeps a connection to a TCP (or TLS) collector: on every
// connection the encoder starts a new session and sends the templates,
// then the records queued meanwhile. Records are encoded only once there
// is a connection, so sequence numbers always count from the start of the
// connection they travel on. When a connection fails, the records written
// to it that the collector's TCP had not acknowledged are counted as
// dropped.
type tcpSender struct {
	d        *Destination
	st       *transport.Stream // nil while not connected
	pending  []flow.Export     // records taken from the queue, not yet encoded
	inflight []written         // batches written and perhaps not yet acknowledged
	backoff  time.Duration     // the wait before the next dial after a failed one
	nextDial time.Time
}

// written is one batch written to the stream: it is acknowledged once the
// collector acknowledged end bytes.
type written struct {
	end uint64 // the stream's byte count after the batch
	n   int    // records
}

func newTCPSender(d *Destination) *tcpSender {
	return &tcpSender{d: d, backoff: minBackoff}
}

// run sends until the queue is closed and emptied (Close; at most
// closeGrace more) or ctx ends.
func (s *tcpSender) run(ctx context.Context) {
	q := s.d.q
	tick := time.NewTicker(aliveCheck)
	defer tick.Stop()
	var (
		closing  bool
		deadline time.Time
	)
	for {
		if s.st == nil && !time.Now().Before(s.nextDial) {
			s.dial(ctx)
		}
		s.flush()
		if closing && (len(s.pending) == 0 || time.Now().After(deadline)) {
			break
		}
		select {
		case <-ctx.Done():
			closing, deadline = true, time.Now()
		case batch, ok := <-q:
			if !ok {
				if !closing {
					closing, deadline = true, time.Now().Add(closeGrace)
				}
				q = nil
				continue
			}
			s.pending = append(s.pending, batch...)
		case <-tick.C:
			s.checkIdle()
		}
	}
	s.finish()
}

// send writes one message to the connection.
func (s *tcpSender) send(msg []byte) error {
	if err := s.st.Send(msg); err != nil {
		return err
	}
	s.d.sent(msg)
	return nil
}

// dial connects (backing off after failures), starts a new encoder
// session and sends the templates.
func (s *tcpSender) dial(ctx context.Context) {
	o := s.d.o
	var st *transport.Stream
	var err error
	if o.TLS != nil {
		st, err = transport.DialTLSStream(ctx, o.Address, o.TLS, dialTimeout, writeTimeout)
	} else {
		st, err = transport.DialStream(ctx, o.Address, dialTimeout, writeTimeout)
	}
	if err != nil {
		if s.backoff == minBackoff || s.backoff >= maxBackoff {
			s.d.log.Warn("connect failed", "err", err, "retry_in", s.backoff)
		}
		s.nextDial = time.Now().Add(s.backoff + time.Duration(rand.Int64N(int64(s.backoff/4)+1)))
		s.backoff = min(2*s.backoff, maxBackoff)
		return
	}
	s.st, s.backoff = st, minBackoff
	s.d.connects.Add(1)
	o.Encoder.Reset()
	if err := o.Encoder.Templates(time.Now(), s.d.totals(), o.Interfaces, s.send); err != nil {
		s.disconnect(err)
		return
	}
	s.d.log.Info("connected")
}

// flush encodes the pending records onto the connection, if there is one.
func (s *tcpSender) flush() {
	if s.st == nil || len(s.pending) == 0 {
		return
	}
	// A collector that closed since the last look gets nothing: the
	// records wait for the next connection.
	if err := s.st.Alive(); err != nil {
		s.disconnect(err)
		return
	}
	sent, err := s.d.encode(s.pending, s.send)
	s.inflight = append(s.inflight, written{s.st.Written(), sent})
	s.pending = s.pending[:0]
	if err != nil {
		s.disconnect(err)
		return
	}
	if len(s.inflight) > 64 {
		s.forgetAcked()
	}
}

// forgetAcked forgets the batches the collector acknowledged.
func (s *tcpSender) forgetAcked() {
	acked := s.st.Acked()
	i := 0
	for i < len(s.inflight) && s.inflight[i].end <= acked {
		i++
	}
	s.inflight = append(s.inflight[:0], s.inflight[i:]...)
}

// checkIdle notices a collector that closed an idle connection.
func (s *tcpSender) checkIdle() {
	if s.st != nil && len(s.pending) == 0 {
		if err := s.st.Alive(); err != nil {
			s.disconnect(err)
		}
	}
}

// disconnect closes a failed connection; the records the collector did not
// acknowledge move from "sent" to "dropped". The next dial is soon.
func (s *tcpSender) disconnect(err error) {
	if errors.Is(err, transport.ErrPeerClosed) {
		// The collector is closing gracefully and still reads what was
		// sent: give its acknowledgements a moment to arrive.
		for i := 0; i < 20 && s.st.Acked() < s.st.Written(); i++ {
			time.Sleep(25 * time.Millisecond)
		}
	}
	acked := s.st.Acked()
	lost := 0
	for _, b := range s.inflight {
		if b.end > acked {
			lost += b.n
		}
	}
	s.inflight = s.inflight[:0]
	s.d.records.Add(-uint64(lost))
	s.d.dropped.Add(uint64(lost))
	s.d.disconnects.Add(1)
	s.d.log.Warn("connection lost", "err", err, "records_lost", lost)
	s.st.Close()
	s.st = nil
	s.nextDial = time.Now().Add(minBackoff)
}

// finish counts what was never sent as dropped and closes the connection.
func (s *tcpSender) finish() {
	if len(s.pending) > 0 {
		s.d.dropped.Add(uint64(len(s.pending)))
		s.d.queued.Add(-int64(len(s.pending)))
	}
	if s.st != nil {
		// Let the collector read the last messages before the FIN.
		s.st.Close()
	}
}
