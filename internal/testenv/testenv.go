// Package testenv is what the tests of every package share about their
// environment: a test that needs something the machine lacks (root, a
// tool) skips, except in CI (CI set in the environment), where every test
// must run and so fails instead.
package testenv

import (
	"os"
	"testing"
)

// Unavailable stops tb because the environment lacks what it needs: a
// skip, or a failure when CI is set.
func Unavailable(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatalf("%s (CI is set, so not skipping)", why)
	}
	tb.Skip(why)
}

// RequireRoot stops tb unless it runs as root (CAP_BPF, CAP_NET_ADMIN,
// network namespaces).
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Unavailable(tb, "needs root (CAP_BPF, CAP_NET_ADMIN): run the tests as root")
	}
}
