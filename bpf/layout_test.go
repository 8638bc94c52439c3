package bpf

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/xflow-net/xflow/flow"
)

// TestLayout: the Go copies of the C structs (flow.Key, flow.Value, and
// this package's slot and event) have the layout of the types bpf2go
// generates from include/types.h, field by field: a change to types.h
// that is not made to them too fails here rather than silently corrupting
// every record read from the maps.
func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ours, gen any
	}{
		{"flow_key", flow.Key{}, xflowFlowKey{}},
		{"flow_value", flow.Value{}, xflowFlowValue{}},
		{"flow_slot", slot{}, xflowFlowSlot{}},
		{"flow_event", event{}, xflowFlowEvent{}},
	} {
		sameLayout(t, tc.name, reflect.TypeOf(tc.ours), reflect.TypeOf(tc.gen))
	}
	// The state maps are sized from the Go types.
	if stateKeySize != uint32(unsafe.Sizeof(xflowFlowKey{})) {
		t.Errorf("state key size %d, want struct flow_key's %d", stateKeySize, unsafe.Sizeof(xflowFlowKey{}))
	}
}

// sameLayout compares two struct types' fields (blank ones aside) by
// position: offset, size and kind, recursively.
func sameLayout(t *testing.T, path string, ours, gen reflect.Type) {
	t.Helper()
	if ours.Size() != gen.Size() || ours.Align() != gen.Align() {
		t.Errorf("%s: size %d align %d, C has %d align %d", path, ours.Size(), ours.Align(), gen.Size(), gen.Align())
	}
	if gen.Kind() == reflect.Array {
		if ours.Kind() != reflect.Array || ours.Len() != gen.Len() {
			t.Errorf("%s: %s, C has %s", path, ours, gen)
			return
		}
		sameLayout(t, path+"[]", ours.Elem(), gen.Elem())
		return
	}
	if gen.Kind() != reflect.Struct {
		if ours.Kind() != gen.Kind() {
			t.Errorf("%s: %s, C has %s", path, ours.Kind(), gen.Kind())
		}
		return
	}
	of, gf := fields(ours), fields(gen)
	if len(of) != len(gf) {
		t.Errorf("%s: %d fields, C has %d", path, len(of), len(gf))
		return
	}
	for i := range gf {
		p := path + "." + gf[i].Name
		if of[i].Offset != gf[i].Offset {
			t.Errorf("%s (%s): offset %d, C has %d", p, of[i].Name, of[i].Offset, gf[i].Offset)
		}
		sameLayout(t, p, of[i].Type, gf[i].Type)
	}
}

func fields(s reflect.Type) []reflect.StructField {
	var out []reflect.StructField
	for i := range s.NumField() {
		if f := s.Field(i); f.Name != "_" {
			out = append(out, f)
		}
	}
	return out
}
