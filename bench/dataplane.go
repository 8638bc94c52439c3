package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/bpf/bare"
)

// DataPlaneResult is part 1: ns per packet of the production XDP and TC
// programs for every map kind, flow count and frame type, beside the
// baselines (XDP_PASS, parse-only) and the bare map update of each kind.
//
// Every program runs with BPF_PROG_TEST_RUN on one CPU. Flows are made by
// the data plane's benchmark-only key rotation (bare.DatapathOptions.RotateFlows):
// a warm-up of exactly as many packets as flows creates every flow, so
// each measured packet updates an existing one. A packet's cost is the
// thread's CPU time over the packets the program really ran, so time the
// machine gave to other work is not counted.
type DataPlaneResult struct {
	Runs   int      `json:"runs"`
	Quick  bool     `json:"quick,omitempty"`
	Kinds  []string `json:"kinds"`
	Flows  []uint32 `json:"flows"`
	Frames []string `json:"frames"`
	Hooks  []string `json:"hooks"`

	Baselines []DataPlaneBaseline `json:"baselines"`
	Bare      []DataPlaneBare     `json:"bare"`
	Cells     []DataPlaneCell     `json:"cells"`
}

// DataPlaneBaseline is a program that does less than xflow: "pass" returns
// at once (XDP_PASS, or TC_ACT_UNSPEC), "parse_only" is xflow's program
// stopped after the flow key is filled in, before the store.
type DataPlaneBaseline struct {
	Name        string `json:"name"`
	Hook        string `json:"hook"`
	Frame       string `json:"frame"`
	Packets     int    `json:"packets_per_run"`
	NsPerPacket Stat   `json:"ns_per_packet"`
}

// DataPlaneBare is the bare map update of one kind and flow count
// (bpf/bare/bare.c) on one hook: every run measured beside the cells of that
// kind, flow count and hook.
type DataPlaneBare struct {
	Kind        string  `json:"kind"`
	Flows       uint32  `json:"flows"`
	Hook        string  `json:"hook"`
	NsPerPacket Stat    `json:"ns_per_packet"`
	Counted     float64 `json:"counted"` // of the kind and flow count, both hooks
}

// DataPlaneCell is the production program for one kind, flow count, frame
// and hook.
type DataPlaneCell struct {
	Kind    string `json:"kind"`
	Flows   uint32 `json:"flows"`
	Frame   string `json:"frame"`
	Hook    string `json:"hook"`
	Packets int    `json:"packets_per_run"`
	// NsPerPacket is xflow's program; BareNsPerPacket the bare update of
	// the same kind, flow count and hook, run after each of its runs;
	// RatioToBare the ratio of each run to the bare run beside it.
	NsPerPacket     Stat `json:"ns_per_packet"`
	BareNsPerPacket Stat `json:"bare_ns_per_packet"`
	RatioToBare     Stat `json:"ratio_to_bare"`
	// Sent is how many packets the program ran (warm-up included); Stored
	// how many the store held afterwards (ringbuf: what the consumer
	// aggregated); Counted is Stored/Sent.
	Sent    uint64  `json:"sent"`
	Stored  uint64  `json:"stored"`
	Counted float64 `json:"counted"`
}

var (
	dpFlowsFull  = []uint32{1, 1 << 10, 1 << 16, 1 << 20}
	dpFlowsQuick = []uint32{1, 1 << 10}
	dpHooks      = []string{"xdp", "tc"}
)

const (
	dpRunTime     = 15 * time.Millisecond // each measured run, about
	dpCalibrate   = 20000                 // packets run to size the runs
	dpMinPackets  = 20000
	dpMaxPackets  = 2000000
	dpQuickPacket = 2000
	dpRingSize    = 1 << 27 // ringbuf: 128 MiB, a few runs' records
)

type dpFrame struct {
	name string
	data []byte
}

