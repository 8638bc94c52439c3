package netflow5

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

// tsPacket is what tshark decoded of one NetFlow v5 datagram: its header
// fields and its records' fields.
type tsPacket struct {
	header  map[string]string
	records []map[string]string
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
				switch {
				case m.K == "cflow.timestamp_tree":
					tsharktest.Leaves(t, v, p.header, true)
				case strings.HasPrefix(m.K, "pdu "):
					p.records = append(p.records, tsharktest.Leaves(t, v, nil, true))
				default:
					t.Fatalf("unexpected %q in cflow", m.K)
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
	tsharktest.Require(t)
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
	tsharktest.WritePcap(t, path, pkts, testUnixSecs)

	if out := tsharktest.Run(t, path, "-Y", "_ws.malformed || _ws.expert.severity>=warning"); len(bytes.TrimSpace(out)) > 0 {
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
	tsharktest.WritePcap(t, path, [][]byte{bad}, testUnixSecs)
	if out := tsharktest.Run(t, path, "-Y", "_ws.malformed || _ws.expert.severity>=warning"); len(bytes.TrimSpace(out)) == 0 {
		t.Error("tshark flags nothing in a datagram of count 0")
	}
}
