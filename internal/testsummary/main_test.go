package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A module whose tests pass, fail, skip and fail in a subtest, and a
// package that does not build.
var module = map[string]string{
	"go.mod": "module example.com/m\n\ngo 1.22\n",
	"good/good_test.go": `package good

import "testing"

func TestPass(t *testing.T) { t.Log("quiet when passing") }
func TestSkip(t *testing.T) { t.Skip("needs a frobnicator") }
`,
	"bad/bad_test.go": `package bad

import "testing"

func TestFail(t *testing.T) { t.Error("boom") }
func TestSub(t *testing.T) {
	t.Run("fine", func(t *testing.T) {})
	t.Run("broken", func(t *testing.T) { t.Fatal("sub boom") })
}
`,
	"nobuild/nobuild_test.go": "package nobuild\n\nimport \"testing\"\n\nfunc TestX(t *testing.T) { undefined() }\n",
}

// TestStreamAndReport runs go test -json on that module through both
// modes: the stream prints what go test prints without -v (failures in
// full, nothing of passing tests but the package's ok line) and fails;
// the report counts per package, names the skipped test with its reason
// and every failure, and fails.
func TestStreamAndReport(t *testing.T) {
	mod := t.TempDir()
	for name, body := range module {
		p := filepath.Join(mod, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "test", "-json", "-count=1", "./...")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	events, _ := cmd.Output() // exits 1: tests fail
	dir := t.TempDir()
	var out bytes.Buffer
	err := stream(bytes.NewReader(events), &out, filepath.Join(dir, "host.json"))
	if !errors.Is(err, errFailed) {
		t.Errorf("stream: %v, want errFailed", err)
	}
	s := out.String()
	for _, want := range []string{"--- FAIL: TestFail", "boom", "--- FAIL: TestSub/broken", "sub boom",
		"ok  \texample.com/m/good", "FAIL\texample.com/m/bad", "undefined: undefined",
		"testsummary: host.json: 3 packages, 2 passed, 3 failed, 1 skipped"} {
		if !strings.Contains(s, want) {
			t.Errorf("stream output lacks %q:\n%s", want, s)
		}
	}
	for _, not := range []string{"=== RUN", "quiet when passing", "--- PASS"} {
		if strings.Contains(s, not) {
			t.Errorf("stream output has %q:\n%s", not, s)
		}
	}

	if err := os.WriteFile(filepath.Join(dir, "kernels.rc"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := reportDir(dir, &out); !errors.Is(err, errFailed) {
		t.Errorf("report: %v, want errFailed", err)
	}
	r := out.String()
	var squeezed []string // the report's lines, runs of spaces squeezed
	for _, l := range strings.Split(r, "\n") {
		squeezed = append(squeezed, strings.Join(strings.Fields(l), " "))
	}
	for _, want := range []string{
		"host example.com/m/good 1 0 1",
		"host example.com/m/bad 1 3 0",
		"host example.com/m/nobuild 0 0 0 0.0s build failed",
		"total 3 packages 2 3 1",
	} {
		found := false
		for _, l := range squeezed {
			found = found || strings.HasPrefix(l, want)
		}
		if !found {
			t.Errorf("report lacks a line %q:\n%s", want, r)
		}
	}
	for _, want := range []string{
		"kernels: ok",
		"skipped: 1\n  SKIP host example.com/m/good TestSkip: good_test.go:6: needs a frobnicator\n",
		"failed: 4\n",
		"FAIL host example.com/m/bad TestFail\n",
		"FAIL host example.com/m/bad TestSub\n",
		"FAIL host example.com/m/bad TestSub/broken\n",
		"FAIL host example.com/m/nobuild (build failed)\n",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("report lacks %q:\n%s", want, r)
		}
	}
	t.Logf("stream:\n%s\nreport:%s", s, r)

	// A failed step fails the report; so does a directory without runs.
	os.WriteFile(filepath.Join(dir, "kernels.rc"), []byte("1\n"), 0o644)
	os.Remove(filepath.Join(dir, "host.json"))
	if err := reportDir(dir, &out); err == nil {
		t.Errorf("report without runs: nil")
	}
}

// TestReportPass: an all-passing run reports 0 skipped and 0 failed and
// succeeds.
func TestReportPass(t *testing.T) {
	dir := t.TempDir()
	ev := `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"--- PASS: TestA (0.00s)\n"}
{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0}
{"Action":"output","Package":"p","Output":"ok  \tp\t0.1s\n"}
{"Action":"pass","Package":"p","Elapsed":0.1}
`
	var out bytes.Buffer
	if err := stream(strings.NewReader(ev), &out, filepath.Join(dir, "race.json")); err != nil {
		t.Fatalf("stream: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := reportDir(dir, &out); err != nil {
		t.Fatalf("report: %v\n%s", err, out.String())
	}
	if r := out.String(); !strings.Contains(r, "skipped: 0\nfailed: 0\n") {
		t.Errorf("report:\n%s", r)
	}
}