// dpFrames are the frames measured: IPv4 TCP, IPv6 UDP, and IPv4 TCP in
// one 802.1Q tag, each with 64 bytes of payload.
func dpFrames() ([]dpFrame, error) {
	mac1, mac2 := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	ip4 := func() *layers.IPv4 {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	}
	build := func(net gopacket.NetworkLayer, ls ...gopacket.SerializableLayer) ([]byte, error) {
		for _, l := range ls {
			switch t := l.(type) {
			case *layers.TCP:
				if err := t.SetNetworkLayerForChecksum(net); err != nil {
					return nil, err
				}
			case *layers.UDP:
				if err := t.SetNetworkLayerForChecksum(net); err != nil {
					return nil, err
				}
			}
		}
		buf := gopacket.NewSerializeBuffer()
		ls = append(ls, gopacket.Payload(make([]byte, 64)))
		err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...)
		return buf.Bytes(), err
	}
	tcp := func() *layers.TCP { return &layers.TCP{SrcPort: 1000, DstPort: 80, ACK: true, PSH: true, Window: 1000} }

	var frames []dpFrame
	v4 := ip4()
	f, err := build(v4, &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeIPv4}, v4, tcp())
	if err != nil {
		return nil, err
	}
	frames = append(frames, dpFrame{"ipv4_tcp", f})

	v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
		SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
	f, err = build(v6, &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeIPv6}, v6,
		&layers.UDP{SrcPort: 1000, DstPort: 53})
	if err != nil {
		return nil, err
	}
	frames = append(frames, dpFrame{"ipv6_udp", f})

	v4 = ip4()
	f, err = build(v4, &layers.Ethernet{SrcMAC: mac1, DstMAC: mac2, EthernetType: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}, v4, tcp())
	if err != nil {
		return nil, err
	}
	frames = append(frames, dpFrame{"vlan", f})
	return frames, nil
}

// dpPin locks the goroutine to its thread and the thread to cpu; restore
// undoes both.
func dpPin(cpu int) (restore func(), err error) {
	runtime.LockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return func() {
		unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	}, nil
}

// dpCPUs picks the CPU the programs run on (the last one allowed) and the
// one ring consumers run on (another one, if there is one).
func dpCPUs() (run, consume int, err error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0, 0, fmt.Errorf("sched_getaffinity: %w", err)
	}
	run, consume = -1, -1
	for c := 0; c < 1024; c++ {
		if set.IsSet(c) {
			if consume < 0 {
				consume = c
			}
			run = c
		}
	}
	if run < 0 {
		return 0, 0, errors.New("no CPU to run on")
	}
	return run, consume, nil
}

func dpThreadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

func dpVerdict(p *ebpf.Program) uint32 {
	if p.Type() == ebpf.XDP {
		return 2 // XDP_PASS
	}
	return ^uint32(0) // TC_ACT_UNSPEC
}

// dpMeasure runs p over frame n times with BPF_PROG_TEST_RUN and returns
// ns per packet: the thread's CPU time over the packets the program ran
// (ran counts them; nil: n, a run cut short by a signal is measured
// again).
func dpMeasure(p *ebpf.Program, frame []byte, n int, ran func() (uint64, error)) (float64, error) {
	for {
		var before uint64
		if ran != nil {
			var err error
			if before, err = ran(); err != nil {
				return 0, err
			}
		}
		retried := false
		t0 := dpThreadCPU()
		ret, _, err := p.Benchmark(frame, n, func() { retried = true })
		t := dpThreadCPU() - t0
		if err != nil {
			return 0, err
		}
		if ret != dpVerdict(p) {
			return 0, fmt.Errorf("program returned %d, want %d", int32(ret), int32(dpVerdict(p)))
		}
		pkts := uint64(n)
		if ran != nil {
			after, err := ran()
			if err != nil {
				return 0, err
			}
			pkts = after - before
		} else if retried {
			continue
		}
		if pkts == 0 {
			return 0, errors.New("the program ran no packet")
		}
		return float64(t.Nanoseconds()) / float64(pkts), nil
	}
}

