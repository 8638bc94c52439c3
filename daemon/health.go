package daemon

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// health is what /readyz reports: the daemon is ready while its data plane
// is attached and the export loop has completed a scan lately. It is read
// by the metrics server's goroutines, so it holds atomics only (Reload and
// Stop hold the daemon's mutex for seconds).
type health struct {
	attached  atomic.Bool
	stopping  atomic.Bool
	started   atomic.Int64 // unix ns: when the data plane was attached
	lastScan  atomic.Int64 // unix ns of the last completed scan; 0: none yet
	scanEvery atomic.Int64 // the configured scan interval, ns
	now       func() time.Time
}

// staleAfter is how long a scan may be overdue: three intervals, plus a
// margin for a long drain.
func staleAfter(scanEvery time.Duration) time.Duration { return 3*scanEvery + 10*time.Second }

func (h *health) clock() time.Time {
	if h.now != nil {
		return h.now()
	}
	return time.Now()
}

// setAttached records that the data plane is attached and counting.
func (h *health) setAttached() {
	h.started.Store(h.clock().UnixNano())
	h.attached.Store(true)
}

// scanned records a completed scan (exporter.Options.OnDrain).
func (h *health) scanned() { h.lastScan.Store(h.clock().UnixNano()) }

// ready returns nil when the daemon is ready, else why not.
func (h *health) ready() error {
	switch {
	case h.stopping.Load():
		return errors.New("stopping")
	case !h.attached.Load():
		return errors.New("the data plane is not attached yet")
	}
	every := time.Duration(h.scanEvery.Load())
	now := h.clock()
	last := h.lastScan.Load()
	if last == 0 {
		return fmt.Errorf("no scan yet (attached %s ago, scan_interval %s)",
			now.Sub(time.Unix(0, h.started.Load())).Round(time.Millisecond), every)
	}
	if ago := now.Sub(time.Unix(0, last)); ago > staleAfter(every) {
		return fmt.Errorf("the export loop has not completed a scan for %s (scan_interval %s)", ago.Round(time.Millisecond), every)
	}
	return nil
}
