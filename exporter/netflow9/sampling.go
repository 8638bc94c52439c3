package netflow9

import (
	"github.com/xflow-net/xflow/flow"
)

// Sampled flows (flow.Export.Sampling.Rate() > 1) go in their own
// templates, the flow templates with three fields appended, so that
// unsampled exports stay exactly as they were:
//
//	270  sampled IPv4 flows: template 256's fields, then
//	271  sampled IPv6 flows: template 257's fields, then
//	       SAMPLING_INTERVAL (34, 4)   N
//	       SAMPLING_ALGORITHM (35, 1)  1 deterministic, 2 random (and hash)
//	       FLOW_SAMPLER_ID (48, 2)     the sampler below
//
// and each sampler in use is described once per session (and with every
// template refresh), before the first record that uses it, in the same
// packet, by an options record (template 272, scope System = the source
// ID): FLOW_SAMPLER_ID (48, 2), FLOW_SAMPLER_MODE (49, 1),
// FLOW_SAMPLER_RANDOM_INTERVAL (50, 4) = N, and by one more (template 273,
// scope System): SAMPLING_INTERVAL (34, 4) = N. goflow2 takes the rate
// from the first options record, nfdump 1.7.1 from the second (it takes a
// sampler from an options template only when it holds 50 without 48 and
// 49, or 34 without 35: its "generic" sampler, applied to every flow of
// the source ID; with several rates, the last announced wins there).
// Wireshark shows them all. The sampler ID is flow.Sampling's value (mode
// << 14 | N). Counts are as sampled.
const (
	TemplateIPv4Sampled = 270
	TemplateIPv6Sampled = 271
	TemplateSampler     = 272
	TemplateStdSampling = 273

	samplingTailLen = 7  // interval, algorithm, sampler ID
	samplerRecLen   = 11 // System scope, sampler ID, mode, interval
	stdSamplingLen  = 8  // System scope, interval
	ipv4SampledLen  = ipv4RecordLen + samplingTailLen
	ipv6SampledLen  = ipv6RecordLen + samplingTailLen
)

func sampledTemplate(base []byte, id uint16) []byte {
	b := append([]byte(nil), base...)
	be.PutUint16(b[0:], id)
	be.PutUint16(b[2:], be.Uint16(b[2:])+3)
	for _, f := range []field{{34, 4}, {35, 1}, {48, 2}} {
		b = be.AppendUint16(b, f.typ)
		b = be.AppendUint16(b, f.length)
	}
	return b
}

var (
	samplingTemplates = [][]byte{
		sampledTemplate(templateRecords[0], TemplateIPv4Sampled),
		sampledTemplate(templateRecords[1], TemplateIPv6Sampled),
	}
	samplerOptionsTemplate = optionsTemplateRecord(TemplateSampler,
		[]field{{scopeSystem, 4}}, // the source ID
		field{48, 2},              // FLOW_SAMPLER_ID
		field{49, 1},              // FLOW_SAMPLER_MODE
		field{50, 4})              // FLOW_SAMPLER_RANDOM_INTERVAL
	stdSamplingOptionsTemplate = optionsTemplateRecord(TemplateStdSampling,
		[]field{{scopeSystem, 4}}, // the source ID
		field{34, 4})              // SAMPLING_INTERVAL
)

// samplerMode is SAMPLING_ALGORITHM / FLOW_SAMPLER_MODE: 1 deterministic,
// 2 random (xflow's hash mode too).
func samplerMode(m flow.SampleMode) uint8 {
	if m == flow.SampleDeterministic {
		return 1
	}
	return 2
}

func sampled(r *flow.Export) bool { return r.Sampling.Rate() > 1 }

func putSampling(b []byte, s flow.Sampling) {
	b = b[:samplingTailLen]
	be.PutUint32(b[0:], s.Rate())
	b[4] = samplerMode(s.Mode())
	be.PutUint16(b[5:], uint16(s))
}

// samplingState: the samplers seen (described again with each template
// refresh) and those described in this session.
type samplingState struct {
	known     []flow.Sampling
	announced map[flow.Sampling]bool
	templates bool
}

func (s *samplingState) reset() {
	clear(s.announced)
	s.templates = false
}

// announce writes, into the packet being built, the sampling templates and
// the options records of the samplers of recs not yet described in this
// session (all known samplers when all is set).
func (e *Encoder) announce(recs []flow.Export, all bool, send func([]byte) error) error {
	if e.smp.announced == nil {
		e.smp.announced = map[flow.Sampling]bool{}
	}
	var fresh []flow.Sampling
	if all {
		fresh = append(fresh, e.smp.known...)
	}
	for i := range recs {
		s := recs[i].Sampling
		if !sampled(&recs[i]) || e.smp.announced[s] {
			continue
		}
		e.smp.announced[s] = true
		fresh = append(fresh, s)
		known := false
		for _, k := range e.smp.known {
			known = known || k == s
		}
		if !known {
			e.smp.known = append(e.smp.known, s)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	if !e.smp.templates || all {
		for _, t := range samplingTemplates {
			b, err := e.record(templateFlowSetID, len(t), send)
			if err != nil {
				return err
			}
			copy(b, t)
		}
		b, err := e.record(optionsTemplateFlowSetID, len(samplerOptionsTemplate), send)
		if err != nil {
			return err
		}
		copy(b, samplerOptionsTemplate)
		// Each in its own FlowSet: nfdump 1.7.1 reads only the first
		// options template of a FlowSet.
		e.CloseSet()
		if b, err = e.record(optionsTemplateFlowSetID, len(stdSamplingOptionsTemplate), send); err != nil {
			return err
		}
		copy(b, stdSamplingOptionsTemplate)
		e.CloseSet()
		e.smp.templates = true
	}
	for _, s := range fresh {
		e.smp.announced[s] = true
		b, err := e.record(TemplateSampler, samplerRecLen, send)
		if err != nil {
			return err
		}
		be.PutUint32(b[0:], e.source)
		be.PutUint16(b[4:], uint16(s))
		b[6] = samplerMode(s.Mode())
		be.PutUint32(b[7:], s.Rate())
		if b, err = e.record(TemplateStdSampling, stdSamplingLen, send); err != nil {
			return err
		}
		be.PutUint32(b[0:], e.source)
		be.PutUint32(b[4:], s.Rate())
	}
	return nil
}
