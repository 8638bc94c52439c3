package bench

import (
	"encoding/json"
	"errors"
	"log/slog"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/xflow-net/xflow/internal/testenv"
)

// TestEndToEndQuick runs part 2's smoke version: no agent, xflow
// (percpu_hash), softflowd and pmacctd at 1 and 4096 flows, one run each.
// xflow must count every packet; rates are only checked to be there.
func TestEndToEndQuick(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := EndToEndTools(); err != nil {
		testenv.Unavailable(t, err.Error())
	}
	bin := filepath.Join(t.TempDir(), "xflow")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/xflow").CombinedOutput(); err != nil {
		t.Fatalf("build xflow: %v\n%s", err, out)
	}
	o := Options{Quick: true, Xflow: bin, Log: slog.New(slog.NewTextHandler(t.Output(), nil))}
	r, err := RunEndToEnd(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Blocks) != 2 {
		t.Fatalf("%d flow counts, want 2", len(r.Blocks))
	}
	for _, b := range r.Blocks {
		xflow := 0
		for _, row := range b.Rows {
			if row.Error != "" {
				t.Errorf("%d flows, %s: %s", b.Flows, row.Agent, row.Error)
				continue
			}
			if !(row.RateMpps.Median > 0) || !(row.Ratio.Median > 0) {
				t.Errorf("%d flows, %s: rate %v, ratio %v", b.Flows, row.Agent, row.RateMpps.Median, row.Ratio.Median)
			}
			if row.Map == "" {
				continue
			}
			xflow++
			if row.Counted == nil || row.Counted.Min != 1 || row.Counted.Max != 1 {
				t.Errorf("%d flows, %s: counted %+v, want exactly all packets", b.Flows, row.Agent, row.Counted)
			}
			if row.DataPlaneCPU == nil || !(row.DataPlaneCPU.Median > 0) {
				t.Errorf("%d flows, %s: no data plane CPU", b.Flows, row.Agent)
			}
		}
		if xflow != 1 {
			t.Errorf("%d flows: %d xflow rows, want 1", b.Flows, xflow)
		}
	}
	tables := r.Tables()
	if len(tables) != 2 || len(tables[0].Rows) != 4 {
		t.Errorf("tables: %+v", tables)
	}
	for _, tb := range tables {
		for _, row := range tb.Rows {
			t.Log(row)
		}
	}
	if len(r.Plots()) != 3 {
		t.Errorf("plots: %d", len(r.Plots()))
	}
	if _, err := json.Marshal(r); err != nil {
		t.Error(err)
	}
	var missing *MissingToolsError
	if errors.As(error(&MissingToolsError{Tools: []string{"pmacctd"}}), &missing) && missing.Error() !=
		"end to end: pmacctd not installed (apt-get install pmacct)" {
		t.Errorf("missing tools message: %s", missing)
	}
}
