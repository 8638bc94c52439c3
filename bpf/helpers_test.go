package bpf

import (
	"context"
	"testing"

	"github.com/xflow-net/xflow/internal/testenv"
)

func loadKind(t testing.TB, kind Kind, maxFlows uint32) *Datapath {
	t.Helper()
	testenv.RequireRoot(t)
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
