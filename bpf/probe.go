package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Feature is one kernel capability xflow uses, with the kernel version that
// brought it and what xflow does without it (docs/kernels.md).
type Feature struct {
	Name     string // short, e.g. "tcx"
	Since    string // first mainline kernel that has it
	Required bool   // xflow cannot run without it
	Fallback string // what xflow does without it (Required == false)
	Have     bool
	// Unknown: the probe itself was refused (typically missing
	// privileges), so the kernel's answer is not known; Have is false.
	Unknown bool
	Err     error // why Have is false (nil when Have)
}

// Features is what Probe found.
type Features []Feature

// Has reports whether the named feature is present.
func (fs Features) Has(name string) bool {
	for _, f := range fs {
		if f.Name == name {
			return f.Have
		}
	}
	return false
}

// Missing lists the features the kernel lacks.
func (fs Features) Missing() Features {
	var out Features
	for _, f := range fs {
		if !f.Have && !f.Unknown {
			out = append(out, f)
		}
	}
	return out
}

// Err is non-nil when a required feature is missing: one line naming each
// and the kernel it needs, instead of the verifier's refusal.
func (fs Features) Err() error {
	var need []string
	for _, f := range fs.Missing() {
		if f.Required {
			need = append(need, fmt.Sprintf("%s (Linux %s)", f.Name, f.Since))
		}
	}
	if len(need) == 0 {
		return nil
	}
	return fmt.Errorf("this kernel lacks what xflow needs: %s; xflow needs Linux 5.18 or later (docs/kernels.md)", strings.Join(need, ", "))
}

// Summary is one line: what the kernel lacks and what xflow does instead,
// or that it has everything.
func (fs Features) Summary() (line string) {
	missing := fs.Missing()
	var unknown []string
	for _, f := range fs {
		if f.Unknown {
			unknown = append(unknown, f.Name)
		}
	}
	if len(unknown) > 0 {
		defer func() {
			line += fmt.Sprintf(" (not probed, the probe was refused: %s)", strings.Join(unknown, ", "))
		}()
	}
	if len(missing) == 0 {
		return "kernel has every feature xflow uses"
	}
	var parts []string
	for _, f := range missing {
		if f.Required {
			parts = append(parts, fmt.Sprintf("%s (Linux %s): required", f.Name, f.Since))
		} else {
			parts = append(parts, fmt.Sprintf("%s (Linux %s): %s", f.Name, f.Since, f.Fallback))
		}
	}
	return "kernel lacks " + strings.Join(parts, "; ")
}

// Probe asks the running kernel for each feature xflow uses (small test
// loads and map creations; it attaches nothing). It needs the privileges
// `xflow run` has (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON).
func Probe() Features {
	var fs Features
	add := func(name, since string, required bool, fallback string, err error) {
		fs = append(fs, Feature{Name: name, Since: since, Required: required, Fallback: fallback,
			Have: err == nil, Unknown: err != nil && !notSupported(err), Err: err})
	}
	add("xdp-program", "4.8", true, "", features.HaveProgramType(ebpf.XDP))
	add("tc-program", "4.1", true, "", features.HaveProgramType(ebpf.SchedCLS))
	add("percpu-hash-map", "4.6", true, "", features.HaveMapType(ebpf.PerCPUHash))
	add("lru-hash-map", "4.10", true, "", features.HaveMapType(ebpf.LRUHash))
	add("array-of-maps", "4.12", true, "", features.HaveMapType(ebpf.ArrayOfMaps))
	add("ringbuf-map", "5.8", true, "", features.HaveMapType(ebpf.RingBuf))
	add("batch-map-ops", "5.6", true, "", probeBatch())
	add("ktime_get_coarse_ns", "5.11", true, "", features.HaveProgramHelper(ebpf.SchedCLS, asm.FnKtimeGetCoarseNs))
	add("xdp-frags", "5.18", true, "", probeXDPFrags())
	add("tcx", "6.6", false, "TC hooks attach through a clsact qdisc and a BPF filter (tc_mode auto); a restart replaces the filter instead of updating a link", probeTCX())
	add("mmapable-array", "5.5", false, "not used by xflow's data plane; the drain reads maps with batch system calls", features.HaveMapFlag(features.BPF_F_MMAPABLE))
	return fs
}

// notSupported tells a kernel that lacks a feature (ErrNotSupported, or
// EINVAL for an unknown attach type or flag) from a refused probe (EPERM).
func notSupported(err error) bool {
	return errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.E2BIG)
}

// probeBatch creates a small hash map and looks it up in one batch.
func probeBatch() error {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		return fmt.Errorf("create hash map: %w", err)
	}
	defer m.Close()
	var cursor ebpf.MapBatchCursor
	keys, vals := make([]uint32, 1), make([]uint32, 1)
	if _, err := m.BatchLookup(&cursor, keys, vals, nil); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// probeXDPFrags loads a minimal multi-buffer XDP program that calls
// bpf_xdp_get_buff_len, as xflow's XDP program does.
func probeXDPFrags() error {
	if err := features.HaveProgramHelper(ebpf.XDP, asm.FnXdpGetBuffLen); err != nil {
		return err
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:  ebpf.XDP,
		Flags: unix.BPF_F_XDP_HAS_FRAGS,
		Instructions: asm.Instructions{
			asm.FnXdpGetBuffLen.Call(),
			asm.Mov.Imm(asm.R0, 2), // XDP_PASS
			asm.Return(),
		},
		License: "Dual BSD/GPL",
	})
	if err != nil {
		return fmt.Errorf("load multi-buffer XDP program: %w", err)
	}
	p.Close()
	return nil
}

// probeTCX asks for the TCX programs of the loopback device (ifindex 1 in
// every network namespace): kernels without TCX refuse the attach type.
func probeTCX() error {
	_, err := link.QueryPrograms(link.QueryOptions{Target: 1, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return fmt.Errorf("query TCX programs: %w", err)
	}
	return nil
}
