package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

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
