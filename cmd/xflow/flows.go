package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xflow-net/xflow/bpf"
	"github.com/xflow-net/xflow/control"
	"github.com/xflow-net/xflow/flow"
)

// flowJSON is one flow of `xflow flows --json`.
type flowJSON struct {
	Src       string `json:"src"`
	Dst       string `json:"dst"`
	SrcPort   uint16 `json:"src_port"`
	DstPort   uint16 `json:"dst_port"`
	Proto     uint8  `json:"proto"`
	Iface     string `json:"iface"`
	Direction string `json:"direction"`
	VLAN      uint16 `json:"vlan"`
	Packets   uint64 `json:"packets"`
	Bytes     uint64 `json:"bytes"`
	TCPFlags  uint32 `json:"tcp_flags"`
	First     string `json:"first"`
	Last      string `json:"last"`
	// SamplingRate is N for flows sampled 1:N (counts as sampled), left
	// out for flows whose every packet was counted.
	SamplingRate uint32 `json:"sampling_rate,omitempty"`
}

const rfc3339Milli = "2006-01-02T15:04:05.000Z07:00"

type flowsOpts struct {
	pinPath string
	json    bool
	iface   string
	sortBy  string
	top     int
	watch   time.Duration
}

func cmdFlows(args []string, stdout io.Writer) error {
	fs := newFlags("flows", "[flags]",
		"Shows the flows the data plane holds: from the running daemon (cumulative counts), or,\n"+
			"when none answers, from the pinned maps (counts since the last drain).", stdout)
	var o flowsOpts
	fs.StringVar(&o.pinPath, "pin-path", "/sys/fs/bpf/xflow", "the bpffs `DIR` the daemon pinned its maps under")
	fs.BoolVar(&o.json, "json", false, "print a JSON array of flows")
	fs.StringVar(&o.iface, "iface", "", "only flows seen on this `INTERFACE`")
	fs.StringVar(&o.sortBy, "sort", "bytes", "sort by `ORDER`: packets, bytes or last (most recent first)")
	fs.IntVar(&o.top, "top", 0, "show only the first `N` flows (0: all)")
	fs.DurationVar(&o.watch, "watch", 0, "redraw every `DURATION` until interrupted")
	if err := fs.parse(args); err != nil {
		return err
	}
	switch o.sortBy {
	case "packets", "bytes", "last":
	default:
		return usageErr(fmt.Errorf("-sort %q: want packets, bytes or last", o.sortBy))
	}
	if o.top < 0 {
		return usageErr(fmt.Errorf("-top %d: want N >= 0", o.top))
	}
	if o.watch < 0 {
		return usageErr(fmt.Errorf("-watch %s: want a positive duration", o.watch))
	}
	if o.watch == 0 {
		return showFlows(o, stdout)
	}
	for {
		fmt.Fprint(stdout, "\x1b[H\x1b[2J") // home, clear screen
		if err := showFlows(o, stdout); err != nil {
			return err
		}
		time.Sleep(o.watch)
	}
}

// readFlows asks the daemon for its live flows (cumulative since each flow
// started), or, when none answers, reads the pinned maps (what was counted
// since the daemon's last drain).
func readFlows(pinPath string) (recs []flow.Record, p *bpf.Pinned, fromDaemon bool, err error) {
	recs, err = control.FetchFlows(control.SocketPath(pinPath))
	if err == nil {
		p, _ = bpf.OpenPinned(pinPath) // for the counters only
		return recs, p, true, nil
	}
	if !errors.Is(err, control.ErrNoDaemon) {
		return nil, nil, false, err
	}
	p, err = bpf.OpenPinned(pinPath)
	if err != nil {
		return nil, nil, false, err
	}
	recs, err = p.Flows()
	if err != nil {
		p.Close()
		return nil, nil, false, err
	}
	return recs, p, false, nil
}

