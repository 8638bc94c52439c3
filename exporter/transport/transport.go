// Package transport carries encoded export messages (IPFIX or NetFlow byte
// slices, one message each) to one collector: over UDP (Conn), or over one
// TCP connection (Stream), which the exporter's collector sink redials and
// encodes for afresh, so that each connection is its own transport session.
//
// The transports know nothing of the messages' contents: a message is the
// unit that is sent whole or not at all.
package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// Conn sends messages to one collector.
type Conn interface {
	// Send sends one message. UDP: one datagram (errors such as
	// ECONNREFUSED from an absent collector are returned but never block).
	// TCP: written to the stream.
	Send(msg []byte) error
	Close() error
}

// ErrDropped is wrapped by the error of a Send whose message was not sent
// and will not be: the UDP socket buffer was full.
var ErrDropped = errors.New("transport: message dropped")

// udpConn is a connected UDP socket.
type udpConn struct {
	conn *net.UDPConn
	raw  syscall.RawConn
}

// DialUDP opens a connected UDP socket to address (host:port, IPv6 as
// [::1]:4739). The returned Conn's Send writes one datagram per message and
// never waits: when the socket's send buffer is full the datagram is dropped
// and Send returns an error wrapping ErrDropped. Once the kernel has had an
// ICMP port unreachable for an earlier datagram, a Send returns an error
// wrapping syscall.ECONNREFUSED (that datagram was still sent): callers
// should count such errors, not stop on them.
func DialUDP(ctx context.Context, address string) (Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", address)
	if err != nil {
		return nil, err
	}
	uc := c.(*net.UDPConn)
	raw, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, err
	}
	return &udpConn{conn: uc, raw: raw}, nil
}

func (u *udpConn) Send(msg []byte) error {
	var werr error
	// The callback returns true whatever happened, so RawConn.Write never
	// parks the goroutine waiting for the socket to become writable: a full
	// send buffer is an EAGAIN, reported as a drop.
	err := u.raw.Write(func(fd uintptr) bool {
		for {
			_, werr = syscall.Write(int(fd), msg)
			if werr != syscall.EINTR {
				return true
			}
		}
	})
	if err != nil {
		return fmt.Errorf("udp send: %w", err) // closed
	}
	switch {
	case werr == nil:
		return nil
	case errors.Is(werr, syscall.EAGAIN):
		return fmt.Errorf("udp send to %s: %w: socket send buffer full", u.conn.RemoteAddr(), ErrDropped)
	}
	return &net.OpError{Op: "write", Net: "udp", Source: u.conn.LocalAddr(), Addr: u.conn.RemoteAddr(), Err: os.NewSyscallError("write", werr)}
}

func (u *udpConn) Close() error { return u.conn.Close() }
