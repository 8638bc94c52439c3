package bpf

import (
	"context"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xflow-net/xflow/flow"
	"github.com/xflow-net/xflow/internal/testenv"
)

// tcpFrame is an IPv4 TCP frame of 64 bytes of payload.
func tcpFrame(tb testing.TB) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	tcp := &layers.TCP{SrcPort: 1000, DstPort: 80, ACK: true, PSH: true, Window: 1000}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, tcp, gopacket.Payload(make([]byte, 64))); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func loadKind(t testing.TB, kind Kind, maxFlows uint32) *Datapath {
	t.Helper()
	testenv.RequireRoot(t)
	d, err := Load(Options{Kind: kind, MaxFlows: maxFlows, RingSize: 1 << 20})
	if err != nil {
		t.Fatalf("load %s: %v", kind, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// drainRing consumes the ring buffer in the background (as the daemon
// does) until the returned stop is called.
func drainRing(tb testing.TB, d *Datapath) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.RunRing(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("ring consumer: %v", err)
		}
	}
}

// drain runs the scan's drain steps once (swap, read, clear) and returns
// the number of entries read.
func drain(t testing.TB, d *Datapath, fn func(*flow.Key, *flow.Value)) int {
	t.Helper()
	dr, err := d.Swap()
	if err != nil {
		t.Fatal(err)
	}
	n, err := d.Read(dr, fn)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Clear(dr); err != nil {
		t.Fatal(err)
	}
	return n
}
