package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Addresses used inside every pair. They exist only in the pair's namespaces.
var (
	AddrA4 = netip.MustParseAddr("10.199.0.1")
	AddrB4 = netip.MustParseAddr("10.199.0.2")
	AddrA6 = netip.MustParseAddr("fd00:199::1")
	AddrB6 = netip.MustParseAddr("fd00:199::2")
)

// Fixed, locally administered MAC addresses of the two veth ends. Every pair
// lives in its own namespaces, so reusing them across pairs is harmless and
// makes captures easy to read.
var (
	MACA = net.HardwareAddr{0x02, 0x99, 0x00, 0x00, 0x00, 0x0a}
	MACB = net.HardwareAddr{0x02, 0x99, 0x00, 0x00, 0x00, 0x0b}
)

// NetnsDir is where named namespaces are bind-mounted (same as iproute2).
const NetnsDir = "/var/run/netns"

// Side names one end of a Pair.
type Side int

const (
	SideA Side = iota
	SideB
)

func (s Side) String() string {
	if s == SideA {
		return "A"
	}
	return "B"
}

// Pair is two network namespaces joined by a veth pair. The veth end NameA
// (ifindex IfA, MAC MACA, addresses A4/A6) lives in NSA; NameB lives in NSB.
type Pair struct {
	NSA, NSB     netns.NsHandle
	NameA, NameB string // veth interface names (also unique per pair)
	IfA, IfB     int    // ifindex of the veth end inside its namespace
	MACA, MACB   net.HardwareAddr
	A4, B4       netip.Addr
	A6, B6       netip.Addr

	// NSNameA and NSNameB are the namespace names under NetnsDir, usable
	// with `ip netns exec` while debugging.
	NSNameA, NSNameB string

	// SettleFrames is how many frames (MLD reports) NewPair saw on the veth
	// while waiting for it to go quiet after link-up.
	SettleFrames uint64

	t testing.TB
}

// NS returns the namespace handle of side s.
func (p *Pair) NS(s Side) netns.NsHandle {
	if s == SideA {
		return p.NSA
	}
	return p.NSB
}

// Ifname returns the veth name of side s.
func (p *Pair) Ifname(s Side) string {
	if s == SideA {
		return p.NameA
	}
	return p.NameB
}

// Addr returns the IPv4 (v6=false) or IPv6 address of side s.
func (p *Pair) Addr(s Side, v6 bool) netip.Addr {
	switch {
	case s == SideA && !v6:
		return p.A4
	case s == SideA && v6:
		return p.A6
	case !v6:
		return p.B4
	default:
		return p.B6
	}
}

// maxPrefix keeps prefix+8 hex chars+"a" within IFNAMSIZ-1 (15) characters.
const maxPrefix = 6

// NewPair creates a fresh pair of namespaces joined by a veth and registers
// t.Cleanup to delete both namespaces (which also destroys the veth). prefix
// is truncated to 6 characters; namespace and link names are prefix + 8 random
// hex characters + "a"/"b" (at most 15 characters, valid as link names).
// Before returning it waits (bounded) until IPv6 addresses are usable and the
// link-up MLD reports are over, so the pair is silent (see the package doc);
// that takes about 130 ms. It calls t.Fatal on any error and so must be
// called from the test goroutine. Named namespaces survive a killed test
// process; remove them with `ip netns del`.
func NewPair(t testing.TB, prefix string) *Pair {
	t.Helper()
	p, err := newPair(t, prefix)
	if err != nil {
		t.Fatalf("testnet.NewPair: %v", err)
	}
	return p
}

