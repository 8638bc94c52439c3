package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// Stream is one TCP connection to a collector, in the clear (DialStream)
// or with TLS (DialTLSStream). Unlike TCP (which queues encoded messages
// across reconnections), a Stream is one transport session: its owner
// encodes for it, so that sequence numbers and templates start afresh with
// every connection.
type Stream struct {
	conn         net.Conn     // what messages are written to: tcp, or a *tls.Conn over it
	tcp          *net.TCPConn // the socket beneath
	tls          *tls.Conn    // nil in the clear
	writeTimeout time.Duration
	written      uint64 // bytes written to the socket (TLS: records, handshake included)
	err          error  // the first failure of Send or Alive, returned ever after; Close then sends no TLS close_notify
	probe        [1]byte
	discard      []byte // TLS: application data a collector should never send
}

// DialStream connects to address, giving up after timeout.
func DialStream(ctx context.Context, address string, timeout, writeTimeout time.Duration) (*Stream, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	return &Stream{conn: tc, tcp: tc, writeTimeout: writeTimeout}, nil
}

// ErrPeerClosed says the collector closed the connection.
var ErrPeerClosed = errors.New("collector closed the connection")

// tlsReadWait bounds how long Alive lets crypto/tls read the records that
// are already waiting on the socket: they are there, so this is only
// waited in full when a record is still in flight, or after post-handshake
// messages, when crypto/tls goes on looking for application data.
const tlsReadWait = 2 * time.Millisecond

// Alive reports an error once the collector has closed or reset the
// connection, and from then on (a Stream that failed stays failed).
// Collectors never send to an exporter, so a readable end of stream means
// the collector is going away. (A non-blocking peek: Go's own Read with an
// expired deadline would not even look.)
//
// With TLS, a collector does send records, though never application data:
// TLS 1.3 session tickets and key updates after the handshake, and a
// close_notify alert (then, or later, its FIN) when it closes, or another
// alert when it gives up on the session (for instance because it refused
// the client certificate, which TLS 1.3 tells the client only after its
// handshake). Alive peeks on the TCP socket as in the clear; when it finds
// bytes there it lets crypto/tls read them, for at most tlsReadWait: a
// close_notify is ErrPeerClosed, another alert an error, and
// post-handshake messages are handled and forgotten.
func (s *Stream) Alive() error {
	if s.err != nil {
		return s.err
	}
	readable, err := s.peek()
	if err == nil && readable && s.tls != nil {
		err = s.readTLS(tlsReadWait)
	}
	s.err = err
	return err
}

// peek looks at the socket without reading or waiting: readable is true
// when bytes are waiting, and the error is ErrPeerClosed at the end of the
// stream.
func (s *Stream) peek() (readable bool, err error) {
	raw, err := s.tcp.SyscallConn()
	if err != nil {
		return false, err
	}
	cerr := raw.Control(func(fd uintptr) { readable, err = s.peekFD(fd) })
	if cerr != nil {
		return false, cerr
	}
	return readable, err
}

func (s *Stream) peekFD(fd uintptr) (readable bool, err error) {
	for {
		n, _, err := unix.Recvfrom(int(fd), s.probe[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return false, nil
		case err != nil:
			return false, err
		case n == 0:
			return false, ErrPeerClosed
		}
		return true, nil
	}
}

// readTLS lets crypto/tls read what the collector sent, for at most wait.
func (s *Stream) readTLS(wait time.Duration) error {
	if s.discard == nil {
		s.discard = make([]byte, 512)
	}
	s.tls.SetReadDeadline(time.Now().Add(wait))
	defer s.tls.SetReadDeadline(time.Time{})
	for {
		_, err := s.tls.Read(s.discard)
		var ne net.Error
		switch {
		case err == nil:
			// Application data: not something a collector sends
			// (RFC 7011 has none); forgotten.
			continue
		case errors.As(err, &ne) && ne.Timeout():
			// Nothing more (a timeout does not break the TLS session).
			return nil
		case errors.Is(err, io.EOF):
			return ErrPeerClosed // close_notify, or a FIN between records
		default:
			return err // an alert from the collector, or a broken connection
		}
	}
}

// Send writes one whole message, failing if the collector is gone or does
// not take it within the write timeout (a stalled collector).
func (s *Stream) Send(msg []byte) error {
	if err := s.Alive(); err != nil {
		return err
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	n, err := s.conn.Write(msg)
	if s.tls == nil {
		s.written += uint64(n) // with TLS, counted by countingConn
	}
	if err != nil {
		s.err = fmt.Errorf("write: %w", err)
		return s.err
	}
	return nil
}

// Written is the bytes written to the connection so far: to the TCP
// socket, so that it compares with Acked. With TLS that is the records
// (header, encryption overhead) and the handshake's bytes, not the
// messages' bytes.
func (s *Stream) Written() uint64 { return s.written }

// Acked is the bytes the collector's TCP acknowledged (TCP_INFO
// tcpi_bytes_acked): what was written beyond it may be lost with the
// connection.
func (s *Stream) Acked() uint64 {
	raw, err := s.tcp.SyscallConn()
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

// Close closes the connection. A TLS session that is still sound ends
// with a close_notify alert first (crypto/tls gives that write at most
// 5 s); one whose Send or Alive failed is just closed.
func (s *Stream) Close() error {
	if s.tls != nil && s.err == nil {
		return s.tls.Close()
	}
	return s.tcp.Close()
}

// countingConn counts the bytes written to the socket under a TLS
// session, for Stream.Written.
type countingConn struct {
	*net.TCPConn
	n *uint64
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.TCPConn.Write(b)
	*c.n += uint64(n)
	return n, err
}
