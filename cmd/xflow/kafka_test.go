package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	flowpb "github.com/netsampler/goflow2/v2/pb"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/xflow-net/xflow/collector"
	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/internal/testnet"
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

func (f kflow) String() string {
	type fields kflow // without this method
	return fmt.Sprintf("%+v", fields(f))
}

// TestExportKafka runs `xflow run` with an IPFIX collector and a Kafka
// destination (a kfake cluster of three brokers, a topic of six
// partitions): every record the IPFIX collector decoded is in Kafka, as a
// FlowMessage that goflow2's package decodes to the same fields, and no
// other; /metrics shows the Kafka destination's records, bytes, drops,
// errors, queue and produce latency under its name.
func TestExportKafka(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xk")
	var mu sync.Mutex
	var ipfixFlows []kflow
	coll := listenCollector(t, p, "udp://127.0.0.1:0", nil, func(r collector.Record) {
		mu.Lock()
		defer mu.Unlock()
		ipfixFlows = append(ipfixFlows, kflow{r.Src, r.Dst, r.SrcPort, r.DstPort, r.Proto, r.Packets, r.Bytes,
			r.Start, r.End, r.TCPFlags, r.TOS, r.VLAN, r.IfIndex, r.Direction == "egress", r.ObservationDomain})
	})
	var cluster *kfake.Cluster
	if err := p.Do(p.NSA, func() (err error) {
		cluster, err = kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(6, "flows"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc}
pin_path: %s
timeouts: {inactive: 300ms, scan_interval: 100ms}
export:
  observation_domain: 42
  collectors:
    - {address: %s, protocol: ipfix}
    - protocol: kafka
      brokers: [%s]
      topic: flows
      partition_key: conversation
`, p.NameA, pinDir(t), coll.Addr(), strings.Join(cluster.ListenAddrs(), ", ")))
	d := startDaemon(t, p, cfg)
	for _, v6 := range []bool{false, true} {
		if _, err := p.SendUDP(testnet.SideB, v6, 5000, 20, 5, 100); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.SendICMPEcho(testnet.SideB, true, 3, 56); err != nil {
		t.Fatal(err)
	}
	if _, err := p.TCPExchange(false, 10000, 20000); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	// /metrics shows the Kafka destination under its name: every record
	// the IPFIX collector has, delivered, with its produce latency.
	l := fmt.Sprintf(`{collector="kafka://%s/flows",protocol="kafka",transport="tcp"}`, strings.Join(cluster.ListenAddrs(), ","))
	var m map[string]float64
	waitFor(t, 10*time.Second, "the Kafka destination's records in /metrics", func() bool {
		m = scrape(t, p, "127.0.0.1:9180")
		mu.Lock()
		n := len(ipfixFlows)
		mu.Unlock()
		return n > 0 && m["xflow_export_records_total"+l] == float64(n) && m["xflow_export_queued_records"+l] == 0
	})
	if m["xflow_export_dropped_records_total"+l] != 0 || m["xflow_export_send_errors_total"+l] != 0 ||
		m["xflow_export_latency_seconds_count"+l] != m["xflow_export_records_total"+l] || m["xflow_export_bytes_total"+l] == 0 {
		t.Errorf("Kafka metrics:\n%s", grepMetrics(m, l))
	}
	t.Logf("Kafka metrics:\n%s", grepMetrics(m, l))
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("xflow run: %v\n%s", err, d.stderr)
	}
	time.Sleep(200 * time.Millisecond)
	coll.Close()
	mu.Lock()
	want := slices.Clone(ipfixFlows)
	mu.Unlock()
	if len(want) == 0 {
		t.Fatalf("the IPFIX collector received nothing\n%s", d.stderr)
	}

	var got []kflow
	if err := p.Do(p.NSA, func() error {
		// The client's goroutines run on threads outside side A's
		// namespace: dial from inside it.
		dial := func(ctx context.Context, network, host string) (c net.Conn, err error) {
			err = p.Do(p.NSA, func() (err error) {
				c, err = (&net.Dialer{}).DialContext(ctx, network, host)
				return err
			})
			return c, err
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("flows"),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.Dialer(dial))
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				var m flowpb.FlowMessage
				if err := protodelim.UnmarshalFrom(bufio.NewReader(bytes.NewReader(r.Value)), &m); err != nil {
					t.Errorf("record %x: %v", r.Value, err)
					return
				}
				got = append(got, fromMessage(&m))
			})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sortFlows := func(fs []kflow) {
		slices.SortFunc(fs, func(a, b kflow) int { return strings.Compare(a.String(), b.String()) })
	}
	sortFlows(want)
	sortFlows(got)
	if !slices.Equal(got, want) {
		t.Errorf("Kafka has %d records, the IPFIX collector %d; they differ\n%s", len(got), len(want), grepLines(d.stderr.String(), "kafka|totals"))
		for i := range max(len(got), len(want)) {
			var g, w kflow
			if i < len(got) {
				g = got[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Errorf("#%d\nkafka %v\nipfix %v", i, g, w)
			}
		}
	}
	if !strings.Contains(d.stderr.String(), "kafka://") {
		t.Errorf("no kafka destination in the log:\n%s", d.stderr)
	}
	t.Logf("%d records matched", len(got))
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

// grepMetrics lists the metrics with labels l.
func grepMetrics(m map[string]float64, l string) string {
	var out []string
	for k, v := range m {
		if strings.HasSuffix(k, l) {
			out = append(out, fmt.Sprintf("%s %v", strings.TrimSuffix(k, l), v))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}
