package ipfix

import (
	"github.com/xflow-net/xflow/flow"
)

// Sampled flows (flow.Export.Sampling.Rate() > 1) go in their own
// templates, the flow templates with three fields appended, so that
// unsampled exports stay exactly as they were:
//
//	270  sampled IPv4 flows: template 256's fields, then
//	271  sampled IPv6 flows: template 257's fields, then
//	       selectorId (302, 8)              the selector below
//	       samplingPacketInterval (305, 4)  1
//	       samplingPacketSpace (306, 4)     N - 1: (305 + 306) / 305 = N
//
// and each selector in use is described once per session (and with every
// template refresh) by two options records with selectorId as scope, sent
// before the first record that uses it, in the same message:
//
//	273  samplerMode (49, 1), samplerRandomInterval (50, 4) = N
//	     (goflow2 takes the rate from the first options record holding
//	     305, 50 or 34, in that order within a record: this one comes
//	     first, so it reads N)
//	272  selectorAlgorithm (304, 2), samplingPacketInterval (305, 4) = 1,
//	     samplingPacketSpace (306, 4) = N - 1 (RFC 5476 / RFC 7014:
//	     akvorado computes (305 + 306) / 305)
//
// and one more, scoped by observationDomainId (149, 4):
//
//	274  samplingInterval (34, 4) = N
//	     nfdump 1.7.1 takes a sampler from an options template only when it
//	     holds 306 (or 50) without 302 and 304, or 34 without 35: this is
//	     its "generic" sampler, applied to every flow of the domain (with
//	     several rates in one domain, the last announced wins there)
//
// selectorId is flow.Sampling's value (mode << 14 | N). selectorAlgorithm
// (IANA PSAMP): 1 systematic count-based (deterministic), 4 uniform
// probabilistic (random), 6 hash-based filtering (hash; xflow's hash is its
// own, not BOB). Counts are as sampled (RFC 7011): collectors scale them.
const (
	TemplateIPv4Sampled = 270
	TemplateIPv6Sampled = 271
	TemplateSelector    = 272
	TemplateSampler     = 273
	TemplateStdSampling = 274

	samplingTailLen = 16 // selectorId, interval, space
	selectorRecLen  = 18 // selectorId, algorithm, interval, space
	samplerRecLen   = 13 // selectorId, mode, random interval
	stdSamplingLen  = 8  // observationDomainId, samplingInterval
	ipv4SampledLen  = ipv4RecordLen + samplingTailLen
	ipv6SampledLen  = ipv6RecordLen + samplingTailLen
)

// sampledTemplate is the flow template base with the sampling fields
// appended, under ID id.
func sampledTemplate(base []byte, id uint16) []byte {
	b := append([]byte(nil), base...)
	be.PutUint16(b[0:], id)
	be.PutUint16(b[2:], be.Uint16(b[2:])+3)
	for _, f := range []field{{302, 8}, {305, 4}, {306, 4}} {
		b = be.AppendUint16(b, f.id)
		b = be.AppendUint16(b, f.length)
	}
	return b
}

var (
	samplingTemplates = [][]byte{
		sampledTemplate(templateRecords[0], TemplateIPv4Sampled),
		sampledTemplate(templateRecords[1], TemplateIPv6Sampled),
	}
	samplingOptionsTemplates = [][]byte{
		templateRecord(TemplateSampler, 1,
			field{302, 8}, // scope: selectorId
			field{49, 1},  // samplerMode
			field{50, 4}), // samplerRandomInterval
		templateRecord(TemplateSelector, 1,
			field{302, 8},  // scope: selectorId
			field{304, 2},  // selectorAlgorithm
			field{305, 4},  // samplingPacketInterval
			field{306, 4}), // samplingPacketSpace
		templateRecord(TemplateStdSampling, 1,
			field{149, 4}, // scope: observationDomainId
			field{34, 4}), // samplingInterval
	}
)

// SelectorAlgorithm is the IANA PSAMP selectorAlgorithm of a mode.
func SelectorAlgorithm(m flow.SampleMode) uint16 {
	switch m {
	case flow.SampleDeterministic:
		return 1 // systematic count-based sampling
	case flow.SampleHash:
		return 6 // hash-based filtering
	}
	return 4 // uniform probabilistic sampling
}

// samplerMode is NetFlow's FLOW_SAMPLER_MODE / samplerMode: 1
// deterministic, 2 random (hash: 2, what a flow-level selection looks like
// to a packet-count collector).
func samplerMode(m flow.SampleMode) uint8 {
	if m == flow.SampleDeterministic {
		return 1
	}
	return 2
}

func sampled(r *flow.Export) bool { return r.Sampling.Rate() > 1 }

// putSampling writes the sampling fields of a sampled flow record.
func putSampling(b []byte, s flow.Sampling) {
	b = b[:samplingTailLen]
	be.PutUint64(b[0:], uint64(s))
	be.PutUint32(b[8:], 1)
	be.PutUint32(b[12:], s.Rate()-1)
}

// samplingState is what an Encoder knows of the selectors: those seen (to
// describe again with each template refresh) and those described in this
// session.
type samplingState struct {
	known     []flow.Sampling
	announced map[flow.Sampling]bool
	templates bool // the sampled templates were sent in this session
}

func (s *samplingState) reset() {
	clear(s.announced)
	s.templates = false
}

// announce writes, into the message being built, the sampling templates
// and the options records of the selectors of recs not yet described in
// this session (all known selectors when all is set).
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
			b, err := e.record(templateSetID, len(t), send)
			if err != nil {
				return err
			}
			copy(b, t)
		}
		for _, t := range samplingOptionsTemplates {
			b, err := e.record(optionsTemplateSetID, len(t), send)
			if err != nil {
				return err
			}
			copy(b, t)
			// Each in its own set: nfdump 1.7.1 reads only the first
			// options template of a set.
			e.CloseSet()
		}
		e.smp.templates = true
	}
	for _, s := range fresh {
		e.smp.announced[s] = true
		b, err := e.record(TemplateSampler, samplerRecLen, send)
		if err != nil {
			return err
		}
		be.PutUint64(b[0:], uint64(s))
		b[8] = samplerMode(s.Mode())
		be.PutUint32(b[9:], s.Rate())
		if b, err = e.record(TemplateSelector, selectorRecLen, send); err != nil {
			return err
		}
		be.PutUint64(b[0:], uint64(s))
		be.PutUint16(b[8:], SelectorAlgorithm(s.Mode()))
		be.PutUint32(b[10:], 1)
		be.PutUint32(b[14:], s.Rate()-1)
		if b, err = e.record(TemplateStdSampling, stdSamplingLen, send); err != nil {
			return err
		}
		be.PutUint32(b[0:], e.domain)
		be.PutUint32(b[4:], s.Rate())
	}
	return nil
}
