package kafka

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
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	flowpb "github.com/netsampler/goflow2/v2/pb"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/xflow-net/xflow/flow"
)

const (
	topic      = "flows"
	partitions = 6
)

// newCluster starts a kfake cluster of three brokers with the topic in
// several partitions.
func newCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3), kfake.SeedTopics(partitions, topic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// consumed is one Kafka record as read back.
type consumed struct {
	partition int32
	key       []byte
	value     []byte
}

// consume reads n records of the topic (all partitions, from the start),
// failing after the timeout.
func consume(t testing.TB, brokers []string, n int, timeout time.Duration, opts ...kgo.Opt) []consumed {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []consumed
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records", len(out), n)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Logf("fetch: %v", err) })
		fs.EachRecord(func(r *kgo.Record) { out = append(out, consumed{r.Partition, r.Key, r.Value}) })
	}
	// Nothing more: no duplicates.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	fs := cl.PollFetches(ctx2)
	fs.EachRecord(func(r *kgo.Record) { out = append(out, consumed{r.Partition, r.Key, r.Value}) })
	if len(out) != n {
		t.Fatalf("consumed %d records, want %d", len(out), n)
	}
	return out
}

// decode decodes a record value as goflow2's Kafka consumers do: one
// length-delimited FlowMessage (protodelim), nothing after it.
func decode(t testing.TB, v []byte) *flowpb.FlowMessage {
	t.Helper()
	var m flowpb.FlowMessage
	r := bufio.NewReader(bytes.NewReader(v))
	if err := protodelim.UnmarshalFrom(r, &m); err != nil {
		t.Fatalf("value %x: %v", v, err)
	}
	if _, err := r.ReadByte(); err == nil {
		t.Fatalf("value %x: bytes after the message", v)
	}
	return &m
}

func key(src, dst string, sport, dport uint16, proto uint8, dir flow.Direction, ifindex uint32, vlan uint16) flow.Key {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	k := flow.Key{Src: s.As16(), Dst: d.As16(), SrcPort: sport, DstPort: dport, Proto: proto, Direction: dir, IfIndex: ifindex, VLAN: vlan, IPVersion: 6}
	if s.Is4() {
		k.IPVersion = 4
	}
	return k
}

// testRecords are records of every kind: IPv4 and IPv6, TCP, UDP, ICMP
// and ICMPv6, ingress and egress, with and without a VLAN; n of them,
// every one different.
func testRecords(n int) []flow.Export {
	base := uint64(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli())
	var out []flow.Export
	for i := range n {
		var k flow.Key
		switch i % 5 {
		case 0:
			k = key("192.0.2.1", "198.51.100.7", uint16(40000+i), 443, 6, flow.Ingress, 2, 0)
		case 1:
			k = key("2001:db8::1", "2001:db8::2", 5353, uint16(1000+i), 17, flow.Egress, 3, 100)
		case 2:
			k = key("192.0.2.9", "192.0.2.10", 0, 8<<8|0, 1, flow.Ingress, 2, 0) // echo request
		case 3:
			k = key("2001:db8::9", "2001:db8::a", 0, 129<<8|0, 58, flow.Egress, 3, 4094) // echo reply
		case 4:
			k = key("10.1.2.3", "10.3.2.1", uint16(i), 53, 17, flow.Egress, 7, 0) // an interface without a name
		}
		out = append(out, flow.Export{
			Key: k, Packets: uint64(i + 1), Bytes: uint64(100 * (i + 1)),
			StartMs: base + uint64(i), EndMs: base + uint64(i) + 1500,
			TCPFlags: uint16(i % 512), TOS: uint8(i % 256), EndReason: flow.EndReason(1 + i%5),
		})
	}
	return out
}

var testIfaces = []flow.Interface{{Index: 2, Name: "eth0"}, {Index: 3, Name: "eth1.100"}}

