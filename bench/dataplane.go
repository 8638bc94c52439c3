package bench

import (
	"context"
	"errors"
)

// DataPlaneResult is part 1: ns per packet of the production XDP and TC
// programs for every map kind, flow count and frame type, beside the
// baselines (XDP_PASS, parse-only) and the bare map update of each kind.
type DataPlaneResult struct {
	// TODO(helper): rows, JSON tags.
}

// RunDataPlane measures part 1.
func RunDataPlane(ctx context.Context, o Options) (*DataPlaneResult, error) {
	return nil, errors.New("not built yet")
}

func (r *DataPlaneResult) Tables() []Table { return nil }
func (r *DataPlaneResult) Plots() []Plot   { return nil }
