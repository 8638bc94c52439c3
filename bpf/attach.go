package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Hooks says where on one interface to attach the programs.
type Hooks struct {
	Iface   string
	Ingress string // "xdp", "tc" or "none"
	Egress  string // "tc" or "none"
	XDPMode string // "auto" (native, else generic), "native" or "generic"
	TCMode  string // "auto" (TCX, else clsact), "tcx" or "clsact"
}

// progPrefix starts the name of every xflow program; stale attachments are
// recognised by it.
const progPrefix = "xflow_"

// HookPoint is where on an interface a program runs.
type HookPoint uint8

const (
	PointXDP       HookPoint = iota + 1 // ingress, XDP
	PointTCIngress                      // ingress, TC
	PointTCEgress                       // egress, TC
)

// HookMode is how a program is attached.
type HookMode uint8

const (
	ModeXDPNative  HookMode = iota + 1 // XDP in the driver
	ModeXDPGeneric                     // XDP on the generic (skb) path
	ModeTCX                            // a TCX link (kernel 6.6+)
	ModeClsact                         // a direct-action filter on a clsact qdisc
)

// Hook is one program as attached: where and how.
type Hook struct {
	Point HookPoint
	Mode  HookMode
}

// String is how logs show the hook: "xdp/native", "xdp/generic",
// "tcx/ingress", "tcx/egress", "clsact/ingress", "clsact/egress".
func (h Hook) String() string {
	if h.Point == PointXDP {
		switch h.Mode {
		case ModeXDPNative:
			return "xdp/native"
		case ModeXDPGeneric:
			return "xdp/generic"
		}
		return "xdp/?"
	}
	dir := "egress"
	if h.Point == PointTCIngress {
		dir = "ingress"
	}
	switch h.Mode {
	case ModeTCX:
		return "tcx/" + dir
	case ModeClsact:
		return "clsact/" + dir
	}
	return "tc/" + dir
}

// MarshalText is String (so JSON logs show the same).
func (h Hook) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// Attachment is the programs attached to one interface.
type Attachment struct {
	Iface    string
	Ifindex  int
	Attached []Hook   // what is attached, in order: ingress first
	Adopted  []string // hooks whose pinned link an earlier daemon left, now updated

	links        []link.Link
	pinned       map[link.Link]string // pinned links and their paths
	filters      []netlink.Filter
	createdQdisc bool
	pinDir       string // links are pinned here (if set)
}

// withLink attaches through a bpf_link pinned as hook: a link an earlier
// daemon pinned there is updated to prog in place (no packet goes
// uncounted), else attach makes one, which is then pinned.
func (a *Attachment) withLink(hook string, prog *ebpf.Program, attach func() (link.Link, error)) error {
	var path string
	if a.pinDir != "" {
		path = pinLinkPath(a.pinDir, a.Iface, hook)
		if old, err := link.LoadPinnedLink(path, nil); err == nil {
			if err := old.Update(prog); err == nil {
				a.links = append(a.links, old)
				a.pin(old, path)
				a.Adopted = append(a.Adopted, hook)
				return nil
			}
			old.Unpin()
			old.Close()
		}
	}
	l, err := attach()
	if err != nil {
		return err
	}
	a.links = append(a.links, l)
	if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fmt.Errorf("interface %s: pin link: %w", a.Iface, err)
		}
		os.Remove(path)
		if err := l.Pin(path); err != nil {
			return fmt.Errorf("interface %s: pin link: %w", a.Iface, err)
		}
		a.pin(l, path)
	}
	return nil
}

// GenericXDP says whether the XDP program runs on the generic (skb) path,
// where a GRO/GSO aggregate counts as one packet.
func (a *Attachment) GenericXDP() bool {
	for _, h := range a.Attached {
		if h.Point == PointXDP && h.Mode == ModeXDPGeneric {
			return true
		}
	}
	return false
}

func (a *Attachment) pin(l link.Link, path string) {
	if a.pinned == nil {
		a.pinned = map[link.Link]string{}
	}
	a.pinned[l] = path
}

// Attach attaches the programs to h.Iface. On error nothing stays attached.
func (d *Datapath) Attach(h Hooks) (_ *Attachment, err error) {
	l, err := netlink.LinkByName(h.Iface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", h.Iface, err)
	}
	if err := checkEthernet(l); err != nil {
		return nil, err
	}
	a := &Attachment{Iface: h.Iface, Ifindex: l.Attrs().Index, pinDir: d.opts.PinPath}
	defer func() {
		if err != nil {
			a.Detach()
		}
	}()
	switch h.Ingress {
	case "xdp":
		if err := a.attachXDP(d.objs.XflowXdp, h.XDPMode); err != nil {
			return nil, err
		}
	case "tc":
		if err := a.attachTC(l, d.objs.XflowTcIngress, true, h.TCMode); err != nil {
			return nil, err
		}
	case "none", "":
	default:
		return nil, fmt.Errorf("interface %s: ingress %q: want xdp, tc or none", h.Iface, h.Ingress)
	}
	switch h.Egress {
	case "tc":
		if err := a.attachTC(l, d.objs.XflowTcEgress, false, h.TCMode); err != nil {
			return nil, err
		}
	case "none", "":
	default:
		return nil, fmt.Errorf("interface %s: egress %q: want tc or none", h.Iface, h.Egress)
	}
	return a, nil
}

