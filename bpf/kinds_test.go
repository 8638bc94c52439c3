package bpf

import (
	"testing"

	"github.com/xflow-net/xflow/bpf/kind"
)

// TestKinds: every kind of the shared list has a store here, and the
// per-CPU and array properties agree with the map types.
func TestKinds(t *testing.T) {
	for _, k := range kind.All() {
		s, ok := stores[Kind(k)]
		if !ok {
			t.Errorf("kind %s: no store", k)
			continue
		}
		if got := perCPU(s.mt); got != k.PerCPU() {
			t.Errorf("kind %s: map type %s per-CPU %v, kind says %v", k, s.mt, got, k.PerCPU())
		}
	}
	if len(stores) != len(kind.All()) {
		t.Errorf("%d stores for %d kinds", len(stores), len(kind.All()))
	}
}
