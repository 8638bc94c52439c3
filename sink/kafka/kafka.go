// Package kafka is the Kafka destination (protocol: kafka): flow records
// produced to a topic as goflow2 FlowMessages (github.com/netsampler/
// goflow2/v2/pb), one per Kafka record, length-delimited as goflow2's own
// Kafka output writes them, or as one JSON object each.
//
// Like the IPFIX destinations it never holds up the export loop: Enqueue
// copies records into a bounded queue and returns; beyond the bound records
// are dropped and counted. The queue bound covers every record not yet
// acknowledged by the brokers (waiting here or in the client's buffers), so
// a cluster that is down holds at most that many in memory, and loses none
// of them when it comes back. The client is franz-go (kgo): it reconnects
// with backoff, retries produce requests without limit, and with acks all
// (the default) writes idempotently, so a retried batch is not duplicated.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/xflow-net/xflow/config"
	"github.com/xflow-net/xflow/flow"
	"github.com/xflow-net/xflow/sink"
)

// DefaultQueueRecords bounds the records not yet acknowledged when
// Options.QueueRecords is 0.
const DefaultQueueRecords = 1 << 18

// SASL authenticates to the brokers.
type SASL struct {
	Mechanism string // plain, scram-sha-256 or scram-sha-512; "" for none
	Username  string
	Password  string
}

func (s SASL) mechanism() sasl.Mechanism {
	switch s.Mechanism {
	case "plain":
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism()
	case "scram-sha-256":
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism()
	case "scram-sha-512":
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism()
	}
	return nil
}

// Options configure a Destination.
type Options struct {
	Brokers      []string // bootstrap brokers, host:port
	Topic        string
	Format       string // protobuf (default) or json
	Compression  string // none, gzip, snappy, lz4 or zstd; "" none
	PartitionKey string // none (default), addresses or conversation
	Acks         string // all (default), leader or none
	TLS          *tls.Config
	SASL         SASL

	ObservationDomain uint32
	SamplerAddress    netip.Addr       // the exporter's address, if known
	SamplingRate      uint64           // 0: 1, every packet counted
	Interfaces        []flow.Interface // names for the interface name fields

	// QueueRecords bounds the records accepted and not yet acknowledged;
	// beyond it Enqueue drops and counts. Default DefaultQueueRecords.
	QueueRecords int
	Logger       *slog.Logger

	// ClientOptions are added to the kgo client's (tests, tuning).
	ClientOptions []kgo.Opt
}

// FromConfig returns the options of a collector with protocol kafka.
func FromConfig(cfg *config.Config, cc config.Collector) (Options, error) {
	k := cc.Kafka
	if cc.Protocol != "kafka" || k == nil {
		return Options{}, fmt.Errorf("collector %s: protocol %s is not kafka", cc.Name(), cc.Protocol)
	}
	tlsCfg, err := cc.TLSConfig()
	if err != nil {
		return Options{}, fmt.Errorf("collector %s: %w", cc.Name(), err)
	}
	return Options{
		Brokers: k.Brokers, Topic: k.Topic, Format: k.Format, Compression: k.Compression,
		PartitionKey: k.PartitionKey, Acks: k.Acks, TLS: tlsCfg,
		SASL:              SASL{Mechanism: k.SASL.Mechanism, Username: k.SASL.Username, Password: string(k.SASL.Password)},
		ObservationDomain: cfg.Export.ObservationDomain,
		QueueRecords:      max(DefaultQueueRecords, 2*cfg.Datapath.MaxFlows),
	}, nil
}

// Stats are a destination's totals.
type Stats struct {
	Records uint64 // acknowledged by the brokers
	Bytes   uint64 // of their values (before compression)
	Errors  uint64 // records the client failed (each also dropped)
	Dropped uint64 // records never delivered: queue full, failed, or left at Close
	Queued  int64  // records accepted and not yet acknowledged
	// Connects and ConnectErrors count connections to brokers, including
	// failed TLS handshakes and SASL authentications.
	Connects, ConnectErrors uint64
	Latency                 Latency // from Enqueue to acknowledgement
	LastError               string  // the last produce or connection error, "" if none
}

// LatencyBuckets are the upper bounds of Latency.Buckets.
var LatencyBuckets = []time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
	30 * time.Second, time.Minute,
}

