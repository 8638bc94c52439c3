// Command testsummary is how `make test` reports: it reads `go test -json`
// and prints what go test prints without -v (each package's ok line, and
// the whole output of every failing test and package), saving the events;
// at the end it prints one summary of every run: per package the tests
// passed, failed and skipped and the time, every skipped test by name with
// its reason, and every failure.
//
//	go test -json ... | testsummary -o DIR/NAME.json    stream: print, save, exit 1 on a failure
//	testsummary -report DIR                             summary of DIR/*.json (and DIR/*.rc), exit 1 on a failure
//
// Counts include subtests. A DIR/NAME.rc file holds the exit status of a
// step that is not a go test run (make test-kernels): the summary lists it,
// and a non-zero status fails the report.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Time        time.Time `json:",omitempty"`
	Action      string
	Package     string  `json:",omitempty"`
	ImportPath  string  `json:",omitempty"` // build-output, build-fail
	Test        string  `json:",omitempty"`
	Elapsed     float64 `json:",omitempty"`
	Output      string  `json:",omitempty"`
	FailedBuild string  `json:",omitempty"`
}

func main() {
	out := flag.String("o", "", "stream mode: save the events to this `FILE`")
	report := flag.String("report", "", "report mode: summarise the runs saved in this `DIR`")
	flag.Parse()
	var err error
	switch {
	case *report != "" && *out == "":
		err = reportDir(*report, os.Stdout)
	case *out != "" && *report == "":
		err = stream(os.Stdin, os.Stdout, *out)
	default:
		fmt.Fprintln(os.Stderr, "usage: go test -json ... | testsummary -o FILE; testsummary -report DIR")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(1)
	}
}

// errFailed says that a test or package failed (its output was printed).
var errFailed = errors.New("tests failed")

// stream prints go test's usual output from the events on in, saves them
// to path, and returns errFailed if a test, a package or a build failed,
// or no package finished.
func stream(in io.Reader, w io.Writer, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	save := bufio.NewWriter(f)
	p := newPrinter(w)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil {
			fmt.Fprintf(w, "%s\n", line) // not an event: make's, or go's own messages
			continue
		}
		save.Write(line)
		save.WriteByte('\n')
		p.event(ev)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if err := save.Flush(); err != nil {
		return err
	}
	s := summarise(p.events)
	fmt.Fprintf(w, "testsummary: %s: %d packages, %d passed, %d failed, %d skipped\n",
		filepath.Base(path), len(s.pkgs), s.total.pass, s.total.fail, s.total.skip)
	if s.failed() {
		return errFailed
	}
	if len(s.pkgs) == 0 {
		return errors.New("go test reported no package")
	}
	return nil
}

// printer prints events as go test does without -v.
type printer struct {
	w      io.Writer
	events []event
	tests  map[string][]testLine // package + top-level test: its (and its subtests') output
	pkgOut map[string][]string   // package-level output
}

func newPrinter(w io.Writer) *printer {
	return &printer{w: w, tests: map[string][]testLine{}, pkgOut: map[string][]string{}}
}

// testLine is a line of output and the (sub)test that printed it.
type testLine struct{ test, line string }

func topLevel(test string) string {
	top, _, _ := strings.Cut(test, "/")
	return top
}

