package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xflow-net/xflow/bpf/kind"
)

// Kind is the flow store of the data plane, chosen at load time. The
// kinds are package kind's list, shared with the configuration.
type Kind string

const (
	KindHash          = Kind(kind.Hash)
	KindPerCPUHash    = Kind(kind.PerCPUHash)
	KindLRUHash       = Kind(kind.LRUHash)
	KindLRUPerCPUHash = Kind(kind.LRUPerCPUHash)
	KindArray         = Kind(kind.Array)
	KindPerCPUArray   = Kind(kind.PerCPUArray)
	KindRingbuf       = Kind(kind.Ringbuf)
)

// stores says, for each kind, its value of enum xflow_map_kind and the BPF
// map type of its store (none for ringbuf). A kind missing here fails
// Load (TestKinds).
var stores = map[Kind]struct {
	c  xflowXflowMapKind
	mt ebpf.MapType
}{
	KindHash:          {xflowXflowMapKindKIND_HASH, ebpf.Hash},
	KindPerCPUHash:    {xflowXflowMapKindKIND_PERCPU_HASH, ebpf.PerCPUHash},
	KindLRUHash:       {xflowXflowMapKindKIND_LRU_HASH, ebpf.LRUHash},
	KindLRUPerCPUHash: {xflowXflowMapKindKIND_LRU_PERCPU_HASH, ebpf.LRUCPUHash},
	KindArray:         {xflowXflowMapKindKIND_ARRAY, ebpf.Array},
	KindPerCPUArray:   {xflowXflowMapKindKIND_PERCPU_ARRAY, ebpf.PerCPUArray},
	KindRingbuf:       {xflowXflowMapKindKIND_RINGBUF, ebpf.UnspecifiedMap},
}

// Kinds returns every store kind, the default first.
func Kinds() []Kind {
	out := []Kind{Kind(kind.Default)}
	for _, k := range kind.All() {
		if k != kind.Default {
			out = append(out, Kind(k))
		}
	}
	return out
}

// ParseKind checks a kind's name.
func ParseKind(s string) (Kind, error) {
	k, err := kind.Parse(s)
	return Kind(k), err
}

// cKind is the kind's value of enum xflow_map_kind.
func (k Kind) cKind() uint32 { return uint32(stores[k].c) }

// MapType is the BPF map type of the kind's store (UnspecifiedMap for
// ringbuf).
func (k Kind) MapType() ebpf.MapType { return stores[k].mt }

func (k Kind) isArray() bool { return kind.Kind(k).IsArray() }

// perCPU says whether a store map keeps one value per CPU.
func perCPU(t ebpf.MapType) bool {
	return t == ebpf.PerCPUHash || t == ebpf.LRUCPUHash || t == ebpf.PerCPUArray
}

// Evicts says whether the store is an LRU hash: the kernel evicts entries
// to make room, and their counts are lost (the exporter counts them).
func (k Kind) Evicts() bool { return k == KindLRUHash || k == KindLRUPerCPUHash }

// Options configure Load.
type Options struct {
	Kind     Kind
	MaxFlows uint32 // entries (slots for arrays, aggregated flows for ringbuf)
	RingSize uint32 // ringbuf bytes: a power of two, at least 4096
	// PinPath is the bpffs directory the maps are pinned under; "" pins
	// nothing.
	PinPath string
	// Spec, when set, is the collection Load loads instead of Spec()'s: a
	// caller's edited copy of it (its load-time constants set, for one).
	// Load does not modify it; it still sets the kind, the sizes and the
	// maps it manages.
	Spec *ebpf.CollectionSpec
	// SpareFlows, when non-zero, sizes the second flow store of a hash
	// kind (the spare Swap swaps in first) apart from MaxFlows: after a
	// Drain the programs count into a store of that size. For callers that
	// never Drain, or must keep a large store's memory and allocation time
	// down. Array stores all have MaxFlows slots and ignore it. A later
	// Load with another spare size does not adopt the pinned stores: it
	// drains them once (Restore) instead.
	SpareFlows uint32
	// Sampling is the default for every interface (Hooks.Sampling
	// overrides it per interface); the zero value counts every packet.
	Sampling Sampling
	// Filters are the in-kernel filter rules, first match wins (at most
	// MaxFilterRules).
	Filters []FilterRule
}

// Pin names under Options.PinPath.
const (
	pinCounters  = "counters"
	pinStore     = "store"  // the one-slot map-in-map
	pinStorePref = "store_" // store_0, store_1: the two flow stores
	pinEvents    = "events" // ringbuf kind: the ring buffer
)

