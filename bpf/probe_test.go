package bpf

import (
	"testing"

	"github.com/cilium/ebpf/features"

	"github.com/xflow-net/xflow/internal/testenv"
)

// TestProbe: the running kernel has every feature xflow requires (the
// suite runs on 6.18 and, under QEMU, on 6.1: scripts/kernels), and TCX
// exactly when the kernel is 6.6 or later.
func TestProbe(t *testing.T) {
	testenv.RequireRoot(t)
	fs := Probe()
	t.Log(fs.Summary())
	for _, f := range fs {
		t.Logf("%-20s since %-5s have %-5v %v", f.Name, f.Since, f.Have, f.Err)
	}
	if err := fs.Err(); err != nil {
		t.Fatal(err)
	}
	v, err := features.LinuxVersionCode()
	if err != nil {
		t.Fatal(err)
	}
	if want := v >= 6<<16|6<<8; fs.Has("tcx") != want {
		t.Errorf("tcx: have %v, kernel version code %#x", fs.Has("tcx"), v)
	}
}
