package bench

import (
	"context"
	"errors"
)

// EndToEndResult is part 2: the packet rate a veth pair sustains with no
// agent, with xflow (each map kind), softflowd and pmacctd, the fraction of
// packets each counted, and the CPU each used per million packets.
type EndToEndResult struct {
	// TODO(helper): rows, JSON tags.
}

// RunEndToEnd measures part 2.
func RunEndToEnd(ctx context.Context, o Options) (*EndToEndResult, error) {
	return nil, errors.New("not built yet")
}

func (r *EndToEndResult) Tables() []Table { return nil }
func (r *EndToEndResult) Plots() []Plot   { return nil }
