package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	flowpb "github.com/netsampler/goflow2/v2/pb"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/xflow-net/xflow/collector"
	"github.com/xflow-net/xflow/config"
	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/internal/testnet"
)

// The Kafka tests run the daemon in process: its data plane and its IPFIX
// destination's socket in side A's namespace (made inside testnet.Do), its
// Kafka client, which dials later from its own goroutines, in the test's
// namespace, where the kfake brokers listen.

const (
	kafkaTopic      = "flows"
	kafkaPartitions = 6
	// metricsListen is the daemon's /metrics, inside side A's namespace
	// (each pair has its own loopback).
	metricsListen = "127.0.0.1:9180"
)

// kflow is the fields a flow record has both as IPFIX and as a goflow2
// FlowMessage.
type kflow struct {
	src, dst       string
	sport, dport   uint16
	proto          uint8
	packets, bytes uint64
	startMs, endMs uint64
	tcpFlags       uint16
	tos            uint8
	vlan           uint16
	ifindex        uint32
	egress         bool
	domain         uint32
}

func fromIPFIX(r collector.Record) kflow {
	return kflow{r.Src, r.Dst, r.SrcPort, r.DstPort, r.Proto, r.Packets, r.Bytes,
		r.Start, r.End, r.TCPFlags, r.TOS, r.VLAN, r.IfIndex, r.Direction == "egress", r.ObservationDomain}
}

func fromMessage(m *flowpb.FlowMessage) kflow {
	src, _ := netip.AddrFromSlice(m.SrcAddr)
	dst, _ := netip.AddrFromSlice(m.DstAddr)
	f := kflow{src: src.String(), dst: dst.String(), sport: uint16(m.SrcPort), dport: uint16(m.DstPort),
		proto: uint8(m.Proto), packets: m.Packets, bytes: m.Bytes, startMs: m.TimeFlowStartNs / 1e6, endMs: m.TimeFlowEndNs / 1e6,
		tcpFlags: uint16(m.TcpFlags), tos: uint8(m.IpTos), vlan: uint16(m.VlanId), ifindex: m.InIf, domain: m.ObservationDomainId}
	if m.OutIf != 0 {
		f.ifindex, f.egress = m.OutIf, true
	}
	return f
}

// ipfixRecords collects what an in-process IPFIX collector in side A's
// namespace decodes.
type ipfixRecords struct {
	mu   sync.Mutex
	recs []kflow
	c    *collector.Collector
}

