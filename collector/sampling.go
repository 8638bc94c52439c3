package collector

// Sampling: a flow record's rate comes from its own elements, else from
// the selector it names.
//
//   - samplingPacketInterval (305) and samplingPacketSpace (306): the rate
//     is (305 + 306) / 305 (RFC 5476; xflow sends 1 and N - 1);
//   - else samplerRandomInterval (50) or samplingInterval (34): N;
//   - else selectorId (302), or samplerId (48): the rate an options record
//     with that scope reported (by the same elements), per exporter and
//     observation domain.
//
// Record.SamplingRate is 0 when nothing says.

const (
	ieSamplingInterval       = 34
	ieSamplerID              = 48
	ieSamplerRandomInterval  = 50
	ieSelectorID             = 302
	ieSamplingPacketInterval = 305
	ieSamplingPacketSpace    = 306
)

// rateOf reads the sampling elements of a record (scope fields of options
// records included): the rate, and the selector it names (0: none).
type rateReader struct {
	interval, space, random, std uint64
	selector                     uint64
	hasSelector                  bool
}

func (r *rateReader) field(id uint16, v []byte) {
	switch id {
	case ieSamplingPacketInterval:
		r.interval = num(v)
	case ieSamplingPacketSpace:
		r.space = num(v)
	case ieSamplerRandomInterval:
		r.random = num(v)
	case ieSamplingInterval:
		r.std = num(v)
	case ieSelectorID, ieSamplerID:
		r.selector, r.hasSelector = num(v), true
	}
}

func (r *rateReader) rate() uint32 {
	switch {
	case r.interval > 0:
		return uint32((r.interval + r.space) / r.interval)
	case r.random > 0:
		return uint32(r.random)
	case r.std > 0:
		return uint32(r.std)
	}
	return 0
}

type selectorKey struct {
	nameKey
	selector uint64
}

// learnSelector remembers the rate an options record reports for its
// selector.
func (c *Collector) learnSelector(k nameKey, r *rateReader) {
	rate := r.rate()
	if !r.hasSelector || rate == 0 {
		return
	}
	c.namesMu.Lock()
	defer c.namesMu.Unlock()
	if c.selectors == nil {
		c.selectors = map[selectorKey]uint32{}
	}
	c.selectors[selectorKey{k, r.selector}] = rate
}

// recordRate is a flow record's sampling rate.
func (c *Collector) recordRate(k nameKey, r *rateReader) uint32 {
	if n := r.rate(); n > 0 || !r.hasSelector {
		return n
	}
	c.namesMu.RLock()
	defer c.namesMu.RUnlock()
	return c.selectors[selectorKey{k, r.selector}]
}
