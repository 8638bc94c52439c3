package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/internal/testnet"
)

// xflowCmd runs the test binary with args and returns its exit status,
// standard output and standard error.
func xflowCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(xflowBin, args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), o.String(), e.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, o.String(), e.String()
}

// TestCommandHelp: `xflow CMD -h` prints the command's usage on standard
// output and exits 0; every flag line names the flag and at most one
// argument placeholder (a flag's help text in backquotes once became the
// placeholder: "-keep-attached xflow run"); run, check and clean show the
// same -c default.
func TestCommandHelp(t *testing.T) {
	flagLine := regexp.MustCompile(`^  -([a-z-]+)( [A-Z][A-Za-z:]*)?$|^  -([a-z])\t`)
	for _, cmd := range []string{"run", "check", "clean", "flows", "collect", "version"} {
		for _, h := range []string{"-h", "--help"} {
			code, out, errOut := xflowCmd(t, cmd, h)
			if code != 0 || errOut != "" || !strings.HasPrefix(out, "Usage: xflow "+cmd) {
				t.Errorf("xflow %s %s: exit %d, stdout %q, stderr %q", cmd, h, code, out, errOut)
				continue
			}
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "  -") && !flagLine.MatchString(l) {
					t.Errorf("xflow %s %s: flag line %q", cmd, h, l)
				}
			}
			switch cmd {
			case "run", "check", "clean":
				if !strings.Contains(out, "  -c FILE\n") || !strings.Contains(out, fmt.Sprintf("(default %q)", defaultConfig)) {
					t.Errorf("xflow %s -h: no -c FILE with default %s:\n%s", cmd, defaultConfig, out)
				}
			}
		}
	}
	_, out, _ := xflowCmd(t, "run", "-h")
	t.Logf("xflow run -h:\n%s", out)
}

// TestBadFlag: an unknown flag or a stray argument is reported once, on
// standard error, with the command's synopsis, exit status 2.
func TestBadFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "-bogus"}, "xflow run: flag provided but not defined: -bogus"},
		{[]string{"check", "--keep-attached"}, "xflow check: flag provided but not defined: -keep-attached"},
		{[]string{"flows", "-top", "x"}, `xflow flows: invalid value "x" for flag -top`},
		{[]string{"clean", "extra"}, `xflow clean: unexpected argument "extra"`},
		{[]string{"version", "-v"}, "xflow version: flag provided but not defined: -v"},
	} {
		code, out, errOut := xflowCmd(t, c.args...)
		what := c.want[strings.Index(c.want, ": ")+2:]
		if code != 2 || out != "" || !strings.HasPrefix(errOut, c.want) || strings.Count(errOut, what) != 1 ||
			!strings.Contains(errOut, "\nUsage: xflow "+c.args[0]) {
			t.Errorf("xflow %s: exit %d, stdout %q, stderr %q; want 2 and %q once with the synopsis", strings.Join(c.args, " "), code, out, errOut, c.want)
		}
	}
}

// TestConfigDefault: without -c, run, check and clean all read
// defaultConfig.
func TestConfigDefault(t *testing.T) {
	if _, err := os.Stat(defaultConfig); err == nil {
		t.Skipf("%s exists here: the commands would read it", defaultConfig)
	}
	for _, cmd := range []string{"check", "clean", "run"} {
		code, _, errOut := xflowCmd(t, cmd)
		if code != 2 || !strings.Contains(errOut, defaultConfig) {
			t.Errorf("xflow %s: exit %d, %q; want status 2 naming %s", cmd, code, errOut, defaultConfig)
		}
	}
}

