package flow

import (
	"time"

	"golang.org/x/sys/unix"
)

// Clock converts the data plane's timestamps (Value.FirstNs and LastNs:
// bpf_ktime_get_ns, the kernel's CLOCK_MONOTONIC in nanoseconds) to
// wall-clock time. It is the one place where the two clocks meet.
type Clock struct {
	Mono uint64 // CLOCK_MONOTONIC, ns
	Wall int64  // Unix ns at the same moment
}

// Now reads both clocks.
func Now() Clock {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return Clock{Mono: uint64(ts.Nano()), Wall: time.Now().UnixNano()}
}

// UnixNano is the wall-clock time of the monotonic timestamp mono, in ns
// since the Unix epoch.
func (c Clock) UnixNano(mono uint64) int64 { return c.Wall - int64(c.Mono-mono) }

// UnixMilli is the same in milliseconds, as the export formats want it.
func (c Clock) UnixMilli(mono uint64) uint64 { return uint64(c.UnixNano(mono)) / 1e6 }

// Time is the same as a time.Time.
func (c Clock) Time(mono uint64) time.Time { return time.Unix(0, c.UnixNano(mono)) }

// BootTime is when the system booted: the zero of CLOCK_MONOTONIC (and of
// NetFlow's sysUpTime).
func BootTime() time.Time { return Now().Time(0) }
