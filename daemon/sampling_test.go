package daemon

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/config"
	"github.com/xflow-net/xflow/flow"
)

// TestFilterRules: the configuration's filters become the data plane's
// rules field by field.
func TestFilterRules(t *testing.T) {
	cfg, err := config.Parse("f.yaml", []byte(`interfaces: [{name: eth0}]
sampling: {rate: 50, mode: hash, seed: 9}
filters:
  - {dst: 192.0.2.10, proto: udp, dst_port: 4739, action: skip}
  - {src: "2001:db8::/32", proto: 6, src_port: 443, direction: egress, sampling_rate: 5}
  - {src: "::ffff:10.0.0.0/104"}
`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := filterRules(cfg.Filters)
	if err != nil {
		t.Fatal(err)
	}
	eg := flow.Egress
	want := []bpf.FilterRule{
		{Dst: netip.MustParsePrefix("192.0.2.10/32"), Proto: 17, DstPort: 4739, Skip: true},
		{Src: netip.MustParsePrefix("2001:db8::/32"), Proto: 6, SrcPort: 443, Direction: &eg, Rate: 5},
		{Src: netip.MustParsePrefix("10.0.0.0/8"), AnyProto: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rules\n got %+v\nwant %+v", got, want)
	}
	s, err := sampling(cfg.Sampling)
	if err != nil || s != (bpf.Sampling{Rate: 50, Mode: bpf.SampleHash, Seed: 9}) {
		t.Errorf("sampling %+v, %v", s, err)
	}
}
