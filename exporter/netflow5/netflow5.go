// Package netflow5 encodes xflow's flow records as NetFlow version 5 export
// datagrams (Cisco's fixed format: a 24-byte header and up to 30 48-byte
// flow records).
//
// An Encoder packs records into datagrams of at most Options.MTU bytes in
// one reused buffer and hands each finished datagram to a send callback;
// encoding flow records allocates nothing.
//
// # Datagram layout
//
// The header:
//
//	offset  field
//	     0  version (2): 5
//	     2  count (2): records in the datagram, 1..30
//	     4  sysUptime (4): ms since Options.Boot, mod 2^32
//	     8  unix_secs (4)
//	    12  unix_nsecs (4)
//	    16  flow_sequence (4): records sent before this datagram in the session
//	    20  engine_type (1), engine_id (1)
//	    22  sampling_interval (2): mode (2 bits: 0 none, 1 deterministic,
//	        2 random; xflow's hash mode is sent as 2) << 14 | interval N (14
//	        bits), the sampling of every record in the datagram (records
//	        sampled differently go in different datagrams); 0: not sampled.
//	        Counts are as sampled: collectors multiply them by N.
//
// Each record:
//
//	offset  field
//	     0  srcaddr (4), dstaddr (4)
//	     8  nexthop (4): 0
//	    12  input (2), output (2): SNMP ifindexes
//	    16  dPkts (4), dOctets (4)
//	    24  First (4), Last (4): sysUptime at the first and last packet
//	    32  srcport (2), dstport (2)
//	    36  pad1 (1), tcp_flags (1), prot (1), tos (1)
//	    40  src_as (2), dst_as (2), src_mask (1), dst_mask (1): 0
//	    46  pad2 (2)
//
// input is the flow's ifindex for ingress flows and output for egress
// flows, the other one 0. They are 16 bits: an ifindex above 65535 cannot
// be told and is sent as 0 (unknown) rather than cut to a wrong interface.
// ICMP flows have source port 0 and type<<8|code as destination port, the
// NetFlow convention. tcp_flags is one byte, for TCP flows only: the NS flag
// (0x100) does not fit and is dropped.
//
// NetFlow v5 carries IPv4 only: IPv6 records are skipped, not sent, and
// counted by Unexportable.
//
// # Counters above 32 bits
//
// dPkts and dOctets are 32 bits. A record whose packets or bytes exceed
// 2^32-1 is sent as several records with the same key and times, as many
// as the larger count needs, whose counts add up to the record's exactly:
// the counts are divided evenly, the first parts taking one more where the
// division leaves a remainder. flow_sequence counts these parts, as it
// counts what collectors see: records. A record that would need more than
// MaxParts parts (about 2^48 bytes or packets: not a real delta count) is
// an error.
//
// # Times
//
// The header's unix_secs and unix_nsecs are the packet's time truncated to
// the millisecond, and sysUptime is the same instant's milliseconds since
// Options.Boot, so that a collector computing
//
//	unix_secs*1000 + unix_nsecs/1e6 - (sysUptime - First)
//
// gets StartMs back exactly (and EndMs from Last), whether it computes in 64
// bits or modulo 2^32, for times up to 49.7 days before the packet's and not
// after it (collectors subtract the uptimes unsigned; nfdump, which adds
// First to the boot time in 64 bits, also needs sysUptime not to have
// wrapped since the record's time).
package netflow5

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/xflow-net/xflow/flow"
)

const (
	version   = 5
	headerLen = 24
	recordLen = 48

	// MaxRecords is the most records a NetFlow v5 datagram holds.
	MaxRecords = 30
	// MaxMTU is the size of a datagram of MaxRecords records.
	MaxMTU = headerLen + MaxRecords*recordLen

	// DefaultMTU is the datagram size used when Options.MTU is not set, as
	// for IPFIX and NetFlow v9: 28 records.
	DefaultMTU = 1400

	// MaxParts is the most records one flow record may be split into.
	MaxParts = 1 << 16

	maxCount = 1<<32 - 1 // dPkts, dOctets
)

// Options configures an Encoder.
type Options struct {
	// EngineType and EngineID identify the exporter in the header.
	EngineType, EngineID uint8
	// MTU is the largest datagram in bytes: a datagram holds as many
	// records as fit, at most MaxRecords (MaxMTU bytes). 0 means
	// DefaultMTU.
	MTU int
	// Boot is the time of the system's boot, from which sysUptime, First
	// and Last count: time.Now() minus CLOCK_MONOTONIC. The zero Time means
	// the encoder's creation time, which makes the times of flows that
	// started before it wrap around 2^32 ms.
	Boot time.Time
}

