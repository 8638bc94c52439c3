// Package setpack packs records into the sets of an export message, the
// layout IPFIX (RFC 7011: message header, then sets) and NetFlow v9 (RFC
// 3954: packet header, then FlowSets) share: each set is a 4-byte header
// (ID, length) and its records, padded with zeros to a multiple of 4 bytes,
// and a message never exceeds the MTU.
package setpack

import (
	"encoding/binary"
	"fmt"
)

// SetHeaderLen is the size of a set's header.
const SetHeaderLen = 4

// Packer builds one message at a time in Buf. The encoder owns the header
// (the first HeaderLen bytes) and what it counts; Packer owns the sets.
type Packer struct {
	Buf       []byte // len(Buf) == MTU
	N         int    // bytes used in Buf, the header's included
	MTU       int
	HeaderLen int

	set   int    // offset of the open set's header; 0 if none
	setID uint16 // ID of the open set
}

// New makes a packer for messages of at most mtu bytes after a header of
// headerLen bytes.
func New(mtu, headerLen int) Packer {
	p := Packer{Buf: make([]byte, mtu), MTU: mtu, HeaderLen: headerLen}
	p.Reset()
	return p
}

// Reset starts a new, empty message.
func (p *Packer) Reset() {
	p.N = p.HeaderLen
	p.set = 0
}

// Empty says whether the message holds no set.
func (p *Packer) Empty() bool { return p.N == p.HeaderLen }

// Pad is the number of zero octets that bring a set of n bytes to a
// multiple of 4.
func Pad(n int) int { return -n & 3 }

// FitsAlone says whether a record of n bytes fits in a message of its own.
func (p *Packer) FitsAlone(n int) bool {
	return p.HeaderLen+SetHeaderLen+n+Pad(SetHeaderLen+n) <= p.MTU
}

// Fit is how many n-byte records fit in the current message in a set with
// ID id (the open set, or a new one after it), counting the sets' padding.
func (p *Packer) Fit(id uint16, n int) int {
	set, start := p.set, p.N // the set's header, its first free byte
	if set == 0 || p.setID != id {
		set = p.N
		if p.set != 0 {
			set += Pad(p.N - p.set) // the open set's padding
		}
		start = set + SetHeaderLen
	}
	if start > p.MTU {
		return 0
	}
	k := (p.MTU - start) / n
	if end := start + k*n; k > 0 && end+Pad(end-set) > p.MTU {
		k-- // no room for the padding: one record less leaves room (n > 3)
	}
	return k
}

// Room opens a set with ID id in the current message, or continues the open
// one, and returns how many n-byte records fit in it (at least one), calling
// flush (which sends the message and resets the packer) first if none does.
// The caller writes the records at Buf[N:] and advances N. errMTU is
// wrapped when a record fits in no message.
func (p *Packer) Room(id uint16, n int, flush func() error, errMTU error) (int, error) {
	k := p.Fit(id, n)
	if k == 0 {
		if err := flush(); err != nil {
			return 0, err
		}
		if k = p.Fit(id, n); k == 0 { // callers check FitsAlone beforehand
			return 0, fmt.Errorf("%w: %d-byte record for set %d in %d-byte messages", errMTU, n, id, p.MTU)
		}
	}
	p.OpenSet(id)
	return k, nil
}

// Record reserves n bytes for one record in a set with ID id (see Room)
// and returns them for the caller to fill.
func (p *Packer) Record(id uint16, n int, flush func() error, errMTU error) ([]byte, error) {
	if _, err := p.Room(id, n, flush, errMTU); err != nil {
		return nil, err
	}
	b := p.Buf[p.N : p.N+n]
	p.N += n
	return b, nil
}

// OpenSet starts a set with ID id, closing the open set, unless the open
// set has that ID.
func (p *Packer) OpenSet(id uint16) {
	if p.set != 0 && p.setID == id {
		return
	}
	p.CloseSet()
	p.set, p.setID = p.N, id
	binary.BigEndian.PutUint16(p.Buf[p.N:], id) // its length is written by CloseSet
	p.N += SetHeaderLen
}

// CloseSet pads the open set, if any, and writes its length.
func (p *Packer) CloseSet() {
	if p.set == 0 {
		return
	}
	pad := Pad(p.N - p.set)
	clear(p.Buf[p.N : p.N+pad])
	p.N += pad
	binary.BigEndian.PutUint16(p.Buf[p.set+2:], uint16(p.N-p.set))
	p.set = 0
}
