package bench

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/bpf/bare"
	"github.com/xflow-net/xflow/exporter"
	"github.com/xflow-net/xflow/exporter/ipfix"
	"github.com/xflow-net/xflow/flow"
	"github.com/xflow-net/xflow/sink"
)

// ExporterResult is part 3: drain + encode + send rate and user-space
// memory per active flow at 10k, 100k and 1M flows, and scan time against
// the flow count.
type ExporterResult struct {
	// CPU is the one CPU the process was pinned to while measuring; -1
	// when pinning failed (then the rates use whatever CPUs it got).
	CPU  int           `json:"cpu"`
	Rows []ExporterRow `json:"rows"`
}

// ExporterRow is one store kind at one flow count.
type ExporterRow struct {
	Kind     string `json:"kind"`
	Flows    int    `json:"flows"`     // distinct flows in the store, and then in the flow table
	MaxFlows int    `json:"max_flows"` // datapath.max_flows: the stores' size
	// Rate is flows/s of one scan in which every flow is new and ends
	// (idle): drain (swap, batch read, batch delete) into the flow table,
	// end the flows, save the (then empty) table to its state maps, and
	// the collector's IPFIX encode and UDP send to 127.0.0.1, until the
	// collector has sent the last record. Wall clock, process on one CPU.
	Rate Stat `json:"rate_flows_per_s"`
	// CPUNsPerFlow is the process's CPU time (user + system, receiver
	// included) over the same span, per flow.
	CPUNsPerFlow Stat `json:"cpu_ns_per_flow"`
	// BytesPerFlow is the Go heap (live after GC) with Flows active flows
	// in the table between scans, minus the heap of the same daemon after
	// a scan of nothing, per flow: the flow table and every buffer the
	// export path keeps.
	BytesPerFlow Stat `json:"bytes_per_flow"`
	// ScanMs is one steady-state scan with Flows active flows that all
	// counted packets since the previous scan and none ends: drain, merge
	// into the table, look for due flows, save the table.
	ScanMs Stat `json:"scan_ms"`
	// SaveMs is what saving the table to the state maps took of ScanMs.
	SaveMs Stat `json:"save_ms"`
	// Kernel memory (memlock as the kernel accounts it) with Flows active
	// flows: both flow stores (preallocated for MaxFlows, whatever the
	// fill), and the two state maps the table is saved to (allocated per
	// entry).
	KernelStoreBytes uint64 `json:"kernel_store_bytes"`
	KernelStateBytes uint64 `json:"kernel_state_bytes"`
	// Exported is the records the collector sent over all runs (Flows per
	// run), Received the datagrams the receiver got of Messages sent.
	Exported uint64 `json:"exported"`
	Messages uint64 `json:"messages"`
	Received uint64 `json:"received"`
}

// exporterSizes are the flow counts measured; exporterKinds the store kinds
// and the largest count each is measured at (the default kind at all).
var (
	exporterSizes = []int{10_000, 100_000, 1_000_000}
	exporterKinds = []struct {
		kind bpf.Kind
		max  int
	}{{bpf.KindPerCPUHash, 1_000_000}, {bpf.KindHash, 100_000}, {bpf.KindPerCPUArray, 100_000}}
)

