package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/collector"
	"github.com/xflow-net/xflow/internal/testnet"
)

// EndToEndResult is part 2: the packet rate a veth pair sustains with no
// agent, with xflow (each map kind), softflowd and pmacctd, the fraction of
// packets each counted, and the CPU each used per million packets.
type EndToEndResult struct {
	Runs int `json:"runs"`
	// RunSeconds is how long each run sends (whole chunks of frames, the
	// last one may end later).
	RunSeconds float64 `json:"run_seconds"`
	// StatsSeconds is the length of the extra send per run to xflow with
	// BPF run-time statistics on (not part of the rate).
	StatsSeconds  float64        `json:"stats_seconds"`
	FrameBytes    int            `json:"frame_bytes"` // Ethernet frame without FCS
	GeneratorCPU  int            `json:"generator_cpu"`
	Kernel        string         `json:"kernel"`
	Blocks        []EndToEndFlow `json:"blocks"` // one per flow count
	Notes         []string       `json:"notes,omitempty"`
	AgentSettings []string       `json:"agent_settings"`
}

// EndToEndFlow is every agent measured at one flow count.
type EndToEndFlow struct {
	Flows int `json:"flows"`
	// Rows: no agent first (its runs are the means of an opening and a
	// closing measurement), then the agents.
	Rows []EndToEndRow `json:"rows"`
	// BaselineDrift is the closing no-agent rate over the opening one: far
	// from 1, the machine's speed changed during the block (other load).
	BaselineDrift float64  `json:"baseline_drift"`
	Notes         []string `json:"notes,omitempty"`
}

// EndToEndRow is one agent at one flow count. CPU figures are seconds per
// million packets sent.
type EndToEndRow struct {
	Agent string `json:"agent"`
	Map   string `json:"map,omitempty"` // xflow's map kind
	// RateMpps is the rate veth B received at (its rx_packets over the
	// generator's wall time), in millions of packets per second.
	RateMpps Stat `json:"rate_mpps"`
	// Ratio is RateMpps over the no-agent rate of the same run index and
	// flow count.
	Ratio Stat `json:"ratio"`
	// Sent is the frames sent per run (the rate times about RunSeconds).
	Sent Stat `json:"sent"`
	// Received is the fraction of the frames sent that B received.
	Received Stat `json:"received"`
	// Counted is the fraction of the packets sent that the agent's flow
	// records, as decoded by the collector, account for (null for no
	// agent): one figure over all runs, whose flows are the same.
	Counted *Stat `json:"counted,omitempty"`
	// AgentCPU is the CPU time of the agent's processes (user and system,
	// children included) per million packets.
	AgentCPU *Stat `json:"agent_cpu_s_per_mpkt,omitempty"`
	// DataPlaneCPU is xflow's XDP program's own run time (BPF run-time
	// statistics) per million packets.
	DataPlaneCPU *Stat `json:"dataplane_cpu_s_per_mpkt,omitempty"`
	// RxPathCPU is what the agent added to the receiving CPU, which the
	// generator keeps busy: 1/rate - 1/(no-agent rate), in s per Mpkt.
	RxPathCPU *Stat `json:"rx_path_extra_s_per_mpkt,omitempty"`
	// BusyCPU is the time all CPUs were busy during the sends (/proc/stat)
	// plus the agent's CPU outside them, per million packets; ExtraCPU is
	// BusyCPU minus the no-agent run's. Whatever else runs on the machine
	// counts too.
	BusyCPU  Stat  `json:"busy_cpu_s_per_mpkt"`
	ExtraCPU *Stat `json:"extra_cpu_s_per_mpkt,omitempty"`
	// Pcap is softflowd's and pmacctd's capture counters.
	Pcap *PcapCounts `json:"pcap,omitempty"`
	// SequenceGaps counts the IPFIX messages the collector saw missing
	// (lost between agent and collector) while this agent ran: its
	// counted fraction is then an underestimate.
	SequenceGaps uint64 `json:"sequence_gaps"`
	// CollectorDrops is the UDP datagrams side B's kernel dropped for a
	// full receive buffer while the agent ran (the collector's socket is
	// the only UDP socket there): export messages lost on the way, not by
	// the agent.
	CollectorDrops uint64 `json:"collector_rcvbuf_drops"`
	// Log is what the agent logged of note (counters, losses, warnings).
	Log   []string `json:"log,omitempty"`
	Error string   `json:"error,omitempty"`
}