// dpRing runs a ring consumer on cpu until the returned stop is called.
func dpRing(cpu int, run func(context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		restore, err := dpPin(cpu)
		if err != nil {
			done <- err
			return
		}
		defer restore()
		done <- run(ctx)
	}()
	return func() error {
		cancel()
		return <-done
	}
}

// dpStride is the rotation's stride once the flows exist: coprime to
// flows and near flows/φ, so that consecutive packets hit flows created
// far apart.
func dpStride(flows uint32) uint32 {
	if flows <= 2 {
		return 1
	}
	gcd := func(a, b uint32) uint32 {
		for b != 0 {
			a, b = b, a%b
		}
		return a
	}
	s := uint32(float64(flows)*0.618) | 1
	for gcd(s, flows) != 1 {
		s += 2
	}
	return s
}

type dpRunner struct {
	o       Options
	runCPU  int
	ringCPU int
	frames  []dpFrame
	res     *DataPlaneResult
	errs    []error
}

// packets sizes a run from a calibration measurement.
func (r *dpRunner) packets(p *bpf.Datapath, prog *ebpf.Program, frame []byte) (int, error) {
	if r.o.Quick {
		return dpQuickPacket, nil
	}
	ns, err := dpMeasure(prog, frame, dpCalibrate, func() (uint64, error) { return bare.Packets(p) })
	if err != nil {
		return 0, err
	}
	n := int(float64(dpRunTime.Nanoseconds()) / math.Max(ns, 1))
	return min(max(n, dpMinPackets), dpMaxPackets), nil
}

// RunDataPlane measures part 1. The default run (5 runs) takes about three
// minutes on two cores. When a store that must count exactly (the hash
// kinds without LRU) lost packets, the result comes with an error.
func RunDataPlane(ctx context.Context, o Options) (*DataPlaneResult, error) {
	frames, err := dpFrames()
	if err != nil {
		return nil, fmt.Errorf("build frames: %w", err)
	}
	runCPU, ringCPU, err := dpCPUs()
	if err != nil {
		return nil, err
	}
	restore, err := dpPin(runCPU)
	if err != nil {
		return nil, err
	}
	defer restore()

	res := &DataPlaneResult{Runs: o.runs(), Quick: o.Quick, Flows: dpFlowsFull, Hooks: dpHooks}
	if o.Quick {
		res.Flows = dpFlowsQuick
	}
	for _, k := range bpf.Kinds() {
		res.Kinds = append(res.Kinds, string(k))
	}
	for _, f := range frames {
		res.Frames = append(res.Frames, f.name)
	}
	r := &dpRunner{o: o, runCPU: runCPU, ringCPU: ringCPU, frames: frames, res: res}
	start := time.Now()
	o.log().Info("data plane: start", "cpu", runCPU, "runs", res.Runs, "quick", o.Quick)
	if err := r.baselines(ctx); err != nil {
		return nil, err
	}
	for _, k := range bpf.Kinds() {
		for _, flows := range res.Flows {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := r.kind(ctx, k, flows); err != nil {
				return nil, fmt.Errorf("%s, %d flows: %w", k, flows, err)
			}
		}
	}
	o.log().Info("data plane: done", "took", time.Since(start).Round(time.Second))
	return res, errors.Join(r.errs...)
}