// checkEthernet refuses interfaces whose frames do not start with an
// Ethernet header (tun, WireGuard, PPP, ...): the parser reads Ethernet.
// Loopback's frames carry a (zeroed) Ethernet header.
func checkEthernet(l netlink.Link) error {
	switch t := l.Attrs().EncapType; t {
	case "ether", "loopback", "":
		return nil
	default:
		return fmt.Errorf("interface %s: link type %s: xflow parses Ethernet frames only", l.Attrs().Name, t)
	}
}

func (a *Attachment) attachXDP(prog *ebpf.Program, mode string) error {
	try := func(flags link.XDPAttachFlags) error {
		return a.withLink("xdp", prog, func() (link.Link, error) {
			return link.AttachXDP(link.XDPOptions{Program: prog, Interface: a.Ifindex, Flags: flags})
		})
	}
	switch mode {
	case "native":
		if err := try(link.XDPDriverMode); err != nil {
			return fmt.Errorf("interface %s: attach XDP (native): %w", a.Iface, err)
		}
		a.Attached = append(a.Attached, Hook{PointXDP, ModeXDPNative})
	case "generic":
		if err := try(link.XDPGenericMode); err != nil {
			return fmt.Errorf("interface %s: attach XDP (generic): %w", a.Iface, err)
		}
		a.Attached = append(a.Attached, Hook{PointXDP, ModeXDPGeneric})
	case "auto", "":
		if err := try(link.XDPDriverMode); err == nil {
			a.Attached = append(a.Attached, Hook{PointXDP, ModeXDPNative})
			return nil
		} else if err2 := try(link.XDPGenericMode); err2 != nil {
			return fmt.Errorf("interface %s: attach XDP: native: %v; generic: %w", a.Iface, err, err2)
		}
		a.Attached = append(a.Attached, Hook{PointXDP, ModeXDPGeneric})
	default:
		return fmt.Errorf("interface %s: xdp_mode %q: want auto, native or generic", a.Iface, mode)
	}
	return nil
}

func (a *Attachment) attachTC(l netlink.Link, prog *ebpf.Program, ingress bool, mode string) error {
	dir, at, point := "egress", ebpf.AttachTCXEgress, PointTCEgress
	if ingress {
		dir, at, point = "ingress", ebpf.AttachTCXIngress, PointTCIngress
	}
	if mode == "auto" || mode == "" || mode == "tcx" {
		err := a.withLink("tcx-"+dir, prog, func() (link.Link, error) {
			return link.AttachTCX(link.TCXOptions{Interface: a.Ifindex, Program: prog, Attach: at})
		})
		if err == nil {
			a.Attached = append(a.Attached, Hook{point, ModeTCX})
			return nil
		}
		if mode == "tcx" || !errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("interface %s: attach TCX %s: %w", a.Iface, dir, err)
		}
	} else if mode != "clsact" {
		return fmt.Errorf("interface %s: tc_mode %q: want auto, tcx or clsact", a.Iface, mode)
	}
	// clsact qdisc + direct-action BPF filter (kernels before 6.6).
	created, err := ensureClsact(l)
	if err != nil {
		return fmt.Errorf("interface %s: %w", a.Iface, err)
	}
	a.createdQdisc = a.createdQdisc || created
	parent := uint32(netlink.HANDLE_MIN_EGRESS)
	if ingress {
		parent = netlink.HANDLE_MIN_INGRESS
	}
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: a.Ifindex,
			Parent:    parent,
			Handle:    netlink.MakeHandle(0, 1),
			Protocol:  unix.ETH_P_ALL,
			Priority:  1,
		},
		Fd:           prog.FD(),
		Name:         progName(prog),
		DirectAction: true,
	}
	if err := netlink.FilterAdd(f); err != nil {
		return fmt.Errorf("interface %s: add clsact %s filter: %w", a.Iface, dir, err)
	}
	a.filters = append(a.filters, f)
	a.Attached = append(a.Attached, Hook{point, ModeClsact})
	return nil
}

func progName(p *ebpf.Program) string {
	if info, err := p.Info(); err == nil {
		return info.Name
	}
	return progPrefix + "tc"
}

