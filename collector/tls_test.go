package collector

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a certificate for 127.0.0.1 and ::1 (server) or a client
// certificate.
func (ca *testCA) issue(t *testing.T, cn string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestListenTLSErrors(t *testing.T) {
	ca := newTestCA(t)
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "collector", true)}}
	for _, o := range []Options{
		{Listen: "tls://127.0.0.1:0"},               // no configuration
		{Listen: "tcp://127.0.0.1:0", TLS: cfg},     // a configuration for a plain listener
		{Listen: "udp://127.0.0.1:0", TLS: cfg},     // or for UDP
		{Listen: "127.0.0.1:0", TLS: cfg},           // UDP too
		{Listen: "tls://127.0.0.1", TLS: cfg},       // no port
		{Listen: "dtls://127.0.0.1:0", TLS: cfg},    // not offered
		{Listen: "tls://nonsense:99999", TLS: cfg},  // bad port
		{Listen: "tls://[::1]:4739:1", TLS: cfg},    // bad address
		{Listen: "tls://127.0.0.1:-1", TLS: nil},    // both
		{Listen: "tls:/127.0.0.1:4739", TLS: cfg},   // a typo
		{Listen: "TLS://127.0.0.1:4739", TLS: cfg},  // schemes are lower case
		{Listen: "tls://127.0.0.1:4739/", TLS: cfg}, // not a URL
	} {
		if c, err := Listen(context.Background(), o); err == nil {
			c.Close()
			t.Errorf("Listen(%q, TLS %v): no error", o.Listen, o.TLS != nil)
		}
	}
}

// listenTLS starts a tls:// collector; clientCA, if set, requires client
// certificates it signed.
func listenTLS(t *testing.T, ca, clientCA *testCA) *Collector {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "collector", true)}}
	if clientCA != nil {
		cfg.ClientCAs = clientCA.pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	c, err := Listen(context.Background(), Options{Listen: "tls://127.0.0.1:0", TLS: cfg, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dialTLS(t *testing.T, c *Collector, ca *testCA, certs ...tls.Certificate) (*tls.Conn, error) {
	t.Helper()
	conn, err := tls.Dial("tcp", c.Addr().String(), &tls.Config{RootCAs: ca.pool, Certificates: certs, ServerName: "127.0.0.1"})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { conn.Close() })
	return conn, nil
}

// The same stream as over TCP, over TLS: the same records, framing and
// sessions; and the collector ends it with a close_notify and a FIN, and
// reads what was sent before.
func TestTLS(t *testing.T) {
	base := runtime.NumGoroutine()
	ca := newTestCA(t)
	c := listenTLS(t, ca, nil)
	if !strings.HasPrefix(c.Addr().String(), "127.0.0.1:") || c.Addr().Network() != "tcp" {
		t.Fatalf("Addr %s %s", c.Addr().Network(), c.Addr())
	}
	conn, err := dialTLS(t, c, ca)
	if err != nil {
		t.Fatal(err)
	}
	exporter := conn.LocalAddr().String()
	stream := append(templatesMessage(0), dataMessage(0)...)
	// In pieces that cut the messages, each its own TLS record.
	for b := stream; len(b) > 0; {
		n := min(len(b), 37)
		if _, err := conn.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
	expectRecords(t, c, exporter, wantA, wantB, wantC)
	waitStats(t, c, Stats{Messages: 2, Records: 3, TemplateRecords: 5, OptionsRecords: 3, Connections: 1})

	// Not TLS: the handshake fails and is counted; nothing is decoded.
	plain, err := net.Dial("tcp", c.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.Write(templatesMessage(0))
	plain.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, plain) // the collector's alert, then its close
	waitStats(t, c, Stats{Messages: 2, Records: 3, TemplateRecords: 5, OptionsRecords: 3, Connections: 2, HandshakeErrors: 1})

	// A graceful close: close_notify and FIN; what the exporter sends
	// until it notices is still read.
	closed := make(chan struct{})
	go func() {
		c.Close()
		close(closed)
	}()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after Close: %v, want EOF (close_notify)", err)
	}
	conn.Write(message(6, 1, set(256, 0, recD)))
	conn.Close()
	select {
	case <-closed:
	case <-time.After(time.Second):
		t.Fatal("Close waited for its drain timeout, not for the exporter's end")
	}
	if st := c.Stats(); st.Records != 4 || st.Messages != 3 || st.DecodeErrors != 0 {
		t.Fatalf("stats after close %+v", st)
	}
	checkGoroutines(t, base)
}

func TestTLSClientCertificates(t *testing.T) {
	ca, clientCA := newTestCA(t), newTestCA(t)
	c := listenTLS(t, ca, clientCA)

	// No certificate, or one another CA signed: refused at the handshake
	// (with TLS 1.3, the client hears it at its first read).
	for _, certs := range [][]tls.Certificate{nil, {ca.issue(t, "exporter", false)}} {
		conn, err := dialTLS(t, c, ca, certs...)
		if err == nil {
			conn.Write(templatesMessage(0))
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "remote error" {
			t.Fatalf("%d certificates: %v, want a remote error", len(certs), err)
		}
	}
	waitStats(t, c, Stats{Connections: 2, HandshakeErrors: 2})

	conn, err := dialTLS(t, c, ca, clientCA.issue(t, "exporter", false))
	if err != nil {
		t.Fatal(err)
	}
	conn.Write(append(templatesMessage(0), dataMessage(0)...))
	expectRecords(t, c, conn.LocalAddr().String(), wantA, wantB, wantC)
	waitStats(t, c, Stats{Messages: 2, Records: 3, TemplateRecords: 5, OptionsRecords: 3, Connections: 3, HandshakeErrors: 2})
}

// A client that connects and never begins its handshake does not hold up
// Close.
func TestTLSCloseDuringHandshake(t *testing.T) {
	base := runtime.NumGoroutine()
	c := listenTLS(t, newTestCA(t), nil)
	conn, err := net.Dial("tcp", c.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitStats(t, c, Stats{Connections: 1})
	start := time.Now()
	c.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %s", d)
	}
	if st := c.Stats(); st.HandshakeErrors != 0 {
		t.Fatalf("stats %+v: a handshake cut by Close is not an error", st)
	}
	conn.Close()
	checkGoroutines(t, base)
}
