package bench

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/xflow-net/xflow/internal/testenv"
)

// TestRunDataPlaneQuick runs part 1 as a smoke test and checks that the
// result is whole and sane (never how fast anything is).
func TestRunDataPlaneQuick(t *testing.T) {
	testenv.RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := RunDataPlane(ctx, Options{Runs: 2, Quick: true, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kinds) != 7 || len(r.Frames) != 3 || len(r.Hooks) != 2 || len(r.Flows) != 2 {
		t.Fatalf("kinds %v, frames %v, hooks %v, flows %v", r.Kinds, r.Frames, r.Hooks, r.Flows)
	}
	sane := func(what string, s Stat) {
		t.Helper()
		if len(s.Runs) < 2 || !(s.Median > 0) || s.Min > s.Median || s.Median > s.Max {
			t.Errorf("%s: %+v", what, s)
		}
	}
	for _, hook := range r.Hooks {
		for _, f := range r.Frames {
			for _, name := range []string{"pass", "parse_only"} {
				b := r.baseline(name, hook, f)
				if b == nil {
					t.Errorf("no %s baseline for %s %s", name, hook, f)
					continue
				}
				sane(name+" "+hook+" "+f, b.NsPerPacket)
			}
		}
	}
	for _, k := range r.Kinds {
		for _, flows := range r.Flows {
			for _, hook := range r.Hooks {
				b := r.bare(k, flows, hook)
				if b == nil {
					t.Errorf("no bare %s %d %s", k, flows, hook)
				} else {
					sane("bare "+k, b.NsPerPacket)
					if b.Counted != 1 {
						t.Errorf("bare %s, %d flows: counted %v", k, flows, b.Counted)
					}
				}
				for _, f := range r.Frames {
					c := r.cell(k, flows, hook, f)
					if c == nil {
						t.Errorf("no cell %s %d %s %s", k, flows, hook, f)
						continue
					}
					name := strings.Join([]string{k, dpFmtFlows(flows), hook, f}, " ")
					sane(name, c.NsPerPacket)
					sane(name+" bare", c.BareNsPerPacket)
					sane(name+" ratio", c.RatioToBare)
					// A test run that a signal interrupts is run again
					// (cilium/ebpf retries on EINTR): more may be sent,
					// never less, and the store must hold all of it.
					if want := uint64(flows) + uint64(r.Runs*c.Packets); c.Sent < want {
						t.Errorf("%s: sent %d, want at least %d", name, c.Sent, want)
					}
					// Quick runs are small enough for every store to
					// count exactly.
					if c.Stored != c.Sent || c.Counted != 1 {
						t.Errorf("%s: stored %d of %d sent", name, c.Stored, c.Sent)
					}
				}
			}
		}
	}
	tables := r.Tables()
	if len(tables) != 3 || len(tables[0].Rows) != 7*2 {
		t.Errorf("tables: %d, main rows %d", len(tables), len(tables[0].Rows))
	}
	for _, tb := range tables {
		for _, row := range tb.Rows {
			if len(row) != len(tb.Header) {
				t.Errorf("%s: row %v for header %v", tb.Title, row, tb.Header)
			}
			for _, v := range row {
				if v == "–" || strings.Contains(v, "NaN") {
					t.Errorf("%s: row %v has a hole", tb.Title, row)
				}
			}
		}
	}
	if p := r.Plots(); len(p) != 3 || len(p[0].Series) != 7 || len(p[0].Series[0].X) != 2 {
		t.Errorf("plots: %+v", p)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Error(err)
	}
}