// Latency is a histogram of produce latency (Prometheus style: Buckets[i]
// counts records acknowledged within LatencyBuckets[i], cumulative).
type Latency struct {
	Count   uint64
	Sum     time.Duration
	Buckets []uint64
	Last    time.Duration
}

// Destination produces flow records to one Kafka topic.
type Destination struct {
	o    Options
	name string // kafka://BROKERS/TOPIC, as config.Collector.Name
	log  *slog.Logger
	cl   *kgo.Client
	q    chan batch

	outstanding atomic.Int64 // accepted and not yet acknowledged or dropped
	records, bytes, errs, dropped,
	connects, connectErrs atomic.Uint64

	latMu   sync.Mutex
	lat     Latency
	lastErr atomic.Pointer[string]
	errLog  atomic.Int64 // unix ns of the last logged error
	// saslFailed: OnBrokerE2E saw the SASL exchange fail, and described
	// it better than the connection's error will.
	saslFailed atomic.Bool

	cancel context.CancelFunc
	ctx    context.Context
	done   chan struct{}
	once   sync.Once
}

// New starts a destination; it runs until Close. It does not wait for the
// brokers: a cluster that is down only delays delivery.
func New(o Options) (*Destination, error) {
	if len(o.Brokers) == 0 {
		return nil, errors.New("kafka: no brokers")
	}
	if o.Topic == "" {
		return nil, errors.New("kafka: no topic")
	}
	if o.QueueRecords <= 0 {
		o.QueueRecords = DefaultQueueRecords
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Format == "" {
		o.Format = "protobuf"
	}
	if o.Format != "protobuf" && o.Format != "json" {
		return nil, fmt.Errorf("kafka: format %q: want protobuf or json", o.Format)
	}
	switch o.PartitionKey {
	case "":
		o.PartitionKey = "none"
	case "none", "addresses", "conversation":
	default:
		return nil, fmt.Errorf("kafka: partition key %q: want none, addresses or conversation", o.PartitionKey)
	}
	d := &Destination{o: o, done: make(chan struct{}), q: make(chan batch, 4096)}
	d.name = "kafka://" + strings.Join(o.Brokers, ",") + "/" + o.Topic
	d.log = o.Logger.With("collector", d.name)
	d.lat.Buckets = make([]uint64, len(LatencyBuckets))

	opts, err := d.clientOptions()
	if err != nil {
		return nil, err
	}
	d.cl, err = kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	go func() {
		defer close(d.done)
		d.run()
	}()
	return d, nil
}

func (d *Destination) clientOptions() ([]kgo.Opt, error) {
	o := d.o
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.DefaultProduceTopic(o.Topic),
		kgo.ClientID("xflow"),
		// Room for every record the queue bound allows: Produce never
		// blocks on the client's buffer.
		kgo.MaxBufferedRecords(o.QueueRecords + 1024),
		kgo.WithHooks(hooks{d}),
		kgo.WithLogger(logger{d.log}),
		// A topic that does not exist is retried (it may be created
		// meanwhile) rather than failed after 4 tries.
		kgo.UnknownTopicRetries(-1),
	}
	switch o.Acks {
	case "", "all":
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case "leader":
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	case "none":
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	default:
		return nil, fmt.Errorf("kafka: acks %q: want all, leader or none", o.Acks)
	}
	switch o.Compression {
	case "", "none":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.NoCompression()))
	case "gzip":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.GzipCompression()))
	case "snappy":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	case "lz4":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	case "zstd":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	default:
		return nil, fmt.Errorf("kafka: compression %q: want none, gzip, snappy, lz4 or zstd", o.Compression)
	}
	if o.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(o.TLS.Clone()))
	}
	if o.SASL.Mechanism != "" {
		m := o.SASL.mechanism()
		if m == nil {
			return nil, fmt.Errorf("kafka: SASL mechanism %q: want plain, scram-sha-256 or scram-sha-512", o.SASL.Mechanism)
		}
		opts = append(opts, kgo.SASL(m))
	}
	return append(opts, o.ClientOptions...), nil
}

