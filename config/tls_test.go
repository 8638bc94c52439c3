package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xflow-net/xflow/exporter/transport"
)

// Relative file names are taken from the configuration file's directory;
// absolute ones are kept.
func TestTLSFileNames(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"ca.pem", "client.pem", "client.key"} {
		data, err := os.ReadFile(filepath.Join("../testdata/configs/tls", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	abs, err := filepath.Abs("../testdata/configs/tls/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	src := "interfaces: [{name: eth0}]\nexport:\n  collectors:\n" +
		"    - {address: 'collector.example:4740', transport: tls, tls: {ca: ca.pem, cert: ./client.pem, key: client.key}}\n" +
		"    - {address: '127.0.0.1:4740', transport: tls, tls: {ca: " + abs + "}}\n"
	cfg, err := Parse(filepath.Join(dir, "xflow.yaml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := TLS{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "client.pem"), Key: filepath.Join(dir, "client.key")}
	if got := cfg.Export.Collectors[0].TLS; got != want {
		t.Errorf("tls = %+v, want %+v", got, want)
	}
	if got := cfg.Export.Collectors[1].TLS; got != (TLS{CA: abs}) {
		t.Errorf("tls = %+v, want ca %s", got, abs)
	}

	// The same file elsewhere: its files are not there.
	_, err = Parse(filepath.Join(t.TempDir(), "xflow.yaml"), []byte(src))
	if e, ok := errors.AsType[*Error](err); !ok || e.Field != "export.collectors[0].tls.ca" || !strings.Contains(e.Msg, "no such file or directory") {
		t.Errorf("Parse elsewhere: %v", err)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v does not wrap the file's error", err)
	}
}

func TestCollectorTLSConfig(t *testing.T) {
	cfg, err := Load(filepath.Join(goodDir, "tls.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cols := cfg.Export.Collectors
	for i, want := range []struct {
		serverName string
		certs      int
	}{{"127.0.0.1", 0}, {"collector.example", 1}} {
		tc, err := cols[i].TLSConfig()
		if err != nil {
			t.Fatalf("collector %d: %v", i, err)
		}
		if tc.ServerName != want.serverName || len(tc.Certificates) != want.certs || tc.RootCAs == nil ||
			tc.MinVersion != tls.VersionTLS12 || tc.InsecureSkipVerify {
			t.Errorf("collector %d: server name %q, %d certificates, min version %x", i, tc.ServerName, len(tc.Certificates), tc.MinVersion)
		}
	}
	if tc, err := cols[2].TLSConfig(); tc != nil || err != nil {
		t.Errorf("tcp collector: %v, %v; want nil, nil", tc, err)
	}
}

// A client key that is not the certificate's.
func TestTLSKeyMismatch(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	src := "interfaces: [{name: eth0}]\nexport:\n  collectors:\n    - address: 127.0.0.1:4740\n      transport: tls\n      tls:\n" +
		"        ca: ../testdata/configs/tls/ca.pem\n        cert: ../testdata/configs/tls/client.pem\n        key: " + keyFile + "\n"
	_, err = Parse("m.yaml", []byte(src))
	want := "m.yaml:9: export.collectors[0].tls.key: key file " + keyFile +
		": private key does not match the certificate in ../testdata/configs/tls/client.pem"
	if err == nil || err.Error() != want {
		t.Fatalf("Parse: %v\nwant %s", err, want)
	}
	if _, ok := errors.AsType[*transport.TLSFileError](err); !ok {
		t.Errorf("error %v does not wrap the *transport.TLSFileError", err)
	}
}

// Configurations made in code are checked the same way, without positions.
func TestValidateTLSWithoutPositions(t *testing.T) {
	cfg := Default()
	cfg.Interfaces = []Interface{defaultInterfaceNamed("eth0")}
	cfg.Export.Collectors = []Collector{{Address: "127.0.0.1:4740", Protocol: "ipfix", Transport: "tls"}}
	if err := cfg.Validate(); err == nil || err.Error() != "export.collectors[0].tls: required key is missing: transport tls needs tls.ca, the CA bundle that verifies the collector's certificate" {
		t.Errorf("Validate = %v", err)
	}
	cfg.Export.Collectors[0].TLS.CA = "/nonexistent/ca.pem"
	if err := cfg.Validate(); err == nil || err.Error() != "export.collectors[0].tls.ca: CA file /nonexistent/ca.pem: no such file or directory" {
		t.Errorf("Validate = %v", err)
	}
	cfg.Export.Collectors[0].TLS.CA = "../testdata/configs/tls/ca.pem"
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate = %v", err)
	}
	cfg.Export.Collectors[0].Transport = "udp"
	if err := cfg.Validate(); err == nil || err.Error() != "export.collectors[0].tls: tls settings need transport: tls (transport is udp)" {
		t.Errorf("Validate = %v", err)
	}
}
