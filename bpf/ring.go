package bpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

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

// ringConsumer turns the ringbuf kind's per-packet events into flows,
// aggregated in user space until the next Swap takes them.
type ringConsumer struct {
	rd *ringbuf.Reader

	mu      sync.Mutex
	agg     map[flow.Key]*flow.Value
	max     int
	dropped uint64 // packets whose flow found no room in the aggregate
}

func newRingConsumer(d *Datapath) (*ringConsumer, error) {
	rd, err := ringbuf.NewReader(d.objs.Events)
	if err != nil {
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return &ringConsumer{rd: rd, agg: make(map[flow.Key]*flow.Value), max: int(d.opts.MaxFlows)}, nil
}

// pollInterval bounds how long an event waits in the ring: the data plane
// wakes the consumer only when the ring fills up.
const pollInterval = 50 * time.Millisecond

// RunRing consumes the ring buffer (ringbuf kind) until ctx ends, then
// reads what is left in it. Other kinds return at once.
func (d *Datapath) RunRing(ctx context.Context) error {
	if d.ring == nil {
		return nil
	}
	for ctx.Err() == nil {
		if err := d.ring.poll(pollInterval); err != nil {
			return err
		}
	}
	return d.ring.poll(0)
}

// SyncRing reads every event already in the ring (tests, and the final
// drain once the programs are detached). It must not run beside RunRing.
func (d *Datapath) SyncRing() error {
	if d.ring == nil {
		return nil
	}
	return d.ring.poll(0)
}

// poll reads events until the ring is empty, waiting at most wait for more.
func (c *ringConsumer) poll(wait time.Duration) error {
	var rec ringbuf.Record
	c.rd.SetDeadline(time.Now().Add(wait))
	for {
		err := c.rd.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if len(rec.RawSample) >= int(unsafe.Sizeof(event{})) {
			c.add((*event)(unsafe.Pointer(&rec.RawSample[0])))
		}
	}
}

func (c *ringConsumer) add(e *event) {
	fin := uint8(0)
	if e.TCPFlags&0x05 != 0 { // FIN, RST
		fin = 1
	}
	nv := flow.Value{Packets: uint64(e.Packets), Bytes: uint64(e.Bytes),
		FirstNs: e.TsNs, LastNs: e.TsNs, TCPFlags: e.TCPFlags, TOS: e.TOS, FinRst: fin}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.agg[e.Key]
	if !ok {
		if len(c.agg) >= c.max {
			c.dropped += uint64(e.Packets)
			return
		}
		v = &flow.Value{}
		c.agg[e.Key] = v
	}
	v.Add(&nv)
}

// swap returns the aggregate and starts a new one.
func (c *ringConsumer) swap() map[flow.Key]*flow.Value {
	c.mu.Lock()
	defer c.mu.Unlock()
	agg := c.agg
	c.agg = make(map[flow.Key]*flow.Value, len(agg))
	return agg
}

// take hands over the aggregate and starts a new one.
func (c *ringConsumer) take(fn func(*flow.Key, *flow.Value)) int {
	agg := c.swap()
	for k, v := range agg {
		fn(&k, v)
	}
	return len(agg)
}

func (c *ringConsumer) peek(fn func(*flow.Key, *flow.Value)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.agg {
		vv := *v
		fn(&k, &vv)
	}
}

// RingDropped counts packets whose flow found no room in the ring
// consumer's aggregate (max_flows distinct flows between two drains).
func (d *Datapath) RingDropped() uint64 {
	if d.ring == nil {
		return 0
	}
	d.ring.mu.Lock()
	defer d.ring.mu.Unlock()
	return d.ring.dropped
}