// TestVersion: built as `make build` builds (scripts/buildinfo.sh's
// -ldflags), `xflow version` prints the module version, the checkout's
// revision, its commit time and the build time; built without them it
// still prints the version and the Go release, and says the revision is
// unknown.
func TestVersion(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	rev, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		testenv.Unavailable(t, fmt.Sprintf("not a git checkout or no git: %v", err))
	}
	ldflags, err := exec.Command(filepath.Join(root, "scripts/buildinfo.sh")).Output()
	if err != nil {
		t.Fatalf("scripts/buildinfo.sh: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "xflow")
	if out, err := exec.Command("go", "build", "-ldflags", strings.TrimSpace(string(ldflags)), "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("xflow version: %v", err)
	}
	for _, re := range []string{
		`^xflow v\d+\.\d+\.\d+(-[0-9a-z.]+-[0-9a-f]{12})?(\+dirty)?\n`,
		`\n  revision:    ` + strings.TrimSpace(string(rev)) + `( \(modified: built with uncommitted changes\))?\n`,
		`\n  commit time: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n`,
		`\n  build time:  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n`,
		`\n  go:          go1\.\d+`,
	} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("xflow version does not match %s:\n%s", re, out)
		}
	}
	t.Logf("xflow version:\n%s", out)

	code, plain, _ := xflowCmd(t, "version")
	if code != 0 || !strings.HasPrefix(plain, "xflow ") || !strings.Contains(plain, "revision:") || !strings.Contains(plain, "go:") {
		t.Errorf("xflow version (plain go build): exit %d\n%s", code, plain)
	}
}

// get fetches path from addr inside side A's namespace.
func getInNS(t *testing.T, p *testnet.Pair, addr, path string) (int, string) {
	t.Helper()
	var conn net.Conn
	if err := p.Do(p.NSA, func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestProbes: on the metrics listener, /healthz answers 200 while the
// process serves; /readyz answers 503 with the reason until the export
// loop has completed a scan (a daemon whose first scan is an hour away
// stays there), 200 once it scans; /metrics has xflow_build_info.
// --metrics-listen (as the DaemonSet passes the pod's IP) replaces the
// file's metrics.listen.
func TestProbes(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xpr")
	const listen = "127.0.0.1:9181"
	podIP := p.A4.String() + ":9182"
	for _, c := range []struct {
		name, timeouts string
		ready          bool
		flagListen     string
	}{
		{"no scan yet", "{active: 2h, inactive: 1h, scan_interval: 1h}", false, ""},
		{"scanning, --metrics-listen", "{active: 5s, inactive: 1s, scan_interval: 100ms}", true, podIP},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc}
pin_path: %s
timeouts: %s
metrics: {listen: %s}
`, p.NameA, pinDir(t), c.timeouts, listen))
			var flags []string
			listen := listen
			if c.flagListen != "" {
				flags, listen = []string{"--metrics-listen", c.flagListen}, c.flagListen
			}
			d := startDaemon(t, p, cfg, flags...)
			if c.flagListen != "" {
				if err := p.Do(p.NSA, func() error {
					conn, err := net.DialTimeout("tcp", "127.0.0.1:9181", time.Second)
					if err == nil {
						conn.Close()
						return errors.New("the file's metrics.listen answers too")
					}
					return nil
				}); err != nil {
					t.Error(err)
				}
			}
			if code, body := getInNS(t, p, listen, "/healthz"); code != 200 || body != "ok\n" {
				t.Errorf("/healthz: %d %q", code, body)
			}
			code, body := getInNS(t, p, listen, "/readyz")
			if c.ready {
				// Ready from the first completed scan on: poll for it.
				for i := 0; code != 200 && i < 100; i++ {
					time.Sleep(50 * time.Millisecond)
					code, body = getInNS(t, p, listen, "/readyz")
				}
				if code != 200 || body != "ready\n" {
					t.Errorf("/readyz: %d %q, want 200 ready", code, body)
				}
			} else if code != 503 || !strings.HasPrefix(body, "not ready: no scan yet") {
				t.Errorf("/readyz: %d %q, want 503 not ready: no scan yet", code, body)
			}
			t.Logf("/readyz: %d %s", code, strings.TrimSpace(body))
			_, metrics := getInNS(t, p, listen, "/metrics")
			if !regexp.MustCompile(`(?m)^xflow_build_info\{goversion="go1\.[^"]+",revision="[^"]*",version="[^"]+"\} 1$`).MatchString(metrics) {
				t.Errorf("no xflow_build_info in /metrics")
			}
			if err := d.stop(t, syscall.SIGTERM); err != nil {
				t.Fatalf("xflow run: %v\n%s", err, d.stderr)
			}
		})
	}
}