// baselines measures the pass programs and the parse-only program.
func (r *dpRunner) baselines(ctx context.Context) error {
	pass, err := bare.LoadPass()
	if err != nil {
		return err
	}
	defer pass.Close()
	parse, err := bare.LoadDatapath(bare.DatapathOptions{Options: bpf.Options{Kind: bpf.KindPerCPUHash, MaxFlows: 16},
		RotateFlows: 1, ParseOnly: true})
	if err != nil {
		return fmt.Errorf("load parse-only: %w", err)
	}
	defer parse.Close()
	for _, hook := range dpHooks {
		for _, f := range r.frames {
			if err := ctx.Err(); err != nil {
				return err
			}
			progs := map[string]*ebpf.Program{"pass": pass.XDPProg, "parse_only": parse.Programs().XDP}
			if hook == "tc" {
				progs = map[string]*ebpf.Program{"pass": pass.TCProg, "parse_only": parse.Programs().TCEgress}
			}
			n, err := r.packets(parse, progs["parse_only"], f.data)
			if err != nil {
				return fmt.Errorf("parse-only %s %s: %w", hook, f.name, err)
			}
			runs := map[string][]float64{}
			for range r.res.Runs {
				for _, name := range []string{"pass", "parse_only"} {
					var ran func() (uint64, error)
					if name == "parse_only" {
						ran = func() (uint64, error) { return bare.Packets(parse) }
					}
					ns, err := dpMeasure(progs[name], f.data, n, ran)
					if err != nil {
						return fmt.Errorf("%s %s %s: %w", name, hook, f.name, err)
					}
					runs[name] = append(runs[name], ns)
				}
			}
			for _, name := range []string{"pass", "parse_only"} {
				b := DataPlaneBaseline{Name: name, Hook: hook, Frame: f.name, Packets: n, NsPerPacket: NewStat(runs[name])}
				r.res.Baselines = append(r.res.Baselines, b)
				r.o.log().Info("data plane", "program", name, "hook", hook, "frame", f.name,
					"ns_per_packet", dpFmtStat(b.NsPerPacket))
			}
		}
	}
	return nil
}

// kind measures one kind at one flow count: every frame on every hook,
// each run beside a run of the bare update.
func (r *dpRunner) kind(ctx context.Context, k bpf.Kind, flows uint32) error {
	// A one-entry spare store: the cells empty the store in place
	// (bare.Take) and never Drain, and a spare of MaxFlows would double
	// the memory and load time of the large per-CPU stores.
	opts := bpf.Options{Kind: k, MaxFlows: bare.StoreSize(k, flows), RingSize: dpRingSize, SpareFlows: 1}
	stride := dpStride(flows)
	t0 := time.Now()
	d, err := bare.LoadDatapath(bare.DatapathOptions{Options: opts, RotateFlows: flows})
	if err != nil {
		return err
	}
	defer d.Close()
	bu, err := bare.Load(bare.Options{Kind: k, MaxFlows: opts.MaxFlows, RingSize: opts.RingSize, RotateFlows: flows})
	if err != nil {
		return err
	}
	defer bu.Close()
	var stopBare func() error
	if k == bpf.KindRingbuf {
		stopBare = dpRing(r.ringCPU, bu.RunRing)
		defer func() {
			if stopBare != nil {
				stopBare()
			}
		}()
	}
	// Warm the bare store (both hooks share it), then revisit its flows
	// out of creation order.
	if _, err := dpMeasure(bu.XDP(), r.frames[0].data, int(flows), bu.Packets); err != nil {
		return fmt.Errorf("bare warm-up: %w", err)
	}
	if err := bu.SetStride(stride); err != nil {
		return err
	}
	r.o.log().Info("data plane: loaded", "kind", k, "flows", flows, "entries", opts.MaxFlows,
		"took", time.Since(t0).Round(time.Millisecond))

	bareRuns := map[string][]float64{}
	for _, hook := range dpHooks {
		for _, f := range r.frames {
			if err := ctx.Err(); err != nil {
				return err
			}
			c, err := r.cell(d, bu, k, flows, stride, hook, f)
			if err != nil {
				return fmt.Errorf("%s %s: %w", hook, f.name, err)
			}
			r.res.Cells = append(r.res.Cells, c)
			bareRuns[hook] = append(bareRuns[hook], c.BareNsPerPacket.Runs...)
			r.o.log().Info("data plane", "kind", k, "flows", flows, "hook", hook, "frame", f.name,
				"ns_per_packet", dpFmtStat(c.NsPerPacket), "bare", dpFmtStat(c.BareNsPerPacket),
				"ratio", dpFmtRatio(c.RatioToBare), "counted", c.Counted)
		}
	}

	// The bare store's count.
	if stopBare != nil {
		err := stopBare()
		stopBare = nil
		if err != nil {
			return fmt.Errorf("bare ring consumer: %w", err)
		}
	}
	sent, err := bu.Packets()
	if err != nil {
		return err
	}
	stored, err := bu.Counted()
	if err != nil {
		return err
	}
	counted := float64(stored) / float64(max(sent, 1))
	if stored > sent {
		r.errs = append(r.errs, fmt.Errorf("bare %s, %d flows: %d packets stored of %d run", k, flows, stored, sent))
	}
	for _, hook := range dpHooks {
		r.res.Bare = append(r.res.Bare, DataPlaneBare{Kind: string(k), Flows: flows, Hook: hook,
			NsPerPacket: NewStat(bareRuns[hook]), Counted: counted})
	}
	return nil
}