// want is the FlowMessage of rec, written out field by field here rather
// than by the code under test.
func want(rec flow.Export, domain uint32, sampler []byte) *flowpb.FlowMessage {
	k := rec.Key
	m := &flowpb.FlowMessage{
		Type: flowpb.FlowMessage_IPFIX, SamplingRate: 1, SamplerAddress: sampler,
		TimeFlowStartNs: rec.StartMs * 1_000_000, TimeFlowEndNs: rec.EndMs * 1_000_000,
		Bytes: rec.Bytes, Packets: rec.Packets,
		SrcAddr: k.SrcAddr().AsSlice(), DstAddr: k.DstAddr().AsSlice(),
		Proto: uint32(k.Proto), SrcPort: uint32(k.SrcPort), DstPort: uint32(k.DstPort),
		VlanId: uint32(k.VLAN), SrcVlan: uint32(k.VLAN), IpTos: uint32(rec.TOS), TcpFlags: uint32(rec.TCPFlags),
		ObservationDomainId: domain,
	}
	m.Etype = 0x86dd
	if k.IPVersion == 4 {
		m.Etype = 0x800
	}
	if k.Proto == 1 || k.Proto == 58 {
		m.IcmpType, m.IcmpCode = uint32(k.DstPort>>8), uint32(k.DstPort&0xff)
	}
	if k.Direction == flow.Egress {
		m.OutIf = k.IfIndex
	} else {
		m.InIf = k.IfIndex
	}
	return m
}

// customFields reads xflow's custom fields from a decoded message's
// unknown fields.
func customFields(t testing.TB, m *flowpb.FlowMessage) map[protowire.Number]any {
	t.Helper()
	out := map[protowire.Number]any{}
	b := m.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("unknown fields %x", m.ProtoReflect().GetUnknown())
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			out[num], b = v, b[n:]
		case protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			out[num], b = v, b[n:]
		default:
			t.Fatalf("unexpected wire type %v", typ)
		}
	}
	return out
}

func wantCustom(rec flow.Export) map[protowire.Number]any {
	out := map[protowire.Number]any{}
	if rec.Key.Direction != 0 {
		out[FieldFlowDirection] = uint64(rec.Key.Direction)
	}
	if rec.EndReason != 0 {
		out[FieldFlowEndReason] = uint64(rec.EndReason)
	}
	for _, i := range testIfaces {
		if i.Index == rec.Key.IfIndex {
			if rec.Key.Direction == flow.Egress {
				out[FieldOutIfName] = i.Name
			} else {
				out[FieldInIfName] = i.Name
			}
		}
	}
	return out
}

func start(t testing.TB, o Options) *Destination {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Close(ctx)
	})
	return d
}

func closeDest(t testing.TB, d *Destination, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.Close(ctx)
}