// Enqueue queues a copy of recs, as many as the queue bound has room for;
// the rest are dropped and counted. It never blocks.
func (d *Destination) Enqueue(recs []flow.Export) {
	// Only Enqueue adds to outstanding, so the room can only grow between
	// this check and the add below.
	room := int64(d.o.QueueRecords) - d.outstanding.Load()
	if room < int64(len(recs)) {
		room = max(room, 0)
		d.dropped.Add(uint64(int64(len(recs)) - room))
		recs = recs[:room]
	}
	if len(recs) == 0 {
		return
	}
	n := int64(len(recs))
	b := batch{recs: append([]flow.Export(nil), recs...), at: time.Now()}
	d.outstanding.Add(n)
	select {
	case d.q <- b:
	default:
		d.outstanding.Add(-n)
		d.dropped.Add(uint64(n))
	}
}

// Close stops accepting records and delivers what is queued, waiting at
// most until ctx ends; what is left then is dropped and counted.
func (d *Destination) Close(ctx context.Context) error {
	d.once.Do(func() { close(d.q) })
	var err error
	select {
	case <-d.done:
	case <-ctx.Done():
		d.cancel()
		<-d.done
	}
	if ferr := d.cl.Flush(ctx); ferr != nil {
		err = fmt.Errorf("collector %s: %d records not delivered at shutdown", d.name, d.outstanding.Load())
		if p := d.lastErr.Load(); p != nil {
			err = fmt.Errorf("%w (last error: %s)", err, *p)
		}
		// Fail what the client holds: the promises count it dropped.
		abortCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d.cl.AbortBufferedRecords(abortCtx)
		cancel()
	}
	d.cl.Close()
	if n := d.outstanding.Load(); n > 0 { // cannot happen: every record has had its promise
		d.dropped.Add(uint64(n))
		d.outstanding.Add(-n)
	}
	if st := d.Totals(); err == nil && st.Records == 0 && st.Errors > 0 {
		err = fmt.Errorf("collector %s: nothing delivered: %s", d.name, st.LastError)
	}
	return err
}

// Stats returns the destination's totals in the shape of every
// destination's (sink.Stats), for the daemon's metrics and log: one Kafka
// record is one message.
func (d *Destination) Stats() sink.Stats {
	st := d.Totals()
	return sink.Stats{
		Messages: st.Records, Records: st.Records, Octets: st.Bytes,
		SendErrors: st.Errors, DroppedRecords: st.Dropped,
		Connects: st.Connects, Queued: st.Queued,
		Latency: sink.Histogram{Bounds: LatencyBuckets, Counts: st.Latency.Buckets,
			Count: st.Latency.Count, Sum: st.Latency.Sum},
	}
}

// Totals returns the destination's totals.
func (d *Destination) Totals() Stats {
	d.latMu.Lock()
	lat := d.lat
	lat.Buckets = append([]uint64(nil), d.lat.Buckets...)
	d.latMu.Unlock()
	st := Stats{
		Records: d.records.Load(), Bytes: d.bytes.Load(), Errors: d.errs.Load(), Dropped: d.dropped.Load(),
		Queued: d.outstanding.Load(), Connects: d.connects.Load(), ConnectErrors: d.connectErrs.Load(),
		Latency: lat,
	}
	if p := d.lastErr.Load(); p != nil {
		st.LastError = *p
	}
	return st
}

// batch is what one Enqueue accepted, and when.
type batch struct {
	recs []flow.Export
	at   time.Time
}

// run encodes the queued batches and hands them to the client. A
// record's Kafka timestamp is when it was enqueued: its produce latency
// runs from there.
func (d *Destination) run() {
	enc := newEncoder(d.o.Format, d.o.ObservationDomain, d.o.SamplingRate, d.o.SamplerAddress, d.o.Interfaces)
	var seq uint32
	var slab []byte
	for b := range d.q {
		batch := b.recs
		if d.ctx.Err() != nil {
			d.outstanding.Add(-int64(len(batch)))
			d.dropped.Add(uint64(len(batch)))
			continue
		}
		now := time.Now()
		// One allocation for the batch's values and keys: the client
		// holds them until each record's promise.
		slab = make([]byte, 0, len(batch)*160)
		recs := make([]kgo.Record, len(batch))
		for i := range batch {
			r := &batch[i]
			start := len(slab)
			slab = enc.appendRecord(slab, r, seq, now)
			seq++
			value := slab[start:len(slab):len(slab)]
			kstart := len(slab)
			slab = partitionKey(slab, d.o.PartitionKey, &r.Key)
			var key []byte
			if len(slab) > kstart {
				key = slab[kstart:len(slab):len(slab)]
			}
			// A grown slab moved: earlier records keep the old array,
			// which stays alive through them.
			recs[i] = kgo.Record{Key: key, Value: value, Timestamp: b.at}
		}
		for i := range recs {
			d.cl.Produce(d.ctx, &recs[i], d.promise)
		}
	}
}