// cell measures xflow's program for one frame on one hook. The store
// starts empty (the previous cell drained it).
func (r *dpRunner) cell(d *bpf.Datapath, bu *bare.Update, k bpf.Kind, flows, stride uint32, hook string, f dpFrame) (DataPlaneCell, error) {
	c := DataPlaneCell{Kind: string(k), Flows: flows, Frame: f.name, Hook: hook}
	prog, bareProg := d.Programs().XDP, bu.XDP()
	if hook == "tc" {
		prog, bareProg = d.Programs().TCEgress, bu.TC()
	}
	var stopRing func() error
	if k == bpf.KindRingbuf {
		stopRing = dpRing(r.ringCPU, d.RunRing)
		defer func() {
			if stopRing != nil {
				stopRing()
			}
		}()
	}
	ran := func() (uint64, error) { return bare.Packets(d) }
	sent0, err := bare.Packets(d)
	if err != nil {
		return c, err
	}
	before, err := d.Counters()
	if err != nil {
		return c, err
	}
	// Warm-up: exactly one packet per flow creates every flow; then the
	// flows are revisited out of creation order.
	if err := bare.SetStride(d, 1); err != nil {
		return c, err
	}
	if _, err := dpMeasure(prog, f.data, int(flows), ran); err != nil {
		return c, fmt.Errorf("warm-up: %w", err)
	}
	if err := bare.SetStride(d, stride); err != nil {
		return c, err
	}
	if c.Packets, err = r.packets(d, prog, f.data); err != nil {
		return c, err
	}
	var full, bares, ratios []float64
	for range r.res.Runs {
		ns, err := dpMeasure(prog, f.data, c.Packets, ran)
		if err != nil {
			return c, err
		}
		bns, err := dpMeasure(bareProg, f.data, c.Packets, bu.Packets)
		if err != nil {
			return c, fmt.Errorf("bare: %w", err)
		}
		full, bares, ratios = append(full, ns), append(bares, bns), append(ratios, ns/bns)
	}
	c.NsPerPacket, c.BareNsPerPacket, c.RatioToBare = NewStat(full), NewStat(bares), NewStat(ratios)

	// What the store holds must be what was sent.
	if stopRing != nil {
		err := stopRing()
		stopRing = nil
		if err != nil {
			return c, fmt.Errorf("ring consumer: %w", err)
		}
	}
	sent1, err := bare.Packets(d)
	if err != nil {
		return c, err
	}
	c.Sent = sent1 - sent0
	if c.Stored, err = bare.Take(d); err != nil {
		return c, err
	}
	c.Counted = float64(c.Stored) / float64(max(c.Sent, 1))
	after, err := d.Counters()
	if err != nil {
		return c, err
	}
	missed := after.MissedPackets - before.MissedPackets
	exact := k == bpf.KindPerCPUHash || k == bpf.KindHash
	if c.Stored > c.Sent || (exact && c.Stored != c.Sent) {
		r.errs = append(r.errs, fmt.Errorf("%s, %d flows, %s %s: %d packets stored of %d sent (missed %d)",
			k, flows, hook, f.name, c.Stored, c.Sent, missed))
	}
	return c, nil
}

