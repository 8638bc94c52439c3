package config

import (
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// Sampling is 1:Rate packet sampling (the top-level default, or one
// interface's).
type Sampling struct {
	Rate int    // 1:N; 0 or 1: every packet
	Mode string // random, deterministic or hash
	Seed uint32 // hash: hosts with the same seed select the same flows
}

// Filter is one in-kernel filter rule; the first rule that matches a
// packet decides. Empty fields match everything.
type Filter struct {
	Src, Dst  string // CIDR (an address alone is a /32 or /128)
	Proto     string // name (tcp, udp, icmp, ...) or number
	SrcPort   int    // 0: any (needs a proto with ports)
	DstPort   int
	Direction string // ingress, egress; "": both
	Action    string // skip (no flow, no record) or count
	Rate      int    // count: 1:N sampling of what it matches; 0: the interface's
}

// Sampling and filter limits (the data plane's).
const (
	MaxSamplingRate = 16383 // 14 bits, as in the data plane and NetFlow v5
	MaxFilters      = 1024
)

var (
	sampleModes   = []string{"random", "deterministic", "hash"}
	filterActions = []string{"skip", "count"}
	directions    = []string{"ingress", "egress"}
	protoNames    = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
		"icmpv6": 58, "sctp": 132, "udplite": 136}
)

const defaultSampleMode = "random"

func defaultSampling() Sampling { return Sampling{Mode: defaultSampleMode} }

// ParsePrefix reads a filter's CIDR ("" is the zero Prefix: any).
func ParsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, err
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
	}
	return p.Masked(), nil
}

// ParseProto reads a protocol name or number; ok false for "" (any).
func ParseProto(s string) (proto uint8, ok bool, err error) {
	if s == "" {
		return 0, false, nil
	}
	if p, found := protoNames[strings.ToLower(s)]; found {
		return p, true, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, false, err
	}
	return uint8(n), true, nil
}

func (d *decoder) decodeSampling(e entry, s *Sampling) error {
	return d.mapping(e, []field{
		{"rate", d.intField(&s.Rate)},
		{"mode", d.stringField(&s.Mode)},
		{"seed", func(e entry) error {
			v, err := d.integer(e)
			if err != nil {
				return err
			}
			if v < 0 || v > math.MaxUint32 {
				return d.errorf(e.line, e.path, "seed %d out of range 0..%d", v, uint32(math.MaxUint32))
			}
			s.Seed = uint32(v)
			return nil
		}},
	})
}

func (d *decoder) decodeFilters(e entry, c *Config) error {
	c.Filters = []Filter{}
	return d.sequence(e, func(e entry) error {
		f := Filter{Action: "count"}
		if err := d.mapping(e, []field{
			{"src", d.stringField(&f.Src)},
			{"dst", d.stringField(&f.Dst)},
			{"proto", d.stringField(&f.Proto)},
			{"src_port", d.intField(&f.SrcPort)},
			{"dst_port", d.intField(&f.DstPort)},
			{"direction", d.stringField(&f.Direction)},
			{"action", d.stringField(&f.Action)},
			{"sampling_rate", d.intField(&f.Rate)},
		}); err != nil {
			return err
		}
		c.Filters = append(c.Filters, f)
		return nil
	})
}

func (c *Config) checkSampling(p string, s Sampling) *Error {
	if s.Rate < 0 || s.Rate > MaxSamplingRate {
		return c.errorf(p+".rate", "rate %d out of range 0..%d (1:N; 0 or 1 counts every packet)", s.Rate, MaxSamplingRate)
	}
	return c.checkEnum(p+".mode", "sampling mode", s.Mode, sampleModes)
}

func (c *Config) validateSampling() *Error {
	if err := c.checkSampling("sampling", c.Sampling); err != nil {
		return err
	}
	for i, ifc := range c.Interfaces {
		if ifc.Sampling != nil {
			if err := c.checkSampling(indexPath("interfaces", i)+".sampling", *ifc.Sampling); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Config) validateFilters() *Error {
	if len(c.Filters) > MaxFilters {
		return c.errorf(indexPath("filters", MaxFilters), "%d filter rules: at most %d", len(c.Filters), MaxFilters)
	}
	for i, f := range c.Filters {
		p := indexPath("filters", i)
		for _, a := range []struct{ name, v string }{{"src", f.Src}, {"dst", f.Dst}} {
			if _, err := ParsePrefix(a.v); err != nil {
				return c.errorf(p+"."+a.name, "%s %s: want an address or CIDR (10.0.0.0/8, 2001:db8::/32)", a.name, quote(a.v))
			}
		}
		proto, hasProto, err := ParseProto(f.Proto)
		if err != nil {
			return c.errorf(p+".proto", "proto %s: want a name (tcp, udp, icmp, icmpv6, sctp, ...) or a number 0..255", quote(f.Proto))
		}
		for _, a := range []struct {
			name string
			v    int
		}{{"src_port", f.SrcPort}, {"dst_port", f.DstPort}} {
			if a.v < 0 || a.v > 65535 {
				return c.errorf(p+"."+a.name, "%s %d out of range 1..65535", a.name, a.v)
			}
			if a.v != 0 && (!hasProto || (proto != 6 && proto != 17 && proto != 132 && proto != 136)) {
				return c.errorf(p+"."+a.name, "%s needs proto tcp, udp, sctp or udplite", a.name)
			}
		}
		if f.Direction != "" {
			if err := c.checkEnum(p+".direction", "direction", f.Direction, directions); err != nil {
				return err
			}
		}
		if err := c.checkEnum(p+".action", "filter action", f.Action, filterActions); err != nil {
			return err
		}
		if f.Rate < 0 || f.Rate > MaxSamplingRate {
			return c.errorf(p+".sampling_rate", "sampling_rate %d out of range 0..%d", f.Rate, MaxSamplingRate)
		}
		if f.Rate > 1 && f.Action == "skip" {
			return c.errorf(p+".sampling_rate", "sampling_rate has no effect with action skip")
		}
	}
	return nil
}