// ErrMTU is returned (wrapped) when Options.MTU cannot hold a datagram of
// one record (72 bytes). Nothing is sent then.
var ErrMTU = errors.New("netflow5: MTU too small for a record")

// Encoder builds the NetFlow v5 datagrams of one transport session. It is
// not safe for concurrent use.
type Encoder struct {
	engineType, engineID uint8
	mtu                  int
	perDatagram          int    // records a datagram
	boot                 int64  // Options.Boot, ms since the Unix epoch
	boot32               uint32 // the same, mod 2^32: First = StartMs - boot32
	seq                  uint32 // records sent in this session, mod 2^32
	buf                  []byte // the datagram being built

	// The datagram being built.
	n                           int // records in it
	flows                       int // flow records whose last part is in it
	unixSecs, unixNsecs, uptime uint32
	sampling                    uint16 // its header's sampling_interval

	sent         uint64 // flow records all of whose parts send accepted, this session
	unexportable uint64 // IPv6 records skipped since creation
}

// NewEncoder returns an encoder for a new transport session.
func NewEncoder(o Options) *Encoder {
	mtu := o.MTU
	if mtu <= 0 {
		mtu = DefaultMTU
	}
	boot := o.Boot
	if boot.IsZero() {
		boot = time.Now()
	}
	per := min(MaxRecords, max(0, (mtu-headerLen)/recordLen))
	e := &Encoder{engineType: o.EngineType, engineID: o.EngineID, mtu: mtu, perDatagram: per,
		buf: make([]byte, headerLen+per*recordLen)}
	e.boot = boot.UnixMilli()
	e.boot32 = uint32(e.boot)
	return e
}

// Reset starts a new transport session: the sequence number restarts at 0.
func (e *Encoder) Reset() {
	e.seq = 0
	e.sent = 0
	e.begin()
}

// Templates sends nothing: NetFlow v5 has no templates nor options. It
// exists for the exporter's Encoder interface.
func (e *Encoder) Templates(now time.Time, st flow.ExportTotals, ifaces []flow.Interface, send func(msg []byte) error) error {
	return nil
}

// Encode packs the IPv4 records into datagrams of at most MTU bytes, in
// order, calling send for each full datagram and for the last one (none if
// there is no IPv4 record). The slice passed to send is only valid during
// the call. IPv6 records are skipped and counted by Unexportable.
//
// A record whose IP version is neither 4 nor 6 or which would need more
// than MaxParts parts, or an MTU that holds no record, is an error and then
// nothing is sent.
//
// If send fails, Encode returns its error at once; the records of the failed
// datagram and of the rest of recs are dropped and not counted in the
// sequence numbers.
func (e *Encoder) Encode(now time.Time, recs []flow.Export, send func(msg []byte) error) error {
	var n4, n6 int
	for i := range recs {
		r := &recs[i]
		switch r.Key.IPVersion {
		case 4:
			if parts(r) > MaxParts {
				return fmt.Errorf("netflow5: record %d: %d packets, %d bytes: more than %d records of 32-bit counts",
					i, r.Packets, r.Bytes, MaxParts)
			}
			n4++
		case 6:
			n6++
		default:
			return fmt.Errorf("netflow5: record %d: IP version %d", i, r.Key.IPVersion)
		}
	}
	if n4 > 0 && e.perDatagram == 0 {
		return fmt.Errorf("%w: %d-byte datagrams hold no %d-byte record after the %d-byte header",
			ErrMTU, e.mtu, recordLen, headerLen)
	}
	e.unexportable += uint64(n6)

	e.begin()
	e.setTime(now)
	for i := range recs {
		r := &recs[i]
		if r.Key.IPVersion != 4 {
			continue
		}
		k := parts(r)
		if s := samplingField(r.Sampling); s != e.sampling {
			if err := e.flush(send); err != nil {
				return err
			}
			e.sampling = s
		}
		for j := range k {
			if e.n == e.perDatagram {
				if err := e.flush(send); err != nil {
					return err
				}
			}
			e.put(e.buf[headerLen+e.n*recordLen:], r, k, j)
			e.n++
		}
		e.flows++
	}
	return e.flush(send)
}

// parts is the number of records r is sent as: enough for its packets and
// bytes to fit in 32 bits each, at least one.
func parts(r *flow.Export) uint64 {
	if r.Packets <= maxCount && r.Bytes <= maxCount {
		return 1 // the common case, without dividing
	}
	return max(1, ceilDiv(r.Packets, maxCount), ceilDiv(r.Bytes, maxCount))
}