// MissingToolsError is returned when softflowd or pmacctd, which part 2
// compares xflow with, are not installed.
type MissingToolsError struct {
	Tools []string // commands
}

func (e *MissingToolsError) Error() string {
	pkgs := map[string]string{"softflowd": "softflowd", "softflowctl": "softflowd", "pmacctd": "pmacct"}
	var p []string
	for _, t := range e.Tools {
		if len(p) == 0 || p[len(p)-1] != pkgs[t] {
			p = append(p, pkgs[t])
		}
	}
	return fmt.Sprintf("end to end: %s not installed (apt-get install %s)",
		strings.Join(e.Tools, " and "), strings.Join(p, " "))
}

// EndToEndTools finds softflowd and pmacctd (in PATH or the sbin
// directories) and returns a *MissingToolsError if one is missing.
func EndToEndTools() (map[string]string, error) {
	tools := map[string]string{}
	var missing []string
	for _, t := range []string{"softflowd", "softflowctl", "pmacctd"} {
		p, err := exec.LookPath(t)
		if err != nil {
			for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
				if fi, err := os.Stat(filepath.Join(d, t)); err == nil && fi.Mode()&0o111 != 0 {
					p = filepath.Join(d, t)
					break
				}
			}
		}
		if p == "" {
			missing = append(missing, t)
		}
		tools[t] = p
	}
	if len(missing) > 0 {
		return nil, &MissingToolsError{Tools: missing}
	}
	return tools, nil
}

// e2e is the running part 2: the pair, the generator and the collector.
type e2e struct {
	o        Options
	tools    map[string]string
	pair     *testnet.Pair
	hB       *netlink.Handle
	gen      *generator
	coll     *collector.Collector
	dir      string
	pinBase  string // xflow's pin paths: pinBase-N
	starts   int
	cpu      int
	runDur   time.Duration // each run's send
	statsDur time.Duration // xflow's statistics segment
	dstMAC   net.HardwareAddr
	port     uint16 // next destination port: one per segment
	cancel   context.CancelFunc

	mu      sync.Mutex
	counted map[uint16]uint64 // packets in records, per destination port
	records uint64
}

// The generator's addresses: A to B, to a MAC that is not B's, so that B's
// stack drops the frames (PACKET_OTHERHOST) right after the taps, which
// every agent sees (XDP, and packet sockets with or without promiscuous
// mode).
var otherMAC = net.HardwareAddr{0x02, 0x99, 0x00, 0x00, 0x00, 0xee}

// collectorRcvBuf is the collector socket's receive buffer: room for every
// record of 65536 flows exported at once.
const collectorRcvBuf = 32 << 20

const (
	firstDstPort = 20000
	manyFlows    = 65536
)

