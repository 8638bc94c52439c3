package collector

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"

	"github.com/xflow-net/xflow/flow"
)

// Format renders a record as one human line, without a newline:
//
//	2026-11-22T10:00:00.123Z tcp 10.0.0.1:1234 -> 10.0.0.2:80 veth0 ingress vlan 0 pkts 10 bytes 1234 flags 0x1b reason 1
//
// The time is the flow's first packet (its last without a start time, "-"
// with neither). ICMP shows type/code after the destination, as
// "10.0.0.2 type 8/0"; protocols without ports show bare addresses. A
// missing interface or direction is "-". Sampled records end in
// "sampling 1:N" (their counts are as sampled).
func Format(r Record) string {
	when := r.First
	if when == "" {
		when = r.Last
	}
	if when == "" {
		when = "-"
	}
	icmp := (r.Proto == 1 && r.IPVersion != 6) || (r.Proto == 58 && r.IPVersion != 4)
	ports := r.Proto == 6 || r.Proto == 17 || r.Proto == 132 || r.Proto == 136 || r.SrcPort != 0 || r.DstPort != 0
	var src, dst string
	switch {
	case icmp:
		src = r.Src
		dst = fmt.Sprintf("%s type %d/%d", r.Dst, r.DstPort>>8, r.DstPort&0xff)
	case ports:
		src, dst = hostPort(r.Src, r.SrcPort), hostPort(r.Dst, r.DstPort)
	default:
		src, dst = r.Src, r.Dst
	}
	s := fmt.Sprintf("%s %s %s -> %s %s %s vlan %d pkts %d bytes %d flags %#x reason %d",
		when, flow.ProtoName(r.Proto), src, dst, dash(r.Iface), dash(r.Direction),
		r.VLAN, r.Packets, r.Bytes, r.TCPFlags, r.FlowEndReason)
	if r.SamplingRate > 1 {
		s += fmt.Sprintf(" sampling 1:%d", r.SamplingRate)
	}
	return s
}

func hostPort(a string, port uint16) string {
	if ip, err := netip.ParseAddr(a); err == nil {
		return netip.AddrPortFrom(ip, port).String()
	}
	return a + ":" + strconv.Itoa(int(port))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteJSON writes the record as one JSON object on one line.
func WriteJSON(w io.Writer, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
