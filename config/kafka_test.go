package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKafkaPasswordSources(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("from-file\r\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty"), []byte("\nx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XFLOW_TEST_KAFKA_PW", "from-env")
	t.Setenv("XFLOW_TEST_KAFKA_EMPTY", "")
	base := "interfaces: [{name: eth0}]\nexport:\n  collectors:\n    - protocol: kafka\n      brokers: [k:9092]\n      topic: t\n      sasl:\n        mechanism: scram-sha-256\n        username: u\n"
	tests := []struct {
		name, extra, want, errField, errMsg string
	}{
		{"inline", "        password: inline\n", "inline", "", ""},
		{"file relative, first line", "        password_file: pw\n", "from-file", "", ""},
		{"env", "        password_env: XFLOW_TEST_KAFKA_PW\n", "from-env", "", ""},
		{"file empty first line", "        password_file: empty\n", "", "export.collectors[0].sasl.password_file", "the first line is empty"},
		{"env empty", "        password_env: XFLOW_TEST_KAFKA_EMPTY\n", "", "export.collectors[0].sasl.password_env", `environment variable "XFLOW_TEST_KAFKA_EMPTY" is empty`},
		{"env and inline", "        password_env: XFLOW_TEST_KAFKA_PW\n        password: x\n", "", "export.collectors[0].sasl.password", "one way only: password_env or password"},
		{"empty inline", "        password: ''\n", "", "export.collectors[0].sasl.password", "must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(filepath.Join(dir, "x.yaml"), []byte(base+tt.extra))
			if tt.errMsg != "" {
				e, ok := errors.AsType[*Error](err)
				if !ok || e.Field != tt.errField || !strings.Contains(e.Msg, tt.errMsg) {
					t.Fatalf("Parse = %v, want %s: ...%s", err, tt.errField, tt.errMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := string(cfg.Export.Collectors[0].Kafka.SASL.Password); got != tt.want {
				t.Errorf("password = %q, want %q", got, tt.want)
			}
		})
	}
}

// A configuration can be printed or logged whole: the password is not.
func TestKafkaPasswordNotPrinted(t *testing.T) {
	cfg, err := Load(filepath.Join(goodDir, "kafka.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, c := range cfg.Export.Collectors {
		if c.Kafka != nil {
			fmt.Fprintf(&b, "%v %+v %#v %s\n", *c.Kafka, *c.Kafka, *c.Kafka, c.Kafka.SASL.Password)
			slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "kafka", c.Kafka, "sasl", c.Kafka.SASL)
			slog.New(slog.NewTextHandler(&b, nil)).Info("x", "kafka", c.Kafka, "sasl", c.Kafka.SASL)
		}
	}
	out := b.String()
	for _, secret := range []string{"flows-secret", "inline-secret"} {
		if strings.Contains(out, secret) {
			t.Errorf("password %q printed:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "[redacted]") {
		t.Errorf("no [redacted] in\n%s", out)
	}
}

func TestKafkaTLSConfigServerName(t *testing.T) {
	cfg, err := Load(filepath.Join(goodDir, "kafka.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Export.Collectors[2]
	tc, err := c.TLSConfig()
	if err != nil || tc == nil || tc.ServerName != "kafka.example" || len(tc.Certificates) != 1 {
		t.Fatalf("TLSConfig = %+v, %v; want server name kafka.example and a client certificate", tc, err)
	}
	// Without server_name each broker is checked against its own host:
	// the Kafka client fills ServerName per broker.
	c.TLS.ServerName = ""
	if tc, err := c.TLSConfig(); err != nil || tc.ServerName != "" {
		t.Fatalf("TLSConfig without server_name = %+v, %v; want no ServerName", tc, err)
	}
	if tc, err := cfg.Export.Collectors[1].TLSConfig(); tc != nil || err != nil {
		t.Errorf("transport tcp: TLSConfig = %v, %v", tc, err)
	}
}

func TestCollectorEqualAndName(t *testing.T) {
	cfg, err := Load(filepath.Join(goodDir, "kafka.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := Load(filepath.Join(goodDir, "kafka.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range cfg.Export.Collectors {
		a, b := cfg.Export.Collectors[i], again.Export.Collectors[i]
		if !a.Equal(b) {
			t.Errorf("collector %d not Equal to itself loaded again", i)
		}
		for j := range cfg.Export.Collectors {
			if i != j && a.Equal(again.Export.Collectors[j]) {
				t.Errorf("collectors %d and %d Equal", i, j)
			}
		}
	}
	b := again.Export.Collectors[1]
	b.Kafka.Brokers = append([]string(nil), b.Kafka.Brokers...)
	b.Kafka.Brokers[0] = "other:9092"
	if cfg.Export.Collectors[1].Equal(b) {
		t.Error("different brokers are Equal")
	}
	if got := cfg.Export.Collectors[1].Name(); got != "kafka://kafka1.example:9092,[2001:db8::9]:9092/flows" {
		t.Errorf("Name = %q", got)
	}
	if got := cfg.Export.Collectors[0].Name(); got != "127.0.0.1:4739" {
		t.Errorf("Name = %q", got)
	}
}