// New makes a pair like NewPair, outside tests (the demo): the caller must
// call Close.
func New(prefix string) (*Pair, error) {
	p, err := newPair(nil, prefix)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Close deletes the namespaces (and with them the veth pair).
func (p *Pair) Close() error { return p.destroy() }

func newPair(t testing.TB, prefix string) (_ *Pair, err error) {
	if len(prefix) > maxPrefix {
		prefix = prefix[:maxPrefix]
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	base := prefix + hex.EncodeToString(rnd[:])
	p := &Pair{
		NameA: base + "a", NameB: base + "b",
		NSNameA: base + "a", NSNameB: base + "b",
		A4: AddrA4, B4: AddrB4, A6: AddrA6, B6: AddrB6,
		NSA: netns.None(), NSB: netns.None(),
		t: t,
	}
	// Register cleanup first, so a failure half-way still removes what exists.
	if t != nil {
		t.Cleanup(func() {
			if err := p.destroy(); err != nil {
				t.Errorf("testnet: cleanup of pair %s: %v", base, err)
			}
		})
	} else {
		defer func() {
			if err != nil {
				p.destroy()
			}
		}()
	}

	if p.NSA, err = newNamedNS(p.NSNameA); err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", p.NSNameA, err)
	}
	if p.NSB, err = newNamedNS(p.NSNameB); err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", p.NSNameB, err)
	}
	// Sysctls first: "default" applies to the veths created below, and the
	// link-local address is configured (and MLD joined) as soon as they come up.
	for _, ns := range []netns.NsHandle{p.NSA, p.NSB} {
		if err := p.Do(ns, quietIPv6); err != nil {
			return nil, err
		}
	}

	hA, err := netlink.NewHandleAt(p.NSA, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer hA.Close()
	hB, err := netlink.NewHandleAt(p.NSB, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer hB.Close()

	// Create the veth inside A with its peer directly inside B, so the link
	// never exists in the caller's namespace.
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: p.NameA, HardwareAddr: MACA, MTU: 1500},
		PeerName:         p.NameB,
		PeerHardwareAddr: MACB,
		PeerNamespace:    netlink.NsFd(int(p.NSB)),
	}
	if err := hA.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("add veth %s/%s: %w", p.NameA, p.NameB, err)
	}

	type side struct {
		h          *netlink.Handle
		ns         netns.NsHandle
		name       string
		ifindex    *int
		mac        *net.HardwareAddr
		a4, a6     netip.Addr
		peer4      netip.Addr
		peer6      netip.Addr
		peerMAC    net.HardwareAddr
		peerIfname string
	}
	sides := []side{
		{hA, p.NSA, p.NameA, &p.IfA, &p.MACA, p.A4, p.A6, p.B4, p.B6, MACB, p.NameB},
		{hB, p.NSB, p.NameB, &p.IfB, &p.MACB, p.B4, p.B6, p.A4, p.A6, MACA, p.NameA},
	}
	for _, s := range sides {
		lo, err := s.h.LinkByName("lo")
		if err != nil {
			return nil, fmt.Errorf("lo: %w", err)
		}
		if err := s.h.LinkSetUp(lo); err != nil {
			return nil, fmt.Errorf("lo up: %w", err)
		}
		link, err := s.h.LinkByName(s.name)
		if err != nil {
			return nil, fmt.Errorf("find %s: %w", s.name, err)
		}
		*s.ifindex = link.Attrs().Index
		*s.mac = append(net.HardwareAddr(nil), link.Attrs().HardwareAddr...)
		// Per-interface knobs are set explicitly too (in case "default" did
		// not propagate, e.g. older kernels for some keys).
		if err := p.Do(s.ns, func() error { return quietIPv6Dev(s.name) }); err != nil {
			return nil, err
		}
		a4 := &netlink.Addr{IPNet: &net.IPNet{IP: s.a4.AsSlice(), Mask: net.CIDRMask(24, 32)}}
		if err := s.h.AddrAdd(link, a4); err != nil {
			return nil, fmt.Errorf("addr %s on %s: %w", s.a4, s.name, err)
		}
		a6 := &netlink.Addr{IPNet: &net.IPNet{IP: s.a6.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
		if err := s.h.AddrAdd(link, a6); err != nil {
			return nil, fmt.Errorf("addr %s on %s: %w", s.a6, s.name, err)
		}
		for _, ip := range []netip.Addr{s.peer4, s.peer6} {
			fam := netlink.FAMILY_V4
			if ip.Is6() {
				fam = netlink.FAMILY_V6
			}
			n := &netlink.Neigh{
				LinkIndex:    *s.ifindex,
				Family:       fam,
				State:        netlink.NUD_PERMANENT,
				IP:           ip.AsSlice(),
				HardwareAddr: s.peerMAC,
			}
			if err := s.h.NeighSet(n); err != nil {
				return nil, fmt.Errorf("neigh %s on %s: %w", ip, s.name, err)
			}
		}
	}
	for _, s := range sides {
		link, err := s.h.LinkByName(s.name)
		if err != nil {
			return nil, err
		}
		if err := s.h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("%s up: %w", s.name, err)
		}
	}
	// IPv6 addresses stay tentative (packets to them are dropped) until the
	// veth has carrier and addrconf's DAD work has run, even with nodad; that
	// happens asynchronously, some time after LinkSetUp. Wait for it, so the
	// first IPv6 packet of a test is not lost.
	for _, s := range sides {
		if err := waitReady(s.h, s.name, s.a4, s.a6); err != nil {
			return nil, fmt.Errorf("%s not ready: %w", s.name, err)
		}
	}
	if err := p.settle(); err != nil {
		return nil, err
	}
	return p, nil
}

