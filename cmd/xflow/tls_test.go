package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xflow-net/xflow/collector"
	"github.com/xflow-net/xflow/internal/testenv"
	"github.com/xflow-net/xflow/internal/testnet"
)

// testCA makes a CA and a server certificate for 127.0.0.1 signed by it,
// and writes the CA as PEM to dir/name.
func testCA(t *testing.T, dir, name string) (caFile string, server tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "collector"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, name+".pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
}

// TestExportTLS exports IPFIX over TLS to a collector whose certificate the
// configured CA signed: every flow arrives exactly. With another CA the
// connection is refused with a clear error, nothing is sent, and the
// daemon goes on.
func TestExportTLS(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	goodCA, server := testCA(t, dir, "good-ca")
	otherCA, _ := testCA(t, dir, "other-ca")
	for _, c := range []struct {
		name, ca string
		trusted  bool
	}{{"trusted", goodCA, true}, {"wrong CA", otherCA, false}} {
		t.Run(c.name, func(t *testing.T) {
			p := testnet.NewPair(t, "xl")
			sink := newRecordSink()
			var coll *collector.Collector
			if err := p.Do(p.NSA, func() (err error) {
				coll, err = collector.Listen(t.Context(), collector.Options{Listen: "tls://127.0.0.1:0",
					TLS: &tls.Config{Certificates: []tls.Certificate{server}}, OnRecord: sink.add})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer coll.Close()
			cfg := writeConfig(t, fmt.Sprintf(`
interfaces:
  - {name: %s, ingress: xdp, egress: tc}
pin_path: %s
timeouts: {inactive: 300ms, scan_interval: 100ms}
export:
  collectors:
    - {address: %s, protocol: ipfix, transport: tls, tls: {ca: %s}}
`, p.NameA, pinDir(t), coll.Addr(), c.ca))
			d := startDaemon(t, p, cfg)
			sent, err := p.SendUDP(testnet.SideB, false, 5000, 10, 3, 100)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			if err := d.stop(t, syscall.SIGTERM); err != nil {
				t.Fatalf("xflow run: %v\n%s", err, d.stderr)
			}
			time.Sleep(200 * time.Millisecond)
			coll.Close()
			sink.mu.Lock()
			defer sink.mu.Unlock()
			if c.trusted {
				expectEqual(t, "TLS collector", sent, sink.in)
				if st := coll.Stats(); st.SequenceGaps+st.MissingTemplate+st.DecodeErrors != 0 {
					t.Errorf("collector: %+v", st)
				}
				return
			}
			if sink.n != 0 {
				t.Errorf("an untrusted collector received %d records", sink.n)
			}
			if log := d.stderr.String(); !strings.Contains(log, "not trusted by the configured CA") || !strings.Contains(log, otherCA) {
				t.Errorf("no clear error about the CA in the log:\n%s", grepLines(log, "collector"))
			}
		})
	}
}
