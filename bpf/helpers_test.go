package bpf

import (
	"context"
	"os"
	"testing"
)

// requireRoot skips a test that needs root and BPF, except in CI, where
// such a test must run: there it fails.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root (CAP_BPF, CAP_NET_ADMIN) and CI is set: run the tests as root")
	}
	t.Skip("needs root (CAP_BPF, CAP_NET_ADMIN)")
}

func loadKind(t testing.TB, kind Kind, maxFlows uint32) *Datapath {
	t.Helper()
	requireRoot(t)
	d, err := Load(Options{Kind: kind, MaxFlows: maxFlows, RingSize: 1 << 20})
	if err != nil {
		t.Fatalf("load %s: %v", kind, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// drainRing consumes the ring buffer in the background (as the daemon
// does) until the returned stop is called.
func drainRing(tb testing.TB, d *Datapath) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.RunRing(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("ring consumer: %v", err)
		}
	}
}
