package netflow9

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xflow-net/xflow/internal/tsharktest"

	"github.com/xflow-net/xflow/flow"
)

// tsPacket is what tshark decoded of one NetFlow packet: its header
// fields, and per FlowSet its ID, the number of templates in it and its
// records' fields.
type tsPacket struct {
	header map[string]string
	sets   []tsSet
}

type tsSet struct {
	id        string
	templates int
	records   []map[string]string
}

func tsharkDecode(t *testing.T, path string) []tsPacket {
	t.Helper()
	out := tsharktest.Run(t, path, "-T", "json", "-J", "cflow")
	v, err := tsharktest.ReadJSON(json.NewDecoder(bytes.NewReader(out)))
	if err != nil {
		t.Fatalf("tshark JSON: %v", err)
	}
	var pkts []tsPacket
	for _, f := range v.([]any) {
		layers := tsharktest.Member(t, tsharktest.Member(t, f.([]tsharktest.KV), "_source").([]tsharktest.KV), "layers").([]tsharktest.KV)
		cf := tsharktest.Member(t, layers, "cflow").([]tsharktest.KV)
		p := tsPacket{header: map[string]string{}}
		for _, m := range cf {
			switch v := m.V.(type) {
			case string:
				p.header[m.K] = v
			case []tsharktest.KV:
				if m.K == "cflow.timestamp_tree" {
					tsharktest.Leaves(t, v, p.header, false)
					continue
				}
				if !strings.HasPrefix(m.K, "FlowSet ") {
					t.Fatalf("unexpected %q in cflow", m.K)
				}
				s := tsSet{id: tsharktest.Member(t, v, "cflow.flowset_id").(string)}
				for _, r := range v {
					switch {
					case strings.HasPrefix(r.K, "Template (Id = "), strings.HasPrefix(r.K, "Options Template (Id = "):
						s.templates++
					case strings.HasPrefix(r.K, "Flow "):
						s.records = append(s.records, tsharktest.Leaves(t, r.V.([]tsharktest.KV), nil, false))
					}
				}
				p.sets = append(p.sets, s)
			}
		}
		pkts = append(pkts, p)
	}
	return pkts
}

// ms formats an uptime in ms as tshark shows times: seconds, 9 decimals.
func ms(v uint32) string { return fmt.Sprintf("%d.%03d000000", v/1000, v%1000) }

