package bpf

import (
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xflow-net/xflow/flow"
	"github.com/xflow-net/xflow/internal/testenv"
)

// Crash points of the drain protocol, replayed with two Datapaths on one
// pin path: the second one stands for the daemon that takes over.

func pkey(i int) flow.Key {
	var k flow.Key
	k.Src[14], k.Src[15] = byte(i>>8), byte(i)
	k.Proto, k.IPVersion, k.SrcPort = 17, 4, uint16(i)
	return k
}

func persistDir(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("xflow-persist-%d", time.Now().UnixNano()))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func loadAt(t *testing.T, dir string) *Datapath {
	t.Helper()
	d, err := Load(Options{Kind: KindHash, MaxFlows: 64, PinPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func yieldAll(m map[flow.Key]flow.State) iter.Seq2[*flow.Key, *flow.State] {
	return func(y func(*flow.Key, *flow.State) bool) {
		for k, s := range m {
			if !y(&k, &s) {
				return
			}
		}
	}
}

// restore takes over as the exporter does: the earlier state into tab,
// what was counted since into tab (and counted), then the state saved and
// the store cleared.
func restore(t *testing.T, d *Datapath, tab map[flow.Key]flow.State) (counted uint64) {
	t.Helper()
	dr, err := d.Restore(func(k *flow.Key, s *flow.State) { tab[*k] = *s })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Read(dr, func(k *flow.Key, v *flow.Value) { counted += v.Packets; tab[*k] = flow.State{Period: *v} }); err != nil {
		t.Fatal(err)
	}
	if err := d.SaveState(dr, yieldAll(tab)); err != nil {
		t.Fatalf("save %d flows: %v", len(tab), err)
	}
	if err := d.Clear(dr); err != nil {
		t.Fatal(err)
	}
	return counted
}

// killedAfterSwap has d swap and read its store and die before saving the
// state; it returns the data plane that takes over.
func killedAfterSwap(t *testing.T, d *Datapath, dir string) *Datapath {
	t.Helper()
	dr, err := d.Swap()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Read(dr, func(*flow.Key, *flow.Value) {}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	next := loadAt(t, dir)
	t.Cleanup(func() { next.Close() })
	return next
}

// A daemon dies after saving its state (which includes the drained store)
// and before emptying that store: the next one must not count it again.
func TestRestoreMergedStoreNotCountedTwice(t *testing.T) {
	dir := persistDir(t)
	d1 := loadAt(t, dir)
	k := pkey(1)
	if err := d1.stores[d1.active].Put(k, flow.Value{Packets: 5, Bytes: 500, FirstNs: 1, LastNs: 2}); err != nil {
		t.Fatal(err)
	}
	tab := map[flow.Key]flow.State{}
	dr, err := d1.Swap()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d1.Read(dr, func(k *flow.Key, v *flow.Value) { tab[*k] = flow.State{Period: *v} }); err != nil {
		t.Fatal(err)
	}
	if err := d1.SaveState(dr, yieldAll(tab)); err != nil {
		t.Fatal(err)
	}
	d1.Close() // killed after the meta flip, before the store is emptied

	d2 := loadAt(t, dir)
	defer d2.Close()
	if !d2.Adopted {
		t.Fatal("the earlier maps were not adopted")
	}
	got := map[flow.Key]flow.State{}
	counted := restore(t, d2, got)
	restored := got[k].Period.Packets
	for i := 0; i < 2; i++ {
		drain(t, d2, func(k *flow.Key, v *flow.Value) { counted += v.Packets })
	}
	if restored != 5 || counted != 0 {
		t.Errorf("restored %d packets and counted %d again, want 5 and 0", restored, counted)
	}
}

// A daemon dies right after the swap: the store it drained is not merged;
// the next one merges it (once).
func TestRestoreUnmergedStore(t *testing.T) {
	dir := persistDir(t)
	d1 := loadAt(t, dir)
	if err := d1.stores[d1.active].Put(pkey(1), flow.Value{Packets: 7, Bytes: 700, FirstNs: 1, LastNs: 2}); err != nil {
		t.Fatal(err)
	}
	d2 := killedAfterSwap(t, d1, dir)
	got := map[flow.Key]flow.State{}
	counted := restore(t, d2, got)
	drain(t, d2, func(k *flow.Key, v *flow.Value) { counted += v.Packets })
	if counted != 7 {
		t.Errorf("counted %d packets, want 7 exactly once", counted)
	}
}

// After a takeover, flows that ended must not come back from the state
// map that was not current.
func TestRestoreNoGhostFlows(t *testing.T) {
	dir := persistDir(t)
	d1 := loadAt(t, dir)
	ended, live := pkey(7), pkey(8)
	if err := d1.SaveState(Drained{}, yieldAll(map[flow.Key]flow.State{ended: {Period: flow.Value{Packets: 3}}})); err != nil {
		t.Fatal(err)
	}
	if err := d1.SaveState(Drained{}, yieldAll(map[flow.Key]flow.State{live: {Period: flow.Value{Packets: 4}}})); err != nil {
		t.Fatal(err)
	}
	d1.Close()
	d2 := loadAt(t, dir)
	restore(t, d2, map[flow.Key]flow.State{})
	d2.Close()
	d3 := loadAt(t, dir)
	defer d3.Close()
	got := map[flow.Key]flow.State{}
	restore(t, d3, got)
	if _, ok := got[ended]; ok || len(got) != 1 {
		t.Errorf("restored %v, want only the live flow", got)
	}
}

// A full table plus a full drained store fit the state maps.
func TestRestoreFullTableAndStore(t *testing.T) {
	dir := persistDir(t)
	d1 := loadAt(t, dir)
	tab := map[flow.Key]flow.State{}
	for i := 0; i < 64; i++ {
		tab[pkey(i)] = flow.State{Period: flow.Value{Packets: 1}}
	}
	if err := d1.SaveState(Drained{}, yieldAll(tab)); err != nil {
		t.Fatal(err)
	}
	for i := 100; i < 164; i++ {
		if err := d1.stores[d1.active].Put(pkey(i), flow.Value{Packets: 1}); err != nil {
			t.Fatal(err)
		}
	}
	d2 := killedAfterSwap(t, d1, dir)
	got := map[flow.Key]flow.State{}
	restore(t, d2, got)
	if len(got) != 128 {
		t.Errorf("restored %d flows, want 128", len(got))
	}
}