// RunExporter measures part 3.
func RunExporter(ctx context.Context, o Options) (*ExporterResult, error) {
	log := o.log()
	runs := o.runs()
	sizes := exporterSizes
	kinds := exporterKinds
	if o.Quick {
		sizes, runs = sizes[:1], 1
	}
	rcv, err := newUDPSink()
	if err != nil {
		return nil, err
	}
	defer rcv.close()
	coll, err := sink.New(sink.Options{
		Address: rcv.addr, Transport: "udp", TemplateRefresh: time.Hour,
		Encoder: ipfix.NewEncoder(ipfix.Options{ObservationDomain: 1, MTU: ipfix.DefaultMTU}),
		// A scan of 1M ended flows is one batch: the queue must take it
		// (the daemon's default, 262144 records, would drop it whole).
		QueueRecords: 2 * sizes[len(sizes)-1],
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	defer coll.Close(context.Background())

	res := &ExporterResult{CPU: -1}
	if cpu, restore, err := pinOneCPU(); err != nil {
		log.Warn("exporter: could not pin to one CPU; rates use every CPU", "err", err)
	} else {
		res.CPU = cpu
		defer restore()
	}
	for _, k := range kinds {
		for _, n := range sizes {
			if n > k.max {
				continue
			}
			if err := ctx.Err(); err != nil {
				return res, err
			}
			r := runs
			if n >= 1_000_000 {
				r = min(runs, 3) // ~15 s a run: the part's time budget
			}
			row, err := exporterRow(ctx, log, k.kind, n, r, coll, rcv)
			if err != nil {
				return res, fmt.Errorf("exporter %s, %d flows: %w", k.kind, n, err)
			}
			res.Rows = append(res.Rows, row)
		}
		if o.Quick {
			break
		}
	}
	return res, nil
}

// timedSource is the data plane, timing the exporter's state saves.
type timedSource struct {
	*bpf.Datapath
	save time.Duration
}

func (s *timedSource) SaveState(dr bpf.Drained, each iter.Seq2[*flow.Key, *flow.State]) error {
	start := time.Now()
	err := s.Datapath.SaveState(dr, each)
	s.save += time.Since(start)
	return err
}

func exporterRow(ctx context.Context, log *slog.Logger, kind bpf.Kind, n, runs int, coll *sink.Destination, rcv *udpSink) (ExporterRow, error) {
	row := ExporterRow{Kind: string(kind), Flows: n, MaxFlows: n + n/4}
	pin, err := os.MkdirTemp("/sys/fs/bpf", "xflow-bench-")
	if err != nil {
		pin = filepath.Join("/sys/fs/bpf", "xflow-bench-"+strconv.Itoa(os.Getpid()))
	}
	d, err := bpf.Load(bpf.Options{Kind: kind, MaxFlows: uint32(row.MaxFlows), PinPath: pin})
	if err != nil {
		os.Remove(pin)
		return row, err
	}
	defer func() {
		d.Unpin()
		d.Close()
		os.Remove(pin)
	}()
	src := &timedSource{Datapath: d}
	recs := benchRecords(n)
	quiet := slog.New(slog.DiscardHandler)
	newExporter := func(inactive time.Duration) *exporter.Exporter {
		return exporter.New(src, []exporter.Sink{coll}, exporter.Options{
			Timeouts:     exporter.Timeouts{Active: time.Hour, Inactive: inactive},
			ScanInterval: time.Minute, MaxFlows: 2 * n, Logger: quiet,
		})
	}
	// The heap of a daemon that holds no flow yet but has scanned (its
	// fixed buffers: batch buffers, encoder).
	if _, err := newExporter(time.Hour).Scan(); err != nil {
		return row, err
	}
	base := liveHeap()

	var rate, cpu, mem, scan, save []float64
	msgs0, rcvd0 := coll.Stats().Messages, rcv.msgs.Load()
	for r := 0; r < runs; r++ {
		if err := ctx.Err(); err != nil {
			return row, err
		}
		// Rate: n new flows, idle for 10 s, in a table whose inactive
		// timeout is 1 s: the scan ends them all.
		e := newExporter(time.Second)
		stamp(recs, 20*time.Second, 10*time.Second)
		if err := bare.Fill(d, recs); err != nil {
			return row, err
		}
		before := coll.Stats()
		runtime.GC()
		cpu0, t0 := cpuTime(), time.Now()
		if _, err := e.Scan(); err != nil {
			return row, err
		}
		if err := waitSent(ctx, coll, before.Records+before.DroppedRecords+uint64(n)); err != nil {
			return row, err
		}
		dt, dcpu := time.Since(t0), cpuTime()-cpu0
		after := coll.Stats()
		st := e.Stats()
		if got := st.Records[flow.IdleTimeout]; got != uint64(n) {
			return row, fmt.Errorf("the scan ended %d flows, want %d", got, n)
		}
		if sent := after.Records - before.Records; sent != uint64(n) {
			return row, fmt.Errorf("the collector sent %d records of %d (dropped %d)", sent, n, after.DroppedRecords-before.DroppedRecords)
		}
		row.Exported += after.Records - before.Records
		rate = append(rate, float64(n)/dt.Seconds())
		cpu = append(cpu, float64(dcpu.Nanoseconds())/float64(n))

		// Memory and steady-state scans: n flows that stay.
		e = newExporter(time.Hour)
		stamp(recs, 2*time.Second, time.Second)
		if err := bare.Fill(d, recs); err != nil {
			return row, err
		}
		if _, err := e.Scan(); err != nil {
			return row, err
		}
		if a := e.Stats().ActiveFlows; a != n {
			return row, fmt.Errorf("%d active flows after the first scan, want %d", a, n)
		}
		mem = append(mem, float64(int64(liveHeap())-int64(base))/float64(n))
		stamp(recs, time.Second, 0)
		if err := bare.Fill(d, recs); err != nil {
			return row, err
		}
		runtime.GC()
		src.save = 0
		t0 = time.Now()
		if _, err := e.Scan(); err != nil {
			return row, err
		}
		scan = append(scan, float64(time.Since(t0).Nanoseconds())/1e6)
		save = append(save, float64(src.save.Nanoseconds())/1e6)
		if st := e.Stats(); st.ActiveFlows != n || st.Drained != 2*uint64(n) {
			return row, fmt.Errorf("steady scan: %d active flows, %d drained; want %d, %d", st.ActiveFlows, st.Drained, n, 2*n)
		}
		row.KernelStoreBytes, row.KernelStateBytes = bare.Memory(d)
		log.Info("exporter", "kind", kind, "flows", n, "run", r+1,
			"flows_per_s", int(rate[r]), "cpu_ns_per_flow", int(cpu[r]), "bytes_per_flow", int(mem[r]),
			"scan_ms", fmt.Sprintf("%.1f", scan[r]), "save_ms", fmt.Sprintf("%.1f", save[r]))
		runtime.KeepAlive(e)
	}
	// Let the receiver catch up with the last datagrams.
	time.Sleep(20 * time.Millisecond)
	row.Rate, row.CPUNsPerFlow, row.BytesPerFlow = NewStat(rate), NewStat(cpu), NewStat(mem)
	row.ScanMs, row.SaveMs = NewStat(scan), NewStat(save)
	row.Messages, row.Received = coll.Stats().Messages-msgs0, rcv.msgs.Load()-rcvd0
	return row, nil
}

// benchRecords makes n distinct IPv4 UDP flows on one interface.
func benchRecords(n int) []flow.Record {
	recs := make([]flow.Record, n)
	dst := netip.MustParseAddr("::ffff:192.0.2.1").As16()
	for i := range recs {
		k := &recs[i].Key
		k.Src = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).As16()
		k.Src[10], k.Src[11] = 0xff, 0xff
		k.Dst = dst
		k.SrcPort, k.DstPort = uint16(1024+i%50000), 4739
		k.IfIndex, k.Proto, k.IPVersion, k.Direction = 2, 17, 4, flow.Ingress
		recs[i].Value = flow.Value{Packets: 10, Bytes: 10 * 1400, TOS: 0}
	}
	return recs
}

// stamp gives every record a first packet first ago and a last one last
// ago (kernel monotonic clock).
func stamp(recs []flow.Record, first, last time.Duration) {
	now := flow.Now().Mono
	for i := range recs {
		recs[i].Value.FirstNs = now - uint64(first)
		recs[i].Value.LastNs = now - uint64(last)
	}
}

// liveHeap is the Go heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// cpuTime is the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// waitSent waits until the collector has sent or dropped want records in
// all.
func waitSent(ctx context.Context, coll *sink.Destination, want uint64) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st := coll.Stats()
		if st.Records+st.DroppedRecords >= want && st.Queued == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("the collector did not send the records within 2 minutes")
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// udpSink is the collector: it reads and counts datagrams.
type udpSink struct {
	conn *net.UDPConn
	addr string
	msgs atomic.Uint64
	done chan struct{}
}

func newUDPSink() (*udpSink, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(32 << 20)
	s := &udpSink{conn: conn, addr: conn.LocalAddr().String(), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 65536)
		for {
			if _, err := conn.Read(buf); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			s.msgs.Add(1)
		}
	}()
	return s, nil
}

