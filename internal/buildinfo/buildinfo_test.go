package buildinfo

import (
	"strings"
	"testing"
)

// TestMerge: values set with -ldflags win over the recorded ones, and an
// unset version reads "(devel)".
func TestMerge(t *testing.T) {
	rec := Info{Version: "v0.0.0-20261205130514-dc51ea9abcde", Revision: "dc51ea9abcde", CommitTime: "2026-12-05T13:05:14Z", Modified: true}
	if got := merge(rec, "", "", "", "", ""); got != rec {
		t.Errorf("nothing set: %+v, want %+v", got, rec)
	}
	got := merge(rec, "v1.2.3", "abc", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "false")
	want := Info{Version: "v1.2.3", Revision: "abc", CommitTime: "2026-01-01T00:00:00Z", BuildTime: "2026-01-02T00:00:00Z"}
	if got != want {
		t.Errorf("all set: %+v, want %+v", got, want)
	}
	if got := merge(Info{}, "", "", "", "", ""); got.Version != "(devel)" {
		t.Errorf("no version: %q", got.Version)
	}
}

// TestString: the version first, the revision on every output (saying when
// it is unknown), the times only when recorded.
func TestString(t *testing.T) {
	s := Info{Version: "v1.2.3", Revision: "abc", CommitTime: "2026-01-01T00:00:00Z", Modified: true, GoVersion: "go1.26.8", Platform: "linux/amd64"}.String()
	for _, want := range []string{"xflow v1.2.3\n", "revision:    abc (modified", "commit time: 2026-01-01T00:00:00Z", "go:          go1.26.8 linux/amd64"} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
	if strings.Contains(s, "build time") {
		t.Errorf("%q: a build time nobody recorded", s)
	}
	if s := (Info{Version: "(devel)"}).String(); !strings.Contains(s, "revision:    unknown") {
		t.Errorf("%q: no unknown revision", s)
	}
}
