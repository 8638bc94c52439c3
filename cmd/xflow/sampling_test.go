package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xflow-net/xflow/collector"
	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/internal/testnet"
)

// Ports of TestSamplingCollectors, inside its own namespace.
var smpNfcapd = map[string]int{"ipfix": 9985, "netflow9": 9986, "netflow5": 9987}

const (
	smpGoflow  = 9988
	smpGoflowH = 9989
	smpRate    = 10
)

// TestSamplingCollectors runs `xflow run` with deterministic 1:10 sampling
// and exports the same flows as IPFIX, NetFlow v9 and v5 to nfcapd (one
// per protocol), goflow2 (one for all) and xflow's own collector, under a
// tshark capture. Every flow record must carry the rate to each of them:
// goflow2's sampling_rate, nfdump's sampling fields, tshark's decode and
// xflow collect's sampling_rate all say 10, and the counts are the sampled
// ones (nfdump scales them by the rate it read).
func TestSamplingCollectors(t *testing.T) {
	testenv.RequireRoot(t)
	requireTools(t)
	p := testnet.NewPair(t, "smpc")
	dir := t.TempDir()
	var mu sync.Mutex
	var refs []collector.Record
	truth := listenCollector(t, p, "udp://127.0.0.1:0", nil, func(r collector.Record) {
		mu.Lock()
		refs = append(refs, r)
		mu.Unlock()
	})
	nf := map[string]*peer{}
	var collectors string
	var ports []string
	for _, proto := range []string{"ipfix", "netflow9", "netflow5"} {
		d := filepath.Join(dir, "nf-"+proto)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		nf[proto] = startPeer(t, p, "nfcapd-"+proto, "nfcapd", "-b", "127.0.0.1", "-p", strconv.Itoa(smpNfcapd[proto]),
			"-w", d, "-t", "2", "-P", filepath.Join(dir, proto+".pid"), "-v")
		collectors += fmt.Sprintf("    - {address: 127.0.0.1:%d, protocol: %s}\n", smpNfcapd[proto], proto)
		collectors += fmt.Sprintf("    - {address: 127.0.0.1:%d, protocol: %s}\n", smpGoflow, proto)
		ports = append(ports, strconv.Itoa(smpNfcapd[proto]))
	}
	goflow := startPeer(t, p, "goflow2", goflow2Bin(), "-listen",
		fmt.Sprintf("netflow://127.0.0.1:%d?workers=1", smpGoflow), "-format", "json",
		"-transport.file", filepath.Join(dir, "goflow.jsonl"), "-addr", fmt.Sprintf("127.0.0.1:%d", smpGoflowH))
	capFile := filepath.Join(dir, "cap.pcapng")
	tshark := startPeer(t, p, "tshark", "tshark", "-i", "lo", "-f", "udp port "+strings.Join(ports, " or udp port "), "-w", capFile)
	waitFor(t, 20*time.Second, "tshark capturing", func() bool { return strings.Contains(tshark.output(), "Capturing on") }, tshark)
	for proto, pr := range nf {
		waitFor(t, 10*time.Second, "nfcapd listening", func() bool { return pr.boundUDP(smpNfcapd[proto]) }, pr)
	}
	waitFor(t, 10*time.Second, "goflow2 listening", func() bool { return goflow.boundUDP(smpGoflow) }, goflow)
	time.Sleep(1500 * time.Millisecond) // dumpcap's filter

	pin := pinDir(t)
	cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: none}
pin_path: %s
sampling: {rate: %d, mode: deterministic}
filters:
  - {proto: udp, dst_port: 5999, action: skip}
  - {proto: udp, dst_port: 5000}
timeouts: {active: 2s, inactive: 1s, scan_interval: 250ms}
metrics: {listen: "127.0.0.1:9990"}
export:
  collectors:
    - {address: %s, protocol: ipfix}
