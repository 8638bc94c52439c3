package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/xflow-net/xflow/sink"
)

// Every destination's totals are read under its name; a destination that
// measures delivery latency (Kafka) has a histogram, the others none.
func TestDestinations(t *testing.T) {
	const kname = "kafka://127.0.0.1:9092,127.0.0.1:9093/flows"
	bounds := []time.Duration{time.Millisecond, 10 * time.Millisecond, time.Second}
	dsts := []Destination{
		{Name: "192.0.2.1:4739", Protocol: "ipfix", Transport: "udp", Stats: func() sink.Stats {
			return sink.Stats{Messages: 3, Records: 30, Octets: 3000}
		}},
		{Name: kname, Protocol: "kafka", Transport: "tls", Stats: func() sink.Stats {
			return sink.Stats{Messages: 40, Records: 40, Octets: 4000, SendErrors: 2, DroppedRecords: 7, Connects: 3, Queued: 5,
				Latency: sink.Histogram{Bounds: bounds, Counts: []uint64{10, 35, 40}, Count: 40, Sum: 200 * time.Millisecond}}
		}},
	}
	m := New(Sources{Destinations: func() []Destination { return dsts }})
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	// value returns the metric of family name labelled collector=coll.
	value := func(name, coll string) *dto.Metric {
		t.Helper()
		mf := byName[name]
		if mf == nil {
			t.Fatalf("no %s", name)
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "collector" && l.GetValue() == coll {
					return mt
				}
			}
		}
		return nil
	}
	for name, want := range map[string]float64{
		"xflow_export_records_total":         40,
		"xflow_export_messages_total":        40,
		"xflow_export_bytes_total":           4000,
		"xflow_export_send_errors_total":     2,
		"xflow_export_dropped_records_total": 7,
		"xflow_export_connects_total":        3,
	} {
		mt := value(name, kname)
		if mt == nil || mt.GetCounter().GetValue() != want {
			t.Errorf("%s{collector=%q} = %v, want %v", name, kname, mt, want)
		}
	}
	if mt := value("xflow_export_queued_records", kname); mt == nil || mt.GetGauge().GetValue() != 5 {
		t.Errorf("queued: %v, want 5", mt)
	}
	if mt := value("xflow_export_records_total", "192.0.2.1:4739"); mt == nil || mt.GetCounter().GetValue() != 30 {
		t.Errorf("ipfix records: %v, want 30", mt)
	}
	h := value("xflow_export_latency_seconds", kname).GetHistogram()
	if h.GetSampleCount() != 40 || h.GetSampleSum() != 0.2 || len(h.GetBucket()) != 3 {
		t.Fatalf("latency histogram %v", h)
	}
	for i, b := range h.GetBucket() {
		if b.GetUpperBound() != bounds[i].Seconds() || b.GetCumulativeCount() != []uint64{10, 35, 40}[i] {
			t.Errorf("bucket %d: %v", i, b)
		}
	}
	if value("xflow_export_latency_seconds", "192.0.2.1:4739") != nil {
		t.Error("a latency histogram for the IPFIX destination, which does not measure it")
	}
	for _, mt := range byName["xflow_export_records_total"].GetMetric() {
		var ls []string
		for _, l := range mt.GetLabel() {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		t.Log(strings.Join(ls, " "))
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

// TestProbes: /healthz answers 200 whatever the state; /readyz answers 200
// when Ready does, else 503 with Ready's reason.
func TestProbes(t *testing.T) {
	var why error
	m := New(Sources{Ready: func() error { return why }})
	h := m.Handler()
	for _, c := range []struct {
		why      error
		code     int
		contains string
	}{
		{nil, 200, "ready"},
		{errors.New("no scan yet"), 503, "not ready: no scan yet"},
	} {
		why = c.why
		if code, body := get(t, h, "/readyz"); code != c.code || !strings.Contains(body, c.contains) {
			t.Errorf("readyz with %v: %d %q, want %d %q", c.why, code, body, c.code, c.contains)
		}
		if code, body := get(t, h, "/healthz"); code != 200 || body != "ok\n" {
			t.Errorf("healthz with %v: %d %q", c.why, code, body)
		}
	}
	// No Ready: always ready.
	if code, _ := get(t, New(Sources{}).Handler(), "/readyz"); code != 200 {
		t.Errorf("readyz without Ready: %d", code)
	}
}

// TestBuildInfo: /metrics has xflow_build_info 1 with the Go release that
// built the test.
func TestBuildInfo(t *testing.T) {
	code, body := get(t, New(Sources{}).Handler(), "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "xflow_build_info{") {
			if !strings.Contains(l, `goversion="`+runtime.Version()+`"`) || !strings.Contains(l, `revision="`) ||
				!strings.Contains(l, `version="`) || !strings.HasSuffix(l, "} 1") {
				t.Errorf("build info line %q", l)
			}
			return
		}
	}
	t.Errorf("no xflow_build_info in:\n%s", body)
}
