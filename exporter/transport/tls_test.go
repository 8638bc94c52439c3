package transport_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xflow-net/xflow/collector"
	"github.com/xflow-net/xflow/exporter/ipfix"
	"github.com/xflow-net/xflow/exporter/transport"
	"github.com/xflow-net/xflow/flow"
)

// pki is a test CA with a server certificate (127.0.0.1, ::1, localhost)
// and a client certificate, as PEM files in a temporary directory.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
	pool                                             *x509.CertPool
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTpl, caTpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	p := &pki{pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	p.ca = writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP, dns []string) (certFile, keyFile string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
			DNSNames:     dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, dir, cn+".pem", "CERTIFICATE", der), writePEM(t, dir, cn+".key", "PRIVATE KEY", pkcs8)
	}
	p.serverCert, p.serverKey = leaf(2, "collector", x509.ExtKeyUsageServerAuth,
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, []string{"localhost"})
	p.clientCert, p.clientKey = leaf(3, "exporter", x509.ExtKeyUsageClientAuth, nil, nil)
	return p
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// serverConfig is the collector's configuration; clientCAs, if set,
// requires client certificates signed by it.
func (p *pki) serverConfig(t *testing.T, clientCAs *pki, maxVersion uint16) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MaxVersion: maxVersion}
	if clientCAs != nil {
		cfg.ClientCAs = clientCAs.pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg
}

func logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

func listenTLS(t *testing.T, cfg *tls.Config) *collector.Collector {
	t.Helper()
	c, err := collector.Listen(context.Background(), collector.Options{Listen: "tls://127.0.0.1:0", TLS: cfg, Logger: logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(s string) [16]byte { return netip.MustParseAddr(s).As16() }

// records are what the tests export.
var (
	t0      = uint64(time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC).UnixMilli())
	records = []flow.Export{
		{
			Key: flow.Key{Src: addrOf("::ffff:10.0.0.1"), Dst: addrOf("::ffff:10.0.0.2"), SrcPort: 1234, DstPort: 443,
				IfIndex: 7, VLAN: 100, Proto: 6, IPVersion: 4, Direction: flow.Ingress},
			Packets: 10, Bytes: 1234, StartMs: t0, EndMs: t0 + 1500, TCPFlags: 0x1b, TOS: 0x10, EndReason: flow.IdleTimeout,
		},
		{
			Key: flow.Key{Src: addrOf("2001:db8::1"), Dst: addrOf("2001:db8::2"), SrcPort: 53, DstPort: 40000,
				IfIndex: 3, Proto: 17, IPVersion: 6, Direction: flow.Egress},
			Packets: 1, Bytes: 80, StartMs: t0 + 2000, EndMs: t0 + 2005, EndReason: flow.ActiveTimeout,
		},
	}
	wantRecords = []collector.Record{
		{
			Src: "10.0.0.1", Dst: "10.0.0.2", SrcPort: 1234, DstPort: 443, Proto: 6, Iface: "veth0", Direction: "ingress",
			VLAN: 100, Packets: 10, Bytes: 1234, TCPFlags: 0x1b, Start: t0, End: t0 + 1500,
			First: "2026-11-22T10:00:00.123Z", Last: "2026-11-22T10:00:01.623Z",
			FlowEndReason: 1, ObservationDomain: 42, IfIndex: 7, TOS: 0x10, IPVersion: 4,
		},
		{
			Src: "2001:db8::1", Dst: "2001:db8::2", SrcPort: 53, DstPort: 40000, Proto: 17, Iface: "eth1", Direction: "egress",
			Packets: 1, Bytes: 80, Start: t0 + 2000, End: t0 + 2005,
			First: "2026-11-22T10:00:02.123Z", Last: "2026-11-22T10:00:02.128Z",
			FlowEndReason: 2, ObservationDomain: 42, IfIndex: 3, IPVersion: 6,
		},
	}
)

// export sends the templates and the records over st, as the collector
// sink does on each connection.
func export(t *testing.T, st *transport.Stream) {
	t.Helper()
	enc := ipfix.NewEncoder(ipfix.Options{ObservationDomain: 42})
	now := time.Now()
	ifaces := []flow.Interface{{Index: 7, Name: "veth0"}, {Index: 3, Name: "eth1"}}
	if err := enc.Templates(now, ipfix.Stats{}, ifaces, st.Send); err != nil {
		t.Fatalf("templates: %v", err)
	}
	if err := enc.Encode(now, records, st.Send); err != nil {
		t.Fatalf("encode: %v", err)
	}
	if enc.Sent() != uint64(len(records)) {
		t.Fatalf("sent %d records, want %d", enc.Sent(), len(records))
	}
}

// expectRecords checks that the collector decoded the records export
// sent, from one exporter, and returns its address.
func expectRecords(t *testing.T, c *collector.Collector) string {
	t.Helper()
	exporter := ""
	for i, want := range wantRecords {
		select {
		case got := <-c.Records():
			if i == 0 {
				exporter = got.Exporter
				if !strings.HasPrefix(exporter, "127.0.0.1:") {
					t.Fatalf("exporter %q", exporter)
				}
			}
			want.Exporter = exporter
			if got != want {
				t.Fatalf("record %d:\ngot  %+v\nwant %+v", i, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("record %d: none after 5 s; stats %+v", i, c.Stats())
		}
	}
	return exporter
}

// waitFor polls cond every 5 ms for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dial(t *testing.T, addr string, cfg *tls.Config) (*transport.Stream, error) {
	t.Helper()
	return transport.DialTLSStream(context.Background(), addr, cfg, 5*time.Second, 5*time.Second)
}

// tlsVersions runs f with the collector limited to TLS 1.2 and allowing
// TLS 1.3: the client certificate's refusal comes at different times.
func tlsVersions(t *testing.T, f func(t *testing.T, maxVersion uint16)) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), func(t *testing.T) { f(t, v) })
	}
}

