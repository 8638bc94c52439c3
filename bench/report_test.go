package bench

import (
	"bytes"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewStat(t *testing.T) {
	s := NewStat([]float64{5, 1, 3, 4, 2})
	if s.Median != 3 || s.Min != 1 || s.Max != 5 || len(s.Runs) != 5 {
		t.Errorf("odd: %+v", s)
	}
	if got := s.Spread(); math.Abs(got-4.0/3) > 1e-9 {
		t.Errorf("spread %v, want 4/3", got)
	}
	if s := NewStat([]float64{4, 1, 2, 3}); s.Median != 2.5 {
		t.Errorf("even: median %v, want 2.5", s.Median)
	}
	if s := NewStat(nil); !math.IsNaN(s.Median) || FormatStat(s, 1) != "–" {
		t.Errorf("empty: %+v %q", s, FormatStat(s, 1))
	}
	if got := FormatStat(NewStat([]float64{100, 102, 98}), 1); got != "100.0 ±4%" {
		t.Errorf("FormatStat = %q", got)
	}
	if got := FormatStat(NewStat([]float64{7}), 0); got != "7" {
		t.Errorf("FormatStat of one run = %q", got)
	}
}

func TestParseParts(t *testing.T) {
	if p, err := ParseParts(""); err != nil || len(p) != 3 {
		t.Errorf("all: %v %v", p, err)
	}
	if p, err := ParseParts("exporter, dataplane"); err != nil || strings.Join(p, ",") != "exporter,dataplane" {
		t.Errorf("two: %v %v", p, err)
	}
	if _, err := ParseParts("dataplane,e2e"); err == nil || !strings.Contains(err.Error(), `"e2e"`) {
		t.Errorf("unknown part: %v", err)
	}
}

// fakePart stands in for a measured part.
type fakePart struct{}

func (fakePart) Tables() []Table {
	return []Table{{Title: "T", Note: "a note", Header: []string{"kind", "ns|pkt"}, Rows: [][]string{{"hash", "1"}, {"array"}}}}
}

func (fakePart) Plots() []Plot {
	return []Plot{{Name: "fake", Title: "F", XLabel: "flows", YLabel: "ns", LogX: true, Series: []Series{
		{Name: "a", X: []float64{0, 1, 1024}, Y: []float64{5, 6, 7}},
		{Name: "b", X: []float64{1, 1024}, Y: []float64{3, 9}},
	}}}
}

func TestTableMarkdown(t *testing.T) {
	var b strings.Builder
	for _, tb := range (fakePart{}).Tables() {
		writeTable(&b, tb)
	}
	want := "### T\n\na note\n\n| kind | ns\\|pkt |\n| --- | ---: |\n| hash | 1 |\n| array |  |\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestPlotPNG(t *testing.T) {
	b, err := (fakePart{}).Plots()[0].PNG()
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if r := img.Bounds(); r.Dx() < 400 || r.Dy() < 200 {
		t.Errorf("image is %v", r)
	}
	if _, err := (Plot{Name: "empty", LogY: true, Series: []Series{{X: []float64{1}, Y: []float64{0}}}}).PNG(); err == nil {
		t.Error("a plot with nothing to draw: no error")
	}
}

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	// A part that failed half-way: its tables stand, its empty plot is
	// left out.
	r := &Report{Runs: 3, Machine: ThisMachine(), Parts: Parts(), Failures: []Failure{{Part: "endtoend", Error: "softflowd missing"}},
		Exporter: &ExporterResult{}}
	if r.Machine.CPUs < 1 || r.Machine.Kernel == "" {
		t.Errorf("machine: %+v", r.Machine)
	}
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"median of 3 runs", "**endtoend failed**: softflowd missing", r.Machine.Kernel} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	js, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil || back.Runs != 3 || len(back.Failures) != 1 {
		t.Errorf("results.json: %v %+v", err, back)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}