%s`, p.NameA, pin, smpRate, truth.Addr(), collectors))
	d := startDaemon(t, p, cfg)
	// 7 flows, round-robin: every 10th packet visits each flow in turn.
	if _, err := p.SendUDP(testnet.SideB, false, 5000, 7, 100, 100); err != nil {
		t.Fatal(err)
	}
	// Skipped by the first filter: no flow, no record anywhere.
	if _, err := p.SendUDP(testnet.SideB, false, 5999, 2, 25, 100); err != nil {
		t.Fatal(err)
	}
	// xflow flows, before the flows end: the rate of each.
	shown := 0
	for _, f := range flowsJSON(t, p, pin) {
		if num(f["dst_port"]) == 5999 {
			t.Errorf("xflow flows: a skipped flow: %v", f)
		}
		if num(f["dst_port"]) == 5000 {
			shown++
			if num(f["sampling_rate"]) != smpRate {
				t.Errorf("xflow flows: %v: sampling_rate %v, want %d", f, f["sampling_rate"], smpRate)
			}
		}
	}
	if shown != 7 {
		t.Errorf("xflow flows showed %d of the 7 sampled flows", shown)
	}
	time.Sleep(1500 * time.Millisecond)
	// Metrics: the interface totals count every packet, the flows the
	// sampled ones; the filters' hits. Packets beyond the 750 sent (IPv6
	// router solicitations from B, say) are strays: sampled alike, they
	// shift which packets the count selects.
	scrape := func(name string) float64 { return scrapeMetric(t, "127.0.0.1:9990", p, name) }
	all, flows := scrape("xflow_interface_packets_total"), scrape("xflow_packets_total")
	strays := uint64(max(all-750, 0))
	if want := float64(700+strays) / smpRate; all < 750 || flows > want || flows < want-2 {
		t.Errorf("metrics: interface packets %v (want >= 750: every packet), flow packets %v (want %.0f, less a remainder per CPU)", all, flows, want)
	}
	if skip, count := scrape(`xflow_filter_hits_total{action="skip",rule="0"}`), scrape(`xflow_filter_hits_total{action="count",rule="1"}`); skip != 50 || count != 700 {
		t.Errorf("metrics: filter hits %v skipped, %v counted; want 50, 700", skip, count)
	}
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("xflow run: %v\n%s", err, d.stderr)
	}
	time.Sleep(500 * time.Millisecond)
	truth.Close()
	for _, pr := range append([]*peer{goflow, tshark}, nf["ipfix"], nf["netflow9"], nf["netflow5"]) {
		pr.stop(t)
	}

	// xflow collect.
	mu.Lock()
	var refPackets, ref4Packets, testPackets uint64
	testFlows := 0
	for _, r := range refs {
		refPackets += r.Packets
		if r.IPVersion == 4 {
			ref4Packets += r.Packets
		}
		if r.DstPort == 5000 {
			testFlows++
			testPackets += r.Packets
		}
		if r.SamplingRate != smpRate {
			t.Errorf("xflow collect: %s: sampling_rate %d, want %d", collector.Format(r), r.SamplingRate, smpRate)
		}
	}
	mu.Unlock()
	for _, r := range refs {
		if r.DstPort == 5999 {
			t.Errorf("xflow collect: a skipped flow was exported: %s", collector.Format(r))
		}
	}
	if testFlows != 7 || testPackets+strays+2 < 70 || testPackets > 70+strays {
		t.Errorf("xflow collect: %d test records, %d packets: want 7 flows, 700/10 packets (%d strays)", testFlows, testPackets, strays)
	}
	t.Logf("xflow collect: %d records (%d of the 7 test flows, %d packets), %d packets in all at 1:%d; %d stray packets", len(refs), testFlows, testPackets, refPackets, smpRate, strays)

	// goflow2.
	b, err := os.ReadFile(filepath.Join(dir, "goflow.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	byType := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var r struct {
			Type         string `json:"type"`
			SamplingRate uint64 `json:"sampling_rate"`
			Packets      uint64 `json:"packets"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("goflow2 json: %v", err)
		}
		byType[r.Type]++
		if r.SamplingRate != smpRate {
			t.Errorf("goflow2 %s: sampling_rate %d, want %d: %s", r.Type, r.SamplingRate, smpRate, sc.Text())
		}
	}
	if byType["IPFIX"] == 0 || byType["NETFLOW_V9"] == 0 || byType["NETFLOW_V5"] == 0 {
		t.Errorf("goflow2 records by type: %v", byType)
	}
	t.Logf("goflow2: records by type %v, all at sampling_rate %d", byType, smpRate)

	// nfdump: every record flagged sampled, its counts scaled by the rate
	// it read (it scales what it stores); nfcapd logs the sampler.
	for _, proto := range []string{"ipfix", "netflow9", "netflow5"} {
		out, err := exec.Command("nfdump", "-R", filepath.Join(dir, "nf-"+proto), "-o", "raw").CombinedOutput()
		if err != nil {
			t.Fatalf("nfdump %s: %v\n%s", proto, err, out)
		}
		recs, sampledRecs := 0, 0
		var pk uint64
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			switch {
			case len(f) > 0 && f[0] == "Flags":
				recs++
				if strings.HasSuffix(l, "Sampled") && !strings.HasSuffix(l, "Unsampled") {
					sampledRecs++
				}
			case len(f) == 4 && f[0] == "in" && f[1] == "packets":
				n, _ := strconv.ParseUint(f[3], 10, 64)
				pk += n
			}
		}
		want := refPackets
		if proto == "netflow5" {
			want = ref4Packets // v5 carries no IPv6 (strays may be)
		}
		if recs == 0 || sampledRecs != recs || pk != smpRate*want {
			t.Errorf("nfdump %s: %d of %d records sampled, %d packets (want all, %d x %d)\n%.2000s", proto, sampledRecs, recs, pk, smpRate, want, out)
		}
		if proto != "netflow5" && !strings.Contains(nf[proto].output(), "packet interval: 1, packet space: 9") {
			t.Errorf("nfcapd %s logged no 1:10 sampler:\n%s", proto, nf[proto].output())
		}
		t.Logf("nfdump %s: %d records, all sampled, %d packets scaled from %d", proto, recs, pk, want)
	}

	// tshark: the rate of every flow record (v5: of its header).
	for _, proto := range []string{"ipfix", "netflow9", "netflow5"} {
		port := smpNfcapd[proto]
		out, err := exec.Command("tshark", "-r", capFile, "-d", fmt.Sprintf("udp.port==%d,cflow", port),
			"-Y", fmt.Sprintf("udp.port==%d", port), "-T", "json", "-J", "cflow").Output()
		if err != nil {
			t.Fatalf("tshark: %v", err)
		}
		var pkts []any
		if err := json.Unmarshal(out, &pkts); err != nil {
			t.Fatalf("tshark json: %v", err)
		}
		flows, rated := 0, 0
		var header float64
		var walk func(v any)
		walk = func(v any) {
			switch m := v.(type) {
			case map[string]any:
				if r, ok := m["cflow.samplerate"]; ok {
					header = num(r)
				}
				if _, ok := m["cflow.packets"]; ok {
					flows++
					var rate float64
					switch proto {
					case "ipfix":
						if iv := num(m["cflow.sampling_packet_interval"]); iv > 0 {
							rate = (iv + num(m["cflow.sampling_packet_space"])) / iv
						}
					case "netflow9":
						rate = num(m["cflow.sampling_interval"])
					default:
						rate = header
					}
					if rate == smpRate {
						rated++
					}
					return
				}
				for _, k := range sortedKeys(m) {
					walk(m[k])
				}
			case []any:
				for _, c := range m {
					walk(c)
				}
			}
		}
		for _, pkt := range pkts {
			header = 0
			walk(pkt)
		}
		if flows == 0 || rated != flows {
			t.Errorf("tshark %s: %d of %d flow records at 1:%d", proto, rated, flows, smpRate)
		}
		t.Logf("tshark %s: %d flow records, all at 1:%d", proto, flows, smpRate)
	}
}

// sortedKeys puts a JSON object's keys in order, header fields ("cflow.
// samplerate" in the v5 header tree) before the flows that follow them.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		hi, hj := strings.Contains(keys[i], "flowset") || strings.HasPrefix(keys[i], "Flow"), strings.Contains(keys[j], "flowset") || strings.HasPrefix(keys[j], "Flow")
		if hi != hj {
			return hj
		}
		return keys[i] < keys[j]
	})
	return keys
}