// Settling: after link-up the kernel sends its MLD reports; wait until the
// veth has been silent for settleQuiet (bounded by settleLimit).
const (
	settleQuiet = 60 * time.Millisecond
	settleLimit = 2 * time.Second
)

func (p *Pair) settle() error {
	c, err := Capture(nil, p.NSA, p.NameA)
	if err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	defer c.Stop()
	start := time.Now()
	last, lastChange := uint64(0), start
	for time.Since(start) < settleLimit {
		time.Sleep(5 * time.Millisecond)
		if n := c.Stats().Frames; n != last {
			last, lastChange = n, time.Now()
		}
		if time.Since(lastChange) >= settleQuiet {
			break
		}
	}
	p.SettleFrames = last
	return nil
}

// readyTimeout bounds waitReady.
const readyTimeout = 5 * time.Second

// waitReady polls (bounded) until link is up with carrier, no IPv6 address
// on it is tentative, a link-local address exists, and the local-table routes
// for all its addresses are installed.
func waitReady(h *netlink.Handle, name string, addrs ...netip.Addr) error {
	deadline := time.Now().Add(readyTimeout)
	var why string
	for {
		why = checkReady(h, name, addrs)
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(why)
		}
		time.Sleep(time.Millisecond)
	}
}

func checkReady(h *netlink.Handle, name string, want []netip.Addr) string {
	link, err := h.LinkByName(name)
	if err != nil {
		return err.Error()
	}
	if link.Attrs().RawFlags&unix.IFF_RUNNING == 0 || link.Attrs().OperState != netlink.OperUp {
		return fmt.Sprintf("operstate %v", link.Attrs().OperState)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return err.Error()
	}
	all := append([]netip.Addr(nil), want...)
	haveLL := false
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ip = ip.Unmap()
		if ip.Is6() && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			return fmt.Sprintf("address %s tentative (flags %#x)", ip, a.Flags)
		}
		if ip.Is6() && ip.IsLinkLocalUnicast() {
			haveLL = true
			all = append(all, ip)
		}
	}
	if !haveLL {
		return "no IPv6 link-local address yet"
	}
	local := map[netip.Addr]bool{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return err.Error()
		}
		for _, r := range routes {
			if r.Dst != nil && r.Type == unix.RTN_LOCAL {
				if ip, ok := netip.AddrFromSlice(r.Dst.IP); ok {
					local[ip.Unmap()] = true
				}
			}
		}
	}
	for _, a := range all {
		if !local[a] {
			return fmt.Sprintf("no local route for %s yet", a)
		}
	}
	return ""
}

// newNamedNS creates and names a namespace without changing the calling
// goroutine's namespace.
func newNamedNS(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return netns.None(), err
	}
	defer orig.Close()
	ns, nerr := netns.NewNamed(name) // switches this thread into the new ns
	if serr := netns.Set(orig); serr != nil {
		// Leave the thread locked: it is in the wrong namespace and must not
		// be reused. The runtime discards it when the goroutine exits, but
		// this goroutine is the caller's, so refuse to continue.
		panic(fmt.Sprintf("testnet: cannot restore network namespace: %v", serr))
	}
	runtime.UnlockOSThread()
	if nerr != nil {
		// NewNamed may have left an empty file behind.
		_ = os.Remove(filepath.Join(NetnsDir, name))
		return netns.None(), nerr
	}
	return ns, nil
}

