// Package control is the daemon's control socket: a unix socket on which
// `xflow flows` asks the running daemon for its live flows.
package control

import (
	"encoding/gob"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xflow-net/xflow/flow"
)

// Dir holds the daemons' control sockets.
const Dir = "/run/xflow"

// SocketPath is the control socket of the daemon that pins its maps under
// pinPath (one daemon per pin path).
func SocketPath(pinPath string) string {
	name := strings.ReplaceAll(strings.Trim(filepath.Clean(pinPath), "/"), "/", "_")
	return filepath.Join(Dir, name+".sock")
}

// Answers says whether a live daemon answers on the control socket.
func Answers(path string) bool {
	c, err := net.DialTimeout("unix", path, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Snapshotter is what the control socket serves: the live flows with
// their cumulative counts (exporter.Exporter).
type Snapshotter interface {
	Snapshot() ([]flow.Record, error)
}

// Serve answers `xflow flows` on a unix socket (mode 0600) until stop is
// called: each connection gets src's live flows, gob encoded, and is
// closed. stop removes the socket.
func Serve(path string, src Snapshotter, log *slog.Logger) (stop func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// A socket file left by a daemon that died is in the way; one that a
	// live daemon answers on is not ours to take.
	if Answers(path) {
		return nil, fmt.Errorf("control socket %s: another xflow daemon answers there (same pin_path?)", path)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	stop = func() {
		l.Close()
		os.Remove(path)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go answer(c, src, log)
		}
	}()
	return stop, nil
}

// answer sends src's flows on one connection and closes it.
func answer(c net.Conn, src Snapshotter, log *slog.Logger) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	recs, err := src.Snapshot()
	if err != nil {
		log.Warn("control: snapshot", "err", err)
		return
	}
	if err := gob.NewEncoder(c).Encode(recs); err != nil {
		log.Debug("control: send", "err", err)
	}
}

// ErrNoDaemon says no daemon answers on the control socket.
var ErrNoDaemon = errors.New("no xflow daemon answers")

// FetchFlows asks the daemon on the control socket for its live flows.
func FetchFlows(path string) ([]flow.Record, error) {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w on %s: %v", ErrNoDaemon, path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var recs []flow.Record
	if err := gob.NewDecoder(c).Decode(&recs); err != nil {
		return nil, fmt.Errorf("read flows from %s: %w", path, err)
	}
	return recs, nil
}