// promise accounts for one record the client finished with.
func (d *Destination) promise(r *kgo.Record, err error) {
	d.outstanding.Add(-1)
	if errors.Is(err, kgo.ErrAborting) || errors.Is(err, context.Canceled) {
		d.dropped.Add(1) // left at Close
		return
	}
	if err != nil {
		d.errs.Add(1)
		d.dropped.Add(1)
		d.noteError("produce failed; records dropped", err)
		return
	}
	d.records.Add(1)
	d.bytes.Add(uint64(len(r.Value)))
	lat := time.Since(r.Timestamp)
	d.latMu.Lock()
	d.lat.Count++
	d.lat.Sum += lat
	d.lat.Last = lat
	for i, ub := range LatencyBuckets {
		if lat <= ub {
			d.lat.Buckets[i]++
		}
	}
	d.latMu.Unlock()
}

// noteError remembers err as the last error and logs it, at most every
// 10 s.
func (d *Destination) noteError(what string, err error) {
	msg := describe(err, d.o.SASL)
	d.lastErr.Store(&msg)
	now := time.Now().UnixNano()
	last := d.errLog.Load()
	if now-last < int64(10*time.Second) || !d.errLog.CompareAndSwap(last, now) {
		return
	}
	d.log.Error(what, "err", msg)
}

// describe says what an error from the client means for an operator.
func describe(err error, s SASL) string {
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, errSASLRejected):
		return fmt.Sprintf("SASL authentication failed: the brokers rejected user %q with mechanism %s: check sasl.username and the password (%v)", s.Username, s.Mechanism, err)
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return fmt.Sprintf("the brokers do not offer SASL mechanism %s: check sasl.mechanism (%v)", s.Mechanism, err)
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return fmt.Sprintf("not authorized to write to the topic: grant user %q WRITE on it (%v)", s.Username, err)
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return fmt.Sprintf("TLS: the broker's certificate is not trusted: check tls.ca and tls.server_name (%v)", err)
	}
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok {
		return fmt.Sprintf("TLS: the broker did not answer in TLS: is it a plaintext listener? (%v)", err)
	}
	return err.Error()
}

// hooks count connections and report failed ones.
type hooks struct{ d *Destination }

func (h hooks) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		h.d.connectErrs.Add(1)
		if h.d.saslFailed.Swap(false) {
			return // OnBrokerE2E said why
		}
		h.d.noteError("cannot connect to broker "+net.JoinHostPort(meta.Host, fmt.Sprint(meta.Port)), err)
		return
	}
	h.d.connects.Add(1)
}

// OnBrokerE2E sees the SASL exchange fail when a broker closes the
// connection instead of answering (some do, on wrong credentials): the
// connection's own error is then just EOF.
func (h hooks) OnBrokerE2E(meta kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if err := e2e.Err(); err != nil && key == saslAuthenticateKey {
		h.d.saslFailed.Store(true)
		h.d.noteError("cannot connect to broker "+net.JoinHostPort(meta.Host, fmt.Sprint(meta.Port)),
			fmt.Errorf("%w: the broker closed the connection during authentication (%v)", errSASLRejected, err))
	}
}

// saslAuthenticateKey is the Kafka API key of SASLAuthenticate.
const saslAuthenticateKey = 36

// errSASLRejected stands for SASL_AUTHENTICATION_FAILED from a broker that
// closed the connection rather than answering.
var errSASLRejected = errors.New("SASL authentication rejected")

// logger passes the client's warnings and errors to slog.
type logger struct{ l *slog.Logger }

func (l logger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l logger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelWarn
	if level == kgo.LogLevelError {
		lv = slog.LevelError
	}
	l.l.Log(context.Background(), lv, "kafka client: "+msg, keyvals...)
}
