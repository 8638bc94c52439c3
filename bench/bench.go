// Package bench measures xflow and writes what it measured: the data plane
// per map kind (BPF_PROG_TEST_RUN of the production programs), the whole
// agent on a veth pair beside softflowd and pmacctd, and the exporter's
// drain and encode path. `xflow-bench` (cmd/xflow-bench) runs it.
//
// Every figure is the median of several runs, kept with its spread and
// with a ratio to a baseline measured in the same run.
package bench

import (
	"log/slog"
	"math"
	"sort"
)

// Options are what every part of the benchmark takes.
type Options struct {
	// Runs is how many times each figure is measured; the report gives the
	// median and the spread. At least 1.
	Runs int
	// Quick shrinks every part to a smoke test (a few seconds each): the
	// smallest sizes, short runs. For the test suite, never for numbers.
	Quick bool
	// Xflow is the path of the xflow binary the end-to-end part runs as
	// the agent (`xflow run`).
	Xflow string
	// Log receives progress (one line per measurement) at Info.
	Log *slog.Logger
}

func (o Options) runs() int {
	if o.Runs < 1 {
		return 1
	}
	return o.Runs
}

func (o Options) log() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log
}

// Stat is one figure measured Runs times.
type Stat struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Runs   []float64 `json:"runs"`
}

// NewStat summarises the runs of one figure.
func NewStat(runs []float64) Stat {
	if len(runs) == 0 {
		return Stat{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := append([]float64(nil), runs...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Median: m, Min: s[0], Max: s[len(s)-1], Runs: append([]float64(nil), runs...)}
}

// Spread is (max-min)/median: 0.05 means the runs lay within 5% of the
// median's size.
func (s Stat) Spread() float64 {
	if s.Median == 0 || len(s.Runs) < 2 {
		return 0
	}
	return (s.Max - s.Min) / math.Abs(s.Median)
}

// Table is one table of the report.
type Table struct {
	Title  string     `json:"title"`
	Note   string     `json:"note,omitempty"` // a paragraph under the title
	Header []string   `json:"header"`
	Rows   [][]string `json:"rows"`
}

// Series is one line of a plot.
type Series struct {
	Name string    `json:"name"`
	X    []float64 `json:"x"`
	Y    []float64 `json:"y"`
}

// Plot is one figure of the report, drawn as lines with points.
type Plot struct {
	Name   string   `json:"name"` // file name without extension
	Title  string   `json:"title"`
	XLabel string   `json:"x_label"`
	YLabel string   `json:"y_label"`
	LogX   bool     `json:"log_x,omitempty"`
	LogY   bool     `json:"log_y,omitempty"`
	Series []Series `json:"series"`
}

// Part is the result of one part of the benchmark.
type Part interface {
	Tables() []Table
	Plots() []Plot
}
