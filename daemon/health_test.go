package daemon

import (
	"strings"
	"testing"
	"time"
)

// TestReady walks the readiness states: not attached, attached without a
// scan, scanning, a scan overdue, a reload that lengthens the interval,
// stopping.
func TestReady(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	h := &health{now: func() time.Time { return now }}
	h.scanEvery.Store(int64(time.Second))
	step := func(want string) {
		t.Helper()
		err := h.ready()
		switch {
		case want == "" && err != nil:
			t.Errorf("at %s: not ready (%v), want ready", now.Format(time.TimeOnly), err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("at %s: %v, want %q", now.Format(time.TimeOnly), err, want)
		}
	}
	step("not attached")
	h.setAttached()
	now = now.Add(500 * time.Millisecond)
	step("no scan yet (attached 500ms ago, scan_interval 1s)")
	h.scanned()
	step("")
	now = now.Add(staleAfter(time.Second))
	step("")
	now = now.Add(time.Millisecond)
	step("has not completed a scan for 13.001s (scan_interval 1s)")
	h.scanEvery.Store(int64(time.Minute)) // SIGHUP: scan_interval 1m
	step("")
	h.stopping.Store(true)
	step("stopping")
}
