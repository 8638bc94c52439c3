package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// Stream is one TCP connection to a collector. Unlike TCP (which queues
// encoded messages across reconnections), a Stream is one transport
// session: its owner encodes for it, so that sequence numbers and
// templates start afresh with every connection.
type Stream struct {
	conn         *net.TCPConn
	writeTimeout time.Duration
	written      uint64
	probe        [1]byte
}

// DialStream connects to address, giving up after timeout.
func DialStream(ctx context.Context, address string, timeout, writeTimeout time.Duration) (*Stream, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	return &Stream{conn: c.(*net.TCPConn), writeTimeout: writeTimeout}, nil
}

// ErrPeerClosed says the collector closed the connection.
var ErrPeerClosed = errors.New("collector closed the connection")

// Alive reports an error once the collector has closed or reset the
// connection. Collectors never send to an exporter, so a readable end of
// stream means the collector is going away. (A non-blocking peek: Go's
// own Read with an expired deadline would not even look.)
func (s *Stream) Alive() error {
	raw, err := s.conn.SyscallConn()
	if err != nil {
		return err
	}
	var rerr error
	cerr := raw.Control(func(fd uintptr) {
		n, _, err := unix.Recvfrom(int(fd), s.probe[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
		case err != nil:
			rerr = err
		case n == 0:
			rerr = ErrPeerClosed
		}
	})
	if cerr != nil {
		return cerr
	}
	return rerr
}

// Send writes one whole message, failing if the collector is gone or does
// not take it within the write timeout (a stalled collector).
func (s *Stream) Send(msg []byte) error {
	if err := s.Alive(); err != nil {
		return err
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	n, err := s.conn.Write(msg)
	s.written += uint64(n)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// Written is the bytes written to the connection so far.
func (s *Stream) Written() uint64 { return s.written }

// Acked is the bytes the collector's TCP acknowledged (TCP_INFO
// tcpi_bytes_acked): what was written beyond it may be lost with the
// connection.
func (s *Stream) Acked() uint64 {
	raw, err := s.conn.SyscallConn()
	if err != nil {
		return 0
	}
	var acked uint64
	raw.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			acked = info.Bytes_acked
		}
	})
	// bytes_acked counts the SYN as one byte.
	if acked > 0 {
		acked--
	}
	return acked
}

// Close closes the connection.
func (s *Stream) Close() error { return s.conn.Close() }
