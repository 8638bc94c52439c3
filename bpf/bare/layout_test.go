package bare

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"

	"github.com/xflow-net/xflow/bpf"
)

// TestLayout checks what this package restates from include/types.h: the
// kinds' enum values (against the header), struct flow_slot's size and
// struct flow_event's packet count's offset (against the data plane's BTF).
func TestLayout(t *testing.T) {
	spec, err := bpf.Spec()
	if err != nil {
		t.Fatal(err)
	}
	// The enum is in no object's BTF (the constants are __u32): read it.
	h, err := os.ReadFile("../include/types.h")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*KIND_(\w+) = (\d+),`).FindAllStringSubmatch(string(h), -1)
	if len(m) != len(bpf.Kinds()) {
		t.Fatalf("enum xflow_map_kind: %d kinds, bpf.Kinds %d", len(m), len(bpf.Kinds()))
	}
	for _, v := range m {
		k := bpf.Kind(strings.ToLower(v[1]))
		if got, err := cKind(k); err != nil || fmt.Sprint(got) != v[2] {
			t.Errorf("KIND_%s: %d, %v; want %s", v[1], got, err, v[2])
		}
	}
	var st *btf.Struct
	if err := spec.Types.TypeByName("flow_slot", &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != uint32(unsafe.Sizeof(slot{})) {
		t.Errorf("struct flow_slot: %d bytes, slot %d", st.Size, unsafe.Sizeof(slot{}))
	}
	if err := spec.Types.TypeByName("flow_event", &st); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range st.Members {
		if m.Name == "packets" {
			found = true
			if m.Offset.Bytes() != uint32(unsafe.Offsetof(event{}.Packets)) {
				t.Errorf("flow_event.packets at %d, event.Packets at %d", m.Offset.Bytes(), unsafe.Offsetof(event{}.Packets))
			}
		}
	}
	if !found {
		t.Error("struct flow_event has no packets")
	}
}