// RunEndToEnd measures part 2.
func RunEndToEnd(ctx context.Context, o Options) (*EndToEndResult, error) {
	tools, err := EndToEndTools()
	if err != nil {
		return nil, err
	}
	if o.Xflow == "" {
		return nil, errors.New("end to end: no xflow binary (Options.Xflow)")
	}
	if _, err := os.Stat(o.Xflow); err != nil {
		return nil, fmt.Errorf("end to end: xflow binary: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("end to end: needs root (network namespaces, BPF)")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		o.log().Debug("raise memlock limit", "err", err)
	}
	e := &e2e{o: o, tools: tools, counted: map[uint16]uint64{}, dstMAC: otherMAC, port: firstDstPort}
	e.runDur, e.statsDur = time.Second, 150*time.Millisecond
	flowCounts := []int{1, manyFlows}
	agents := []agentSpec{{kind: agentNone}}
	for _, k := range bpf.Kinds() {
		agents = append(agents, agentSpec{kind: agentXflow, mapK: k})
	}
	agents = append(agents, agentSpec{kind: agentSoftflowd}, agentSpec{kind: agentPmacctd})
	if o.Quick {
		e.runDur, e.statsDur = 100*time.Millisecond, 50*time.Millisecond
		agents = []agentSpec{{kind: agentNone}, {kind: agentXflow, mapK: bpf.KindPerCPUHash},
			{kind: agentSoftflowd}, {kind: agentPmacctd}}
		o.Runs = 1
		e.o.Runs = 1
	}
	defer e.close()
	if err := e.setup(ctx); err != nil {
		return nil, err
	}

	res := &EndToEndResult{
		Runs: e.o.runs(), RunSeconds: e.runDur.Seconds(), StatsSeconds: e.statsDur.Seconds(),
		FrameBytes: frameLen, GeneratorCPU: e.cpu, Kernel: kernelRelease(),
		AgentSettings: []string{
			fmt.Sprintf("xflow: ingress xdp (native), egress none, max_flows %d, inactive %s, scan_interval %s, IPFIX/UDP", e2eMaxFlows, e2eIdle, e2eScan),
			fmt.Sprintf("softflowd -v 10 -m %d -B %d -t udp=2 -t general=2 -t maxlife=60 -t expint=1", e2eMaxFlows, pcapBufBytes),
			fmt.Sprintf("pmacctd: plugins nfprobe, nfprobe_version 10, aggregate 5-tuple, nfprobe_timeouts udp=2:general=2:maxlife=60:expint=1, nfprobe_maxflows %d, plugin_pipe_size %d, plugin_buffer_size %d", e2eMaxFlows, pmacctPipe, pmacctBufSize),
		},
	}
	if o.Quick {
		flowCounts = []int{1, 4096}
	}
	res.Notes = []string{
		"softflowd in the foreground (-d) installs no SIGTERM handler (it does only when it daemonises), " +
			"so SIGTERM kills it without exporting what it holds; it is stopped with `softflowctl shutdown`, " +
			"which expires and exports every flow.",
		fmt.Sprintf("libpcap's TPACKET_V3 ring hands a block to softflowd and pmacctd only once it is full or "+
			"a later packet retires it (here the last block was never retired by time): after the runs, "+
			"%d more frames (1 flow, not counted) push the last run's tail through before the stop.", flushPackets),
		"pmacctd has no setting for its capture buffer: it keeps libpcap's default; softflowd's is set with -B.",
	}
	for _, flows := range flowCounts {
		blk, err := e.block(ctx, flows, agents)
		if err != nil {
			return nil, err
		}
		if d := blk.BaselineDrift; d < 0.9 || d > 1.1 {
			blk.Notes = append(blk.Notes, fmt.Sprintf("The no-agent rate changed by %+.0f%% between the "+
				"start and the end of the block: something else ran on the machine; the ratios are unreliable.",
				100*(d-1)))
		}
		for _, row := range blk.Rows {
			if row.SequenceGaps > 0 && row.CollectorDrops == 0 {
				blk.Notes = append(blk.Notes, fmt.Sprintf("%s: the collector saw %d IPFIX sequence "+
					"gaps while its socket dropped nothing: the agent's sequence numbers do not follow "+
					"RFC 7011 (the count of data records sent).", row.Agent, row.SequenceGaps))
			}
		}
		res.Blocks = append(res.Blocks, *blk)
	}
	return res, nil
}

// block measures every agent at one flow count, between two no-agent
// measurements: the baseline of run i is the mean of the two no-agent
// runs i, so that a machine whose speed drifts during the block (other
// load) shifts every agent's ratio less.
func (e *e2e) block(ctx context.Context, flows int, agents []agentSpec) (*EndToEndFlow, error) {
	blk := &EndToEndFlow{Flows: flows}
	type result struct {
		spec agentSpec
		rs   *runSet
		err  error
	}
	var results []result
	none := agentSpec{kind: agentNone}
	open, err := e.measure(none, flows)
	if err != nil {
		return nil, fmt.Errorf("end to end, %d flows, no agent: %w", flows, err)
	}
	e.o.log().Info("end to end", "flows", flows, "agent", none.String(), "mpps", round3(NewStat(open.rate).Median))
	for _, spec := range agents {
		if spec.kind == agentNone {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rs, err := e.measure(spec, flows)
		results = append(results, result{spec, rs, err})
		if err != nil {
			e.o.log().Warn("end to end", "flows", flows, "agent", spec.String(), "err", err)
			continue
		}
		args := []any{"flows", flows, "agent", spec.String(), "mpps", round3(NewStat(rs.rate).Median)}
		if len(rs.counted) > 0 {
			args = append(args, "counted", rs.counted[0])
		}
		e.o.log().Info("end to end", args...)
	}
	closing, err := e.measure(none, flows)
	if err != nil {
		return nil, fmt.Errorf("end to end, %d flows, no agent (closing): %w", flows, err)
	}
	e.o.log().Info("end to end", "flows", flows, "agent", none.String()+" (closing)", "mpps", round3(NewStat(closing.rate).Median))
	blk.BaselineDrift = NewStat(closing.rate).Median / NewStat(open.rate).Median
	base := &runSet{spec: none}
	for i := range open.rate {
		base.rate = append(base.rate, (open.rate[i]+closing.rate[i])/2)
		base.busy = append(base.busy, (open.busy[i]+closing.busy[i])/2)
		base.sent = append(base.sent, (open.sent[i]+closing.sent[i])/2)
		base.received = append(base.received, (open.received[i]+closing.received[i])/2)
	}
	blk.Rows = append(blk.Rows, base.row(base))
	for _, r := range results {
		if r.err != nil {
			blk.Rows = append(blk.Rows, EndToEndRow{Agent: r.spec.String(), Map: string(r.spec.mapK), Error: r.err.Error()})
			continue
		}
		blk.Rows = append(blk.Rows, r.rs.row(base))
	}
	return blk, nil
}

// setup makes the pair, the generator and the collector; close removes
// them, also after a setup that failed half-way.
func (e *e2e) setup(ctx context.Context) error {
	e.cpu = runtime.NumCPU() - 1

	var err error
	if e.dir, err = os.MkdirTemp("", "xflow-bench-e2e"); err != nil {
		return err
	}
	e.pinBase = filepath.Join("/sys/fs/bpf", filepath.Base(e.dir))

	if e.pair, err = testnet.New("xbe2e"); err != nil {
		return fmt.Errorf("end to end: veth pair: %w", err)
	}
	if e.hB, err = netlink.NewHandleAt(e.pair.NSB); err != nil {
		return err
	}
	if e.gen, err = newGenerator(); err != nil {
		return fmt.Errorf("end to end: %w", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	e.cancel = cancel
	err = testnet.Do(e.pair.NSB, func() (err error) {
		e.coll, err = collector.Listen(cctx, collector.Options{Listen: "udp://127.0.0.1:0", OnRecord: e.record})
		if err != nil {
			return err
		}
		return forceRcvBuf(e.coll.Addr().(*net.UDPAddr).Port, collectorRcvBuf)
	})
	if err != nil {
		return fmt.Errorf("end to end: collector: %w", err)
	}

	return nil
}

func (e *e2e) close() {
	if e.coll != nil {
		e.coll.Close()
	}
	if e.cancel != nil {
		e.cancel()
	}
	if e.gen != nil {
		e.gen.Close()
	}
	if e.hB != nil {
		e.hB.Close()
	}
	if e.pair != nil {
		e.pair.Close()
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

func round3(v float64) float64 {
	return float64(int64(v*1000+0.5)) / 1000
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// record tallies one decoded flow record: the generator's packets, by
// destination port (one per segment).
func (e *e2e) record(r collector.Record) {
	src, err := netip.ParseAddr(r.Src)
	if err != nil || src.Unmap() != e.pair.A4 || r.Proto != unix.IPPROTO_UDP {
		return
	}
	e.mu.Lock()
	e.counted[r.DstPort] += r.Packets
	e.records++
	e.mu.Unlock()
}

func (e *e2e) countedOn(port uint16) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.counted[port]
}

func (e *e2e) recordCount() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.records
}

// waitQuiet waits until the collector has had no record for quiet, or
// limit passed.
func (e *e2e) waitQuiet(quiet, limit time.Duration) {
	start := time.Now()
	last, lastChange := e.recordCount(), time.Now()
	for time.Since(start) < limit {
		time.Sleep(50 * time.Millisecond)
		if n := e.recordCount(); n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) >= quiet {
			return
		}
	}
}

func (e *e2e) rxPackets() (uint64, error) {
	l, err := e.hB.LinkByIndex(e.pair.IfB)
	if err != nil {
		return 0, err
	}
	return l.Attrs().Statistics.RxPackets, nil
}

// segment is one send: n frames to one destination port.
type segment struct {
	port     uint16
	sent     uint64
	received uint64
	wall     time.Duration
}

// send sends to port for d (at least one chunk of frames).
func (e *e2e) send(flows int, port uint16, d time.Duration, chunk uint32) (segment, error) {
	s := segment{port: port}
	base := uint16(1024)
	if flows == manyFlows {
		base = 0
	}
	rx0, err := e.rxPackets()
	if err != nil {
		return s, err
	}
	frame := genFrame(e.pair.MACA, e.dstMAC, e.pair.A4, e.pair.B4, s.port)
	if s.sent, s.wall, err = e.gen.send(e.pair.NSA, e.pair.IfA, e.cpu, frame, base, flows, d, chunk); err != nil {
		return s, err
	}
	// veth B's counters are per-CPU sums, updated by its NAPI, which the
	// send's last batch scheduled on the same CPU: wait a little for it.
	for i := 0; i < 50; i++ {
		rx1, err := e.rxPackets()
		if err != nil {
			return s, err
		}
		s.received = rx1 - rx0
		if s.received >= s.sent {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	return s, nil
}

// runSet is what one agent measured at one flow count, run by run.
type runSet struct {
	spec                                        agentSpec
	rate, sent, received, counted, agentCPU, dp []float64
	// busy: all CPUs' busy time during the send plus the agent's CPU
	// outside it, s per Mpkt (see measure).
	busy      []float64
	seqGaps   uint64
	collDrops uint64
	pcap      *PcapCounts
	log       []string
}

// Chunks of frames the generator sends with one BPF_PROG_RUN: runs end
// after the first chunk that ends past their duration. flushPackets is the
// size of the segment sent after the runs (see measure).
const (
	runChunk     = 131072
	statsChunk   = 32768
	flushPackets = 65536
)

// PcapCounts are libpcap's counters of softflowd's or pmacctd's capture
// over the agent's whole life (runs, statistics and flush segments).
type PcapCounts struct {
	Received uint64 `json:"received"`
	Dropped  uint64 `json:"dropped"`
}

// measure starts spec, does the runs, stops it and gathers what the
// collector got.
//
// Run i is a send for runDur (the rate), and for xflow a second, shorter
// send with BPF run-time statistics on (the data plane's CPU; not part of
// the rate, as the statistics slow every program down). All of them go to
// one destination port, so that the flows live through the whole session
// (no idle timeout between runs) as long-lived flows do: the records cannot
// then be told apart by run, and counted is one figure per session, what
// the records of that port account for over what was sent to it.
//
// CPU is taken per window: window i starts with run i and ends where run
// i+1 starts, the last one when the agent has exited, so that every CPU
// second the agent spent falls in a window, its exports at the end
// included. Agent CPU_i is the agent's CPU in window i over the packets
// sent in it. Busy_i is the time all CPUs were busy during run i's first
// send (/proc/stat: the generator's CPU, the receive softirq and whatever
// ran beside them) over its packets, plus the agent's CPU in the rest of
// the window over the window's packets.
func (e *e2e) measure(spec agentSpec, flows int) (*runSet, error) {
	t0 := time.Now()
	a, err := e.startAgent(spec, flows)
	if err != nil {
		return nil, err
	}
	e.o.log().Debug("end to end: agent started", "agent", spec.String(), "flows", flows, "took", time.Since(t0))
	stopped := false
	defer func() {
		if !stopped {
			a.kill()
		}
	}()
	gaps0 := e.coll.Stats().SequenceGaps
	rcvbuf0, err := e.collectorDrops()
	if err != nil {
		return nil, err
	}
	runs := e.o.runs()
	rs := &runSet{spec: spec}
	port := e.nextPort()
	type window struct {
		main, stats       segment
		agent0, agentSend time.Duration // agent CPU at the start; during the main send
		busySend          time.Duration
		extraPackets      uint64 // the flush segment, in the last window
	}
	w := make([]window, runs)
	for i := 0; i < runs; i++ {
		b0, err := busyCPU()
		if err != nil {
			return nil, err
		}
		w[i].agent0 = a.cpu()
		if w[i].main, err = e.send(flows, port, e.runDur, runChunk); err != nil {
			return nil, err
		}
		b1, _ := busyCPU()
		w[i].busySend = b1 - b0
		w[i].agentSend = a.cpu() - w[i].agent0
		if spec.kind == agentXflow {
			var dp float64
			if w[i].stats, dp, err = e.statsSegment(a, flows, port); err != nil {
				return nil, err
			}
			rs.dp = append(rs.dp, dp)
		}
	}
	// libpcap (TPACKET_V3) hands a ring block to softflowd and pmacctd
	// only once it is full or a later packet retires it: without more
	// traffic, the last run's tail would stay in the ring at shutdown.
	// These frames (1 flow, to a port not counted) push it through; every
	// agent gets them, and the last window counts them.
	flush, err := e.send(1, e.nextPort(), 0, flushPackets)
	if err != nil {
		return nil, err
	}
	w[runs-1].extraPackets = flush.sent
	stopped = true
	t1 := time.Now()
	if err := a.stop(20 * time.Second); err != nil {
		return nil, err
	}
	e.o.log().Debug("end to end: agent stopped", "agent", spec.String(), "flows", flows,
		"runs_took", t1.Sub(t0), "stop_took", time.Since(t1))
	if spec.kind != agentNone {
		e.waitQuiet(500*time.Millisecond, 5*time.Second)
	}
	rs.seqGaps = e.coll.Stats().SequenceGaps - gaps0
	rcvbuf1, err := e.collectorDrops()
	if err != nil {
		return nil, err
	}
	rs.collDrops = rcvbuf1 - rcvbuf0
	if a.pcapKnown {
		rs.pcap = &PcapCounts{Received: a.pcapReceived, Dropped: a.pcapDropped}
	}
	rs.log = a.notes
	var sent uint64
	for _, x := range w {
		sent += x.main.sent + x.stats.sent
	}
	if spec.kind != agentNone {
		rs.counted = []float64{float64(e.countedOn(port)) / float64(sent)}
	}
	for i := range w {
		m, s := w[i].main, w[i].stats
		end := a.exit
		if i+1 < runs {
			end = w[i+1].agent0
		}
		agentWin := end - w[i].agent0
		mpkt := float64(m.sent+s.sent+w[i].extraPackets) / 1e6
		rs.rate = append(rs.rate, float64(m.received)/m.wall.Seconds()/1e6)
		rs.sent = append(rs.sent, float64(m.sent))
		rs.received = append(rs.received, float64(m.received)/float64(m.sent))
		rs.busy = append(rs.busy, w[i].busySend.Seconds()/(float64(m.sent)/1e6)+
			(agentWin-w[i].agentSend).Seconds()/mpkt)
		if spec.kind == agentNone {
			continue
		}
		rs.agentCPU = append(rs.agentCPU, agentWin.Seconds()/mpkt)
	}
	return rs, nil
}

func (e *e2e) collectorDrops() (n uint64, err error) {
	err = testnet.Do(e.pair.NSB, func() (err error) {
		n, err = udpRcvbufErrors()
		return err
	})
	return n, err
}

func (e *e2e) nextPort() uint16 {
	p := e.port
	e.port++
	return p
}

// statsSegment sends for statsDur with BPF run-time statistics on and
// returns xflow's XDP program's run time per packet, in s per Mpkt.
func (e *e2e) statsSegment(a *agentProc, flows int, port uint16) (segment, float64, error) {
	st, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		return segment{}, 0, fmt.Errorf("enable BPF statistics: %w", err)
	}
	defer st.Close()
	s0, err := a.prog.Stats()
	if err != nil {
		return segment{}, 0, err
	}
	seg, err := e.send(flows, port, e.statsDur, statsChunk)
	if err != nil {
		return seg, 0, err
	}
	s1, err := a.prog.Stats()
	if err != nil {
		return seg, 0, err
	}
	runs := s1.RunCount - s0.RunCount
	if runs == 0 {
		return seg, 0, errors.New("xflow's XDP program did not run")
	}
	ns := float64(s1.Runtime-s0.Runtime) / float64(runs)
	return seg, ns / 1e3, nil // ns per packet → s per Mpkt
}

// row summarises a runSet against the no-agent one of the same flow count.
func (rs *runSet) row(base *runSet) EndToEndRow {
	r := EndToEndRow{Agent: rs.spec.String(), RateMpps: NewStat(rs.rate), Sent: NewStat(rs.sent), Received: NewStat(rs.received),
		BusyCPU: NewStat(rs.busy)}
	if rs.spec.kind == agentXflow {
		r.Map = string(rs.spec.mapK)
	}
	var ratio, extra, rx []float64
	for i := range rs.rate {
		if base != nil && i < len(base.rate) {
			ratio = append(ratio, rs.rate[i]/base.rate[i])
			extra = append(extra, rs.busy[i]-base.busy[i])
			rx = append(rx, 1/rs.rate[i]-1/base.rate[i])
		}
	}
	r.Ratio = NewStat(ratio)
	if rs.spec.kind != agentNone {
		x := NewStat(rx)
		r.RxPathCPU = &x
	}
	r.Pcap, r.SequenceGaps, r.CollectorDrops, r.Log = rs.pcap, rs.seqGaps, rs.collDrops, rs.log
	if rs.spec.kind != agentNone {
		c, a, x := NewStat(rs.counted), NewStat(rs.agentCPU), NewStat(extra)
		r.Counted, r.AgentCPU, r.ExtraCPU = &c, &a, &x
	}
	if len(rs.dp) > 0 {
		d := NewStat(rs.dp)
		r.DataPlaneCPU = &d
	}
	return r
}
