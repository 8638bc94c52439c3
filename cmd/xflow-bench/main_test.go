package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xflow-net/xflow/internal/testenv"
)

// benchBin is xflow-bench, built once by TestMain.
var benchBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xflow-bench-cli")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	benchBin = filepath.Join(dir, "xflow-bench")
	if out, err := exec.Command("go", "build", "-o", benchBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build xflow-bench: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestBenchCommand runs `xflow-bench` in its quick mode (the data plane
// and exporter parts; the end-to-end part has its own test in bench/) and
// checks what it writes: the tables, results.json and decodable plots.
// It asserts no timing: only that the figures exist and the counts held.
func TestBenchCommand(t *testing.T) {
	testenv.RequireRoot(t)
	out := filepath.Join(t.TempDir(), "results")
	cmd := exec.Command(benchBin, "--quick", "--runs", "2", "--parts", "dataplane,exporter", "--out", out, "-q")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("xflow-bench: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), string(md)) {
		t.Error("the tables printed differ from results.md")
	}
	for _, want := range []string{"## Data plane", "## Exporter", "median of 2 runs", "percpu_hash", "Quick mode"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	var r struct {
		Runs      int             `json:"runs"`
		Failures  []any           `json:"failures"`
		DataPlane json.RawMessage `json:"data_plane"`
		Exporter  json.RawMessage `json:"exporter"`
		EndToEnd  json.RawMessage `json:"end_to_end"`
	}
	js, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &r); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if r.Runs != 2 || len(r.Failures) != 0 || len(r.DataPlane) < 100 || len(r.Exporter) < 100 || r.EndToEnd != nil {
		t.Errorf("results.json: runs %d, failures %v, data_plane %d B, exporter %d B, end_to_end %s",
			r.Runs, r.Failures, len(r.DataPlane), len(r.Exporter), r.EndToEnd)
	}
	plots, _ := filepath.Glob(filepath.Join(out, "*.png"))
	if len(plots) < 2 {
		t.Errorf("plots: %v", plots)
	}
	for _, p := range plots {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(f); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		f.Close()
		if !strings.Contains(string(md), "("+filepath.Base(p)+")") {
			t.Errorf("results.md does not show %s", filepath.Base(p))
		}
	}
}

func TestBenchUsage(t *testing.T) {
	if os.Geteuid() == 0 {
		// Root: the directory check comes before any measurement.
		file := filepath.Join(t.TempDir(), "file")
		os.WriteFile(file, nil, 0o644)
		out, err := exec.Command(benchBin, "--out", filepath.Join(file, "results"), "--parts", "dataplane").CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "--out: mkdir") {
			t.Errorf("xflow-bench --out under a file: %v\n%s", err, out)
		}
	}
	for _, args := range [][]string{{"--parts", "dataplane,warp"}, {"--runs", "0"}, {"extra"}, {"bench"},
		{"--parts", "endtoend", "--xflow", "/nonexistent/xflow"}} {
		cmd := exec.Command(benchBin, args...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("xflow-bench %v: %v (want exit status 2)\n%s", args, err, out)
		}
	}
}

func TestBenchHelp(t *testing.T) {
	out, err := exec.Command(benchBin, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("xflow-bench -h: %v\n%s", err, out)
	}
	for _, want := range []string{"Usage: xflow-bench", "-out", "-runs", "-parts", "-quick", "-xflow"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("xflow-bench -h lacks %q:\n%s", want, out)
		}
	}
}