// Every record arrives once, and decodes with goflow2's package to
// exactly the fields of the record it came from.
func TestProtobufMessages(t *testing.T) {
	c := newCluster(t)
	recs := testRecords(500)
	sampler := netip.MustParseAddr("192.0.2.254")
	d := start(t, Options{Brokers: c.ListenAddrs(), Topic: topic, ObservationDomain: 77,
		SamplerAddress: sampler, Interfaces: testIfaces, Compression: "zstd"})
	before := time.Now()
	d.Enqueue(recs[:200])
	d.Enqueue(recs[200:])
	if err := closeDest(t, d, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	st := d.Totals()
	if st.Records != 500 || st.Dropped != 0 || st.Errors != 0 || st.Queued != 0 || st.Latency.Count != 500 {
		t.Errorf("stats %+v", st)
	}
	// The same totals as every destination's (the daemon's metrics).
	if ss := d.Stats(); ss.Records != 500 || ss.Messages != 500 || ss.DroppedRecords != 0 || ss.Queued != 0 ||
		ss.Latency.Count != 500 || len(ss.Latency.Bounds) != len(ss.Latency.Counts) || ss.Latency.Counts[len(ss.Latency.Counts)-1] != 500 {
		t.Errorf("sink stats %+v", ss)
	}
	got := consume(t, c.ListenAddrs(), len(recs), 10*time.Second)
	var size uint64
	seen := map[uint32]bool{}
	parts := map[int32]bool{}
	for _, r := range got {
		size += uint64(len(r.value))
		parts[r.partition] = true
		m := decode(t, r.value)
		if seen[m.SequenceNum] {
			t.Fatalf("sequence number %d twice", m.SequenceNum)
		}
		seen[m.SequenceNum] = true
		rec := recs[m.SequenceNum] // one destination, one sequence: record i is number i
		if m.TimeReceivedNs < uint64(before.UnixNano()) || m.TimeReceivedNs > uint64(after.UnixNano()) {
			t.Errorf("time_received_ns %d not between %v and %v", m.TimeReceivedNs, before, after)
		}
		if r.key != nil {
			t.Errorf("partition_key none: record has key %x", r.key)
		}
		if c := customFields(t, m); fmt.Sprint(c) != fmt.Sprint(wantCustom(rec)) {
			t.Errorf("record %d custom fields %v, want %v", m.SequenceNum, c, wantCustom(rec))
		}
		m.TimeReceivedNs, m.SequenceNum = 0, 0
		m.ProtoReflect().SetUnknown(nil)
		if w := want(rec, 77, []byte{192, 0, 2, 254}); !proto.Equal(m, w) {
			t.Errorf("record %d:\n got %v\nwant %v", m.SequenceNum, m, w)
		}
	}
	if st.Bytes != size {
		t.Errorf("stats bytes %d, consumed %d", st.Bytes, size)
	}
	// Without a key the client fills one partition's batch at a time
	// (sticky partitioning): a run this small may use one partition.
	t.Logf("partitions used: %v", parts)
}

// format json: the same fields, one JSON object per record.
func TestJSONMessages(t *testing.T) {
	c := newCluster(t)
	recs := testRecords(100)
	d := start(t, Options{Brokers: c.ListenAddrs(), Topic: topic, Format: "json", ObservationDomain: 5, Interfaces: testIfaces})
	d.Enqueue(recs)
	if err := closeDest(t, d, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, r := range consume(t, c.ListenAddrs(), len(recs), 10*time.Second) {
		var obj map[string]any
		dec := json.NewDecoder(bytes.NewReader(r.value))
		dec.UseNumber()
		if err := dec.Decode(&obj); err != nil || dec.More() {
			t.Fatalf("value %s: %v", r.value, err)
		}
		n := func(k string) uint64 {
			v, ok := obj[k].(json.Number)
			if !ok {
				t.Fatalf("%s: %v is not a number in %s", k, obj[k], r.value)
			}
			var u uint64
			fmt.Sscan(v.String(), &u)
			return u
		}
		str := func(k string) string {
			v, ok := obj[k].(string)
			if !ok {
				t.Fatalf("%s: %v is not a string in %s", k, obj[k], r.value)
			}
			return v
		}
		rec := recs[n("sequence_num")]
		if len(obj) != 28 {
			t.Errorf("%d keys in %s, want 28", len(obj), r.value)
		}
		// Rebuild the FlowMessage from the JSON and compare it as the
		// protobuf test does.
		m := &flowpb.FlowMessage{
			Type: flowpb.FlowMessage_FlowType(flowpb.FlowMessage_FlowType_value[str("type")]), SamplingRate: n("sampling_rate"),
			TimeFlowStartNs: n("time_flow_start_ns"), TimeFlowEndNs: n("time_flow_end_ns"), Bytes: n("bytes"), Packets: n("packets"),
			SrcAddr: netip.MustParseAddr(str("src_addr")).AsSlice(), DstAddr: netip.MustParseAddr(str("dst_addr")).AsSlice(),
			Etype: uint32(n("etype")), Proto: uint32(n("proto")), SrcPort: uint32(n("src_port")), DstPort: uint32(n("dst_port")),
			InIf: uint32(n("in_if")), OutIf: uint32(n("out_if")), VlanId: uint32(n("vlan_id")), SrcVlan: uint32(n("src_vlan")),
			IpTos: uint32(n("ip_tos")), TcpFlags: uint32(n("tcp_flags")), IcmpType: uint32(n("icmp_type")), IcmpCode: uint32(n("icmp_code")),
			ObservationDomainId: uint32(n("observation_domain_id")),
		}
		if w := want(rec, 5, nil); !proto.Equal(m, w) || str("sampler_address") != "" || n("time_received_ns") == 0 {
			t.Errorf("%s\n got %v\nwant %v", r.value, m, w)
		}
		custom := wantCustom(rec)
		if n("flow_direction") != uint64(rec.Key.Direction) || n("flow_end_reason") != uint64(rec.EndReason) ||
			str("in_if_name") != fmt.Sprint(or(custom[FieldInIfName], "")) || str("out_if_name") != fmt.Sprint(or(custom[FieldOutIfName], "")) {
			t.Errorf("%s: custom fields, want %v", r.value, custom)
		}
	}
}

func or(v, def any) any {
	if v == nil {
		return def
	}
	return v
}

// partition_key addresses and conversation: both directions of a
// conversation land in one partition, and conversations spread.
func TestPartitionKey(t *testing.T) {
	for _, kind := range []string{"addresses", "conversation"} {
		t.Run(kind, func(t *testing.T) {
			c := newCluster(t)
			var recs []flow.Export
			for i := range 50 {
				a, b := fmt.Sprintf("192.0.2.%d", i+1), fmt.Sprintf("198.51.100.%d", 200-i)
				fwd := key(a, b, uint16(30000+i), 443, 6, flow.Ingress, 2, 0)
				rev := key(b, a, 443, uint16(30000+i), 6, flow.Egress, 2, 0)
				ping := key(a, b, 0, 8<<8, 1, flow.Ingress, 2, 0)
				pong := key(b, a, 0, 0, 1, flow.Egress, 2, 0)
				for _, k := range []flow.Key{fwd, rev, ping, pong} {
					recs = append(recs, flow.Export{Key: k, Packets: 1, Bytes: 60})
				}
			}
			d := start(t, Options{Brokers: c.ListenAddrs(), Topic: topic, PartitionKey: kind})
			d.Enqueue(recs)
			if err := closeDest(t, d, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			type conv struct{ a, b string }
			where := map[conv]int32{}
			parts := map[int32]bool{}
			for _, r := range consume(t, c.ListenAddrs(), len(recs), 10*time.Second) {
				m := decode(t, r.value)
				if len(r.key) == 0 {
					t.Fatal("record without key")
				}
				a, _ := netip.AddrFromSlice(m.SrcAddr)
				b, _ := netip.AddrFromSlice(m.DstAddr)
				cv := conv{a.String(), b.String()}
				if b.Less(a) {
					cv = conv{b.String(), a.String()}
				}
				if kind == "conversation" { // TCP and ICMP are two conversations
					cv.b += fmt.Sprint("/", m.Proto)
				}
				if p, ok := where[cv]; ok && p != r.partition {
					t.Errorf("%v in partitions %d and %d", cv, p, r.partition)
				}
				where[cv] = r.partition
				parts[r.partition] = true
			}
			if len(parts) < 3 {
				t.Errorf("50 conversations in %d partitions", len(parts))
			}
		})
	}
	// The keys themselves: symmetric, and conversation tells ports apart.
	fwd := key("192.0.2.1", "192.0.2.2", 1000, 80, 6, 0, 1, 0)
	rev := key("192.0.2.2", "192.0.2.1", 80, 1000, 6, 0, 1, 0)
	other := key("192.0.2.1", "192.0.2.2", 1001, 80, 6, 0, 1, 0)
	for _, kind := range []string{"addresses", "conversation"} {
		if !bytes.Equal(partitionKey(nil, kind, &fwd), partitionKey(nil, kind, &rev)) {
			t.Errorf("%s: key not symmetric", kind)
		}
	}
	if bytes.Equal(partitionKey(nil, "conversation", &fwd), partitionKey(nil, "conversation", &other)) {
		t.Error("conversation: other source port, same key")
	}
	if !bytes.Equal(partitionKey(nil, "addresses", &fwd), partitionKey(nil, "addresses", &other)) {
		t.Error("addresses: other source port, other key")
	}
	if partitionKey(nil, "none", &fwd) != nil {
		t.Error("none: a key")
	}
}

// testCerts returns a server TLS configuration for 127.0.0.1 and a client
// configuration trusting its CA.
func testCerts(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xflow test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kafka"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// TLS and SASL/SCRAM: records arrive; wrong credentials or an untrusted
// certificate deliver nothing and say why.
func TestTLSAndSCRAM(t *testing.T) {
	server, client := testCerts(t)
	c := newCluster(t, kfake.TLS(server), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "xflow", "s3cret"),
		kfake.Superuser("SCRAM-SHA-256", "xflow256", "other"))
	recs := testRecords(50)
	for _, mech := range []SASL{{"scram-sha-512", "xflow", "s3cret"}, {"scram-sha-256", "xflow256", "other"}} {
		d := start(t, Options{Brokers: c.ListenAddrs(), Topic: topic, TLS: client, SASL: mech})
		d.Enqueue(recs)
		if err := closeDest(t, d, 10*time.Second); err != nil {
			t.Fatalf("%s: %v", mech.Mechanism, err)
		}
		if st := d.Totals(); st.Records != 50 || st.Errors != 0 || st.ConnectErrors != 0 {
			t.Errorf("%s: stats %+v", mech.Mechanism, st)
		}
	}
	got := consume(t, c.ListenAddrs(), 100, 10*time.Second, kgo.DialTLSConfig(client),
		kgo.SASL(SASL{"scram-sha-512", "xflow", "s3cret"}.mechanism()))
	for _, r := range got {
		decode(t, r.value)
	}

	t.Run("wrong password", func(t *testing.T) {
		d := start(t, Options{Brokers: c.ListenAddrs(), Topic: topic, TLS: client, SASL: SASL{"scram-sha-512", "xflow", "wrong"}})
		d.Enqueue(recs)
		waitFor(t, 10*time.Second, func() bool { return d.Totals().ConnectErrors > 0 })
		st := d.Totals()
		if !strings.Contains(st.LastError, `SASL authentication failed: the brokers rejected user "xflow" with mechanism scram-sha-512: check sasl.username and the password`) {
			t.Errorf("last error %q", st.LastError)
		}
		err := closeDest(t, d, time.Second)
		if st := d.Totals(); err == nil || !strings.Contains(err.Error(), "SASL authentication failed") || st.Records != 0 || st.Dropped != 50 {
			t.Errorf("Close = %v, stats %+v; want an error and 50 dropped", err, st)
		}
		t.Logf("Close: %v", err)
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		_, other := testCerts(t)
		d := start(t, Options{Brokers: c.ListenAddrs(), Topic: topic, TLS: other, SASL: SASL{"scram-sha-512", "xflow", "s3cret"}})
		d.Enqueue(recs)
		waitFor(t, 10*time.Second, func() bool { return d.Totals().ConnectErrors > 0 })
		if st := d.Totals(); !strings.Contains(st.LastError, "TLS: the broker's certificate is not trusted") {
			t.Errorf("last error %q", st.LastError)
		}
	})
}

func waitFor(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gate is a listener whose connections can be cut: while down, every
// connection is closed at once (a broker that is down, as its clients
// see it).
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

// All brokers down for 5 s mid-traffic, then back: every record within the
// queue bound arrives, once; beyond it records are dropped and counted.
func TestBrokersDown(t *testing.T) {
	g := &gate{}
	c := newCluster(t, kfake.ListenFn(g.listen))
	const bound = 3000
	d := start(t, Options{Brokers: c.ListenAddrs(), Topic: topic, QueueRecords: bound, PartitionKey: "conversation"})
	recs := testRecords(5000)
	d.Enqueue(recs[:1000])
	waitFor(t, 10*time.Second, func() bool { return d.Totals().Records == 1000 })

	g.set(true)
	downAt := time.Now()
	// While down: 1000 records a second for 5 s; the queue holds 3000.
	sent := 1000
	for sent < 5000 {
		d.Enqueue(recs[sent : sent+500])
		sent += 500
		time.Sleep(500 * time.Millisecond)
	}
	st := d.Totals()
	if st.Records != 1000 || st.Queued != bound || st.Dropped != 1000 {
		t.Errorf("while down: stats %+v; want 1000 delivered, %d queued, 1000 dropped", st, bound)
	}
	time.Sleep(time.Until(downAt.Add(5 * time.Second)))
	g.set(false)
	waitFor(t, 30*time.Second, func() bool { return d.Totals().Queued == 0 })
	if err := closeDest(t, d, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st = d.Totals()
	if st.Records != 4000 || st.Dropped != 1000 || st.Errors != 0 {
		t.Errorf("after: stats %+v; want 4000 delivered, 1000 dropped", st)
	}
	// Exactly the first 4000 records, each once (the idempotent producer
	// does not duplicate the batches it retried).
	seen := map[uint32]bool{}
	for _, r := range consume(t, c.ListenAddrs(), 4000, 20*time.Second) {
		m := decode(t, r.value)
		if seen[m.SequenceNum] {
			t.Fatalf("record %d twice", m.SequenceNum)
		}
		seen[m.SequenceNum] = true
	}
	for i := range uint32(4000) {
		if !seen[i] {
			t.Fatalf("record %d lost", i)
		}
	}
	t.Logf("connects %d, connect errors %d, latency count %d last %v", st.Connects, st.ConnectErrors, st.Latency.Count, st.Latency.Last)
}

// Enqueue never blocks and does not keep the caller's slice.
func TestEnqueueCopies(t *testing.T) {
	g := &gate{}
	g.set(true)
	c := newCluster(t, kfake.ListenFn(g.listen))
	d := start(t, Options{Brokers: c.ListenAddrs(), Topic: topic, QueueRecords: 10})
	recs := testRecords(20)
	done := make(chan struct{})
	go func() {
		d.Enqueue(recs)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Enqueue blocked")
	}
	for i := range recs {
		recs[i] = flow.Export{}
	}
	g.set(false)
	if err := closeDest(t, d, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, r := range consume(t, c.ListenAddrs(), 10, 10*time.Second) {
		m := decode(t, r.value)
		if m.Packets != uint64(m.SequenceNum+1) {
			t.Errorf("record %d: packets %d: the caller's slice was kept", m.SequenceNum, m.Packets)
		}
	}
	if st := d.Totals(); st.Dropped != 10 {
		t.Errorf("dropped %d, want 10", st.Dropped)
	}
}

// A sampled record carries its own rate; one without takes the
// destination's (1 unless configured).
func TestSamplingRate(t *testing.T) {
	e := newEncoder("protobuf", 1, 0, netip.Addr{}, nil)
	var m flowpb.FlowMessage
	rec := flow.Export{Packets: 3, Bytes: 300}
	e.fill(&m, &rec, 0, 0)
	if m.SamplingRate != 1 {
		t.Errorf("unsampled record: sampling_rate %d, want 1", m.SamplingRate)
	}
	rec.Sampling = flow.Sampling(uint16(flow.SampleDeterministic)<<14 | 10)
	e.fill(&m, &rec, 0, 0)
	if m.SamplingRate != 10 {
		t.Errorf("1:10 record: sampling_rate %d, want 10", m.SamplingRate)
	}
	e = newEncoder("json", 1, 100, netip.Addr{}, nil)
	rec.Sampling = 0
	e.fill(&m, &rec, 0, 0)
	if m.SamplingRate != 100 {
		t.Errorf("configured rate: sampling_rate %d, want 100", m.SamplingRate)
	}
}
