package ipfix

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/xflow-net/xflow/flow"
)

func sampledRecords() []flow.Export {
	k4 := flow.Key{Src: addr16("10.0.0.1"), Dst: addr16("10.0.0.2"), SrcPort: 1000, DstPort: 80, Proto: 6, IPVersion: 4, IfIndex: 3}
	k6 := flow.Key{Src: addr16("2001:db8::1"), Dst: addr16("2001:db8::2"), SrcPort: 1000, DstPort: 53, Proto: 17, IPVersion: 6, IfIndex: 3}
	s10 := flow.Sampling(uint16(flow.SampleDeterministic)<<14 | 10)
	return []flow.Export{
		{Key: k4, Packets: 5, Bytes: 500, StartMs: 1000, EndMs: 2000, EndReason: 1},                // unsampled
		{Key: k4, Packets: 7, Bytes: 700, StartMs: 1000, EndMs: 2000, EndReason: 1, Sampling: s10}, // 1:10 deterministic
		{Key: k6, Packets: 9, Bytes: 900, StartMs: 1000, EndMs: 2000, EndReason: 1, Sampling: s10},
	}
}

// TestSampling: sampled records go in templates 270/271 with selectorId,
// samplingPacketInterval 1 and samplingPacketSpace N-1; the selector's
// options (273: samplerRandomInterval N, then 272: algorithm, 1, N-1, then
// 274: samplingInterval N), each options template in a set of its own, come
// before them in the first message of a session only, and again with
// Templates and after Reset. Unsampled records keep template 256.
func TestSampling(t *testing.T) {
	e := NewEncoder(Options{ObservationDomain: 7})
	c := newCollector()
	var msgs messages
	now := time.Unix(1_800_000_000, 0)
	encode := func() ([]set, []record) {
		t.Helper()
		msgs = msgs[:0]
		if err := e.Encode(now, sampledRecords(), msgs.send); err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 1 {
			t.Fatalf("%d messages, want 1", len(msgs))
		}
		_, sets := splitMessage(t, msgs[0])
		_, _, recs := c.decode(t, msgs[0])
		return sets, recs
	}
	ids := func(sets []set) []uint16 {
		var out []uint16
		for _, s := range sets {
			out = append(out, s.id)
		}
		return out
	}
	// The session starts with the flow templates (no selector known yet:
	// nothing of sampling in them).
	if err := e.Templates(now, Stats{}, nil, msgs.send); err != nil {
		t.Fatal(err)
	}
	// The flow templates in the flows' domain, then the statistics'
	// options template and record in domain 0.
	var tsets []set
	for _, m := range msgs {
		_, s := splitMessage(t, m)
		tsets = append(tsets, s...)
		c.decode(t, m)
	}
	if want := []uint16{2, 3, 3, 258}; !slices.Equal(ids(tsets), want) {
		t.Fatalf("templates before any sampled record: sets %v, want %v", ids(tsets), want)
	}
	sets, recs := encode()
	// Template set (270, 271), three options template sets, the options
	// data, then the flows.
	if want := []uint16{2, 3, 3, 3, 273, 272, 274, 256, 270, 271}; !slices.Equal(ids(sets), want) {
		t.Fatalf("sets %v, want %v", ids(sets), want)
	}
	sel := uint64(uint16(flow.SampleDeterministic)<<14 | 10)
	var opts, flows []record
	for _, r := range recs {
		if r.template >= TemplateSelector {
			opts = append(opts, r)
		} else {
			flows = append(flows, r)
		}
	}
	if len(opts) != 3 || len(flows) != 3 {
		t.Fatalf("%d options records, %d flows", len(opts), len(flows))
	}
	for _, r := range flows {
		_, has := r.fields["samplingPacketInterval"]
		if r.template == TemplateIPv4 {
			if has || len(r.names) != len(ipv4Names) {
				t.Errorf("unsampled record %v", r.names)
			}
			continue
		}
		if r.fields["selectorId"] != sel || r.fields["samplingPacketInterval"] != uint32(1) || r.fields["samplingPacketSpace"] != uint32(9) {
			t.Errorf("template %d record: selectorId %v interval %v space %v", r.template, r.fields["selectorId"],
				r.fields["samplingPacketInterval"], r.fields["samplingPacketSpace"])
		}
		base := ipv4Names
		if r.template == TemplateIPv6Sampled {
			base = ipv6Names
		}
		if !slices.Equal(r.names[:len(base)], base) {
			t.Errorf("template %d: fields %v do not start with the flow template's", r.template, r.names)
		}
	}
	// The options records, by hand (calmh/ipfix knows 49 and 50 only by
	// number).
	for _, s := range sets {
		switch s.id {
		case TemplateSampler:
			b := s.body
			if binary.BigEndian.Uint64(b) != sel || b[8] != 1 || binary.BigEndian.Uint32(b[9:]) != 10 {
				t.Errorf("sampler record % x", b[:samplerRecLen])
			}
		case TemplateSelector:
			b := s.body
			if binary.BigEndian.Uint64(b) != sel || binary.BigEndian.Uint16(b[8:]) != 1 ||
				binary.BigEndian.Uint32(b[10:]) != 1 || binary.BigEndian.Uint32(b[14:]) != 9 {
				t.Errorf("selector record % x", b[:selectorRecLen])
			}
		case TemplateStdSampling:
			b := s.body
			if binary.BigEndian.Uint32(b) != 7 || binary.BigEndian.Uint32(b[4:]) != 10 {
				t.Errorf("samplingInterval record % x", b[:stdSamplingLen])
			}
		}
	}
	// Announced once per session.
	sets, _ = encode()
	if want := []uint16{256, 270, 271}; !slices.Equal(ids(sets), want) {
		t.Errorf("second message: sets %v, want %v", ids(sets), want)
	}
	// Templates describes the known selectors again.
	msgs = msgs[:0]
	if err := e.Templates(now, Stats{}, nil, msgs.send); err != nil {
		t.Fatal(err)
	}
	// Per message: the domain and its sets.
	var got []string
	for _, m := range msgs {
		_, s := splitMessage(t, m)
		got = append(got, fmt.Sprintf("%d:%v", binary.BigEndian.Uint32(m[12:]), ids(s)))
	}
	if want := []string{"7:[2 3 3 3 273 272 274]", "0:[3 3 258]"}; !slices.Equal(got, want) {
		t.Errorf("templates: messages %q, want %q", got, want)
	}
	// A new session announces again.
	e.Reset()
	sets, _ = encode()
	if ids(sets)[0] != 2 || !slices.Contains(ids(sets), TemplateSampler) {
		t.Errorf("after Reset: sets %v", ids(sets))
	}
}

// TestSelectorAlgorithm: the IANA PSAMP values.
func TestSelectorAlgorithm(t *testing.T) {
	for m, want := range map[flow.SampleMode]uint16{flow.SampleDeterministic: 1, flow.SampleRandom: 4, flow.SampleHash: 6} {
		if got := SelectorAlgorithm(m); got != want {
			t.Errorf("%s: %d, want %d", m, got, want)
		}
	}
}