func listenIPFIX(t *testing.T, p *testnet.Pair) *ipfixRecords {
	t.Helper()
	r := &ipfixRecords{}
	err := p.Do(p.NSA, func() (err error) {
		r.c, err = collector.Listen(t.Context(), collector.Options{Listen: "udp://127.0.0.1:0", OnRecord: func(rec collector.Record) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.recs = append(r.recs, fromIPFIX(rec))
		}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.c.Close() })
	return r
}

func (r *ipfixRecords) all() []kflow {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}

// has reports whether every flow of e has arrived.
func (r *ipfixRecords) has(e testnet.Expect) bool {
	got := map[[2]uint16]bool{}
	for _, f := range r.all() {
		got[[2]uint16{f.sport, f.dport}] = true
	}
	for _, id := range e.Keys() {
		if !got[[2]uint16{id.SrcPort, id.DstPort}] {
			return false
		}
	}
	return true
}

// gate is a listener whose connections can be cut: while down, every
// connection is closed at once and new ones are closed as accepted (all
// brokers down, as their clients see it).
type gate struct {
	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func (g *gate) listen(network, address string) (net.Listener, error) {
	l, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &gateListener{l, g}, nil
}

func (g *gate) set(down bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.down = down
	if down {
		for c := range g.conns {
			c.Close()
		}
		clear(g.conns)
	}
}

type gateListener struct {
	net.Listener
	g *gate
}

func (l *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.g.mu.Lock()
		if l.g.down {
			l.g.mu.Unlock()
			c.Close()
			continue
		}
		if l.g.conns == nil {
			l.g.conns = map[net.Conn]bool{}
		}
		l.g.conns[c] = true
		l.g.mu.Unlock()
		return c, nil
	}
}

// newKafka starts a kfake cluster of three brokers with the topic in
// several partitions, in the test's namespace.
func newKafka(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3), kfake.SeedTopics(kafkaPartitions, kafkaTopic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// consumeKafka reads the topic's records (all partitions, from the
// start) until it has n, failing after 30 s, then for half a second more
// (there must be no more), and decodes each with goflow2's package as its
// Kafka consumers do (one length-delimited FlowMessage).
func consumeKafka(t *testing.T, n int, brokers []string, opts ...kgo.Opt) []kflow {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(kafkaTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []kflow
	each := func(r *kgo.Record) {
		var m flowpb.FlowMessage
		br := bufio.NewReader(bytes.NewReader(r.Value))
		if err := protodelim.UnmarshalFrom(br, &m); err != nil {
			t.Errorf("partition %d offset %d: %x: %v", r.Partition, r.Offset, r.Value, err)
			return
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("partition %d offset %d: bytes after the message", r.Partition, r.Offset)
		}
		out = append(out, fromMessage(&m))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records", len(out), n)
		}
		fs.EachRecord(each)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	cl.PollFetches(ctx2).EachRecord(each)
	return out
}

// syncBuffer is the daemon's log, read while it is written.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// kafkaConfig parses a configuration for p's side A (XDP in, TC out) with
// the collectors given (YAML, indented as list items of
// export.collectors), through config.Parse as a file would be.
func kafkaConfig(t *testing.T, p *testnet.Pair, collectors string) *config.Config {
	t.Helper()
	pin, err := os.MkdirTemp("/sys/fs/bpf", "xflow-kafkatest-")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(pin)
	t.Cleanup(func() { os.RemoveAll(pin) })
	y := fmt.Sprintf(`interfaces:
  - {name: %s, ingress: xdp, egress: tc}
pin_path: %s
timeouts: {inactive: 300ms, scan_interval: 100ms}
metrics: {listen: "%s"}
export:
  observation_domain: 42
  collectors:
%s`, p.NameA, pin, metricsListen, collectors)
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "xflow.yaml"), []byte(y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	return cfg
}

// running is a daemon started in side A's namespace and running.
type running struct {
	d       *Daemon
	log     *syncBuffer
	stop    func() // cancels Run and stops the daemon (once), waiting at most stopWait
	stopErr error  // what Stop returned
	// stopWait bounds the final export (default 15 s).
	stopWait time.Duration
}

func runDaemon(t *testing.T, p *testnet.Pair, cfg *config.Config, o Options) *running {
	t.Helper()
	r := &running{log: &syncBuffer{}, stopWait: 15 * time.Second}
	o.Logger = slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d, err := start(t, p, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	r.d = d
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			sctx, scancel := context.WithTimeout(context.Background(), r.stopWait)
			defer scancel()
			r.stopErr = p.Do(p.NSA, func() error { return d.Stop(sctx, false) })
		})
	}
	t.Cleanup(r.stop)
	return r
}

// scrapeMetrics reads the daemon's /metrics (in side A's namespace) into
// name{labels} -> value.
func scrapeMetrics(t *testing.T, p *testnet.Pair) map[string]float64 {
	t.Helper()
	var conn net.Conn
	if err := p.Do(p.NSA, func() (err error) {
		conn, err = net.DialTimeout("tcp", metricsListen, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", metricsListen)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]float64{}
	line := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$`)
	for _, l := range strings.Split(string(body), "\n") {
		if x := line.FindStringSubmatch(l); x != nil {
			v, _ := strconv.ParseFloat(x[2], 64)
			m[x[1]] = v
		}
	}
	return m
}

// destMetrics are one destination's export metrics.
type destMetrics struct {
	records, messages, bytes, errors, dropped, queued, connects float64
	latencyCount                                                float64
}

// accounted is every record the destination was given: delivered,
// dropped or waiting.
func (m destMetrics) accounted() float64 { return m.records + m.dropped + m.queued }

func kafkaMetrics(t *testing.T, p *testnet.Pair, name, transport string) destMetrics {
	t.Helper()
	m := scrapeMetrics(t, p)
	l := fmt.Sprintf(`{collector=%q,protocol="kafka",transport=%q}`, name, transport)
	if _, ok := m["xflow_export_records_total"+l]; !ok {
		t.Fatalf("no xflow_export_records_total%s in /metrics", l)
	}
	return destMetrics{
		records: m["xflow_export_records_total"+l], messages: m["xflow_export_messages_total"+l],
		bytes: m["xflow_export_bytes_total"+l], errors: m["xflow_export_send_errors_total"+l],
		dropped: m["xflow_export_dropped_records_total"+l], queued: m["xflow_export_queued_records"+l],
		connects: m["xflow_export_connects_total"+l], latencyCount: m["xflow_export_latency_seconds_count"+l],
	}
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func brokerList(c *kfake.Cluster) string { return strings.Join(c.ListenAddrs(), ", ") }

func kafkaName(c *kfake.Cluster) string {
	return "kafka://" + strings.Join(c.ListenAddrs(), ",") + "/" + kafkaTopic
}

// sortFlows orders flows for comparison.
func sortFlows(fs []kflow) {
	slices.SortFunc(fs, func(a, b kflow) int { return strings.Compare(fmt.Sprintf("%+v", a), fmt.Sprintf("%+v", b)) })
}

// TestKafkaBrokersDown: all brokers down for 5 s mid-traffic, then back.
// Records within the destination's queue bound are all delivered, once,
// after the brokers return; beyond the bound they are dropped and counted
// (metrics); the daemon goes on scanning and the IPFIX destination gets
// every flow, all along.
func TestKafkaBrokersDown(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "kafkad")
	g := &gate{}
	cluster := newKafka(t, kfake.ListenFn(g.listen))
	ipfix := listenIPFIX(t, p)
	cfg := kafkaConfig(t, p, fmt.Sprintf(`    - {address: %s, protocol: ipfix}
    - protocol: kafka
      brokers: [%s]
      topic: %s
      partition_key: conversation
`, ipfix.c.Addr(), brokerList(cluster), kafkaTopic))
	const bound = 100
	r := runDaemon(t, p, cfg, Options{QueueRecords: bound})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log (kafka):\n%s", grep(r.log.String(), "kafka"))
		}
	})
	name := kafkaName(cluster)
	km := func() destMetrics { return kafkaMetrics(t, p, name, "tcp") }
	// settled: the Kafka destination was given every record the IPFIX
	// collector has (the exporter hands each batch to both).
	settled := func(e testnet.Expect) func() bool {
		return func() bool {
			return ipfix.has(e) && km().accounted() == float64(len(ipfix.all()))
		}
	}

	// Before: delivered as they come.
	sent1, err := p.SendUDP(testnet.SideB, false, 5000, 20, 3, 100)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "the first flows in Kafka", func() bool {
		return settled(sent1)() && km().records == float64(len(ipfix.all()))
	})
	atDown := len(ipfix.all())
	scansAtDown := scrapeMetrics(t, p)["xflow_scans_total"]

	g.set(true)
	downAt := time.Now()
	// Down, within the bound: all held.
	sent2, err := p.SendUDP(testnet.SideB, false, 6000, 30, 2, 100)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "the second flows at the IPFIX collector and the Kafka destination", settled(sent2))
	held := len(ipfix.all()) - atDown
	if m := km(); m.records != float64(atDown) || m.dropped != 0 || m.queued != float64(held) || held > bound {
		t.Errorf("down, %d records since: metrics %+v; want %d delivered, %d queued, none dropped", held, m, atDown, held)
	}
	// Down, beyond the bound: the rest dropped and counted. (In batches
	// the IPFIX destination's queue, of the same bound, holds at once.)
	sent3 := testnet.Expect{}
	for range 3 {
		e, err := p.SendUDP(testnet.SideB, true, 7000, 50, 2, 100)
		if err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 20*time.Second, "the third flows at the IPFIX collector and the Kafka destination", settled(e))
		sent3.Merge(e)
	}
	since := len(ipfix.all()) - atDown
	m := km()
	if m.records != float64(atDown) || m.queued != bound || m.dropped != float64(since-bound) || since <= bound {
		t.Errorf("down, %d records since: metrics %+v; want %d delivered, %d queued, %d dropped", since, m, atDown, bound, since-bound)
	}
	dropped := m.dropped
	if scans := scrapeMetrics(t, p)["xflow_scans_total"]; scans <= scansAtDown {
		t.Errorf("no scans while the brokers were down (%v, was %v)", scans, scansAtDown)
	}
	time.Sleep(time.Until(downAt.Add(5 * time.Second)))
	g.set(false)
	t.Logf("brokers down %v", time.Since(downAt).Round(time.Millisecond))

	// Back: the queue drains; nothing more is lost.
	waitUntil(t, 30*time.Second, "the Kafka queue to drain", func() bool { return km().queued == 0 })
	m = km()
	total := len(ipfix.all())
	if m.records != float64(total)-dropped || m.dropped != dropped || m.errors != 0 || m.latencyCount != m.records || m.messages != m.records || m.bytes == 0 {
		t.Errorf("after: metrics %+v; want %d delivered, %v dropped, latency count = records", m, total-int(dropped), dropped)
	}
	t.Logf("kafka metrics after: %+v", m)
	r.stop()

	// The IPFIX destination got every flow, exactly.
	want := testnet.Expect{}
	for _, e := range []testnet.Expect{sent1, sent2, sent3} {
		want.Merge(e)
	}
	got := testnet.Expect{}
	ipfixAll := ipfix.all()
	for _, f := range ipfixAll {
		got.Add(testnet.FlowID{Src: netip.MustParseAddr(f.src), Dst: netip.MustParseAddr(f.dst), SrcPort: f.sport,
			DstPort: f.dport, Proto: f.proto, VLAN: f.vlan}, testnet.Count{Packets: f.packets, Bytes: f.bytes})
	}
	if mism, extra := testnet.Diff(want, got); len(mism) > 0 || len(extra) > 0 {
		t.Errorf("IPFIX collector: %d mismatches, %d unexpected flows: %v %v", len(mism), len(extra), mism, extra)
	}
	if st := ipfix.c.Stats(); st.SequenceGaps != 0 || st.MissingTemplate != 0 {
		t.Errorf("IPFIX collector: %+v", st)
	}

	// Kafka: each record once, each equal to one the IPFIX collector
	// decoded; every record from before the outage and within the bound
	// is there; the only ones missing are the dropped ones.
	kafka := consumeKafka(t, len(ipfixAll)-int(dropped), cluster.ListenAddrs())
	if len(kafka) != len(ipfixAll)-int(dropped) {
		t.Errorf("Kafka has %d records, want %d (%d at the IPFIX collector, %v dropped)", len(kafka), len(ipfixAll)-int(dropped), len(ipfixAll), dropped)
	}
	left := map[kflow]int{}
	for _, f := range ipfixAll {
		left[f]++
	}
	for _, f := range kafka {
		if left[f] == 0 {
			t.Errorf("in Kafka, not (or not as often) at the IPFIX collector: %+v", f)
			continue
		}
		left[f]--
	}
	for f, n := range left {
		if n > 0 && f.dport != 7000 {
			t.Errorf("lost (not beyond the bound): %+v", f)
		}
	}
}

// kafkaCA writes a CA's certificate to dir and returns it with a server
// certificate it signed for 127.0.0.1.
func kafkaCA(t *testing.T, dir string) (caFile string, server tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xflow kafka test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kafka"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
}

// TestKafkaTLSSCRAM: a Kafka destination over TLS with SASL/SCRAM-SHA-512
// (the password in a file) delivers every flow the IPFIX collector
// decoded, record for record; with a wrong password nothing is delivered,
// the log says why in an error naming the collector, and the daemon and
// the IPFIX destination go on.
func TestKafkaTLSSCRAM(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	caFile, server := kafkaCA(t, dir)
	cluster := newKafka(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{server}}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "xflow", "s3cret"))
	name := kafkaName(cluster)
	collectors := func(ipfix *ipfixRecords, password string) string {
		pw := filepath.Join(t.TempDir(), "kafka.pass")
		if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`    - {address: %s, protocol: ipfix}
    - protocol: kafka
      brokers: [%s]
      topic: %s
      compression: zstd
      transport: tls
      tls: {ca: %s}
      sasl: {mechanism: scram-sha-512, username: xflow, password_file: %s}
`, ipfix.c.Addr(), brokerList(cluster), kafkaTopic, caFile, pw)
	}

	t.Run("right password", func(t *testing.T) {
		p := testnet.NewPair(t, "kafkat")
		ipfix := listenIPFIX(t, p)
		r := runDaemon(t, p, kafkaConfig(t, p, collectors(ipfix, "s3cret")), Options{})
		sent := testnet.Expect{}
		for _, v6 := range []bool{false, true} {
			e, err := p.SendUDP(testnet.SideB, v6, 5000, 10, 4, 200)
			if err != nil {
				t.Fatal(err)
			}
			sent.Merge(e)
		}
		waitUntil(t, 20*time.Second, "every flow delivered to Kafka", func() bool {
			m := kafkaMetrics(t, p, name, "tls")
			return ipfix.has(sent) && m.records == float64(len(ipfix.all())) && m.queued == 0
		})
		m := kafkaMetrics(t, p, name, "tls")
		if m.dropped != 0 || m.errors != 0 || m.connects == 0 || m.latencyCount != m.records {
			t.Errorf("metrics %+v", m)
		}
		r.stop()
		want := ipfix.all()
		got := consumeKafka(t, len(want), cluster.ListenAddrs(), kgo.DialTLSConfig(&tls.Config{RootCAs: caPool(t, caFile)}),
			kgo.SASL(scram.Auth{User: "xflow", Pass: "s3cret"}.AsSha512Mechanism()))
		sortFlows(want)
		sortFlows(got)
		if !slices.Equal(got, want) {
			t.Errorf("Kafka has %d records, the IPFIX collector %d; they differ:\nkafka %+v\nipfix %+v", len(got), len(want), got, want)
		}
		t.Logf("%d records matched", len(got))
	})

	t.Run("wrong password", func(t *testing.T) {
		p := testnet.NewPair(t, "kafkaw")
		ipfix := listenIPFIX(t, p)
		r := runDaemon(t, p, kafkaConfig(t, p, collectors(ipfix, "wrong")), Options{})
		sent, err := p.SendUDP(testnet.SideB, false, 5000, 10, 2, 100)
		if err != nil {
			t.Fatal(err)
		}
		// The error: logged (at most every 10 s), naming the collector
		// and what to check.
		var line string
		waitUntil(t, 20*time.Second, "the SASL error in the log", func() bool {
			for _, l := range strings.Split(r.log.String(), "\n") {
				if strings.Contains(l, "level=ERROR") && strings.Contains(l, "collector="+name) &&
					strings.Contains(l, `SASL authentication failed: the brokers rejected user \"xflow\" with mechanism scram-sha-512: check sasl.username and the password`) {
					line = l
					return true
				}
			}
			return false
		})
		t.Logf("log: %s", line)
		// The IPFIX destination is unaffected.
		waitUntil(t, 20*time.Second, "the flows at the IPFIX collector", func() bool { return ipfix.has(sent) })
		m := kafkaMetrics(t, p, name, "tls")
		if m.records != 0 || m.accounted() != float64(len(ipfix.all())) {
			t.Errorf("metrics %+v; want nothing delivered, %d records accounted for", m, len(ipfix.all()))
		}
		r.stopWait = 2 * time.Second
		r.stop()
		if r.stopErr == nil || !strings.Contains(r.stopErr.Error(), "SASL authentication failed") {
			t.Errorf("Stop: %v; want the SASL error", r.stopErr)
		}
		t.Logf("Stop: %v", r.stopErr)
		if !strings.Contains(r.stopErr.Error(), "collector "+name+":") {
			t.Errorf("Stop: %v; want it to name the collector", r.stopErr)
		}
		if totals := grep(r.log.String(), "collector totals"); !strings.Contains(totals, "collector="+name) || !strings.Contains(totals, "dropped_records=10") {
			t.Errorf("totals:\n%s", totals)
		}
	})
}

