package netflow5

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
// map; a key seen before gets a suffix: "#2", "#3", ...
func leaves(t *testing.T, obj []kv, into map[string]string) map[string]string {
	t.Helper()
	if into == nil {
		into = map[string]string{}
	}
	for _, m := range obj {
		switch v := m.v.(type) {
		case string:
			k := m.k
			for i := 2; ; i++ {
				if _, dup := into[k]; !dup {
					break
				}
				k = fmt.Sprintf("%s#%d", m.k, i)
			}
			into[k] = v
		case []kv:
			leaves(t, v, into)
		}
	}
	return into
}

// tsPacket is what tshark decoded of one NetFlow v5 datagram: its header
// fields and its records' fields.
type tsPacket struct {
	header  map[string]string
	records []map[string]string
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
				switch {
				case m.k == "cflow.timestamp_tree":
					leaves(t, v, p.header)
				case strings.HasPrefix(m.k, "pdu "):
					p.records = append(p.records, leaves(t, v, nil))
				default:
					t.Fatalf("unexpected %q in cflow", m.k)
				}
			}
		}
		pkts = append(pkts, p)
	}
	return pkts
}

// ms formats an uptime in ms as tshark shows times: seconds, 9 decimals.
func ms(v uint32) string { return fmt.Sprintf("%d.%03d000000", v/1000, v%1000) }

// TestTshark decodes the encoder's datagrams with tshark, if installed: the
// header fields and every field of every record must be what was encoded,
// and tshark must find nothing malformed nor worth a warning.
func TestTshark(t *testing.T) {
	if _, err := os.Stat(tsharkPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("tshark not installed (CI is set, so not skipping): %v", err)
		}
		t.Skipf("tshark not installed: %v", err)
	}
	dir := t.TempDir()

	e := NewEncoder(Options{EngineType: 7, EngineID: 9, MTU: 1464, Boot: testBoot})
	var pkts packets
	if err := e.Encode(testNow, testRecords(), pkts.send); err != nil {
		t.Fatal(err)
	}
	split := testRecords()[0]
	split.Packets, split.Bytes = 10, 1<<33
	if err := e.Encode(testNow, []flow.Export{split}, pkts.send); err != nil {
		t.Fatal(err)
	}
	later := testNow.Add(time.Second)
	if err := e.Encode(later, many(31), pkts.send); err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 4 {
		t.Fatalf("%d datagrams, want 4", len(pkts))
	}
	path := filepath.Join(dir, "v5.pcap")
	writePcap(t, path, pkts)

	if out := tshark(t, path, "-Y", "_ws.malformed || _ws.expert.severity>=warning"); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("tshark finds malformed datagrams or warnings:\n%s", out)
	}

	got := tsharkDecode(t, path)
	if len(got) != len(pkts) {
		t.Fatalf("tshark decoded %d datagrams, want %d", len(got), len(pkts))
	}
	wantCount := []int{4, 3, 30, 1}
	wantSeq := []int{0, 4, 7, 37}
	for i, p := range got {
		want := map[string]string{
			"cflow.version":      "5",
			"cflow.count":        fmt.Sprint(wantCount[i]),
			"cflow.sysuptime":    ms(testUptime),
			"cflow.unix_secs":    fmt.Sprint(testUnixSecs),
			"cflow.unix_nsecs":   fmt.Sprint(testUnixNsecs),
			"cflow.sequence":     fmt.Sprint(wantSeq[i]),
			"cflow.engine_type":  "7",
			"cflow.engine_id":    "9",
			"cflow.samplingmode": "0",
			"cflow.samplerate":   "0",
		}
		if i >= 2 {
			want["cflow.sysuptime"] = ms(testUptime + 1000)
			want["cflow.unix_secs"] = fmt.Sprint(testUnixSecs + 1)
		}
		for k, w := range want {
			if p.header[k] != w {
				t.Errorf("datagram %d: %s = %q, want %q", i, k, p.header[k], w)
			}
		}
		if len(p.records) != wantCount[i] {
			t.Errorf("datagram %d: tshark found %d records, want %d", i, len(p.records), wantCount[i])
		}
	}

	// The records, as tshark shows them.
	var recs []map[string]string
	for _, p := range got {
		recs = append(recs, p.records...)
	}
	wantRecs := append([]rec(nil), wantRecords...)
	for _, c := range [][2]uint32{{4, 2863311531}, {3, 2863311531}, {3, 2863311530}} {
		r := wantRecords[0]
		r.pkts, r.bytes = c[0], c[1]
		wantRecs = append(wantRecs, r)
	}
	for i := range 31 {
		wantRecs = append(wantRecs, rec{"10.1.2.3", "10.3.2.1", 0, 0, uint32(i + 1), 100,
			uint32(-testBoot.UnixMilli()), uint32(-testBoot.UnixMilli()), uint16(i), 0, 0, 17, 0})
	}
	if len(recs) != len(wantRecs) {
		t.Fatalf("tshark decoded %d records, want %d", len(recs), len(wantRecs))
	}
	for i, w := range wantRecs {
		want := map[string]string{
			"cflow.srcaddr": w.src, "cflow.dstaddr": w.dst, "cflow.nexthop": "0.0.0.0",
			"cflow.inputint": fmt.Sprint(w.in), "cflow.outputint": fmt.Sprint(w.out),
			"cflow.packets": fmt.Sprint(w.pkts), "cflow.octets": fmt.Sprint(w.bytes),
			"cflow.timestart": ms(w.first), "cflow.timeend": ms(w.last),
			"cflow.srcport": fmt.Sprint(w.sport), "cflow.dstport": fmt.Sprint(w.dport),
			"cflow.padding":  "00",
			"cflow.tcpflags": fmt.Sprintf("0x%02x", w.flags),
			"cflow.protocol": fmt.Sprint(w.proto),
			"cflow.tos":      fmt.Sprintf("0x%02x", w.tos),
			"cflow.srcas":    "0", "cflow.dstas": "0", "cflow.srcmask": "0", "cflow.dstmask": "0",
			"cflow.padding#2": "00:00",
		}
		for k, v := range want {
			if recs[i][k] != v {
				t.Errorf("record %d: %s = %q, want %q", i, k, recs[i][k], v)
			}
		}
	}

	// The check above is not void: tshark does flag a datagram with a count
	// of 0. (tshark 4.0 flags neither a count above nor below the records
	// present: hence the record counts checked above.)
	bad := bytes.Clone(pkts[0])
	bad[3] = 0
	path = filepath.Join(dir, "bad.pcap")
	writePcap(t, path, [][]byte{bad})
	if out := tshark(t, path, "-Y", "_ws.malformed || _ws.expert.severity>=warning"); len(bytes.TrimSpace(out)) == 0 {
		t.Error("tshark flags nothing in a datagram of count 0")
	}
}