func dpFmtStat(s Stat) string {
	if math.IsNaN(s.Median) {
		return "–"
	}
	prec := 1
	if math.Abs(s.Median) >= 1000 {
		prec = 0
	}
	v := fmt.Sprintf("%.*f", prec, s.Median)
	if len(s.Runs) > 1 {
		v += fmt.Sprintf(" ±%.0f%%", 100*s.Spread())
	}
	return v
}

func dpFmtRatio(s Stat) string {
	if math.IsNaN(s.Median) || math.IsInf(s.Median, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", s.Median)
}

func dpFmtFlows(n uint32) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMi", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKi", n>>10)
	}
	return fmt.Sprint(n)
}

func dpFmtCounted(f float64) string {
	if f == 1 {
		return "100%"
	}
	return fmt.Sprintf("%.3f%%", 100*f)
}

func (r *DataPlaneResult) cell(kind string, flows uint32, hook, frame string) *DataPlaneCell {
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.Kind == kind && c.Flows == flows && c.Hook == hook && c.Frame == frame {
			return c
		}
	}
	return nil
}

func (r *DataPlaneResult) bare(kind string, flows uint32, hook string) *DataPlaneBare {
	for i := range r.Bare {
		b := &r.Bare[i]
		if b.Kind == kind && b.Flows == flows && b.Hook == hook {
			return b
		}
	}
	return nil
}

func (r *DataPlaneResult) baseline(name, hook, frame string) *DataPlaneBaseline {
	for i := range r.Baselines {
		b := &r.Baselines[i]
		if b.Name == name && b.Hook == hook && b.Frame == frame {
			return b
		}
	}
	return nil
}

