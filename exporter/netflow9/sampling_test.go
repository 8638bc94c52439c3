package netflow9

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/xflow-net/xflow/flow"
)

// TestSampling: sampled records go in templates 270/271 with
// SAMPLING_INTERVAL N, SAMPLING_ALGORITHM and FLOW_SAMPLER_ID; the sampler's
// options records (272: 48/49/50, 273: 34 alone), each options template in
// a FlowSet of its own, come first in a session's first packet only, and
// again with Templates and after Reset. Unsampled records keep 256.
func TestSampling(t *testing.T) {
	k4 := flow.Key{Src: addr16("10.0.0.1"), Dst: addr16("10.0.0.2"), SrcPort: 1000, DstPort: 80, Proto: 6, IPVersion: 4}
	k6 := flow.Key{Src: addr16("2001:db8::1"), Dst: addr16("2001:db8::2"), SrcPort: 1000, DstPort: 53, Proto: 17, IPVersion: 6}
	rnd := flow.Sampling(uint16(flow.SampleRandom)<<14 | 100)
	recs := []flow.Export{
		{Key: k4, Packets: 5, Bytes: 500},
		{Key: k4, Packets: 7, Bytes: 700, Sampling: rnd},
		{Key: k6, Packets: 9, Bytes: 900, Sampling: rnd},
	}
	e := NewEncoder(Options{SourceID: 9})
	var pkts packets
	now := time.Unix(1_800_000_000, 0)
	ids := func(fs []flowSet) []uint16 {
		var out []uint16
		for _, f := range fs {
			out = append(out, f.id)
		}
		return out
	}
	encode := func() []flowSet {
		t.Helper()
		pkts = pkts[:0]
		if err := e.Encode(now, recs, pkts.send); err != nil {
			t.Fatal(err)
		}
		if len(pkts) != 1 {
			t.Fatalf("%d packets", len(pkts))
		}
		h, fs := splitPacket(t, pkts[0])
		_ = h
		return fs
	}
	fs := encode()
	if want := []uint16{0, 1, 1, 272, 273, 256, 270, 271}; !slices.Equal(ids(fs), want) {
		t.Fatalf("FlowSets %v, want %v", ids(fs), want)
	}
	be := binary.BigEndian
	for _, f := range fs {
		b := f.body
		switch f.id {
		case 0: // the sampled templates: the flow templates plus 34, 35, 48
			tpl := b[:4+4*21]
			if be.Uint16(tpl) != TemplateIPv4Sampled || be.Uint16(tpl[2:]) != 21 ||
				!slices.Equal(tpl[4+4*18:], u16(34, 4, 35, 1, 48, 2)) {
				t.Errorf("template % x", tpl)
			}
		case TemplateSampler:
			if be.Uint32(b) != 9 || be.Uint16(b[4:]) != uint16(rnd) || b[6] != 2 || be.Uint32(b[7:]) != 100 {
				t.Errorf("sampler record % x", b[:samplerRecLen])
			}
		case TemplateStdSampling:
			if be.Uint32(b) != 9 || be.Uint32(b[4:]) != 100 {
				t.Errorf("SAMPLING_INTERVAL record % x", b[:stdSamplingLen])
			}
		case TemplateIPv4Sampled, TemplateIPv6Sampled:
			n := ipv4SampledLen
			if f.id == TemplateIPv6Sampled {
				n = ipv6SampledLen
			}
			tail := b[n-samplingTailLen : n]
			if be.Uint32(tail) != 100 || tail[4] != 2 || be.Uint16(tail[5:]) != uint16(rnd) {
				t.Errorf("template %d record tail % x", f.id, tail)
			}
		case TemplateIPv4:
			if len(b) < ipv4RecordLen || len(b) >= ipv4RecordLen+4 {
				t.Errorf("unsampled FlowSet of %d bytes", len(b))
			}
		}
	}
	if fs := encode(); !slices.Equal(ids(fs), []uint16{256, 270, 271}) {
		t.Errorf("second packet: FlowSets %v", ids(fs))
	}
	pkts = pkts[:0]
	if err := e.Templates(now, Stats{}, nil, pkts.send); err != nil {
		t.Fatal(err)
	}
	if _, fs := splitPacket(t, pkts[0]); !slices.Equal(ids(fs), []uint16{0, 1, 1, 258, 0, 1, 1, 272, 273}) {
		t.Errorf("templates: FlowSets %v", ids(fs))
	}
	e.Reset()
	if fs := encode(); ids(fs)[0] != 0 || !slices.Contains(ids(fs), TemplateSampler) {
		t.Errorf("after Reset: FlowSets %v", ids(fs))
	}
}
