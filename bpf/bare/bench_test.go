package bare

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/internal/testenv"
)

// benchFrame is an IPv4 TCP frame of 64 bytes of payload.
func benchFrame(tb testing.TB) []byte {
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

// xdpPass is the baseline: an XDP program that only returns XDP_PASS.
func xdpPass(tb testing.TB) *ebpf.Program {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

func runBench(b *testing.B, p *ebpf.Program, frame []byte, warmup int) {
	b.Helper()
	if warmup > 0 {
		if _, _, err := p.Benchmark(frame, warmup, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	ret, per, err := p.Benchmark(frame, b.N, nil)
	if err != nil {
		b.Fatal(err)
	}
	want := ^uint32(0) // TC_ACT_UNSPEC (-1)
	if p.Type() == ebpf.XDP {
		want = 2 // XDP_PASS
	}
	if ret != want {
		b.Fatalf("program returned %d", ret)
	}
	b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
}

// BenchmarkDataPlane measures the real XDP program per packet, for each
// map kind, at 1 and 64Ki flows, beside the bare map update of the same
// kind and size (bare.c) and two baselines: XDP_PASS, and the program
// stopped before the store (parse only). Flows are made by the
// benchmark-only rotation of the source address; a warm-up of exactly as
// many packets as flows creates them all, so every timed packet is an
// update. `xflow-bench` measures the same, and more, with medians.
func BenchmarkDataPlane(b *testing.B) {
	testenv.RequireRoot(b)
	frame := benchFrame(b)
	b.Run("xdp_pass", func(b *testing.B) { runBench(b, xdpPass(b), frame, 0) })
	b.Run("parse_only", func(b *testing.B) {
		d, err := LoadDatapath(DatapathOptions{Options: bpf.Options{Kind: bpf.KindPerCPUHash, MaxFlows: 1},
			RotateFlows: 1, ParseOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		runBench(b, d.Programs().XDP, frame, 0)
	})
	for _, k := range bpf.Kinds() {
		for _, flows := range []uint32{1, 65536} {
			opts := bpf.Options{Kind: k, MaxFlows: StoreSize(k, flows), RingSize: 1 << 26}
			b.Run(fmt.Sprintf("%s/flows=%d/bare", k, flows), func(b *testing.B) {
				bare, err := Load(Options{Kind: k, MaxFlows: opts.MaxFlows, RingSize: opts.RingSize, RotateFlows: flows})
				if err != nil {
					b.Fatal(err)
				}
				defer bare.Close()
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- bare.RunRing(ctx) }()
				runBench(b, bare.XDP(), frame, int(flows))
				cancel()
				if err := <-done; err != nil {
					b.Error(err)
				}
			})
			b.Run(fmt.Sprintf("%s/flows=%d/xflow", k, flows), func(b *testing.B) {
				d, err := LoadDatapath(DatapathOptions{Options: opts, RotateFlows: flows})
				if err != nil {
					b.Fatal(err)
				}
				defer d.Close()
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- d.RunRing(ctx) }()
				runBench(b, d.Programs().XDP, frame, int(flows))
				cancel()
				if err := <-done; err != nil {
					b.Error(err)
				}
			})
		}
	}
}
