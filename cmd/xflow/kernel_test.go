package main

import (
	"sync"

	"github.com/xflow-net/xflow/bpf"
)

var kernelFeatures = sync.OnceValue(bpf.Probe)

// tcxMode is the tc_mode the TCX cases use: "tcx" where the kernel has TCX,
// else "auto", which there must fall back to clsact (Linux before 6.6:
// scripts/kernels runs these tests on 6.1).
func tcxMode() string {
	if kernelFeatures().Has("tcx") {
		return "tcx"
	}
	return "auto"
}

// tcHook is what attached() shows for the egress program of tc_mode mode.
func tcHook(mode string) string {
	if mode == "tcx" {
		return "tcx:"
	}
	return "filter:xflow_tc_egress"
}