func (s *udpSink) close() {
	s.conn.Close()
	<-s.done
}

// pinOneCPU binds every thread of the process (and so the threads they
// start) to the last CPU it may use, and returns a function that restores
// the threads' masks.
func pinOneCPU() (cpu int, restore func(), err error) {
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return -1, nil, err
	}
	cpu = -1
	for c := 0; c < 1024; c++ {
		if all.IsSet(c) {
			cpu = c
		}
	}
	if cpu < 0 {
		return -1, nil, errors.New("no CPU in the affinity mask")
	}
	var one unix.CPUSet
	one.Set(cpu)
	set := func(mask *unix.CPUSet) error {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		var errs []error
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, mask); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	if err := set(&one); err != nil {
		set(&all)
		return -1, nil, err
	}
	return cpu, func() { set(&all) }, nil
}

// Tables is the rates, memory and scan times of every kind and flow
// count.
func (r *ExporterResult) Tables() []Table {
	t := Table{
		Title: "Exporter: drain, encode and send; memory per active flow; scan time",
		Note: "Rate: one scan in which every flow is new and ends (idle timeout): drain (store swap, batch read, " +
			"batch delete) into the flow table, end the flows, save the table to its state maps, IPFIX encode " +
			"and UDP send to a receiver on 127.0.0.1, until the collector has sent the last record; " +
			"the process pinned to one CPU" + pinnedNote(r.CPU) + ". CPU ns/flow: user + system CPU time of the " +
			"whole process (receiver included) over that span. B/flow: Go heap live after GC with the flows " +
			"active in the table between scans, minus the heap after a scan of nothing. Scan: one steady-state " +
			"scan with every flow active (each counted since the previous scan, none ends), of which saving " +
			"the table to the pinned state maps. Kernel: memlock of both flow stores (preallocated for " +
			"max_flows) and of the two state maps (per entry). Median of the runs (at most 3 at 1M flows) " +
			"± spread (max-min)/median.",
		Header: []string{"kind", "flows", "max_flows", "flows/s", "CPU ns/flow", "B/flow (Go heap)",
			"scan ms", "of which save ms", "stores MB (kernel)", "state B/flow (kernel)", "records sent"},
	}
	for _, row := range r.Rows {
		t.Rows = append(t.Rows, []string{
			row.Kind, expCount(row.Flows), expCount(row.MaxFlows),
			expStat(row.Rate, 0), expStat(row.CPUNsPerFlow, 0), expStat(row.BytesPerFlow, 0),
			expStat(row.ScanMs, 1), expStat(row.SaveMs, 1),
			fmt.Sprintf("%.1f", float64(row.KernelStoreBytes)/1e6),
			fmt.Sprintf("%.0f", float64(row.KernelStateBytes)/float64(row.Flows)),
			fmt.Sprintf("%d", row.Exported),
		})
	}
	return []Table{t}
}