// ensureClsact adds a clsact qdisc unless there is one; it reports whether
// it added it.
func ensureClsact(l netlink.Link) (bool, error) {
	qs, err := netlink.QdiscList(l)
	if err != nil {
		return false, fmt.Errorf("list qdiscs: %w", err)
	}
	for _, q := range qs {
		if q.Type() == "clsact" {
			return false, nil
		}
	}
	if err := netlink.QdiscAdd(clsact(l.Attrs().Index)); err != nil {
		return false, fmt.Errorf("add clsact qdisc: %w", err)
	}
	return true, nil
}

func clsact(ifindex int) *netlink.GenericQdisc {
	return &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
}

// PinnedLinks lists the paths of this attachment's pinned links.
func (a *Attachment) PinnedLinks() []string {
	var out []string
	for _, p := range a.pinned {
		out = append(out, p)
	}
	return out
}

// Release lets go of the attachment but leaves the programs attached
// through their pinned links (--keep-attached), for the next daemon to
// adopt. clsact filters stay too.
func (a *Attachment) Release() error {
	var errs []error
	for _, l := range a.links {
		if _, ok := a.pinned[l]; !ok {
			errs = append(errs, fmt.Errorf("interface %s: a link is not pinned: it goes with this process", a.Iface))
		}
		errs = append(errs, l.Close())
	}
	a.links, a.filters, a.createdQdisc = nil, nil, false
	return errors.Join(errs...)
}

// Detach removes everything Attach added (pinned links included); it tries
// every step and reports all failures.
func (a *Attachment) Detach() error {
	var errs []error
	for _, l := range a.links {
		if _, ok := a.pinned[l]; ok {
			if err := l.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("interface %s: unpin link: %w", a.Iface, err))
			}
		}
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("interface %s: detach: %w", a.Iface, err))
		}
	}
	a.links = nil
	for _, f := range a.filters {
		if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("interface %s: delete clsact filter: %w", a.Iface, err))
		}
	}
	a.filters = nil
	if a.createdQdisc {
		if err := delClsactIfEmpty(a.Ifindex); err != nil {
			errs = append(errs, fmt.Errorf("interface %s: %w", a.Iface, err))
		}
		a.createdQdisc = false
	}
	return errors.Join(errs...)
}

// delClsactIfEmpty removes the clsact qdisc if no filter is left on it.
func delClsactIfEmpty(ifindex int) error {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil // the interface is gone, and its qdisc with it
	}
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := netlink.FilterList(l, parent)
		if err != nil {
			return fmt.Errorf("list clsact filters: %w", err)
		}
		if len(fs) > 0 {
			return nil
		}
	}
	if err := netlink.QdiscDel(clsact(ifindex)); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("delete clsact qdisc: %w", err)
	}
	return nil
}

// CleanStale removes xflow programs that an earlier xflow left attached to
// iface and that no running process owns: an XDP program attached through
// netlink, and clsact filters (with the clsact qdisc, once empty). It
// returns what it removed.
func CleanStale(iface string) ([]string, error) {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	var removed []string
	if x := l.Attrs().Xdp; x != nil && x.Attached && x.ProgId != 0 && isOurs(x.ProgId) {
		flags := 0
		switch x.AttachMode {
		case 1: // XDP_ATTACHED_DRV
			flags = unix.XDP_FLAGS_DRV_MODE
		case 2: // XDP_ATTACHED_SKB
			flags = unix.XDP_FLAGS_SKB_MODE
		case 3:
			flags = unix.XDP_FLAGS_HW_MODE
		}
		// This fails for a program attached through a bpf_link: such a
		// link lives only while its owner runs (or while pinned).
		if err := netlink.LinkSetXdpFdWithFlags(l, -1, flags); err == nil {
			removed = append(removed, fmt.Sprintf("xdp program %d", x.ProgId))
		}
	}
	found := false
	for _, parent := range []uint32{netlink.HANDLE_MIN_INGRESS, netlink.HANDLE_MIN_EGRESS} {
		fs, err := netlink.FilterList(l, parent)
		if err != nil {
			continue // no clsact qdisc
		}
		for _, f := range fs {
			bf, ok := f.(*netlink.BpfFilter)
			if !ok || !strings.HasPrefix(bf.Name, progPrefix) {
				continue
			}
			found = true
			if err := netlink.FilterDel(bf); err != nil {
				return removed, fmt.Errorf("interface %s: delete stale clsact filter %s: %w", iface, bf.Name, err)
			}
			removed = append(removed, "clsact filter "+bf.Name)
		}
	}
	if found {
		if err := delClsactIfEmpty(l.Attrs().Index); err != nil {
			return removed, fmt.Errorf("interface %s: %w", iface, err)
		}
	}
	return removed, nil
}

func isOurs(progID uint32) bool {
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(progID))
	if err != nil {
		return false
	}
	defer p.Close()
	info, err := p.Info()
	return err == nil && strings.HasPrefix(info.Name, progPrefix)
}