func caPool(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatal("no CA certificate in", caFile)
	}
	return pool
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestKafkaReloadKeeps: a reload keeps a Kafka destination whose settings
// did not change (config.Collector.Equal, not ==: the settings are held
// by pointer, and each parse makes new ones), and replaces one whose did.
func TestKafkaReloadKeeps(t *testing.T) {
	parse := func(topic string) *config.Config {
		t.Helper()
		y := fmt.Sprintf(`interfaces: [{name: lo}]
export:
  collectors:
    - {address: 127.0.0.1:4739}
    - protocol: kafka
      brokers: [127.0.0.1:1, 127.0.0.1:2]
      topic: %s
      sasl: {mechanism: scram-sha-256, username: xflow, password: s3cret}
`, topic)
		cfg, err := config.Parse("xflow.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	s := &destinations{log: slog.New(slog.DiscardHandler)}
	t.Cleanup(func() { s.closeAll(time.Second) })
	if _, err := s.build(parse("flows")); err != nil {
		t.Fatal(err)
	}
	before := slices.Clone(s.entries)
	unused, err := s.build(parse("flows"))
	if err != nil {
		t.Fatal(err)
	}
	if len(unused) != 0 || len(s.entries) != 2 || s.entries[0].d != before[0].d || s.entries[1].d != before[1].d {
		t.Fatalf("the same configuration: %d unused, destinations %v, were %v", len(unused), s.entries, before)
	}
	unused, err = s.build(parse("other"))
	if err != nil {
		t.Fatal(err)
	}
	if len(unused) != 1 || unused[0] != before[1].d || s.entries[0].d != before[0].d || s.entries[1].d == before[1].d {
		t.Fatalf("another topic: unused %v, destinations %v, were %v", unused, s.entries, before)
	}
	if got := s.metrics()[1].Name; got != "kafka://127.0.0.1:1,127.0.0.1:2/other" {
		t.Errorf("metrics name %q", got)
	}
	closeAll(unused, time.Second)
}