func (p *printer) event(ev event) {
	p.events = append(p.events, ev)
	key := ev.Package + "\x00" + topLevel(ev.Test)
	switch {
	case ev.Action == "build-output":
		fmt.Fprint(p.w, ev.Output)
	case ev.Action == "output" && ev.Test != "":
		if !isProgress(ev.Output) {
			p.tests[key] = append(p.tests[key], testLine{ev.Test, ev.Output})
		}
	case ev.Test != "" && ev.Test != topLevel(ev.Test) && (ev.Action == "pass" || ev.Action == "skip"):
		// A subtest that passed prints nothing, even if its parent fails.
		ls := p.tests[key][:0]
		for _, l := range p.tests[key] {
			if l.test != ev.Test && !strings.HasPrefix(l.test, ev.Test+"/") {
				ls = append(ls, l)
			}
		}
		p.tests[key] = ls
	case ev.Action == "output":
		p.pkgOut[ev.Package] = append(p.pkgOut[ev.Package], ev.Output)
	case ev.Test != "" && ev.Test == topLevel(ev.Test) && (ev.Action == "pass" || ev.Action == "fail" || ev.Action == "skip"):
		if ev.Action == "fail" {
			for _, l := range p.tests[key] {
				fmt.Fprint(p.w, l.line)
			}
		}
		delete(p.tests, key)
	case ev.Test == "" && (ev.Action == "pass" || ev.Action == "skip"):
		for _, l := range p.pkgOut[ev.Package] {
			if strings.HasPrefix(l, "ok ") || strings.HasPrefix(l, "?") {
				fmt.Fprint(p.w, l)
			}
		}
		delete(p.pkgOut, ev.Package)
	case ev.Test == "" && ev.Action == "fail":
		// A timeout or a panic ends tests that never report: their
		// output first.
		for k, ls := range p.tests {
			if strings.HasPrefix(k, ev.Package+"\x00") {
				for _, l := range ls {
					fmt.Fprint(p.w, l.line)
				}
				delete(p.tests, k)
			}
		}
		for _, l := range p.pkgOut[ev.Package] {
			fmt.Fprint(p.w, l)
		}
		delete(p.pkgOut, ev.Package)
	}
}

// isProgress tells the lines -v adds (test2json always runs verbose).
func isProgress(l string) bool {
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME"} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// counts are tests passed, failed and skipped.
type counts struct{ pass, fail, skip int }

type pkgResult struct {
	run, pkg string
	counts
	status  string // ok, FAIL, build failed, no tests
	elapsed time.Duration
}

type testResult struct{ run, pkg, test, reason string }

type summary struct {
	pkgs     []pkgResult
	skipped  []testResult
	failures []testResult // tests, and packages that failed with no failed test (test: "")
	total    counts
	steps    []string // other steps: "NAME: ok" or "NAME: FAIL (exit status N)"
	stepBad  bool
}

func (s *summary) failed() bool { return s.total.fail > 0 || len(s.failures) > 0 || s.stepBad }

// summarise counts one run's events.
func summarise(evs []event) *summary { return summariseRun("", evs) }

func summariseRun(run string, evs []event) *summary {
	s := &summary{}
	byPkg := map[string]*pkgResult{}
	var order []string
	out := map[string][]string{} // package + test: output lines
	pkg := func(name string) *pkgResult {
		r, ok := byPkg[name]
		if !ok {
			r = &pkgResult{run: run, pkg: name}
			byPkg[name] = r
			order = append(order, name)
		}
		return r
	}
	for _, ev := range evs {
		if ev.Package == "" {
			continue // build-output, build-fail: the package's fail event follows
		}
		r := pkg(ev.Package)
		key := ev.Package + "\x00" + ev.Test
		switch ev.Action {
		case "output":
			if ev.Test != "" {
				out[key] = append(out[key], ev.Output)
			}
		case "pass", "fail", "skip":
			if ev.Test == "" {
				r.elapsed = time.Duration(ev.Elapsed * float64(time.Second))
				switch {
				case ev.Action == "pass":
					r.status = "ok"
				case ev.Action == "skip":
					r.status = "no tests"
				case ev.FailedBuild != "":
					r.status = "build failed"
				default:
					r.status = "FAIL"
				}
				continue
			}
			switch ev.Action {
			case "pass":
				r.pass++
			case "fail":
				r.fail++
				s.failures = append(s.failures, testResult{run, ev.Package, ev.Test, ""})
			case "skip":
				r.skip++
				s.skipped = append(s.skipped, testResult{run, ev.Package, ev.Test, skipReason(out[key])})
			}
		}
	}
	for _, name := range order {
		r := byPkg[name]
		if r.status == "" {
			r.status = "FAIL" // no end event: the run stopped
		}
		if r.status != "ok" && r.status != "no tests" && r.fail == 0 {
			s.failures = append(s.failures, testResult{run, name, "", r.status})
		}
		s.total.pass += r.pass
		s.total.fail += r.fail
		s.total.skip += r.skip
		s.pkgs = append(s.pkgs, *r)
	}
	return s
}

// skipReason is the message of t.Skip: the last line a skipped test
// printed, but its "--- SKIP" line.
func skipReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || isProgress(l) || strings.HasPrefix(l, "--- SKIP") {
			continue
		}
		return l
	}
	return "(no reason given)"
}