// Tables: the main table (ns per packet of every kind, flow count, hook
// and frame, with the ratio to the bare update), the ratios of the default
// frame alone, and the baselines.
func (r *DataPlaneResult) Tables() []Table {
	if r == nil {
		return nil
	}
	main := Table{
		Title: "Data plane: ns per packet (ratio to the bare map update)",
		Note: fmt.Sprintf("The production XDP and TC (egress) programs run with BPF_PROG_TEST_RUN on one CPU, "+
			"for every store kind at each flow count, after a warm-up of one packet per flow (every measured packet "+
			"updates an existing flow). \"bare\" is the kind's map update alone (bpf/bare/bare.c: a fixed key rotated the "+
			"same way, lookup and add, insert if missing; arrays indexed by a hash of the rotated value; ringbuf reserve "+
			"and submit), each of its runs beside one of xflow's. Median of %d runs ± their spread (max−min over "+
			"median); the ratio is the median of the per-run ratios. \"counted\" is the smallest fraction of the packets "+
			"sent that the store held in the row.", r.Runs),
		Header: []string{"kind", "flows"},
	}
	for _, hook := range r.Hooks {
		main.Header = append(main.Header, "bare "+hook)
		for _, f := range r.Frames {
			main.Header = append(main.Header, hook+" "+f)
		}
	}
	main.Header = append(main.Header, "counted")
	for _, k := range r.Kinds {
		for _, flows := range r.Flows {
			row := []string{k, dpFmtFlows(flows)}
			counted := math.Inf(1)
			for _, hook := range r.Hooks {
				if b := r.bare(k, flows, hook); b != nil {
					row = append(row, dpFmtStat(b.NsPerPacket))
					counted = math.Min(counted, b.Counted)
				} else {
					row = append(row, "–")
				}
				for _, f := range r.Frames {
					c := r.cell(k, flows, hook, f)
					if c == nil {
						row = append(row, "–")
						continue
					}
					row = append(row, fmt.Sprintf("%s (%s)", dpFmtStat(c.NsPerPacket), dpFmtRatio(c.RatioToBare)))
					counted = math.Min(counted, c.Counted)
				}
			}
			if math.IsInf(counted, 1) {
				row = append(row, "–")
			} else {
				row = append(row, dpFmtCounted(counted))
			}
			main.Rows = append(main.Rows, row)
		}
	}

	frame := "ipv4_tcp"
	if len(r.Frames) > 0 {
		frame = r.Frames[0]
	}
	ratios := Table{
		Title: fmt.Sprintf("Data plane: xflow over the bare map update, XDP %s", frame),
		Note: "Median of the per-run ratios (min–max). The target: percpu_hash at most 1.15× at every flow " +
			"count; the cost from 1 to 1Mi flows as flat as the map allows.",
		Header: []string{"kind"},
	}
	for _, flows := range r.Flows {
		ratios.Header = append(ratios.Header, dpFmtFlows(flows))
	}
	for _, k := range r.Kinds {
		row := []string{k}
		for _, flows := range r.Flows {
			c := r.cell(k, flows, "xdp", frame)
			if c == nil {
				row = append(row, "–")
				continue
			}
			row = append(row, fmt.Sprintf("%s (%.2f–%.2f)", dpFmtRatio(c.RatioToBare), c.RatioToBare.Min, c.RatioToBare.Max))
		}
		ratios.Rows = append(ratios.Rows, row)
	}

	base := Table{
		Title: "Data plane: baselines, ns per packet",
		Note: "pass: a program that returns at once (XDP_PASS; TC_ACT_UNSPEC), the cost of BPF_PROG_TEST_RUN " +
			"itself. parse_only: xflow's program stopped after the flow key is filled in, before the store " +
			"(a load-time constant, zero in production).",
		Header: []string{"frame"},
	}
	for _, hook := range r.Hooks {
		base.Header = append(base.Header, hook+" pass", hook+" parse_only")
	}
	for _, f := range r.Frames {
		row := []string{f}
		for _, hook := range r.Hooks {
			for _, name := range []string{"pass", "parse_only"} {
				if b := r.baseline(name, hook, f); b != nil {
					row = append(row, dpFmtStat(b.NsPerPacket))
				} else {
					row = append(row, "–")
				}
			}
		}
		base.Rows = append(base.Rows, row)
	}
	return []Table{main, ratios, base}
}

// Plots: ns per packet against flows for each hook (the first frame, one
// line per kind), and the ratio to the bare update on XDP.
func (r *DataPlaneResult) Plots() []Plot {
	if r == nil || len(r.Frames) == 0 {
		return nil
	}
	frame := r.Frames[0]
	var plots []Plot
	for _, hook := range r.Hooks {
		p := Plot{
			Name:   "dataplane_" + hook,
			Title:  fmt.Sprintf("xflow %s program, %s: ns per packet", strings.ToUpper(hook), frame),
			XLabel: "flows", YLabel: "ns per packet", LogX: true,
		}
		for _, k := range r.Kinds {
			s := Series{Name: k}
			for _, flows := range r.Flows {
				if c := r.cell(k, flows, hook, frame); c != nil {
					s.X, s.Y = append(s.X, float64(flows)), append(s.Y, c.NsPerPacket.Median)
				}
			}
			p.Series = append(p.Series, s)
		}
		plots = append(plots, p)
	}
	p := Plot{
		Name:   "dataplane_ratio",
		Title:  fmt.Sprintf("xflow XDP program over the bare map update, %s", frame),
		XLabel: "flows", YLabel: "ratio to bare (log)", LogX: true, LogY: true,
	}
	for _, k := range r.Kinds {
		s := Series{Name: k}
		for _, flows := range r.Flows {
			if c := r.cell(k, flows, "xdp", frame); c != nil {
				s.X, s.Y = append(s.X, float64(flows)), append(s.Y, c.RatioToBare.Median)
			}
		}
		p.Series = append(p.Series, s)
	}
	return append(plots, p)
}