// TestTshark decodes the encoder's packets with tshark, if installed: the
// header fields, the templates, every field of the options and flow records
// must be what was encoded, and tshark must find nothing malformed nor
// worth a warning.
func TestTshark(t *testing.T) {
	tsharktest.Require(t)
	dir := t.TempDir()

	e := NewEncoder(Options{SourceID: 0x01020304, MTU: 1400, Boot: testBoot})
	var pkts packets
	ifaces := []flow.Interface{{Index: 1, Name: "lo"}, {Index: 2, Name: "eth0"}, {Index: 70000, Name: "br-0123456789ab"}}
	if err := e.Templates(testNow, Stats{Messages: 11, Records: 222, Octets: 1 << 40}, ifaces, pkts.send); err != nil {
		t.Fatal(err)
	}
	if err := e.Encode(testNow, testRecords(), pkts.send); err != nil {
		t.Fatal(err)
	}
	// Then 60 records over several packets a second later, with the
	// templates in between.
	var many []flow.Export
	for i := range 60 {
		r := testRecords()[i%6]
		r.Packets = uint64(1000 + i)
		many = append(many, r)
	}
	later := testNow.Add(time.Second)
	if err := e.Encode(later, many[:30], pkts.send); err != nil {
		t.Fatal(err)
	}
	if err := e.Templates(later, Stats{}, nil, pkts.send); err != nil {
		t.Fatal(err)
	}
	if err := e.Encode(later, many[30:], pkts.send); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "v9.pcap")
	tsharktest.WritePcap(t, path, pkts, testUnixSecs)

	if out := tsharktest.Run(t, path, "-Y", "_ws.malformed || _ws.expert.severity>=warning"); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("tshark finds malformed packets or warnings:\n%s", out)
	}

	got := tsharkDecode(t, path)
	if len(got) != len(pkts) {
		t.Fatalf("tshark decoded %d packets, want %d", len(got), len(pkts))
	}
	var seen []string // every flow record, in the order tshark saw them
	for i, p := range got {
		h, _ := splitPacket(t, pkts[i])
		wantHeader := map[string]string{
			"cflow.version":   "9",
			"cflow.count":     fmt.Sprint(h.count),
			"cflow.sysuptime": ms(testUptime),
			"cflow.unix_secs": fmt.Sprint(testUnixSecs),
			"cflow.sequence":  fmt.Sprint(i),
			"cflow.source_id": "16909060",
		}
		if i >= 2 {
			wantHeader["cflow.sysuptime"] = ms(testUptime + 1000)
			wantHeader["cflow.unix_secs"] = fmt.Sprint(testUnixSecs + 1)
		}
		for k, w := range wantHeader {
			if p.header[k] != w {
				t.Errorf("packet %d: %s = %q, want %q", i, k, p.header[k], w)
			}
		}
		n := 0
		for _, s := range p.sets {
			n += s.templates + len(s.records)
			for _, r := range s.records {
				switch s.id {
				case "256", "257":
					seen = append(seen, r["cflow.packets"])
				}
			}
		}
		if fmt.Sprint(n) != p.header["cflow.count"] {
			t.Errorf("packet %d: tshark found %d records, count %s", i, n, p.header["cflow.count"])
		}
	}

	// The templates packet.
	p := got[0]
	if len(p.sets) != 5 || p.sets[0].id != "0" || p.sets[0].templates != 2 || p.sets[1].id != "1" || p.sets[1].templates != 1 ||
		p.sets[2].id != "1" || p.sets[2].templates != 1 {
		t.Fatalf("templates packet: %+v", p.sets)
	}
	wantOpts := []map[string]string{
		{"cflow.scope_system": "01:02:03:04", "cflow.packetsexp": "11", "cflow.flowsexp": "222", "cflow.octetsexp": "1099511627776"},
		{"cflow.scope_system": "01:02:03:04", "cflow.inputint": "1", "cflow.if_name": "lo", "cflow.if_descr": "lo"},
		{"cflow.scope_system": "01:02:03:04", "cflow.inputint": "2", "cflow.if_name": "eth0", "cflow.if_descr": "eth0"},
		{"cflow.scope_system": "01:02:03:04", "cflow.inputint": "70000", "cflow.if_name": "br-0123456789ab", "cflow.if_descr": "br-0123456789ab"},
	}
	gotOpts := append(p.sets[3].records, p.sets[4].records...)
	if p.sets[3].id != "258" || p.sets[4].id != "259" || fmt.Sprint(gotOpts) != fmt.Sprint(wantOpts) {
		t.Errorf("options records\n got %v\nwant %v", gotOpts, wantOpts)
	}

	// The flow records.
	p = got[1]
	if len(p.sets) != 2 || p.sets[0].id != "256" || p.sets[1].id != "257" {
		t.Fatalf("records packet: %+v", p.sets)
	}
	recs := append(p.sets[0].records, p.sets[1].records...)
	if len(recs) != len(wantRecords) {
		t.Fatalf("tshark decoded %d records, want %d", len(recs), len(wantRecords))
	}
	for i, w := range wantRecords {
		src, dst := "cflow.srcaddr", "cflow.dstaddr"
		if w.ipVersion == 6 {
			src, dst = "cflow.srcaddrv6", "cflow.dstaddrv6"
		}
		want := map[string]string{
			src: w.src, dst: w.dst,
			"cflow.packets": fmt.Sprint(w.pkts), "cflow.octets": fmt.Sprint(w.bytes),
			"cflow.timestart": ms(w.first), "cflow.timeend": ms(w.last),
			"cflow.timedelta": ms(w.last - w.first),
			"cflow.inputint":  fmt.Sprint(w.in), "cflow.outputint": fmt.Sprint(w.out),
			"cflow.srcport": fmt.Sprint(w.sport), "cflow.dstport": fmt.Sprint(w.dport),
			"cflow.icmp_type_code_ipv4": fmt.Sprintf("0x%04x", w.icmp),
			"cflow.vlanid":              fmt.Sprint(w.vlan),
			"cflow.protocol":            fmt.Sprint(w.proto),
			"cflow.tos":                 fmt.Sprintf("0x%02x", w.tos),
			"cflow.tcpflags":            fmt.Sprintf("0x%02x", w.flags),
			"cflow.direction":           fmt.Sprint(w.dir),
			"cflow.flow_end_reason":     fmt.Sprint(w.er),
			"cflow.ip_version":          fmt.Sprint(w.ipVersion),
		}
		for k, v := range want {
			if recs[i][k] != v {
				t.Errorf("record %d: %s = %q, want %q", i, k, recs[i][k], v)
			}
		}
	}
	// Every flow record once, IPv4 before IPv6 in each batch.
	wantSeen := []string{"10", "3", "1099511627776", "1", "2", "4"}
	for _, batch := range [][]int{{0, 30}, {30, 60}} {
		for _, v6 := range []bool{false, true} {
			for i := batch[0]; i < batch[1]; i++ {
				if (many[i].Key.IPVersion == 6) == v6 {
					wantSeen = append(wantSeen, fmt.Sprint(1000+i))
				}
			}
		}
	}
	if fmt.Sprint(seen) != fmt.Sprint(wantSeen) {
		t.Errorf("flow records seen by tshark\n got %v\nwant %v", seen, wantSeen)
	}

	// The check above is meaningful: tshark does flag data whose template it
	// has not seen.
	bad := filepath.Join(dir, "bad.pcap")
	tsharktest.WritePcap(t, bad, pkts[1:2], testUnixSecs)
	if out := tsharktest.Run(t, bad, "-Y", "_ws.malformed || _ws.expert.severity>=warning"); len(bytes.TrimSpace(out)) == 0 {
		t.Error("tshark flags nothing in data without templates")
	}
}
