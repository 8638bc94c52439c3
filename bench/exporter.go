package bench

import (
	"context"
	"errors"
)

// ExporterResult is part 3: drain + encode + send rate and user-space
// memory per active flow at 10k, 100k and 1M flows, and scan time against
// the flow count.
type ExporterResult struct {
	// TODO(helper): rows, JSON tags.
}

// RunExporter measures part 3.
func RunExporter(ctx context.Context, o Options) (*ExporterResult, error) {
	return nil, errors.New("not built yet")
}

func (r *ExporterResult) Tables() []Table { return nil }
func (r *ExporterResult) Plots() []Plot   { return nil }
