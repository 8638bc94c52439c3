// Package metrics serves xflow's Prometheus metrics, and the liveness and
// readiness probes beside them. Everything but the drain-duration histogram
// is read from its source at scrape time: the data plane's monotonic
// per-CPU counters, the exporter's totals and each destination's, so no
// count is kept twice.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/exporter"
	"github.com/xflow-net/xflow/flow"
	"github.com/xflow-net/xflow/internal/buildinfo"
	"github.com/xflow-net/xflow/sink"
)

// Destination is one export destination, as metrics label it: Name is
// the collector label (config.Collector.Name: its address, or
// kafka://BROKERS/TOPIC).
type Destination struct {
	Name, Protocol, Transport string
	Stats                     func() sink.Stats
}

// Sources are what the metrics are read from.
type Sources struct {
	Datapath     interface{ Counters() (bpf.Counters, error) }
	Exporter     interface{ Stats() exporter.Stats }
	Destinations func() []Destination // the destinations configured now
	Interfaces   []flow.Interface     // names for ifindexes
	MaxFlows     int
	FilterSkip   []bool // per filter rule: its action is skip (labels)
	// Ready says whether the daemon is ready (/readyz): nil, or why not.
	// Nil Ready: always ready.
	Ready func() error
}

// samplingSource is what a data plane with sampling and filters offers
// (*bpf.Datapath).
type samplingSource interface {
	IfaceTotals() ([]bpf.IfaceTotal, error)
	FilterHits() (bpf.FilterHits, error)
}

// Metrics is the registry and the drain histogram.
type Metrics struct {
	reg   *prometheus.Registry
	drain prometheus.Histogram
	ready func() error
}

// New registers xflow's metrics (and Go's process metrics).
func New(src Sources) *Metrics {
	bi := buildinfo.Get()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "xflow_build_info",
		Help:        "Always 1: the xflow build serving these metrics (xflow version prints the same).",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	build.Set(1)
	m := &Metrics{
		ready: src.Ready,
		reg:   prometheus.NewRegistry(),
		drain: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "xflow_drain_duration_seconds",
			Help:    "Time to swap and drain the data plane's flow store.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms .. 4 s
		}),
	}
	m.reg.MustRegister(m.drain, build, &sourceReader{src: src},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveDrain records one drain's duration (exporter.Options.OnDrain).
func (m *Metrics) ObserveDrain(d time.Duration) { m.drain.Observe(d.Seconds()) }

// Handler serves /metrics, and the probes /healthz (live: the process
// answers, always 200) and /readyz (200, or 503 with the reason Ready
// gives).
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if m.ready != nil {
			if err := m.ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Serve serves Handler on listen until stop is called.
func (m *Metrics) Serve(listen string, log *slog.Logger) (stop func(), err error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %s: %w", listen, err)
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	dPackets     = desc("xflow_packets_total", "Packets counted into flows, by interface and direction.", "iface", "direction")
	dBytes       = desc("xflow_bytes_total", "IP bytes counted into flows, by interface and direction.", "iface", "direction")
	dActive      = desc("xflow_flows_active", "Flows held by the exporter.")
	dExported    = desc("xflow_flows_exported_total", "Flow records ended, by flowEndReason.", "reason")
	dFill        = desc("xflow_store_fill_ratio", "Entries in the data plane's store at the last drain, over datapath.max_flows.")
	dMissed      = desc("xflow_store_missed_packets_total", "Packets not counted: the store (or the ring buffer, or its consumer's aggregate) was full.")
	dMissedBytes = desc("xflow_store_missed_bytes_total", "IP bytes of the packets the full store missed.")
	dEvicted     = desc("xflow_store_evicted_flows_total", "Flows an LRU store evicted (their counts are lost).")
	dFrames      = desc("xflow_frames_not_counted_total", "Frames that made no flow, by reason.", "reason")
	dPartial     = desc("xflow_packets_partial_total", "Packets counted under ports 0, by reason.", "reason")
	dLag         = desc("xflow_export_lag_seconds", "At the last scan, the longest time from a flow's last packet to its record's export.")
	dScans       = desc("xflow_scans_total", "Drains of the data plane.")
	dMessages    = desc("xflow_export_messages_total", "Messages sent, by collector.", "collector", "protocol", "transport")
	dRecords     = desc("xflow_export_records_total", "Flow records sent (TCP: acknowledged or in flight), by collector.", "collector", "protocol", "transport")
	dOctets      = desc("xflow_export_bytes_total", "Bytes of messages sent, by collector.", "collector", "protocol", "transport")
	dSendErrors  = desc("xflow_export_send_errors_total", "Messages that failed to send, by collector.", "collector", "protocol", "transport")
	dDropped     = desc("xflow_export_dropped_records_total", "Flow records never delivered (queue full, lost with a TCP connection), by collector.", "collector", "protocol", "transport")
	dUnexport    = desc("xflow_export_unexportable_records_total", "Flow records the protocol cannot carry (IPv6 to NetFlow v5), by collector.", "collector", "protocol", "transport")
	dQueued      = desc("xflow_export_queued_records", "Flow records waiting for the collector.", "collector", "protocol", "transport")
	dIfPackets   = desc("xflow_interface_packets_total", "Every IP packet the data plane saw, before filters and sampling, by interface and direction.", "iface", "direction")
	dIfBytes     = desc("xflow_interface_bytes_total", "IP bytes of every packet the data plane saw, before filters and sampling, by interface and direction.", "iface", "direction")
	dFilterHits  = desc("xflow_filter_hits_total", "Packets a filter rule matched first (rule: its index in filters), by action.", "rule", "action")
	dFilterMiss  = desc("xflow_filter_misses_total", "Packets no filter rule matched (counted, at the interface's sampling).")
	dConnects    = desc("xflow_export_connects_total", "TCP connections made (Kafka: to brokers), by collector.", "collector", "protocol", "transport")
	dLatency     = desc("xflow_export_latency_seconds", "Time from a record's enqueue to its delivery, by collector; only destinations that see delivery (Kafka: acknowledged by the brokers).", "collector", "protocol", "transport")
)

// sourceReader is the prometheus.Collector that reads xflow's metrics from
// their sources at scrape time.
type sourceReader struct{ src Sources }

func (c *sourceReader) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dPackets, dBytes, dActive, dExported, dFill, dMissed, dMissedBytes,
		dEvicted, dFrames, dPartial, dLag, dScans, dMessages, dRecords, dOctets, dSendErrors, dDropped, dUnexport, dQueued, dConnects, dLatency,
		dIfPackets, dIfBytes, dFilterHits, dFilterMiss} {
		ch <- d
	}
}