// Datapath is the loaded data plane: programs and maps, not yet attached.
type Datapath struct {
	opts   Options
	objs   xflowObjects
	outer  *ebpf.Map    // flows or slots; nil for ringbuf
	stores [2]*ebpf.Map // the flow stores; stores[active] is in outer[0]
	active int
	ring   *ringConsumer // ringbuf kind
	pinned []string
	cpus   int

	rd *reader // the drain's, its buffers reused

	persist    *persisted // the exporter's state, with a pin path
	legacy     *previous  // an earlier, incompatible data plane to drain once
	restorable bool       // Restore has an earlier state to hand over
	Adopted    bool       // the maps (and links) of an earlier daemon were taken over
}

// check fills in the default kind and checks the store's sizes.
func (opts *Options) check() error {
	if opts.Kind == "" {
		opts.Kind = Kind(kind.Default)
	}
	if _, err := ParseKind(string(opts.Kind)); err != nil {
		return err
	}
	if opts.MaxFlows == 0 {
		return errors.New("max_flows must be at least 1")
	}
	if err := opts.Sampling.check(); err != nil {
		return err
	}
	if len(opts.Filters) > MaxFilterRules {
		return fmt.Errorf("%d filter rules: at most %d", len(opts.Filters), MaxFilterRules)
	}
	for _, r := range opts.Filters {
		if err := (Sampling{Rate: r.Rate}).check(); err != nil {
			return err
		}
	}
	if opts.Kind == KindRingbuf && (opts.RingSize < 4096 || opts.RingSize&(opts.RingSize-1) != 0) {
		return fmt.Errorf("ring size %d: want a power of two >= 4096", opts.RingSize)
	}
	return nil
}

// Spec is the data plane's collection (xflow.c, compiled), a fresh copy
// each call: edit it (its load-time constants, say) and hand it to Load as
// Options.Spec.
func Spec() (*ebpf.CollectionSpec, error) {
	spec, err := loadXflow()
	if err != nil {
		return nil, fmt.Errorf("read eBPF object: %w", err)
	}
	return spec, nil
}

