package bpf

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMissingCaps: which of the three a capability set lacks, with
// CAP_SYS_ADMIN standing in for CAP_BPF and CAP_PERFMON.
func TestMissingCaps(t *testing.T) {
	bit := func(b uint) uint64 { return 1 << b }
	for _, c := range []struct {
		eff  uint64
		want []string
	}{
		{0, []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"}},
		{bit(unix.CAP_BPF) | bit(unix.CAP_NET_ADMIN) | bit(unix.CAP_PERFMON), nil},
		{bit(unix.CAP_BPF) | bit(unix.CAP_NET_ADMIN), []string{"CAP_PERFMON"}},
		{bit(unix.CAP_SYS_ADMIN), []string{"CAP_NET_ADMIN"}},
		{bit(unix.CAP_SYS_ADMIN) | bit(unix.CAP_NET_ADMIN), nil},
		{^uint64(0), nil},
	} {
		if got := missingCaps(c.eff); !reflect.DeepEqual(got, c.want) {
			t.Errorf("CapEff %#x: %v, want %v", c.eff, got, c.want)
		}
	}
}

// TestPermissionError: an EPERM loses cilium/ebpf's MEMLOCK hint, keeps
// its errno and says what xflow needs (what the process lacks is
// TestCapabilities' part, in cmd/xflow); other errors are not its business.
func TestPermissionError(t *testing.T) {
	eperm := fmt.Errorf("program x: map counters: map create: %w%s", unix.EPERM, memlockHint)
	err := permissionError(eperm)
	if err == nil {
		t.Fatal("EPERM: nil")
	}
	msg := err.Error()
	if strings.Contains(msg, "MEMLOCK") || !strings.HasPrefix(msg, "load eBPF: program x: map counters: map create: operation not permitted (") ||
		!errors.Is(err, unix.EPERM) {
		t.Errorf("EPERM: %q (is EPERM: %v)", msg, errors.Is(err, unix.EPERM))
	}
	missing, cerr := MissingCapabilities()
	if cerr != nil {
		t.Fatal(cerr)
	}
	if len(missing) > 0 && !strings.Contains(msg, "xflow needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: this process lacks "+strings.Join(missing, ", ")) {
		t.Errorf("without %v: %q", missing, msg)
	}
	if len(missing) == 0 && !strings.Contains(msg, "seccomp") {
		t.Errorf("with every capability: %q", msg)
	}
	if err := permissionError(fmt.Errorf("map create: %w", unix.EINVAL)); err != nil {
		t.Errorf("EINVAL: %v", err)
	}
	t.Logf("%s", msg)
}
