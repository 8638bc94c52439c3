package bpf

import "testing"

func TestLoadAllKinds(t *testing.T) {
	for _, k := range Kinds() {
		t.Run(string(k), func(t *testing.T) {
			d := loadKind(t, k, 1024)
			if d.Kind() != k {
				t.Fatalf("kind %s, want %s", d.Kind(), k)
			}
		})
	}
}

func TestHookString(t *testing.T) {
	for h, want := range map[Hook]string{
		{PointXDP, ModeXDPNative}: "xdp/native", {PointXDP, ModeXDPGeneric}: "xdp/generic",
		{PointTCIngress, ModeTCX}: "tcx/ingress", {PointTCEgress, ModeTCX}: "tcx/egress",
		{PointTCIngress, ModeClsact}: "clsact/ingress", {PointTCEgress, ModeClsact}: "clsact/egress",
	} {
		if got := h.String(); got != want {
			t.Errorf("%#v: %q, want %q", h, got, want)
		}
	}
}
