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
