package daemon

import (
	"fmt"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/config"
	"github.com/xflow-net/xflow/flow"
)

// sampling turns a validated configuration's sampling into the data plane's.
func sampling(s config.Sampling) (bpf.Sampling, error) {
	m, err := bpf.ParseSampleMode(s.Mode)
	if err != nil {
		return bpf.Sampling{}, err
	}
	return bpf.Sampling{Rate: uint32(s.Rate), Mode: m, Seed: s.Seed}, nil
}

// filterRules turns a validated configuration's filters into the data
// plane's rules.
func filterRules(fs []config.Filter) ([]bpf.FilterRule, error) {
	out := make([]bpf.FilterRule, 0, len(fs))
	for i, f := range fs {
		var r bpf.FilterRule
		var err error
		if r.Src, err = config.ParsePrefix(f.Src); err != nil {
			return nil, fmt.Errorf("filters[%d].src: %w", i, err)
		}
		if r.Dst, err = config.ParsePrefix(f.Dst); err != nil {
			return nil, fmt.Errorf("filters[%d].dst: %w", i, err)
		}
		p, ok, err := config.ParseProto(f.Proto)
		if err != nil {
			return nil, fmt.Errorf("filters[%d].proto: %w", i, err)
		}
		r.Proto, r.AnyProto = p, !ok
		r.SrcPort, r.DstPort = uint16(f.SrcPort), uint16(f.DstPort)
		switch f.Direction {
		case "ingress":
			d := flow.Ingress
			r.Direction = &d
		case "egress":
			d := flow.Egress
			r.Direction = &d
		}
		r.Skip = f.Action == "skip"
		r.Rate = uint32(f.Rate)
		out = append(out, r)
	}
	return out, nil
}