// samplingField is the header's sampling_interval for s.
func samplingField(s flow.Sampling) uint16 {
	n := s.Rate()
	if n <= 1 {
		return 0
	}
	mode := uint16(2) // random
	if s.Mode() == flow.SampleDeterministic {
		mode = 1
	}
	return mode<<14 | uint16(min(n, flow.MaxSamplingRate))
}

func ceilDiv(a, b uint64) uint64 {
	q := a / b
	if a%b != 0 {
		q++
	}
	return q
}

// share is part j's share of total divided among k parts: total/k, plus
// one for each of the first total%k parts. The shares add up to total, and
// none exceeds 2^32-1 if k >= ceilDiv(total, 2^32-1).
func share(total, k, j uint64) uint32 {
	if k == 1 {
		return uint32(total)
	}
	s := total / k
	if j < total%k {
		s++
	}
	return uint32(s)
}

// setTime sets the header times of the datagrams to come: now, truncated to
// the millisecond, and the uptime at that instant.
func (e *Encoder) setTime(now time.Time) {
	ms := now.UnixMilli()
	e.unixSecs = uint32(now.Unix())
	e.unixNsecs = uint32(now.Nanosecond() / 1e6 * 1e6)
	e.uptime = uint32(ms - e.boot)
}

var be = binary.BigEndian

// put writes part j of the k parts of r as a record: b holds recordLen
// bytes.
func (e *Encoder) put(b []byte, r *flow.Export, k, j uint64) {
	b = b[:recordLen] // one bounds check for all the writes below
	key := &r.Key

	// Interfaces: the flow's ifindex is the interface it was seen entering
	// (ingress) or leaving (egress); one beyond 16 bits is unknown (0).
	var in, out uint16
	if key.IfIndex <= 0xffff {
		switch key.Direction {
		case flow.Ingress:
			in = uint16(key.IfIndex)
		case flow.Egress:
			out = uint16(key.IfIndex)
		}
	}
	// ICMP flows hold type<<8|code in DstPort, the NetFlow convention, with
	// a zero source port.
	sport, dport := key.SrcPort, key.DstPort
	if key.IsICMP() {
		sport = 0
	}
	var flags uint8
	if key.Proto == 6 { // TCP
		flags = uint8(r.TCPFlags) // CWR..FIN; NS does not fit
	}

	copy(b[0:4], key.Src[12:16]) // IPv4 is held v4-mapped: ::ffff:a.b.c.d
	copy(b[4:8], key.Dst[12:16])
	be.PutUint32(b[8:], 0) // nexthop
	be.PutUint16(b[12:], in)
	be.PutUint16(b[14:], out)
	be.PutUint32(b[16:], share(r.Packets, k, j))
	be.PutUint32(b[20:], share(r.Bytes, k, j))
	be.PutUint32(b[24:], uint32(r.StartMs)-e.boot32) // mod 2^32, as sysUptime
	be.PutUint32(b[28:], uint32(r.EndMs)-e.boot32)
	be.PutUint16(b[32:], sport)
	be.PutUint16(b[34:], dport)
	b[36] = 0 // pad1
	b[37] = flags
	b[38] = key.Proto
	b[39] = r.TOS
	clear(b[40:48]) // src_as, dst_as, src_mask, dst_mask, pad2
}

// begin starts a new, empty datagram.
func (e *Encoder) begin() {
	e.n = 0
	e.flows = 0
}

// flush completes the current datagram, if it holds any record, and sends
// it. The sequence number advances by its records if send succeeds.
func (e *Encoder) flush(send func([]byte) error) error {
	if e.n == 0 {
		return nil
	}
	h := e.buf[:headerLen]
	be.PutUint16(h[0:], version)
	be.PutUint16(h[2:], uint16(e.n))
	be.PutUint32(h[4:], e.uptime)
	be.PutUint32(h[8:], e.unixSecs)
	be.PutUint32(h[12:], e.unixNsecs)
	be.PutUint32(h[16:], e.seq)
	h[20] = e.engineType
	h[21] = e.engineID
	be.PutUint16(h[22:], e.sampling) // sampling_interval
	err := send(e.buf[:headerLen+e.n*recordLen])
	if err == nil {
		e.seq += uint32(e.n)
		e.sent += uint64(e.flows)
	}
	e.begin()
	return err
}

// Sent is the number of flow records all of whose datagrams send accepted
// since the session started: after a failed Encode, what did go out. A
// record split in several parts counts once, when its last part goes out;
// skipped IPv6 records do not count.
func (e *Encoder) Sent() uint64 { return e.sent }

// Unexportable is the number of IPv6 records skipped since the encoder was
// created (Reset does not clear it): NetFlow v5 has no IPv6 record.
func (e *Encoder) Unexportable() uint64 { return e.unexportable }
