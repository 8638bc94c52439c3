package control

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/xflow-net/xflow/flow"
)

type fixed []flow.Record

func (f fixed) Snapshot() ([]flow.Record, error) { return f, nil }

// TestServeFetch: FetchFlows gets what the served Snapshotter returns; a
// second Serve on the same path is refused while the first answers; after
// stop the socket is gone and FetchFlows says no daemon answers.
func TestServeFetch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	want := fixed{{Key: flow.Key{SrcPort: 1234, DstPort: 80, Proto: 6, IPVersion: 4}, Value: flow.Value{Packets: 3, Bytes: 300}}}
	log := slog.New(slog.DiscardHandler)
	stop, err := Serve(path, want, log)
	if err != nil {
		t.Fatal(err)
	}
	if !Answers(path) {
		t.Error("Answers: false while serving")
	}
	if _, err := Serve(path, want, log); err == nil {
		t.Error("a second Serve on a socket that answers succeeded")
	}
	got, err := FetchFlows(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != want[0] {
		t.Errorf("FetchFlows: %+v, want %+v", got, want)
	}
	stop()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after stop: %v", err)
	}
	if _, err := FetchFlows(path); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("FetchFlows after stop: %v, want ErrNoDaemon", err)
	}
}

func TestSocketPath(t *testing.T) {
	if got := SocketPath("/sys/fs/bpf/xflow/"); got != "/run/xflow/sys_fs_bpf_xflow.sock" {
		t.Errorf("SocketPath: %s", got)
	}
}
