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

// TestReload: SIGHUP applies new collectors and timeouts without touching
// the data plane (the same programs stay attached, nothing is lost), keeps
// an unchanged collector's sink, and a broken configuration changes
// nothing.
func TestReload(t *testing.T) {
	testenv.RequireRoot(t)
	p := testnet.NewPair(t, "xh")
	sinkA, sinkB := newRecordSink(), newRecordSink()
	collA := listenCollector(t, p, "udp://127.0.0.1:0", sinkA)
	collB := listenCollector(t, p, "udp://127.0.0.1:0", sinkB)
	pin := pinDir(t)
	base := fmt.Sprintf("interfaces:\n  - {name: %s, ingress: xdp, egress: tc}\npin_path: %s\nmetrics: {listen: ''}\n", p.NameA, pin)
	cfg := writeConfig(t, base+fmt.Sprintf(`timeouts: {active: 10s, inactive: 300ms, scan_interval: 100ms}
export:
  collectors:
    - {address: %s}
`, collA.Addr()))
	d := startDaemon(t, p, cfg)
	hooks := attached(t, p)

	sent1, err := p.SendUDP(testnet.SideB, false, 5000, 10, 3, 100)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)

	// Add collector B and change the idle timeout.
	if err := os.WriteFile(cfg, []byte(base+fmt.Sprintf(`timeouts: {active: 10s, inactive: 400ms, scan_interval: 100ms}
export:
  collectors:
    - {address: %s}
    - {address: %s}
`, collA.Addr(), collB.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "reload", func() bool { return strings.Contains(d.stderr.String(), "msg=reloaded") })
	sent2, err := p.SendUDP(testnet.SideB, false, 6000, 10, 4, 200)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)

	// A broken configuration: logged, nothing changes.
	if err := os.WriteFile(cfg, []byte(base+"timeouts: {active: soon}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "failed reload", func() bool { return strings.Contains(d.stderr.String(), "configuration not applied") })
	sent3, err := p.SendUDP(testnet.SideB, false, 7000, 5, 2, 50)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)

	if got := attached(t, p); got != hooks {
		t.Errorf("the data plane changed across reloads: %q, was %q", got, hooks)
	}
	if err := d.stop(t, syscall.SIGTERM); err != nil {
		t.Fatalf("xflow run: %v\n%s", err, d.stderr)
	}
	time.Sleep(200 * time.Millisecond)
	sinkA.mu.Lock()
	defer sinkA.mu.Unlock()
	sinkB.mu.Lock()
	defer sinkB.mu.Unlock()
	all := testnet.Expect{}
	for _, e := range []testnet.Expect{sent1, sent2, sent3} {
		all.Merge(e)
	}
	after := testnet.Expect{}
	after.Merge(sent2)
	after.Merge(sent3)
	expectEqual(t, "collector A (kept across reloads)", all, sinkA.in)
	expectEqual(t, "collector B (added by the reload)", after, sinkB.in)
	for _, id := range sent1.Keys() {
		if _, ok := sinkB.in[id]; ok {
			t.Errorf("collector B got %v, which ended before it was added", id)
		}
	}
	if st := collA.Stats(); st.SequenceGaps != 0 || st.MissingTemplate != 0 {
		t.Errorf("collector A: %+v", st)
	}
	if st := collB.Stats(); st.SequenceGaps != 0 || st.MissingTemplate != 0 || st.Records == 0 {
		t.Errorf("collector B: %+v", st)
	}
}
