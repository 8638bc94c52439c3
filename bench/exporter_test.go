package bench

import (
	"context"
	"testing"

	"github.com/xflow-net/xflow/internal/testenv"
)

func TestRunExporterQuick(t *testing.T) {
	testenv.RequireRoot(t)
	r, err := RunExporter(context.Background(), Options{Quick: true, Runs: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) == 0 {
		t.Fatal("no rows")
	}
	for _, row := range r.Rows {
		t.Logf("%+v", row)
		if row.Exported != uint64(row.Flows)*uint64(len(row.Rate.Runs)) {
			t.Errorf("%s/%d: exported %d records, want %d per run (%d runs)", row.Kind, row.Flows, row.Exported, row.Flows, len(row.Rate.Runs))
		}
		if len(row.Rate.Runs) != 1 {
			t.Errorf("%s/%d: %d runs, want 1 (quick)", row.Kind, row.Flows, len(row.Rate.Runs))
		}
		for name, s := range map[string]Stat{"rate": row.Rate, "cpu": row.CPUNsPerFlow, "scan": row.ScanMs, "bytes": row.BytesPerFlow} {
			if !(s.Median > 0) {
				t.Errorf("%s/%d: %s %v, want > 0", row.Kind, row.Flows, name, s.Median)
			}
		}
		if row.Messages == 0 || row.KernelStoreBytes == 0 {
			t.Errorf("%s/%d: %d messages, %d store bytes", row.Kind, row.Flows, row.Messages, row.KernelStoreBytes)
		}
	}
	if len(r.Tables()) == 0 || len(r.Tables()[0].Rows) != len(r.Rows) {
		t.Error("the table does not hold every row")
	}
	if p := r.Plots(); len(p) != 2 || len(p[0].Series) == 0 {
		t.Errorf("plots: %+v", p)
	}
}