// IPFIX messages built by the encoder, over TLS, to the collector, which
// decodes every record.
func TestTLSExport(t *testing.T) {
	tlsVersions(t, func(t *testing.T, maxVersion uint16) {
		base := runtime.NumGoroutine()
		p := newPKI(t, "test")
		c := listenTLS(t, p.serverConfig(t, nil, maxVersion))
		addr := c.Addr().String()
		cfg, err := transport.TLSConfig(p.ca, "", "", "", addr)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.MinVersion != tls.VersionTLS12 || cfg.ServerName != "127.0.0.1" || len(cfg.Certificates) != 0 {
			t.Fatalf("config: min version %x, server name %q, %d certificates", cfg.MinVersion, cfg.ServerName, len(cfg.Certificates))
		}
		st, err := dial(t, addr, cfg)
		if err != nil {
			t.Fatalf("DialTLSStream: %v", err)
		}
		defer st.Close()
		export(t, st)
		expectRecords(t, c)
		st2 := c.Stats()
		if st2.Records != 2 || st2.SequenceGaps != 0 || st2.DecodeErrors != 0 || st2.MissingTemplate != 0 || st2.HandshakeErrors != 0 || st2.Connections != 1 {
			t.Fatalf("collector stats %+v", st2)
		}
		// Written counts the socket's bytes, as Acked does.
		waitFor(t, 5*time.Second, "the collector to acknowledge everything", func() bool { return st.Acked() == st.Written() })
		if err := st.Alive(); err != nil {
			t.Fatalf("Alive: %v", err)
		}
		// The collector closing (close_notify, then FIN) is noticed; the
		// collector is done once the exporter has closed its side.
		closed := make(chan struct{})
		go func() {
			c.Close()
			close(closed)
		}()
		waitFor(t, 5*time.Second, "Alive to notice the collector closing", func() bool {
			err := st.Alive()
			if err != nil && !errors.Is(err, transport.ErrPeerClosed) {
				t.Fatalf("Alive: %v, want ErrPeerClosed", err)
			}
			return err != nil
		})
		if err := st.Send([]byte("late")); !errors.Is(err, transport.ErrPeerClosed) {
			t.Fatalf("Send after the collector closed: %v, want ErrPeerClosed", err)
		}
		st.Close()
		select {
		case <-closed:
		case <-time.After(time.Second):
			t.Fatal("the collector's Close waited for its drain timeout, not for the exporter's end")
		}
		if st := c.Stats(); st.DecodeErrors != 0 {
			t.Fatalf("collector stats %+v", st)
		}
		checkGoroutines(t, base)
	})
}

func checkGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutine leak: %d > %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A collector whose certificate the configured CA did not sign is refused,
// clearly, and gets nothing.
func TestTLSWrongCA(t *testing.T) {
	tlsVersions(t, func(t *testing.T, maxVersion uint16) {
		p, other := newPKI(t, "collector's"), newPKI(t, "another")
		c := listenTLS(t, p.serverConfig(t, nil, maxVersion))
		addr := c.Addr().String()
		cfg, err := transport.TLSConfig(other.ca, "", "", "", addr)
		if err != nil {
			t.Fatal(err)
		}
		st, err := dial(t, addr, cfg)
		if err == nil {
			st.Close()
			t.Fatal("DialTLSStream with the wrong CA: no error")
		}
		want := "collector " + addr + ": TLS handshake: the collector's certificate is not trusted by the configured CA (ca " + other.ca + "): "
		if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Errorf("error %q, want %q...certificate signed by unknown authority", err, want)
		}
		if _, ok := errors.AsType[x509.UnknownAuthorityError](err); !ok {
			t.Errorf("error %v does not wrap an x509.UnknownAuthorityError", err)
		}
		waitFor(t, 5*time.Second, "the collector's handshake error", func() bool { return c.Stats().HandshakeErrors == 1 })
		if st := c.Stats(); st.Messages != 0 || st.Records != 0 || st.Connections != 1 {
			t.Errorf("collector stats %+v, want nothing received", st)
		}

		// The right CA, the wrong name.
		cfg, err = transport.TLSConfig(p.ca, "", "", "collector.example", addr)
		if err != nil {
			t.Fatal(err)
		}
		if st, err = dial(t, addr, cfg); err == nil {
			st.Close()
			t.Fatal("DialTLSStream with the wrong server name: no error")
		}
		if want := "the collector's certificate is not valid for the name collector.example"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q, want ...%s...", err, want)
		}

		// The right CA and a name the certificate holds.
		cfg, err = transport.TLSConfig(p.ca, "", "", "localhost", addr)
		if err != nil {
			t.Fatal(err)
		}
		st, err = dial(t, addr, cfg)
		if err != nil {
			t.Fatalf("server name localhost: %v", err)
		}
		export(t, st)
		expectRecords(t, c)
		st.Close()
	})
}

// A collector that requires client certificates refuses an exporter
// without one, or with one it does not trust, at the handshake, and takes
// one signed by its client CA.
func TestTLSMutual(t *testing.T) {
	tlsVersions(t, func(t *testing.T, maxVersion uint16) {
		p, stranger, impostor := newPKI(t, "test"), newPKI(t, "stranger"), newPKI(t, "test")
		c := listenTLS(t, p.serverConfig(t, p, maxVersion))
		addr := c.Addr().String()

		cfg, err := transport.TLSConfig(p.ca, "", "", "", addr)
		if err != nil {
			t.Fatal(err)
		}
		st, err := dial(t, addr, cfg)
		if err == nil {
			st.Close()
			t.Fatal("DialTLSStream without a client certificate: no error")
		}
		if want := "collector " + addr + ": TLS handshake: the collector requires a client certificate (tls.cert and tls.key): "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error %q, want %q...", err, want)
		}

		// A certificate from another CA: the collector names the CA it
		// wants, and crypto/tls sends no certificate.
		cfg, err = transport.TLSConfig(p.ca, stranger.clientCert, stranger.clientKey, "", addr)
		if err != nil {
			t.Fatal(err)
		}
		if st, err = dial(t, addr, cfg); err == nil {
			st.Close()
			t.Fatal("DialTLSStream with a client certificate of another CA: no error")
		}
		if want := "the collector requires a client certificate issued by a CA it names (CN=test CA), and the configured one is not: "; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q, want ...%s...", err, want)
		}

		// A certificate from an impostor CA of the same name: sent, and
		// refused.
		cfg, err = transport.TLSConfig(p.ca, impostor.clientCert, impostor.clientKey, "", addr)
		if err != nil {
			t.Fatal(err)
		}
		if st, err = dial(t, addr, cfg); err == nil {
			st.Close()
			t.Fatal("DialTLSStream with an untrusted client certificate: no error")
		}
		if want := "collector " + addr + ": TLS handshake: the collector refused the client certificate: "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error %q, want %q...", err, want)
		}
		waitFor(t, 5*time.Second, "the collector's handshake errors", func() bool { return c.Stats().HandshakeErrors == 3 })
		if st := c.Stats(); st.Messages != 0 || st.Records != 0 {
			t.Errorf("collector stats %+v, want nothing received", st)
		}

		cfg, err = transport.TLSConfig(p.ca, p.clientCert, p.clientKey, "", addr)
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Certificates) != 1 {
			t.Fatalf("%d client certificates, want 1", len(cfg.Certificates))
		}
		start := time.Now()
		st, err = dial(t, addr, cfg)
		if err != nil {
			t.Fatalf("DialTLSStream with a client certificate: %v", err)
		}
		defer st.Close()
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("DialTLSStream took %s", d) // a collector that accepts sends its session tickets at once
		}
		export(t, st)
		expectRecords(t, c)
		if st := c.Stats(); st.HandshakeErrors != 3 || st.Connections != 4 {
			t.Errorf("collector stats %+v", st)
		}
	})
}

