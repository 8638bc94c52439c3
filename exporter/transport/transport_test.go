package transport

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestUDP(t *testing.T) {
	for _, network := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(network, func(t *testing.T) {
			pc, err := net.ListenPacket("udp", network)
			if err != nil {
				if strings.HasPrefix(network, "[") {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				t.Fatal(err)
			}
			defer pc.Close()
			c, err := DialUDP(context.Background(), pc.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			want := []string{"first", strings.Repeat("x", 1400), "third"}
			for _, m := range want {
				if err := c.Send([]byte(m)); err != nil {
					t.Fatalf("Send: %v", err)
				}
			}
			buf := make([]byte, 65536)
			for _, w := range want {
				_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					t.Fatal(err)
				}
				if string(buf[:n]) != w {
					t.Fatalf("got datagram %.20q (%d bytes), want %.20q (%d bytes)", buf[:n], n, w, len(w))
				}
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.Send([]byte("late")); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Send after Close: %v, want net.ErrClosed", err)
			}
		})
	}
}

func TestUDPClosedPort(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()

	c, err := DialUDP(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	refused := 0
	for i := range 20 {
		start := time.Now()
		err := c.Send([]byte("nobody listens"))
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("Send %d took %s", i, d)
		}
		switch {
		case err == nil:
		case errors.Is(err, syscall.ECONNREFUSED):
			refused++
		default:
			t.Fatalf("Send %d: %v, want nil or ECONNREFUSED", i, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%d of 20 sends returned ECONNREFUSED", refused)
}

// The test collector's framing: a 4-byte big-endian length, then the
// payload.