func (p *Pair) destroy() error {
	var errs []error
	for _, x := range []struct {
		h    *netns.NsHandle
		name string
	}{{&p.NSA, p.NSNameA}, {&p.NSB, p.NSNameB}} {
		if x.h.IsOpen() {
			if err := x.h.Close(); err != nil {
				errs = append(errs, err)
			}
			*x.h = netns.None()
		}
		path := filepath.Join(NetnsDir, x.name)
		if _, err := os.Stat(path); err == nil {
			if err := netns.DeleteNamed(x.name); err != nil {
				errs = append(errs, fmt.Errorf("delete netns %s: %w", x.name, err))
			}
		}
	}
	// The veth dies with its namespace once the last reference (mount, fds,
	// sockets created inside it) is gone. Sockets are closed by their own
	// cleanups, which t.Cleanup runs before this one (LIFO).
	return errors.Join(errs...)
}

// Do runs fn on a locked OS thread switched into network namespace ns and
// switches back to the original namespace afterwards.
//
// Only the calling goroutine's thread is switched: goroutines started inside
// fn do NOT inherit ns (the Go runtime starts new threads from a clean template
// thread). Sockets, however, stay bound to the namespace they were created in,
// so the usual pattern is to create sockets/listeners inside Do and use them
// from any goroutine afterwards. fn runs on the calling goroutine, so t.Fatal
// inside fn is fine (the namespace is restored by a deferred call).
func (p *Pair) Do(ns netns.NsHandle, fn func() error) error {
	return Do(ns, fn)
}

// Do is the package-level form of Pair.Do.
func Do(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer func() {
		err := netns.Set(orig)
		orig.Close()
		if err != nil {
			// Keep the thread locked so it is never reused; panic because
			// the calling goroutine is now in the wrong namespace.
			panic(fmt.Sprintf("testnet: cannot restore network namespace: %v", err))
		}
		runtime.UnlockOSThread()
	}()
	if err := netns.Set(ns); err != nil {
		return fmt.Errorf("setns: %w", err)
	}
	return fn()
}

// writeSysctl writes /proc/sys/<key with dots as slashes>. /proc/sys/net
// resolves against the network namespace of the calling thread, so call it
// inside Do.
func writeSysctl(key, val string) error {
	path := filepath.Join("/proc/sys", filepath.FromSlash(dotsToSlashes(key)))
	if err := os.WriteFile(path, []byte(val), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, val, err)
	}
	return nil
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", dotsToSlashes(key)))
	if err != nil {
		return "", err
	}
	return string(trimNL(b)), nil
}

func dotsToSlashes(key string) string {
	b := []byte(key)
	for i := range b {
		if b[i] == '.' {
			b[i] = '/'
		}
	}
	return string(b)
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// Sysctl writes a sysctl inside namespace ns, e.g.
// p.Sysctl(p.NSA, "net.ipv4.tcp_timestamps", "0").
func (p *Pair) Sysctl(ns netns.NsHandle, key, val string) error {
	return p.Do(ns, func() error { return writeSysctl(key, val) })
}

// ReadSysctl reads a sysctl inside namespace ns.
func (p *Pair) ReadSysctl(ns netns.NsHandle, key string) (string, error) {
	var v string
	err := p.Do(ns, func() (err error) { v, err = readSysctl(key); return })
	return v, err
}

var quietKeys = []struct{ key, val string }{
	{"disable_ipv6", "0"},
	{"accept_ra", "0"},
	{"router_solicitations", "0"},
	{"accept_dad", "0"},
	{"dad_transmits", "0"},
	// Unsolicited MLD reports are sent robustness-variable (2) times at
	// random delays below this interval (default 1000 ms for MLDv2). 1 ms
	// makes them all go out right at link-up, where NewPair waits them out.
	{"mldv1_unsolicited_report_interval", "1"},
	{"mldv2_unsolicited_report_interval", "1"},
}

func quietIPv6() error {
	for _, dev := range []string{"all", "default", "lo"} {
		if err := quietIPv6Dev(dev); err != nil {
			return err
		}
	}
	return nil
}

func quietIPv6Dev(dev string) error {
	for _, k := range quietKeys {
		if dev == "lo" && k.key != "disable_ipv6" {
			continue
		}
		if err := writeSysctl("net.ipv6.conf."+dev+"."+k.key, k.val); err != nil {
			return err
		}
	}
	return nil
}