func showFlows(o flowsOpts, w io.Writer) error {
	recs, p, fromDaemon, err := readFlows(o.pinPath)
	if err != nil {
		return err
	}
	if p != nil {
		defer p.Close()
	}
	live := len(recs)
	clk := flow.Now()
	now := clk.Time(clk.Mono)
	names := ifaceNames()
	if o.iface != "" {
		kept := recs[:0]
		for _, r := range recs {
			if names(r.Key.IfIndex) == o.iface {
				kept = append(kept, r)
			}
		}
		recs = kept
	}
	sortFlows(recs, o.sortBy)
	if o.top > 0 && len(recs) > o.top {
		recs = recs[:o.top]
	}
	if o.json {
		out := make([]flowJSON, 0, len(recs))
		for _, r := range recs {
			k, v := r.Key, r.Value
			out = append(out, flowJSON{
				Src: k.SrcAddr().String(), Dst: k.DstAddr().String(),
				SrcPort: k.SrcPort, DstPort: k.DstPort, Proto: k.Proto,
				Iface: names(k.IfIndex), Direction: k.Direction.String(), VLAN: k.VLAN,
				Packets: v.Packets, Bytes: v.Bytes, TCPFlags: v.TCPFlags,
				First: clk.Time(v.FirstNs).UTC().Format(rfc3339Milli),
				Last:  clk.Time(v.LastNs).UTC().Format(rfc3339Milli),
			})
			if n := v.Sampling.Rate(); n > 1 {
				out[len(out)-1].SamplingRate = n
			}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SOURCE\tDESTINATION\tPROTO\tIFACE\tDIR\tVLAN\tPACKETS\tBYTES\tFLAGS\tAGE\tIDLE\tSAMPLING\t")
	for _, r := range recs {
		k, v := r.Key, r.Value
		vlan := "-"
		if k.VLAN != 0 {
			vlan = strconv.Itoa(int(k.VLAN))
		}
		smp := "-"
		if n := v.Sampling.Rate(); n > 1 {
			smp = fmt.Sprintf("1:%d %s", n, v.Sampling.Mode())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t\n",
			endpoint(k.SrcAddr(), k.SrcPort, &k, true), endpoint(k.DstAddr(), k.DstPort, &k, false),
			flow.ProtoName(k.Proto), names(k.IfIndex), k.Direction, vlan,
			v.Packets, v.Bytes, tcpFlags(v.TCPFlags),
			age(now.Sub(clk.Time(v.FirstNs))), age(now.Sub(clk.Time(v.LastNs))), smp)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !fromDaemon {
		fmt.Fprintf(w, "no daemon answered on %s: counts since its last drain, from the pinned maps\n", control.SocketPath(o.pinPath))
	}
	if p == nil {
		return nil
	}
	if c, err := p.Counters(); err == nil {
		fmt.Fprintf(w, "%d flows; not flows: non-IP %d, truncated %d, malformed %d; missed (store full) %d packets",
			live, c.NonIP, c.Truncated, c.Malformed, c.MissedPackets)
		fmt.Fprintln(w)
	}
	return nil
}

func sortFlows(recs []flow.Record, by string) {
	sort.SliceStable(recs, func(i, j int) bool {
		a, b := &recs[i].Value, &recs[j].Value
		switch by {
		case "packets":
			return a.Packets > b.Packets
		case "last":
			return a.LastNs > b.LastNs
		}
		return a.Bytes > b.Bytes
	})
}

// endpoint formats an address with its port; ICMP shows type/code on the
// destination instead.
func endpoint(a netip.Addr, port uint16, k *flow.Key, src bool) string {
	if k.IsICMP() {
		if src {
			return a.String()
		}
		return fmt.Sprintf("%s type %d/%d", a, port>>8, port&0xff)
	}
	if port == 0 && k.Proto != 6 && k.Proto != 17 && k.Proto != 132 && k.Proto != 136 {
		return a.String()
	}
	return netip.AddrPortFrom(a, port).String()
}

func tcpFlags(f uint32) string {
	if f == 0 {
		return "-"
	}
	const names = "FSRPAUECN"
	var b strings.Builder
	for i := range names {
		if f&(1<<i) != 0 {
			b.WriteByte(names[i])
		}
	}
	return b.String()
}

func age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// ifaceNames resolves interface indexes to names (in this network
// namespace), remembering what it found.
func ifaceNames() func(uint32) string {
	cache := map[uint32]string{}
	return func(idx uint32) string {
		if n, ok := cache[idx]; ok {
			return n
		}
		n := strconv.Itoa(int(idx))
		if ifc, err := net.InterfaceByIndex(int(idx)); err == nil {
			n = ifc.Name
		}
		cache[idx] = n
		return n
	}
}
