package bpf

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The capabilities loading and attaching the data plane takes
// (docs/operations.md, Capabilities). CAP_SYS_ADMIN stands in for CAP_BPF
// and CAP_PERFMON, as the kernel allows.
var neededCaps = []struct {
	name        string
	bit         uint
	sysAdminToo bool
}{
	{"CAP_BPF", unix.CAP_BPF, true},
	{"CAP_NET_ADMIN", unix.CAP_NET_ADMIN, false},
	{"CAP_PERFMON", unix.CAP_PERFMON, true},
}

// MissingCapabilities lists the capabilities xflow needs that the process
// lacks in its effective set.
func MissingCapabilities() ([]string, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			eff, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return nil, fmt.Errorf("/proc/self/status: CapEff %q: %w", v, err)
			}
			return missingCaps(eff), nil
		}
	}
	return nil, errors.New("/proc/self/status: no CapEff")
}

func missingCaps(eff uint64) []string {
	has := func(bit uint) bool { return eff&(1<<bit) != 0 }
	var missing []string
	for _, c := range neededCaps {
		if !has(c.bit) && !(c.sysAdminToo && has(unix.CAP_SYS_ADMIN)) {
			missing = append(missing, c.name)
		}
	}
	return missing
}

// memlockHint is what cilium/ebpf adds to every EPERM from map or program
// creation. It does not apply here: from Linux 5.11 the kernel charges BPF
// memory to the memory cgroup, not RLIMIT_MEMLOCK, and xflow needs 5.18.
const memlockHint = " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)"

// permissionError explains a load the kernel refused for lack of
// privileges: what xflow needs and what the process lacks, without
// cilium/ebpf's MEMLOCK hint. It returns nil for other errors, and for a
// verifier refusal (EACCES) by a process that has every capability, which
// is no matter of privileges.
func permissionError(err error) error {
	eperm := errors.Is(err, unix.EPERM)
	if !eperm && !errors.Is(err, unix.EACCES) {
		return nil
	}
	const needs = "xflow needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"
	missing, cerr := MissingCapabilities()
	var why string
	switch {
	case cerr != nil:
		why = needs
	case len(missing) > 0:
		why = needs + ": this process lacks " + strings.Join(missing, ", ")
	case eperm:
		why = "the process has CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: a seccomp profile or a security module (lockdown, SELinux, AppArmor) refused bpf(2)"
	default:
		return nil
	}
	return &privilegeError{msg: fmt.Sprintf("load eBPF: %s (%s)", strings.ReplaceAll(err.Error(), memlockHint, ""), why), err: err}
}

// privilegeError keeps the kernel's errno for errors.Is.
type privilegeError struct {
	msg string
	err error
}

func (e *privilegeError) Error() string { return e.msg }
func (e *privilegeError) Unwrap() error { return e.err }
