package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/internal/testnet"
)

// TestRestartWithoutLoss runs traffic without pause across a kill -9 of the
// daemon and a restart, then across a --keep-attached upgrade: the pinned
// links keep the programs counting while no daemon runs, each new daemon
// takes over the maps and the saved flows, and the packets and bytes
// exported per flow equal what was sent (and what a capture saw).
func TestRestartWithoutLoss(t *testing.T) {
	testenv.RequireRoot(t)
	for _, kind := range []string{"percpu_hash", "percpu_array"} {
		t.Run(kind, func(t *testing.T) {
			p := testnet.NewPair(t, "xw")
			sink := newRecordSink()
			coll := listenCollector(t, p, "udp://127.0.0.1:0", sink)
			cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc}
datapath: {map: %s, max_flows: 8192}
pin_path: %s
timeouts: {active: 2s, inactive: 700ms, scan_interval: 300ms}
export:
  collectors:
    - {address: %s, protocol: ipfix, transport: udp}
metrics: {listen: ""}
`, p.NameA, kind, pinDir(t), coll.Addr()))
			capt, err := testnet.Capture(p, p.NSA, p.NameA)
			if err != nil {
				t.Fatal(err)
			}
			d1 := startDaemon(t, p, cfg)
			sentCh := make(chan testnet.Expect, 1)
			go func() { sentCh <- onOffSender(t, p, 40, 12*time.Second, 11) }()

			time.Sleep(3 * time.Second)
			d1.stop(t, syscall.SIGKILL) // no flush, nothing detached
			time.Sleep(1500 * time.Millisecond)

			d2 := startDaemon(t, p, cfg, "--keep-attached")
			time.Sleep(3 * time.Second)
			if err := d2.stop(t, syscall.SIGTERM); err != nil { // an upgrade: stays attached
				t.Fatalf("daemon 2: %v\n%s", err, d2.stderr)
			}
			if got := attached(t, p); got == "" {
				t.Fatalf("--keep-attached detached the programs")
			}
			time.Sleep(1500 * time.Millisecond)

			d3 := startDaemon(t, p, cfg)
			sent := <-sentCh
			time.Sleep(time.Second)
			capIn, capOut := capt.Stop()
			if err := d3.stop(t, syscall.SIGTERM); err != nil {
				t.Fatalf("daemon 3: %v\n%s", err, d3.stderr)
			}
			time.Sleep(300 * time.Millisecond)
			if got := attached(t, p); got != "" {
				t.Errorf("after the last SIGTERM: %q", got)
			}
			for i, d := range []*daemon{d2, d3} {
				if !strings.Contains(d.stderr.String(), "took over from an earlier daemon") {
					t.Errorf("daemon %d did not take over:\n%s", i+2, d.stderr)
				}
			}
			sink.mu.Lock()
			defer sink.mu.Unlock()
			expectEqual(t, "exported vs sent", sent, sink.in)
			expectEqual(t, "exported vs capture (ingress)", capIn, sink.in)
			expectEqual(t, "exported vs capture (egress)", capOut, sink.out)
			if st := coll.Stats(); st.DecodeErrors+st.MissingTemplate != 0 {
				t.Errorf("collector: %+v", st)
			}
			t.Logf("%s: sent %v over %d flows across a kill -9 and an upgrade; exported %d records (by reason %v)",
				kind, sent.Total(), len(sent), sink.n, sink.reasons)
		})
	}
}

// TestRestartHookChange: a daemon killed with XDP on ingress, restarted
// with TC on ingress. The old XDP program must not go on counting into the
// adopted maps beside the new hook (every packet would count twice), and
// nothing may stay attached or pinned after the last SIGTERM.
func TestRestartHookChange(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xr")
	sink := newRecordSink()
	coll := listenCollector(t, p, "udp://127.0.0.1:0", sink)
	pin := pinDir(t)
	mk := func(ingress string) string {
		return writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: %s, egress: none}
datapath: {map: hash, max_flows: 8192}
pin_path: %s
timeouts: {active: 2s, inactive: 500ms, scan_interval: 200ms}
export:
  collectors:
    - {address: %s, protocol: ipfix, transport: udp}
metrics: {listen: ""}
`, p.NameA, ingress, pin, coll.Addr()))
	}
	d1 := startDaemon(t, p, mk("xdp"))
	time.Sleep(500 * time.Millisecond)
	d1.stop(t, syscall.SIGKILL)
	d2 := startDaemon(t, p, mk("tc"))
	if !strings.Contains(d2.stderr.String(), "removed pinned links") {
		t.Errorf("the old XDP link was not removed:\n%s", d2.stderr)
	}
	sent, err := p.SendUDP(testnet.SideB, false, 5000, 10, 3, 100)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := d2.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("%v\n%s", err, d2.stderr)
	}
	time.Sleep(300 * time.Millisecond)
	if got := attached(t, p); got != "" {
		t.Errorf("attached after SIGTERM: %q", got)
	}
	if ents, _ := os.ReadDir(pin + "/links"); len(ents) > 0 {
		t.Errorf("pinned links left: %v", ents)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	expectEqual(t, "exported vs sent", sent, sink.in)
}
