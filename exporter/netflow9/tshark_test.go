package netflow9

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xflow-net/xflow/flow"
)

const tsharkPath = "/usr/bin/tshark"

// writePcap writes pkts as UDP datagrams from 192.0.2.1:40000 to
// 192.0.2.2:2055 in Ethernet frames, in a pcap file.
func writePcap(t *testing.T, path string, pkts [][]byte) {
	t.Helper()
	le, be := binary.LittleEndian, binary.BigEndian
	var f []byte
	f = le.AppendUint32(f, 0xa1b2c3d4) // magic: microsecond timestamps
	f = le.AppendUint16(f, 2)          // version 2.4
	f = le.AppendUint16(f, 4)
	f = le.AppendUint32(f, 0)      // time zone
	f = le.AppendUint32(f, 0)      // accuracy
	f = le.AppendUint32(f, 262144) // snap length
	f = le.AppendUint32(f, 1)      // link type: Ethernet
	for i, p := range pkts {
		fr := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00} // dst, src MAC, IPv4
		ip := []byte{
			0x45, 0, 0, 0, // version, IHL, TOS, total length
			0, 0, 0x40, 0, // ID, DF
			64, 17, 0, 0, // TTL, UDP, checksum
			192, 0, 2, 1, 192, 0, 2, 2,
		}
		be.PutUint16(ip[2:], uint16(20+8+len(p)))
		var sum uint32
		for j := 0; j < 20; j += 2 {
			sum += uint32(be.Uint16(ip[j:]))
		}
		sum = sum&0xffff + sum>>16
		sum = sum&0xffff + sum>>16
		be.PutUint16(ip[10:], ^uint16(sum))
		fr = append(fr, ip...)
		fr = be.AppendUint16(fr, 40000)
		fr = be.AppendUint16(fr, 2055)
		fr = be.AppendUint16(fr, uint16(8+len(p)))
		fr = be.AppendUint16(fr, 0) // no UDP checksum (IPv4)
		fr = append(fr, p...)
		f = le.AppendUint32(f, uint32(testUnixSecs+i))
		f = le.AppendUint32(f, 0)
		f = le.AppendUint32(f, uint32(len(fr)))
		f = le.AppendUint32(f, uint32(len(fr)))
		f = append(f, fr...)
	}
	if err := os.WriteFile(path, f, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tshark runs tshark on a pcap file, decoding UDP port 2055 as NetFlow.
func tshark(t *testing.T, path string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(tsharkPath, append([]string{"-r", path, "-d", "udp.port==2055,cflow"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

// kv is a member of a JSON object; tshark's JSON may repeat keys, so
// objects are read in order into slices of them.
type kv struct {
	k string
	v any // string, []kv or []any
}

func readJSON(d *json.Decoder) (any, error) {
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		if tok == '{' {
			var obj []kv
			for d.More() {
				k, err := d.Token()
				if err != nil {
					return nil, err
				}
				v, err := readJSON(d)
				if err != nil {
					return nil, err
				}
				obj = append(obj, kv{k.(string), v})
			}
			_, err := d.Token()
			return obj, err
		}
		var arr []any
		for d.More() {
			v, err := readJSON(d)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err := d.Token()
		return arr, err
	case string:
		return tok, nil
	default:
		return fmt.Sprint(tok), nil
	}
}

// member is the value of obj's member k; it must be there once.
func member(t *testing.T, obj []kv, k string) any {
	t.Helper()
	var v any
	n := 0
	for _, m := range obj {
		if m.k == k {
			v = m.v
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d members %q in %v", n, k, obj)
	}
	return v
}

// leaves flattens obj's string members, nested objects included, into a
// map; a key must not repeat.
func leaves(t *testing.T, obj []kv, into map[string]string) map[string]string {
	t.Helper()
	if into == nil {
		into = map[string]string{}
	}
	for _, m := range obj {
		switch v := m.v.(type) {
		case string:
			if _, dup := into[m.k]; dup {
				t.Fatalf("%s twice", m.k)
			}
			into[m.k] = v
		case []kv:
			leaves(t, v, into)
		}
	}
	return into
}

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
	out := tshark(t, path, "-T", "json", "-J", "cflow")
	v, err := readJSON(json.NewDecoder(bytes.NewReader(out)))
	if err != nil {
		t.Fatalf("tshark JSON: %v", err)
	}
	var pkts []tsPacket
	for _, f := range v.([]any) {
		layers := member(t, member(t, f.([]kv), "_source").([]kv), "layers").([]kv)
		cf := member(t, layers, "cflow").([]kv)
		p := tsPacket{header: map[string]string{}}
		for _, m := range cf {
			switch v := m.v.(type) {
			case string:
				p.header[m.k] = v
			case []kv:
				if m.k == "cflow.timestamp_tree" {
					leaves(t, v, p.header)
					continue
				}
				if !strings.HasPrefix(m.k, "FlowSet ") {
					t.Fatalf("unexpected %q in cflow", m.k)
				}
				s := tsSet{id: member(t, v, "cflow.flowset_id").(string)}
				for _, r := range v {
					switch {
					case strings.HasPrefix(r.k, "Template (Id = "), strings.HasPrefix(r.k, "Options Template (Id = "):
						s.templates++
					case strings.HasPrefix(r.k, "Flow "):
						s.records = append(s.records, leaves(t, r.v.([]kv), nil))
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
	if _, err := os.Stat(tsharkPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("tshark not installed (CI is set, so not skipping): %v", err)
		}
		t.Skipf("tshark not installed: %v", err)
	}
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
	writePcap(t, path, pkts)

	if out := tshark(t, path, "-Y", "_ws.malformed || _ws.expert.severity>=warning"); len(bytes.TrimSpace(out)) > 0 {
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
	if len(p.sets) != 4 || p.sets[0].id != "0" || p.sets[0].templates != 2 || p.sets[1].id != "1" || p.sets[1].templates != 2 {
		t.Fatalf("templates packet: %+v", p.sets)
	}
	wantOpts := []map[string]string{
		{"cflow.scope_system": "01:02:03:04", "cflow.packetsexp": "11", "cflow.flowsexp": "222", "cflow.octetsexp": "1099511627776"},
		{"cflow.scope_system": "01:02:03:04", "cflow.inputint": "1", "cflow.if_name": "lo", "cflow.if_descr": "lo"},
		{"cflow.scope_system": "01:02:03:04", "cflow.inputint": "2", "cflow.if_name": "eth0", "cflow.if_descr": "eth0"},
		{"cflow.scope_system": "01:02:03:04", "cflow.inputint": "70000", "cflow.if_name": "br-0123456789ab", "cflow.if_descr": "br-0123456789ab"},
	}
	gotOpts := append(p.sets[2].records, p.sets[3].records...)
	if p.sets[2].id != "258" || p.sets[3].id != "259" || fmt.Sprint(gotOpts) != fmt.Sprint(wantOpts) {
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
	writePcap(t, bad, pkts[1:2])
	if out := tshark(t, bad, "-Y", "_ws.malformed || _ws.expert.severity>=warning"); len(bytes.TrimSpace(out)) == 0 {
		t.Error("tshark flags nothing in data without templates")
	}
}