// A collector that is not there, or does not speak TLS.
func TestTLSDialFailures(t *testing.T) {
	p := newPKI(t, "test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	cfg, err := transport.TLSConfig(p.ca, "", "", "", addr)
	if err != nil {
		t.Fatal(err)
	}
	// Plain TCP that says nothing: the handshake times out.
	start := time.Now()
	_, err = transport.DialTLSStream(context.Background(), addr, cfg, 200*time.Millisecond, time.Second)
	if want := "collector " + addr + ": TLS handshake: no answer within 200ms (is it a TLS collector?): "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("DialTLSStream to a silent TCP server: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("DialTLSStream took %s with a 200 ms timeout", d)
	}
	ln.Close()
	if _, err := dial(t, addr, cfg); err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("DialTLSStream to a closed port: %v, want ECONNREFUSED", err)
	}
	if _, err := dial(t, addr, nil); err == nil {
		t.Fatal("DialTLSStream without a configuration: no error")
	}
}

// The files of a TLS configuration, each problem naming its file.
func TestTLSConfigFiles(t *testing.T) {
	p, other := newPKI(t, "test"), newPKI(t, "other")
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not PEM\n"), 0o600)
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		ca, cert, key string
		role, file    string // of the *TLSFileError
		msg           string
	}{
		{ca: missing, role: "ca", file: missing, msg: "CA file " + missing + ": no such file or directory"},
		{ca: garbage, role: "ca", file: garbage, msg: "no PEM certificate found"},
		{ca: p.serverKey, role: "ca", file: p.serverKey, msg: "no PEM certificate found (no -----BEGIN CERTIFICATE----- block)"},
		{ca: dir, role: "ca", file: dir, msg: "is a directory"},
		{ca: p.ca, cert: missing, key: p.clientKey, role: "cert", file: missing, msg: "certificate file " + missing + ": no such file or directory"},
		{ca: p.ca, cert: garbage, key: p.clientKey, role: "cert", file: garbage, msg: "no PEM certificate found"},
		{ca: p.ca, cert: p.clientCert, key: missing, role: "key", file: missing, msg: "key file " + missing + ": no such file or directory"},
		{ca: p.ca, cert: p.clientCert, key: garbage, role: "key", file: garbage, msg: "failed to find any PEM data in key input"},
		{ca: p.ca, cert: p.clientCert, key: other.clientKey, role: "key", file: other.clientKey,
			msg: "key file " + other.clientKey + ": private key does not match the certificate in " + p.clientCert},
	}
	for _, tt := range tests {
		_, err := transport.TLSConfig(tt.ca, tt.cert, tt.key, "", "127.0.0.1:4740")
		fe, ok := errors.AsType[*transport.TLSFileError](err)
		if !ok {
			t.Errorf("TLSConfig(%q, %q, %q): %v, want a *TLSFileError", tt.ca, tt.cert, tt.key, err)
			continue
		}
		if fe.Role != tt.role || fe.File != tt.file || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("TLSConfig(%q, %q, %q): %s (role %s, file %s), want role %s, file %s, ...%s...",
				tt.ca, tt.cert, tt.key, err, fe.Role, fe.File, tt.role, tt.file, tt.msg)
		}
	}
	for _, args := range [][5]string{
		{"", "", "", "", "127.0.0.1:4740"},             // no CA
		{p.ca, p.clientCert, "", "", "127.0.0.1:4740"}, // cert without key
		{p.ca, "", p.clientKey, "", "127.0.0.1:4740"},  // key without cert
		{p.ca, "", "", "", "no port"},                  // no server name
	} {
		if _, err := transport.TLSConfig(args[0], args[1], args[2], args[3], args[4]); err == nil {
			t.Errorf("TLSConfig%q: no error", args)
		}
	}
	cfg, err := transport.TLSConfig(p.ca, p.clientCert, p.clientKey, "", "[::1]:4740")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "::1" || len(cfg.Certificates) != 1 || cfg.RootCAs == nil || cfg.InsecureSkipVerify {
		t.Errorf("config %+v", cfg)
	}
}