func (c *sourceReader) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	names := map[uint32]string{}
	for _, i := range c.src.Interfaces {
		names[i.Index] = i.Name
	}
	if c.src.Exporter != nil {
		st := c.src.Exporter.Stats()
		for id, n := range st.Seen {
			name, ok := names[id.IfIndex]
			if !ok {
				name = strconv.Itoa(int(id.IfIndex))
			}
			counter(dPackets, n.Packets, name, id.Direction.String())
			counter(dBytes, n.Bytes, name, id.Direction.String())
		}
		gauge(dActive, float64(st.ActiveFlows))
		for r := flow.IdleTimeout; r <= flow.LackOfResources; r++ {
			counter(dExported, st.Records[r], r.String())
		}
		if c.src.MaxFlows > 0 {
			gauge(dFill, float64(st.LastDrained)/float64(c.src.MaxFlows))
		}
		counter(dEvicted, st.Evicted)
		gauge(dLag, st.LastLag.Seconds())
		counter(dScans, st.Scans)
	}
	if c.src.Datapath != nil {
		if cnt, err := c.src.Datapath.Counters(); err == nil {
			counter(dMissed, cnt.MissedPackets)
			counter(dMissedBytes, cnt.MissedBytes)
			counter(dFrames, cnt.NonIP, "non_ip")
			counter(dFrames, cnt.Truncated, "truncated")
			counter(dFrames, cnt.Malformed, "malformed")
			counter(dPartial, cnt.L4Truncated, "l4_truncated")
			counter(dPartial, cnt.Fragments, "fragment")
			counter(dPartial, cnt.IPv6ExtLimit, "ipv6_ext_limit")
		}
		if ss, ok := c.src.Datapath.(samplingSource); ok {
			c.collectSampling(ss, names, counter)
		}
	}
	var dsts []Destination
	if c.src.Destinations != nil {
		dsts = c.src.Destinations()
	}
	for _, dst := range dsts {
		st := dst.Stats()
		l := []string{dst.Name, dst.Protocol, dst.Transport}
		counter(dMessages, st.Messages, l...)
		counter(dRecords, st.Records, l...)
		counter(dOctets, st.Octets, l...)
		counter(dSendErrors, st.SendErrors, l...)
		counter(dDropped, st.DroppedRecords, l...)
		counter(dUnexport, st.Unexportable, l...)
		gauge(dQueued, float64(st.Queued), l...)
		counter(dConnects, st.Connects, l...)
		if h := st.Latency; h.Bounds != nil {
			buckets := make(map[float64]uint64, len(h.Bounds))
			for i, b := range h.Bounds {
				buckets[b.Seconds()] = h.Counts[i]
			}
			ch <- prometheus.MustNewConstHistogram(dLatency, h.Count, h.Sum.Seconds(), buckets, l...)
		}
	}
}

// collectSampling reads the per-interface totals and the filter counters.
func (c *sourceReader) collectSampling(ss samplingSource, names map[uint32]string, counter func(*prometheus.Desc, uint64, ...string)) {
	if tot, err := ss.IfaceTotals(); err == nil {
		for _, t := range tot {
			name, ok := names[t.IfIndex]
			if !ok {
				name = strconv.Itoa(int(t.IfIndex))
			}
			counter(dIfPackets, t.Packets, name, t.Direction.String())
			counter(dIfBytes, t.Bytes, name, t.Direction.String())
		}
	}
	if h, err := ss.FilterHits(); err == nil && h.Rules != nil {
		for i, n := range h.Rules {
			action := "count"
			if i < len(c.src.FilterSkip) && c.src.FilterSkip[i] {
				action = "skip"
			}
			counter(dFilterHits, n, strconv.Itoa(i), action)
		}
		counter(dFilterMiss, h.Misses)
	}
}