// reportDir summarises every run saved in dir.
func reportDir(dir string, w io.Writer) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	all := &summary{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var evs []event
		for _, line := range bytes.Split(b, []byte("\n")) {
			var ev event
			if len(line) > 0 && json.Unmarshal(line, &ev) == nil {
				evs = append(evs, ev)
			}
		}
		s := summariseRun(strings.TrimSuffix(filepath.Base(f), ".json"), evs)
		all.pkgs = append(all.pkgs, s.pkgs...)
		all.skipped = append(all.skipped, s.skipped...)
		all.failures = append(all.failures, s.failures...)
		all.total.pass += s.total.pass
		all.total.fail += s.total.fail
		all.total.skip += s.total.skip
	}
	rcs, _ := filepath.Glob(filepath.Join(dir, "*.rc"))
	sort.Strings(rcs)
	for _, f := range rcs {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.Base(f), ".rc")
		if rc := strings.TrimSpace(string(b)); rc == "0" {
			all.steps = append(all.steps, name+": ok")
		} else {
			all.steps = append(all.steps, fmt.Sprintf("%s: FAIL (exit status %s)", name, rc))
			all.stepBad = true
		}
	}
	if len(files) == 0 {
		return fmt.Errorf("no go test runs saved in %s", dir)
	}
	all.print(w)
	if all.failed() {
		return errFailed
	}
	return nil
}

func (s *summary) print(w io.Writer) {
	fmt.Fprintf(w, "\n==> test summary (tests include subtests)\n")
	runW, pkgW := len("total"), len("PACKAGE")
	for _, r := range s.pkgs {
		runW, pkgW = max(runW, len(r.run)), max(pkgW, len(r.pkg))
	}
	row := func(run, pkg string, pass, fail, skip any, t, status string) {
		fmt.Fprintf(w, "%-*s  %-*s  %5v %5v %5v %8s  %s\n", runW, run, pkgW, pkg, pass, fail, skip, t, status)
	}
	row("RUN", "PACKAGE", "PASS", "FAIL", "SKIP", "TIME", "STATUS")
	var elapsed time.Duration
	for _, r := range s.pkgs {
		elapsed += r.elapsed
		row(r.run, r.pkg, r.pass, r.fail, r.skip, fmt.Sprintf("%.1fs", r.elapsed.Seconds()), r.status)
	}
	row("total", fmt.Sprintf("%d packages", len(s.pkgs)), s.total.pass, s.total.fail, s.total.skip, fmt.Sprintf("%.1fs", elapsed.Seconds()), "")
	for _, st := range s.steps {
		fmt.Fprintln(w, st)
	}
	fmt.Fprintf(w, "skipped: %d\n", len(s.skipped))
	for _, t := range s.skipped {
		fmt.Fprintf(w, "  SKIP %s %s %s: %s\n", t.run, t.pkg, t.test, t.reason)
	}
	if len(s.failures) == 0 && !s.stepBad {
		fmt.Fprintln(w, "failed: 0")
		return
	}
	fmt.Fprintf(w, "failed: %d\n", len(s.failures))
	for _, t := range s.failures {
		if t.test == "" {
			fmt.Fprintf(w, "  FAIL %s %s (%s)\n", t.run, t.pkg, t.reason)
		} else {
			fmt.Fprintf(w, "  FAIL %s %s %s\n", t.run, t.pkg, t.test)
		}
	}
}
