package bpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/xflow-net/xflow/flow"
)

// event is struct flow_event: one packet (or GSO batch) from the ring.
type event struct {
	Key      flow.Key
	TsNs     uint64
	Bytes    uint32
	Packets  uint32
	TCPFlags uint32
	TOS      uint8
	Pad      [3]uint8
}

// RingConsumer turns the ringbuf kind's per-packet events into flows: it
// aggregates them in user space and mirrors the aggregate into a (pinned)
// hash map, so that readers see the same cumulative flows as with the
// other kinds.
type RingConsumer struct {
	rd      *ringbuf.Reader
	agg     map[flow.Key]*flow.Value
	dirty   map[flow.Key]struct{}
	mirror  *ebpf.Map
	max     int
	dropped uint64 // events whose flow did not fit in max
}

// NewRingConsumer starts consuming d's ring buffer (ringbuf kind only).
func (d *Datapath) NewRingConsumer() (*RingConsumer, error) {
	if d.opts.Kind != KindRingbuf {
		return nil, fmt.Errorf("map kind %s has no ring buffer", d.opts.Kind)
	}
	rd, err := ringbuf.NewReader(d.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return &RingConsumer{
		rd:     rd,
		agg:    make(map[flow.Key]*flow.Value),
		dirty:  make(map[flow.Key]struct{}),
		mirror: d.ringAgg,
		max:    int(d.opts.MaxFlows),
	}, nil
}

// pollInterval bounds how long an event waits in the ring: the data plane
// wakes the consumer only when the ring fills up.
const pollInterval = 50 * time.Millisecond

// Run consumes events until ctx ends, mirroring the aggregate every
// pollInterval.
func (c *RingConsumer) Run(ctx context.Context) error {
	defer c.rd.Close()
	for ctx.Err() == nil {
		if err := c.Drain(); err != nil {
			return err
		}
	}
	return c.Drain()
}

// Drain reads every event in the ring now (waiting at most pollInterval
// for more) and updates the mirror map.
func (c *RingConsumer) Drain() error {
	var rec ringbuf.Record
	c.rd.SetDeadline(time.Now().Add(pollInterval))
	for {
		err := c.rd.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if len(rec.RawSample) < int(unsafe.Sizeof(event{})) {
			continue
		}
		c.add((*event)(unsafe.Pointer(&rec.RawSample[0])))
	}
	return c.flush()
}

func (c *RingConsumer) add(e *event) {
	v, ok := c.agg[e.Key]
	if !ok {
		if len(c.agg) >= c.max {
			c.dropped += uint64(e.Packets)
			return
		}
		v = &flow.Value{}
		c.agg[e.Key] = v
	}
	fin := uint8(0)
	if e.TCPFlags&0x05 != 0 {
		fin = 1
	}
	v.Add(&flow.Value{Packets: uint64(e.Packets), Bytes: uint64(e.Bytes),
		FirstNs: e.TsNs, LastNs: e.TsNs, TCPFlags: e.TCPFlags, TOS: e.TOS, FinRst: fin})
	c.dirty[e.Key] = struct{}{}
}

// flush writes the changed flows to the mirror map.
func (c *RingConsumer) flush() error {
	if len(c.dirty) == 0 {
		return nil
	}
	keys := make([]flow.Key, 0, len(c.dirty))
	vals := make([]flow.Value, 0, len(c.dirty))
	for k := range c.dirty {
		keys = append(keys, k)
		vals = append(vals, *c.agg[k])
	}
	clear(c.dirty)
	if _, err := c.mirror.BatchUpdate(keys, vals, nil); err != nil {
		return fmt.Errorf("update ring flow map: %w", err)
	}
	return nil
}

// Dropped counts packets whose flow found no room in the aggregate.
func (c *RingConsumer) Dropped() uint64 { return c.dropped }