// Load loads the programs and creates the maps for opts.Kind, and pins the
// maps when opts.PinPath is set (replacing what an earlier run left there).
func Load(opts Options) (d *Datapath, err error) {
	if err := opts.check(); err != nil {
		return nil, err
	}

	var spec *ebpf.CollectionSpec
	if opts.Spec != nil {
		spec = opts.Spec.Copy()
	} else if spec, err = Spec(); err != nil {
		return nil, err
	}
	for name, val := range map[string]uint32{
		"map_kind":       opts.Kind.cKind(),
		"array_slots":    max(opts.MaxFlows, 1),
		"filter_rules_n": uint32(len(opts.Filters)),
	} {
		if err := spec.Variables[name].Set(val); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	// Size the store in use; leave the others at one entry.
	var storeSpec *ebpf.MapSpec
	switch {
	case opts.Kind == KindRingbuf:
		spec.Maps["events"].MaxEntries = opts.RingSize
	case opts.Kind.isArray():
		storeSpec = spec.Maps["slots"].InnerMap
	default:
		storeSpec = spec.Maps["flows"].InnerMap
	}
	if storeSpec != nil {
		storeSpec.Type = opts.Kind.MapType()
		storeSpec.MaxEntries = opts.MaxFlows
	}

	dp := &Datapath{opts: opts}
	d = dp
	defer func() {
		if err != nil {
			dp.Close() // d is nil by now
		}
	}()
	// An earlier daemon's maps: adopt them when they fit this
	// configuration, else drain them once (Restore) and start afresh.
	var prev *previous
	lopts := &ebpf.CollectionOptions{}
	if opts.PinPath != "" && isBPFFS(opts.PinPath) {
		prev = openPrevious(opts.PinPath)
	}
	if prev != nil && prev.compatible(opts, spec) {
		lopts.MapReplacements = map[string]*ebpf.Map{"counters": prev.counters}
		if opts.Kind == KindRingbuf {
			lopts.MapReplacements["events"] = prev.events
		} else if opts.Kind.isArray() {
			lopts.MapReplacements["slots"] = prev.outer
		} else {
			lopts.MapReplacements["flows"] = prev.outer
		}
		dp.Adopted = true
	} else if prev != nil {
		dp.legacy = prev
		dp.restorable = true
	}
	defer func() {
		if !dp.Adopted && dp.legacy == nil && prev != nil {
			prev.close()
		}
	}()
	if err := spec.LoadAndAssign(&dp.objs, lopts); err != nil {
		if perr := permissionError(err); perr != nil {
			return nil, perr
		}
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("load eBPF: %+v", ve)
		}
		return nil, fmt.Errorf("load eBPF: %w", err)
	}
	if d.rd, err = newReader(); err != nil {
		return nil, err
	}
	d.cpus = d.rd.cpus
	if err := d.setSampling(0, opts.Sampling); err != nil {
		return nil, err
	}
	if err := d.setFilters(opts.Filters); err != nil {
		return nil, err
	}
	if dp.Adopted {
		dp.persist, dp.restorable = prev.p, true
		dp.stores = prev.stores
		prev.p, prev.stores = nil, [2]*ebpf.Map{}
		if opts.Kind == KindRingbuf {
			if d.ring, err = newRingConsumer(d); err != nil {
				return nil, err
			}
		} else {
			d.outer = d.objs.Flows
			if opts.Kind.isArray() {
				d.outer = d.objs.Slots
			}
			if d.active, err = activeStore(d.outer, d.stores); err != nil {
				return nil, err
			}
		}
		prev.close() // the replaced maps: the collection holds its own references
		return d, nil
	}
	if opts.PinPath != "" {
		if dp.persist, err = newPersisted(opts.MaxFlows); err != nil {
			return nil, err
		}
	}
	switch {
	case opts.Kind == KindRingbuf:
		if d.ring, err = newRingConsumer(d); err != nil {
			return nil, err
		}
	default:
		d.outer = d.objs.Flows
		if opts.Kind.isArray() {
			d.outer = d.objs.Slots
		}
		for i := range d.stores {
			s := storeSpec.Copy()
			s.Name = fmt.Sprintf("xflow_store_%d", i)
			if i > 0 && opts.SpareFlows > 0 && !opts.Kind.isArray() {
				s.MaxEntries = opts.SpareFlows
			}
			if d.stores[i], err = ebpf.NewMap(s); err != nil {
				return nil, fmt.Errorf("create flow store (%s, %d entries): %w", opts.Kind, opts.MaxFlows, err)
			}
		}
		if err := d.outer.Put(uint32(0), d.stores[0]); err != nil {
			return nil, fmt.Errorf("install flow store: %w", err)
		}
	}
	if opts.PinPath != "" {
		if err := d.pin(opts.PinPath); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Kind is the store kind in use.
func (d *Datapath) Kind() Kind { return d.opts.Kind }

// pin pins the maps in use under dir, a bpffs directory made mode 0700.
func (d *Datapath) pin(dir string) error {
	if err := ensureBPFFS(dir); err != nil {
		return err
	}
	if err := RemovePins(dir); err != nil {
		return err
	}
	pins := map[string]*ebpf.Map{pinCounters: d.objs.Counters, pinMeta: d.persist.meta,
		pinStatePref + "0": d.persist.state[0], pinStatePref + "1": d.persist.state[1]}
	if d.outer != nil {
		pins[pinStore] = d.outer
		for i, s := range d.stores {
			pins[fmt.Sprintf("%s%d", pinStorePref, i)] = s
		}
	} else {
		pins[pinEvents] = d.objs.Events
	}
	for name, m := range pins {
		p := filepath.Join(dir, name)
		if err := m.Pin(p); err != nil {
			return fmt.Errorf("pin %s: %w", p, err)
		}
		d.pinned = append(d.pinned, p)
	}
	return nil
}

// ensureBPFFS makes dir (mode 0700) on a bpffs, mounting bpffs at
// /sys/fs/bpf first if dir is below it and nothing is mounted there (as
// after `ip netns exec`, which mounts a fresh /sys).
func ensureBPFFS(dir string) error {
	const root = "/sys/fs/bpf"
	if strings.HasPrefix(filepath.Clean(dir)+"/", root+"/") && !isBPFFS(root) {
		if err := os.MkdirAll(root, 0o755); err != nil {
			return fmt.Errorf("pin path %s: %w", dir, err)
		}
		if err := unix.Mount("bpf", root, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("pin path %s: mount bpffs at %s: %w", dir, root, err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pin path %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("pin path %s: %w", dir, err)
	}
	if !isBPFFS(dir) {
		return fmt.Errorf("pin path %s: not on a bpf filesystem (mount -t bpf bpf DIR)", dir)
	}
	return nil
}

func isBPFFS(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && uint32(st.Type) == unix.BPF_FS_MAGIC
}

// RemovePins removes what xflow pins under dir (and nothing else),
// pinned links included: the programs they keep attached go with them.
func RemovePins(dir string) error {
	if err := removeLinkPins(dir); err != nil {
		return err
	}
	for _, name := range []string{pinCounters, pinStore, pinStorePref + "0", pinStorePref + "1", pinEvents,
		pinMeta, pinStatePref + "0", pinStatePref + "1"} {
		p := filepath.Join(dir, name)
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale pin %s: %w", p, err)
		}
	}
	return nil
}

// Unpin removes the pins this Datapath made (and the links directory, if
// nothing is pinned there any more).
func (d *Datapath) Unpin() error {
	var errs []error
	for _, p := range d.pinned {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	d.pinned = nil
	if d.opts.PinPath != "" {
		os.Remove(filepath.Join(d.opts.PinPath, pinLinks)) // fails when not empty
	}
	return errors.Join(errs...)
}

// Close releases the programs and maps (pins, and attachments made with
// links, keep what they refer to alive).
func (d *Datapath) Close() error {
	errs := []error{d.objs.Close()}
	if d.ring != nil {
		errs = append(errs, d.ring.rd.Close())
	}
	if d.persist != nil {
		d.persist.close()
	}
	if d.legacy != nil {
		d.legacy.close()
	}
	for _, m := range d.stores {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	return errors.Join(errs...)
}

// Counters are the data plane's per-CPU counters, summed.
type Counters struct {
	NonIP, Truncated, Malformed uint64
	L4Truncated, IPv6ExtLimit   uint64
	Fragments                   uint64
	MissedPackets, MissedBytes  uint64
	Inserts                     uint64
}

// field is where each enum xflow_counter index is summed into (those
// not listed are not read).
func (c *Counters) field(i xflowXflowCounter) *uint64 {
	switch i {
	case xflowXflowCounterCNT_NON_IP:
		return &c.NonIP
	case xflowXflowCounterCNT_TRUNCATED:
		return &c.Truncated
	case xflowXflowCounterCNT_MALFORMED:
		return &c.Malformed
	case xflowXflowCounterCNT_L4TRUNCATED:
		return &c.L4Truncated
	case xflowXflowCounterCNT_IPV6EXT_LIMIT:
		return &c.IPv6ExtLimit
	case xflowXflowCounterCNT_FRAGMENTS:
		return &c.Fragments
	case xflowXflowCounterCNT_MISSED_PACKETS:
		return &c.MissedPackets
	case xflowXflowCounterCNT_MISSED_BYTES:
		return &c.MissedBytes
	case xflowXflowCounterCNT_INSERTS:
		return &c.Inserts
	}
	return nil
}

func readCounters(m *ebpf.Map) (Counters, error) {
	var c Counters
	var per []uint64
	for i := xflowXflowCounter(0); i < xflowXflowCounterCNT_MAX; i++ {
		f := c.field(i)
		if f == nil {
			continue
		}
		if err := m.Lookup(uint32(i), &per); err != nil {
			return c, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, v := range per {
			*f += v
		}
	}
	return c, nil
}

// Counters reads the data plane's counters. For the ringbuf kind,
// MissedPackets also holds the packets whose flow found no room in the
// consumer's aggregate.
func (d *Datapath) Counters() (Counters, error) {
	c, err := readCounters(d.objs.Counters)
	c.MissedPackets += d.RingDropped()
	return c, err
}

// Programs are the data plane's loaded programs.
type Programs struct {
	XDP       *ebpf.Program // xflow_xdp
	TCIngress *ebpf.Program // xflow_tc_ingress
	TCEgress  *ebpf.Program // xflow_tc_egress
}

// Programs returns the loaded programs, to run them on test input
// (BPF_PROG_TEST_RUN) or inspect them. They belong to the Datapath: do not
// close them.
func (d *Datapath) Programs() Programs {
	return Programs{XDP: d.objs.XflowXdp, TCIngress: d.objs.XflowTcIngress, TCEgress: d.objs.XflowTcEgress}
}

// Variable returns the loaded global variable of xflow.c called name, nil
// if there is none. Constants (const volatile) are read-only once loaded:
// set them in the spec (Spec, Options.Spec).
func (d *Datapath) Variable(name string) *ebpf.Variable {
	v := reflect.ValueOf(&d.objs.xflowVariables).Elem()
	for i := range v.NumField() {
		if v.Type().Field(i).Tag.Get("ebpf") == name {
			return v.Field(i).Interface().(*ebpf.Variable)
		}
	}
	return nil
}

// Maps are the data plane's flow stores and state maps.
type Maps struct {
	Store  *ebpf.Map    // the flow store the programs count into now (nil for ringbuf)
	Stores [2]*ebpf.Map // both flow stores (nil for ringbuf)
	State  [2]*ebpf.Map // the exporter's persisted state (nil without a pin path)
}

// Maps returns the flow stores and state maps, to inspect them. They
// belong to the Datapath: do not close them, and do not write to them
// while an exporter drains.
func (d *Datapath) Maps() Maps {
	m := Maps{}
	if d.ring == nil {
		m.Store, m.Stores = d.stores[d.active], d.stores
	}
	if d.persist != nil {
		m.State = d.persist.state
	}
	return m
}