func pinnedNote(cpu int) string {
	if cpu < 0 {
		return " (pinning failed: every CPU)"
	}
	return fmt.Sprintf(" (CPU %d)", cpu)
}

// Plots are scan time and rate against the flow count, one line per kind.
func (r *ExporterResult) Plots() []Plot {
	scan := Plot{Name: "exporter_scan", Title: "Exporter: steady-state scan time", XLabel: "active flows",
		YLabel: "scan time (ms)", LogX: true, LogY: true}
	rate := Plot{Name: "exporter_rate", Title: "Exporter: drain + encode + send rate (one CPU)", XLabel: "flows",
		YLabel: "flows/s", LogX: true}
	var kinds []string
	for _, row := range r.Rows {
		i := 0
		for i < len(kinds) && kinds[i] != row.Kind {
			i++
		}
		if i == len(kinds) {
			kinds = append(kinds, row.Kind)
			scan.Series = append(scan.Series, Series{Name: row.Kind})
			rate.Series = append(rate.Series, Series{Name: row.Kind})
		}
		scan.Series[i].X = append(scan.Series[i].X, float64(row.Flows))
		scan.Series[i].Y = append(scan.Series[i].Y, row.ScanMs.Median)
		rate.Series[i].X = append(rate.Series[i].X, float64(row.Flows))
		rate.Series[i].Y = append(rate.Series[i].Y, row.Rate.Median)
	}
	return []Plot{scan, rate}
}

// expStat renders a figure as "1.23M ±4%".
func expStat(s Stat, prec int) string {
	if s.Median != s.Median { // NaN
		return "–"
	}
	v := expNum(s.Median, prec)
	if len(s.Runs) > 1 {
		v += fmt.Sprintf(" ±%.0f%%", 100*s.Spread())
	}
	return v
}

func expNum(v float64, prec int) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	}
	return fmt.Sprintf("%.*f", prec, v)
}

func expCount(n int) string {
	switch {
	case n >= 1e6 && n%1e6 == 0:
		return fmt.Sprintf("%dM", n/1e6)
	case n >= 1e3 && n%1e3 == 0:
		return fmt.Sprintf("%dk", n/1e3)
	}
	return strconv.Itoa(n)
}
