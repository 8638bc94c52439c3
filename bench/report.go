package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The parts of the benchmark, in the order they run and are reported.
const (
	PartDataPlane = "dataplane"
	PartEndToEnd  = "endtoend"
	PartExporter  = "exporter"
)

// Parts lists every part.
func Parts() []string { return []string{PartDataPlane, PartEndToEnd, PartExporter} }

// Report is everything one `xflow-bench` run measured.
type Report struct {
	Version  string    `json:"version"`
	Command  string    `json:"command"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Machine  Machine   `json:"machine"`
	Runs     int       `json:"runs"`
	Quick    bool      `json:"quick,omitempty"`
	Parts    []string  `json:"parts"`
	Failures []Failure `json:"failures,omitempty"`

	DataPlane *DataPlaneResult `json:"data_plane,omitempty"`
	EndToEnd  *EndToEndResult  `json:"end_to_end,omitempty"`
	Exporter  *ExporterResult  `json:"exporter,omitempty"`
}

// Failure is a part that could not be measured.
type Failure struct {
	Part  string `json:"part"`
	Error string `json:"error"`
}

// Machine describes where the figures were measured.
type Machine struct {
	CPU       string  `json:"cpu"`
	CPUs      int     `json:"cpus"`
	MemoryGiB float64 `json:"memory_gib"`
	Kernel    string  `json:"kernel"`
	Go        string  `json:"go"`
}

func (m Machine) String() string {
	return fmt.Sprintf("%s, %d CPUs, %.0f GiB, Linux %s, %s", m.CPU, m.CPUs, m.MemoryGiB, m.Kernel, m.Go)
}

// ThisMachine describes the machine the process runs on.
func ThisMachine() Machine {
	m := Machine{CPU: "unknown CPU", CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.Join(strings.Fields(v), " ")
				break
			}
		}
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		m.MemoryGiB = float64(si.Totalram) * float64(si.Unit) / (1 << 30)
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	return m
}

// Run measures the parts named (all if none), in order. A part that fails
// is recorded in Failures and the others still run; Run returns an error
// only when ctx ends.
func Run(ctx context.Context, o Options, parts []string) (*Report, error) {
	if len(parts) == 0 {
		parts = Parts()
	}
	r := &Report{Started: time.Now().UTC(), Machine: ThisMachine(), Runs: o.runs(), Quick: o.Quick, Parts: parts}
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		o.log().Info("bench: part starts", "part", p)
		var err error
		switch p {
		case PartDataPlane:
			r.DataPlane, err = RunDataPlane(ctx, o)
		case PartEndToEnd:
			r.EndToEnd, err = RunEndToEnd(ctx, o)
		case PartExporter:
			r.Exporter, err = RunExporter(ctx, o)
		default:
			err = fmt.Errorf("unknown part %q (want one of %s)", p, strings.Join(Parts(), ", "))
		}
		if err != nil {
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
			o.log().Error("bench: part failed", "part", p, "err", err)
			r.Failures = append(r.Failures, Failure{Part: p, Error: err.Error()})
		}
	}
	r.Seconds = math.Round(time.Since(r.Started).Seconds()*10) / 10
	return r, nil
}

// ParseParts checks a comma-separated list of part names.
func ParseParts(s string) ([]string, error) {
	if s == "" || s == "all" {
		return Parts(), nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		ok := false
		for _, known := range Parts() {
			ok = ok || p == known
		}
		if !ok {
			return nil, fmt.Errorf("unknown part %q (want a comma-separated list of %s)", p, strings.Join(Parts(), ", "))
		}
		out = append(out, p)
	}
	return out, nil
}

type section struct {
	title string
	part  Part
}

// sections are the parts measured, with their report titles.
func (r *Report) sections() []section {
	var s []section
	if r.DataPlane != nil {
		s = append(s, section{"Data plane (BPF_PROG_TEST_RUN)", r.DataPlane})
	}
	if r.EndToEnd != nil {
		s = append(s, section{"End to end on a veth pair", r.EndToEnd})
	}
	if r.Exporter != nil {
		s = append(s, section{"Exporter", r.Exporter})
	}
	return s
}

// Markdown renders the report: a header naming the machine and the
// command, then each part's tables, with links to its plots.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# xflow-bench\n\n")
	fmt.Fprintf(&b, "- Machine: %s\n", r.Machine)
	fmt.Fprintf(&b, "- xflow %s, started %s, took %.0f s\n", r.Version, r.Started.Format(time.RFC3339), r.Seconds)
	if r.Command != "" {
		fmt.Fprintf(&b, "- Command: `%s`\n", r.Command)
	}
	fmt.Fprintf(&b, "- Each figure is the median of %d runs; ±N%% is the spread, (max − min) / median.\n", r.Runs)
	if r.Quick {
		fmt.Fprintf(&b, "- **Quick mode**: a smoke test at the smallest sizes; not figures to quote.\n")
	}
	for _, f := range r.Failures {
		fmt.Fprintf(&b, "- **%s failed**: %s\n", f.Part, f.Error)
	}
	for _, s := range r.sections() {
		fmt.Fprintf(&b, "\n## %s\n", s.title)
		for _, t := range s.part.Tables() {
			b.WriteString("\n")
			writeTable(&b, t)
		}
		for _, p := range s.part.Plots() {
			if p.drawable() {
				fmt.Fprintf(&b, "\n![%s](%s.png)\n", p.Title, p.Name)
			}
		}
	}
	return b.String()
}

func writeTable(b *strings.Builder, t Table) {
	if t.Title != "" {
		fmt.Fprintf(b, "### %s\n\n", t.Title)
	}
	if t.Note != "" {
		fmt.Fprintf(b, "%s\n\n", t.Note)
	}
	if len(t.Header) == 0 {
		return
	}
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	row := func(cells []string) {
		b.WriteString("|")
		for i := range t.Header {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			fmt.Fprintf(b, " %s |", cell(c))
		}
		b.WriteString("\n")
	}
	row(t.Header)
	b.WriteString("|")
	for i := range t.Header {
		if i == 0 {
			b.WriteString(" --- |")
		} else {
			b.WriteString(" ---: |")
		}
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		row(r)
	}
}

// Write puts results.md, results.json and one PNG per plot into dir
// (created if missing). Each file is written under a temporary name and
// renamed, so a failed run never leaves a half-written file.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: output directory: %w", err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: results.json: %w", err)
	}
	var errs []error
	errs = append(errs, writeFile(filepath.Join(dir, "results.json"), append(js, '\n')))
	errs = append(errs, writeFile(filepath.Join(dir, "results.md"), []byte(r.Markdown())))
	for _, s := range r.sections() {
		for _, p := range s.part.Plots() {
			if !p.drawable() {
				continue
			}
			png, err := p.PNG()
			if err != nil {
				errs = append(errs, fmt.Errorf("bench: plot %s: %w", p.Name, err))
				continue
			}
			errs = append(errs, writeFile(filepath.Join(dir, p.Name+".png"), png))
		}
	}
	return errors.Join(errs...)
}

func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("bench: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// FormatStat renders a figure as "43.1 ±2%" with prec decimals.
func FormatStat(s Stat, prec int) string { return formatStat(s, 'f', prec) }

// formatStat renders the median with strconv's format and precision, then
// the spread; "–" where there is no figure.
func formatStat(s Stat, format byte, prec int) string {
	if math.IsNaN(s.Median) {
		return "–"
	}
	v := strconv.FormatFloat(s.Median, format, prec, 64)
	if len(s.Runs) > 1 {
		v += fmt.Sprintf(" ±%.0f%%", 100*s.Spread())
	}
	return v
}

// FormatRatio renders a ratio with two decimals and a trailing ×.
func FormatRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v)
}
