package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	exampleFile = "../xflow.yaml"
	goodDir     = "../testdata/configs/good"
	badDir      = "../testdata/configs/bad"
)

// defaultInterfaceNamed returns the fully defaulted interface called name.
func defaultInterfaceNamed(name string) Interface {
	ifc := defaultInterface()
	ifc.Name = name
	return ifc
}

// publicFields copies the exported fields of c, dropping the position
// bookkeeping, so that configurations can be compared with reflect.DeepEqual.
func publicFields(c *Config) Config {
	return Config{
		Interfaces: c.Interfaces,
		Datapath:   c.Datapath,
		PinPath:    c.PinPath,
		Timeouts:   c.Timeouts,
		Export:     c.Export,
		Log:        c.Log,
		Sampling:   c.Sampling,
		Filters:    c.Filters,
	}
}

func TestExampleFile(t *testing.T) {
	cfg, err := Load(exampleFile)
	if err != nil {
		t.Fatalf("Load(%s): %v", exampleFile, err)
	}
	want := publicFields(Default())
	want.Interfaces = []Interface{defaultInterfaceNamed("veth0")}
	want.Export.Collectors = []Collector{{Address: "127.0.0.1:4739", Protocol: "ipfix", Transport: "udp"}}
	want.Sampling.Rate = 1
	if got := publicFields(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("Load(%s) =\n%+v\nwant\n%+v", exampleFile, got, want)
	}
}

// TestExampleFileDocumentsEveryKey makes sure the example mentions every
// setting the decoder knows, so that it stays complete as the schema grows.
func TestExampleFileDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{
		"interfaces:", "name:", "ingress:", "egress:", "xdp_mode:", "tc_mode:",
		"datapath:", "map:", "max_flows:", "ring_size:", "pin_path:",
		"timeouts:", "active:", "inactive:", "scan_interval:",
		"export:", "observation_domain:", "template_refresh:", "mtu:", "collectors:",
		"address:", "protocol:", "transport:", "log:", "level:", "format:",
		"sampling:", "rate:", "mode:", "seed:", "filters:", "src:", "dst:", "proto:", "src_port:",
		"dst_port:", "direction:", "action:", "sampling_rate:",
	} {
		if !bytes.Contains(data, []byte("\n"+key)) && !bytes.Contains(data, []byte(" "+key)) {
			t.Errorf("%s does not mention %q", exampleFile, key)
		}
	}
	for _, kind := range MapKinds() {
		if !bytes.Contains(data, []byte(kind)) {
			t.Errorf("%s does not list map kind %q", exampleFile, kind)
		}
	}
}

func TestMinimalGetsAllDefaults(t *testing.T) {
	cfg, err := Parse("minimal.yaml", []byte("interfaces: [{name: eth0}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Interfaces: []Interface{{Name: "eth0", Ingress: "xdp", Egress: "tc", XDPMode: "auto", TCMode: "auto"}},
		Datapath:   Datapath{Map: "percpu_hash", MaxFlows: 65536, RingSize: 16 << 20},
		PinPath:    "/sys/fs/bpf/xflow",
		Timeouts:   Timeouts{Active: 60 * time.Second, Inactive: 15 * time.Second, ScanInterval: time.Second},
		Export:     Export{ObservationDomain: 1, TemplateRefresh: 60 * time.Second, MTU: 1400, Collectors: []Collector{}},
		Log:        Log{Level: "info", Format: "text"},
		Sampling:   Sampling{Mode: "random"},
		Filters:    []Filter{},
	}
	if got := publicFields(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

func TestGoodConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(goodDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no good configs found in %s: %v", goodDir, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, err := Load(file)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate after Load: %v", err)
			}
		})
	}
}

func TestGoodConfigValues(t *testing.T) {
	tests := []struct {
		file  string
		check func(t *testing.T, got Config)
	}{
		{"full.yaml", func(t *testing.T, got Config) {
			want := Config{
				Interfaces: []Interface{
					{Name: "eth0", Ingress: "tc", Egress: "none", XDPMode: "auto", TCMode: "clsact"},
					{Name: "eth1.100", Ingress: "xdp", Egress: "tc", XDPMode: "generic", TCMode: "tcx"},
					{Name: "veth-a_1", Ingress: "none", Egress: "tc", XDPMode: "auto", TCMode: "auto"},
				},
				Datapath: Datapath{Map: "ringbuf", MaxFlows: 1 << 20, RingSize: 64 << 20},
				PinPath:  "/run/xflow/bpf/",
				Timeouts: Timeouts{Active: 150 * time.Second, Inactive: 30 * time.Second, ScanInterval: 500 * time.Millisecond},
				Export: Export{
					ObservationDomain: 4294967295,
					TemplateRefresh:   5 * time.Minute,
					MTU:               9000,
					Collectors: []Collector{
						{Address: "[2001:db8::1]:4739", Protocol: "ipfix", Transport: "tcp"},
						{Address: "collector.example.com:2055", Protocol: "netflow9", Transport: "udp"},
						{Address: "192.0.2.7:9995", Protocol: "netflow5", Transport: "udp"},
					},
				},
				Log:      Log{Level: "debug", Format: "json"},
				Sampling: Sampling{Mode: "random"},
				Filters:  []Filter{},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, want)
			}
		}},
		{"sampling.yaml", func(t *testing.T, got Config) {
			if want := (Sampling{Rate: 100, Mode: "hash", Seed: 42}); got.Sampling != want {
				t.Errorf("sampling %+v, want %+v", got.Sampling, want)
			}
			if got.Interfaces[0].Sampling != nil || *got.Interfaces[1].Sampling != (Sampling{Rate: 10, Mode: "deterministic"}) {
				t.Errorf("interface sampling %+v %+v", got.Interfaces[0].Sampling, got.Interfaces[1].Sampling)
			}
			want := []Filter{
				{Dst: "192.0.2.10", Proto: "udp", DstPort: 4739, Action: "skip"},
				{Src: "2001:db8::/32", Proto: "6", Direction: "egress", Action: "count", Rate: 5},
				{Proto: "icmp", Action: "count"},
			}
			if !reflect.DeepEqual(got.Filters, want) {
				t.Errorf("filters %+v, want %+v", got.Filters, want)
			}
		}},
		{"anchors.yaml", func(t *testing.T, got Config) {
			wantIfs := []Interface{
				{Name: "eth0", Ingress: "tc", Egress: "tc", XDPMode: "auto", TCMode: "tcx"},
				{Name: "eth1", Ingress: "tc", Egress: "tc", XDPMode: "auto", TCMode: "tcx"},
				{Name: "eth2", Ingress: "tc", Egress: "none", XDPMode: "auto", TCMode: "tcx"},
			}
			if !reflect.DeepEqual(got.Interfaces, wantIfs) {
				t.Errorf("interfaces:\n%+v\nwant\n%+v", got.Interfaces, wantIfs)
			}
			wantCols := []Collector{
				{Address: "127.0.0.1:4739", Protocol: "ipfix", Transport: "udp"},
				{Address: "127.0.0.1:4739", Protocol: "ipfix", Transport: "tcp"},
			}
			if !reflect.DeepEqual(got.Export.Collectors, wantCols) {
				t.Errorf("collectors:\n%+v\nwant\n%+v", got.Export.Collectors, wantCols)
			}
		}},
		{"json.yaml", func(t *testing.T, got Config) {
			if len(got.Interfaces) != 2 || got.Interfaces[1].Name != "10" || got.Interfaces[0].Ingress != "tc" {
				t.Errorf("interfaces = %+v", got.Interfaces)
			}
			if got.Datapath != (Datapath{Map: "lru_hash", MaxFlows: 1024, RingSize: 4096}) {
				t.Errorf("datapath = %+v", got.Datapath)
			}
			if got.Export.ObservationDomain != 0 || got.Log.Level != "warn" || got.Log.Format != "text" {
				t.Errorf("export = %+v, log = %+v", got.Export, got.Log)
			}
		}},
		{"tls.yaml", func(t *testing.T, got Config) {
			// Relative file names are taken from the file's directory.
			tlsDir := filepath.Join(goodDir, "..", "tls")
			want := []Collector{
				{Address: "127.0.0.1:4740", Protocol: "ipfix", Transport: "tls", TLS: TLS{CA: filepath.Join(tlsDir, "ca.pem")}},
				{Address: "192.0.2.10:4740", Protocol: "ipfix", Transport: "tls", TLS: TLS{
					CA:         filepath.Join(tlsDir, "ca.pem"),
					Cert:       filepath.Join(tlsDir, "client.pem"),
					Key:        filepath.Join(tlsDir, "client.key"),
					ServerName: "collector.example",
				}},
				{Address: "192.0.2.10:4740", Protocol: "ipfix", Transport: "tcp"},
			}
			if !reflect.DeepEqual(got.Export.Collectors, want) {
				t.Errorf("collectors:\n%+v\nwant\n%+v", got.Export.Collectors, want)
			}
		}},
		{"kafka.yaml", func(t *testing.T, got Config) {
			dir := filepath.Join(goodDir, "..")
			want := []Collector{
				{Address: "127.0.0.1:4739", Protocol: "ipfix", Transport: "udp"},
				{Protocol: "kafka", Transport: "tcp", Kafka: &Kafka{
					Brokers: []string{"kafka1.example:9092", "[2001:db8::9]:9092"}, Topic: "flows",
					Format: "protobuf", Compression: "lz4", PartitionKey: "none", Acks: "all",
				}},
				{Protocol: "kafka", Transport: "tls",
					TLS: TLS{
						CA:         filepath.Join(dir, "tls", "ca.pem"),
						Cert:       filepath.Join(dir, "tls", "client.pem"),
						Key:        filepath.Join(dir, "tls", "client.key"),
						ServerName: "kafka.example",
					},
					Kafka: &Kafka{
						Brokers: []string{"192.0.2.21:9093", "192.0.2.22:9093"}, Topic: "xflow.flows-json",
						Format: "json", Compression: "zstd", PartitionKey: "conversation", Acks: "leader",
						SASL: SASL{Mechanism: "scram-sha-512", Username: "xflow", Password: "flows-secret",
							PasswordFile: filepath.Join(dir, "secrets", "kafka-password")},
					}},
				{Protocol: "kafka", Transport: "tcp", Kafka: &Kafka{
					Brokers: []string{"192.0.2.21:9093"}, Topic: "flows-plain",
					Format: "protobuf", Compression: "none", PartitionKey: "addresses", Acks: "all",
					SASL: SASL{Mechanism: "plain", Username: "xflow", Password: "inline-secret"},
				}},
			}
			if !reflect.DeepEqual(got.Export.Collectors, want) {
				t.Errorf("collectors:\n%#v\nwant\n%#v", got.Export.Collectors, want)
				for i := range min(len(want), len(got.Export.Collectors)) {
					if g, w := got.Export.Collectors[i], want[i]; !g.Equal(w) {
						t.Errorf("[%d] %+v %+v\nwant %+v %+v", i, g, g.Kafka, w, w.Kafka)
					}
				}
			}
		}},
		{"null_values.yaml", func(t *testing.T, got Config) {
			want := publicFields(Default())
			want.Interfaces = []Interface{defaultInterfaceNamed("lo")}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := Load(filepath.Join(goodDir, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, publicFields(cfg))
		})
	}
}

// badConfigs lists every file in testdata/configs/bad with the error it must
// produce: the exact line and field, and a substring of the message specific
// to the problem the file demonstrates.
var badConfigs = []struct {
	file  string
	line  int
	field string
	msg   string
}{
	// Document level.
	{"empty", 1, "interfaces", "configuration is empty"},
	// Sampling and filters.
	{"sampling_mode", 4, "sampling.mode", "unknown sampling mode"},
	{"sampling_rate", 3, "interfaces[0].sampling.rate", "rate 70000 out of range"},
	{"filter_cidr", 4, "filters[1].dst", "want an address or CIDR"},
	{"filter_port_proto", 3, "filters[0].dst_port", "dst_port needs proto"},
	{"filter_action", 3, "filters[0].action", "unknown filter action"},
	{"filter_direction", 5, "filters[0].direction", "unknown direction"},
	{"filter_proto", 3, "filters[0].proto", "want a name"},
	{"syntax_error", 6, "", "invalid YAML: mapping values are not allowed in this context"},
	{"tab_indent", 3, "", "invalid YAML: found character that cannot start any token"},
	{"unknown_anchor", 3, "", "invalid YAML: unknown anchor 'eth0' referenced"},
	{"control_character", 4, "", "invalid YAML: control characters are not allowed"},
	{"multiple_documents", 4, "", "multiple YAML documents"},
	{"top_level_sequence", 2, "", "top level must be a mapping of settings, got a sequence"},
	{"top_level_scalar", 2, "", `top level must be a mapping of settings, got string "eth0"`},
	{"non_string_key", 5, "datapath", "mapping keys must be strings, got a sequence"},
	{"duplicate_key", 7, "datapath.map", "duplicate key (first defined at line 5)"},
	{"bad_merge", 3, "interfaces[0]", `merge key << expects a mapping or a sequence of mappings, got string "eth0"`},

	// Unknown keys.
	{"unknown_key_top", 4, "datpath", `unknown key; did you mean "datapath"?`},
	{"unknown_key_interface", 4, "interfaces[0].ingres", `unknown key; did you mean "ingress"?`},
	{"unknown_key_collector", 7, "export.collectors[0].port", "unknown key (want one of address, protocol, transport, tls, brokers, topic, format, compression, partition_key, acks, sasl)"},

	// Interfaces.
	{"missing_interfaces", 2, "interfaces", "at least one interface is required"},
	{"no_interfaces", 2, "interfaces", "at least one interface is required"},
	{"interfaces_not_sequence", 2, "interfaces", `expected a sequence, got string "eth0"`},
	{"interface_not_mapping", 4, "interfaces[1]", `expected a mapping, got string "eth1"`},
	{"missing_name", 4, "interfaces[1].name", "required key is missing"},
	{"empty_name", 3, "interfaces[0].name", "interface name must not be empty"},
	{"name_too_long", 3, "interfaces[0].name", `"enp0s31f6-uplink0" is too long (17 bytes, max 15)`},
	{"name_slash", 3, "interfaces[0].name", `contains invalid character '/'`},
	{"name_sequence", 3, "interfaces[0].name", "expected a string, got a sequence"},
	{"duplicate_interface", 6, "interfaces[2].name", `duplicate interface "eth0" (already used by interfaces[0] at line 3)`},
	{"bad_ingress", 4, "interfaces[0].ingress", `unknown ingress mode "tcx" (want one of xdp, tc, none)`},
	{"bad_egress", 4, "interfaces[0].egress", `unknown egress mode "xdp" (want one of tc, none)`},
	{"both_none", 4, "interfaces[1]", "ingress and egress are both none"},
	{"bad_xdp_mode", 4, "interfaces[0].xdp_mode", `unknown XDP mode "offload" (want one of auto, native, generic)`},
	{"xdp_mode_without_xdp", 5, "interfaces[0].xdp_mode", `xdp_mode native requires ingress: xdp (ingress is "tc")`},
	{"bad_tc_mode", 4, "interfaces[0].tc_mode", `unknown TC mode "legacy" (want one of auto, tcx, clsact)`},
	{"tc_mode_without_tc", 6, "interfaces[0].tc_mode", "tc_mode tcx has no effect: neither ingress nor egress is tc"},

	// Datapath.
	{"datapath_not_mapping", 4, "datapath", `expected a mapping, got string "percpu_hash"`},
	{"bad_map", 5, "datapath.map", `unknown map kind "hashh" (want one of hash, percpu_hash, lru_hash, lru_percpu_hash, array, percpu_array, ringbuf)`},
	{"max_flows_not_integer", 5, "datapath.max_flows", `expected an integer, got string "lots"`},
	{"max_flows_float", 5, "datapath.max_flows", "expected an integer, got number 1.5"},
	{"max_flows_zero", 6, "datapath.max_flows", "max_flows 0 out of range 1..16777216"},
	{"max_flows_too_big", 5, "datapath.max_flows", "max_flows 16777217 out of range 1..16777216"},
	{"max_flows_overflow", 5, "datapath.max_flows", "integer 99999999999999999999999 out of range"},
	{"ring_size_not_power_of_two", 6, "datapath.ring_size", "ring_size 5000 is not a power of two"},
	{"ring_size_too_small", 6, "datapath.ring_size", "ring_size 1024 out of range 4096..1073741824"},
	{"ring_size_too_big", 6, "datapath.ring_size", "ring_size 2147483648 out of range 4096..1073741824"},
	{"ring_size_bad_suffix", 6, "datapath.ring_size", `invalid size "16MB"`},

	// Pin path.
	{"pin_path_relative", 4, "pin_path", `pin path "sys/fs/bpf/xflow" is not absolute`},
	{"pin_path_root", 4, "pin_path", "must be a directory below /, not / itself"},

	// Timeouts.
	{"timeouts_not_mapping", 4, "timeouts", "expected a mapping, got a sequence"},
	{"active_no_unit", 5, "timeouts.active", `duration 5 has no unit (want e.g. "5s")`},
	{"active_negative", 5, "timeouts.active", "must be greater than 0, got -1s"},
	{"active_zero", 6, "timeouts.active", "must be greater than 0, got 0s"},
	{"active_not_duration", 5, "timeouts.active", `invalid duration "soon"`},
	{"scan_interval_too_long", 7, "timeouts.scan_interval", "scan_interval 20s is longer than the inactive timeout 15s"},
	{"inactive_below_default_scan", 5, "timeouts.inactive", "inactive timeout 500ms is shorter than scan_interval 1s (default)"},

	// Export.
	{"observation_domain_too_big", 5, "export.observation_domain", "observation_domain 4294967296 out of range 0..4294967295"},
	{"observation_domain_negative", 5, "export.observation_domain", "observation_domain -1 out of range 0..4294967295"},
	{"template_refresh_zero", 5, "export.template_refresh", "must be greater than 0, got 0s"},
	{"mtu_too_small", 5, "export.mtu", "mtu 256 out of range 512..65000"},
	{"collectors_not_sequence", 5, "export.collectors", "expected a sequence, got a mapping"},
	{"collector_missing_address", 7, "export.collectors[1].address", "required key is missing"},
	{"collector_port_range", 6, "export.collectors[0].address", "port 70000 out of range 1..65535"},
	{"collector_no_port", 6, "export.collectors[0].address", `invalid address "192.0.2.10": missing port in address`},
	{"collector_ipv6_unbracketed", 6, "export.collectors[0].address", "IPv6 addresses must be bracketed"},
	{"collector_named_port", 6, "export.collectors[0].address", `invalid port "ipfix"`},
	{"collector_bad_protocol", 7, "export.collectors[0].protocol", `unknown protocol "netflow10" (want one of ipfix, netflow9, netflow5, kafka)`},
	{"collector_bad_transport", 7, "export.collectors[0].transport", `unknown transport "sctp" (want one of udp, tcp, tls)`},
	{"netflow_over_tcp", 8, "export.collectors[0].transport", "protocol netflow9 supports only transport udp, not tcp"},
	{"duplicate_collector", 9, "export.collectors[2]", "duplicate collector (same as export.collectors[0] at line 6)"},

	// Collectors with transport tls.
	{"tls_block_missing", 6, "export.collectors[0].tls", "required key is missing: transport tls needs tls.ca"},
	{"tls_missing_ca", 8, "export.collectors[0].tls.ca", "required key is missing: the PEM CA bundle"},
	{"tls_cert_without_key", 8, "export.collectors[0].tls.key", "required with tls.cert"},
	{"tls_key_without_cert", 8, "export.collectors[0].tls.cert", "required with tls.key"},
	{"tls_ca_not_found", 9, "export.collectors[0].tls.ca", "CA file ../testdata/configs/tls/no-such-ca.pem: no such file or directory"},
	{"tls_ca_garbage", 9, "export.collectors[0].tls.ca", "CA file ../testdata/configs/tls/garbage.pem: no PEM certificate found"},
	{"tls_ca_is_key", 9, "export.collectors[0].tls.ca", "CA file ../testdata/configs/tls/client.key: no PEM certificate found (no -----BEGIN CERTIFICATE----- block)"},
	{"tls_key_garbage", 11, "export.collectors[0].tls.key", "key file ../testdata/configs/tls/garbage.pem: failed to find any PEM data in key input"},
	{"tls_with_udp", 8, "export.collectors[0].tls", "tls settings need transport: tls (transport is udp)"},
	{"tls_netflow", 8, "export.collectors[0].transport", "protocol netflow9 supports only transport udp, not tls"},
	{"tls_unknown_key", 10, "export.collectors[0].tls.insecure_skip_verify", "unknown key (want one of ca, cert, key, server_name)"},
	{"tls_bad_server_name", 10, "export.collectors[0].tls.server_name", `invalid server name "collector example"`},
	{"tls_not_mapping", 8, "export.collectors[0].tls", `expected a mapping, got string "../tls/ca.pem"`},

	// Kafka destinations.
	{"kafka_missing_brokers", 6, "export.collectors[0].brokers", "required key is missing: protocol kafka needs brokers"},
	{"kafka_no_brokers", 6, "export.collectors[0].brokers", "at least one broker is required"},
	{"kafka_broker_no_port", 9, "export.collectors[0].brokers[1]", `invalid address "kafka2.example": missing port in address`},
	{"kafka_duplicate_broker", 6, "export.collectors[0].brokers[1]", `duplicate broker "192.0.2.1:9092" (already export.collectors[0].brokers[0])`},
	{"kafka_brokers_not_sequence", 6, "export.collectors[0].brokers", "expected a sequence of strings, got a mapping"},
	{"kafka_missing_topic", 5, "export.collectors[0].topic", "required key is missing: the Kafka topic"},
	{"kafka_bad_topic", 7, "export.collectors[0].topic", `topic "flows/v1" contains invalid character '/'`},
	{"kafka_bad_format", 8, "export.collectors[0].format", `unknown format "avro" (want one of protobuf, json)`},
	{"kafka_bad_compression", 8, "export.collectors[0].compression", `unknown compression "brotli" (want one of none, gzip, snappy, lz4, zstd)`},
	{"kafka_bad_partition_key", 8, "export.collectors[0].partition_key", `unknown partition key "src_addr" (want one of none, addresses, conversation)`},
	{"kafka_bad_acks", 8, "export.collectors[0].acks", `unknown acks "1" (want one of all, leader, none)`},
	{"kafka_over_udp", 9, "export.collectors[0].transport", `protocol kafka supports transport tcp or tls, not "udp"`},
	{"kafka_with_address", 6, "export.collectors[0].address", "protocol kafka takes brokers (a list of host:port), not address"},
	{"kafka_keys_without_kafka", 7, "export.collectors[0].topic", "topic is a setting of protocol kafka (protocol is ipfix)"},
	{"kafka_duplicate", 8, "export.collectors[1]", `duplicate collector: topic "flows" on the same brokers as export.collectors[0] at line 5`},
	{"kafka_tls_missing_ca", 9, "export.collectors[0].tls.ca", "required key is missing: the PEM CA bundle that verifies the brokers' certificates"},
	{"kafka_sasl_bad_mechanism", 9, "export.collectors[0].sasl.mechanism", `unknown SASL mechanism "gssapi" (want one of plain, scram-sha-256, scram-sha-512)`},
	{"kafka_sasl_missing_username", 8, "export.collectors[0].sasl.username", "required key is missing: the SASL user name"},
	{"kafka_sasl_missing_password", 8, "export.collectors[0].sasl.password", "required key is missing: give one of password, password_file or password_env"},
	{"kafka_sasl_two_passwords", 12, "export.collectors[0].sasl.password_file", "give the password one way only: password or password_file"},
	{"kafka_sasl_password_file_missing", 11, "export.collectors[0].sasl.password_file", "password file ../testdata/configs/secrets/no-such-file: no such file or directory"},
	{"kafka_sasl_password_env_unset", 11, "export.collectors[0].sasl.password_env", `environment variable "XFLOW_TEST_UNSET_KAFKA_PASSWORD" is not set`},
	{"kafka_sasl_unknown_key", 10, "export.collectors[0].sasl.usename", `unknown key; did you mean "username"?`},

	// Log.
	{"bad_log_level", 5, "log.level", `unknown log level "verbose" (want one of debug, info, warn, error)`},
	{"bad_log_format", 5, "log.format", `unknown log format "xml" (want one of text, json)`},
}

func TestBadConfigs(t *testing.T) {
	for _, tt := range badConfigs {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join(badDir, tt.file+".yaml")
			cfg, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%s) = %+v, want error", path, publicFields(cfg))
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Load(%s) error %v (%T) is not an *Error", path, err, err)
			}
			if e.File != path || e.Line != tt.line || e.Field != tt.field || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("Load(%s) error\n got %s:%d: field %q: %s\nwant %s:%d: field %q: ...%s...",
					path, e.File, e.Line, e.Field, e.Msg, path, tt.line, tt.field, tt.msg)
			}
			prefix := fmt.Sprintf("%s:%d: ", path, tt.line)
			if tt.field != "" {
				prefix += tt.field + ": "
			}
			if got := err.Error(); !strings.HasPrefix(got, prefix) || strings.ContainsAny(got, "\r\n") {
				t.Errorf("Error() = %q, want one line starting with %q", got, prefix)
			}
		})
	}
}

// TestBadConfigsTable keeps the table and the directory in sync and makes
// sure no two cases expect the same error.
func TestBadConfigsTable(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(badDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var onDisk, inTable []string
	for _, f := range files {
		onDisk = append(onDisk, strings.TrimSuffix(filepath.Base(f), ".yaml"))
	}
	type want struct{ field, msg string }
	seen := map[want]string{}
	for _, tt := range badConfigs {
		inTable = append(inTable, tt.file)
		w := want{tt.field, tt.msg}
		if other, dup := seen[w]; dup && tt.msg != "at least one interface is required" {
			t.Errorf("%s and %s expect the same error %q: %q", other, tt.file, tt.field, tt.msg)
		}
		seen[w] = tt.file
	}
	slices.Sort(onDisk)
	slices.Sort(inTable)
	if !slices.Equal(onDisk, inTable) {
		t.Errorf("bad configs on disk:\n%v\nin table:\n%v", onDisk, inTable)
	}
	if len(inTable) < 30 {
		t.Errorf("only %d bad configs, want at least 30", len(inTable))
	}
}

func TestParseErrors(t *testing.T) {
	// Cases that are easier to read inline than as files.
	tests := []struct {
		name, in string
		line     int
		field    string
		msg      string
	}{
		{"empty input", "", 1, "interfaces", "configuration is empty"},
		{"null document", "---\n~\n", 1, "interfaces", "configuration is empty"},
		{"interfaces null", "interfaces:\nlog: {}\n", 1, "interfaces", "at least one interface is required"},
		{"name null", "interfaces:\n  - name: ~\n", 2, "interfaces[0].name", "must not be empty"},
		{"name colon", "interfaces: [{name: 'eth0:1'}]", 1, "interfaces[0].name", "invalid character ':'"},
		{"name space", "interfaces: [{name: 'eth 0'}]", 1, "interfaces[0].name", "invalid character ' '"},
		{"name dot", "interfaces: [{name: '..'}]", 1, "interfaces[0].name", `".." is not allowed`},
		{"item null", "interfaces:\n  -\n", 2, "interfaces[0]", "expected a mapping, got null"},
		{"interfaces mapping", "interfaces:\n  eth0: {}\n", 1, "interfaces", "expected a sequence, got a mapping"},
		{"int as duration", "interfaces: [{name: eth0}]\ntimeouts: {inactive: 1.5}\n", 2, "timeouts.inactive", "duration 1.5 has no unit"},
		{"duration mapping", "interfaces: [{name: eth0}]\ntimeouts:\n  active:\n    s: 1\n", 3, "timeouts.active", "expected a duration"},
		{"bool as int", "interfaces: [{name: eth0}]\nexport: {mtu: true}\n", 2, "export.mtu", "expected an integer, got boolean true"},
		{"custom tag", "interfaces: [{name: !iface eth0}]\n", 1, "interfaces[0].name", `expected a string, got value tagged "!iface"`},
		{"explicit int tag", "interfaces: [{name: eth0}]\nexport: {mtu: !!int abc}\n", 2, "export.mtu", "invalid integer abc"},
		{"huge uint", "interfaces: [{name: eth0}]\nexport: {mtu: 18446744073709551615}\n", 2, "export.mtu", "integer 18446744073709551615 out of range"},
		{"size sequence", "interfaces: [{name: eth0}]\ndatapath: {ring_size: [1]}\n", 2, "datapath.ring_size", "expected a size"},
		{"size overflow", "interfaces: [{name: eth0}]\ndatapath: {ring_size: 99999999999999999999GiB}\n", 2, "datapath.ring_size", "out of range"},
		{"pin path empty", "interfaces: [{name: eth0}]\npin_path: ''\n", 2, "pin_path", "must not be empty"},
		{"pin path double slash", "interfaces: [{name: eth0}]\npin_path: //\n", 2, "pin_path", "not / itself"},
		{"scan interval above active", "interfaces: [{name: eth0}]\ntimeouts: {active: 5s, inactive: 10s, scan_interval: 8s}\n", 2, "timeouts.scan_interval", "longer than the active timeout 5s"},
		{"missing host", "interfaces: [{name: eth0}]\nexport: {collectors: [{address: ':4739'}]}\n", 2, "export.collectors[0].address", "missing host"},
		{"bad host", "interfaces: [{name: eth0}]\nexport: {collectors: [{address: 'a b:4739'}]}\n", 2, "export.collectors[0].address", `invalid host "a b"`},
		{"bad ipv6", "interfaces: [{name: eth0}]\nexport: {collectors: [{address: '[::g]:4739'}]}\n", 2, "export.collectors[0].address", `invalid IPv6 address "::g"`},
		{"port zero", "interfaces: [{name: eth0}]\nexport: {collectors: [{address: 'h:0'}]}\n", 2, "export.collectors[0].address", "port 0 out of range"},
		{"empty address", "interfaces: [{name: eth0}]\nexport: {collectors: [{address: ''}]}\n", 2, "export.collectors[0].address", "must not be empty"},
		{"netflow5 tcp", "interfaces: [{name: eth0}]\nexport: {collectors: [{address: 'h:1', protocol: netflow5, transport: tcp}]}\n", 2, "export.collectors[0].transport", "netflow5 supports only transport udp"},
		{"quoted odd key", "interfaces: [{name: eth0}]\n\"a\\nb\": 1\n", 2, `["a\nb"]`, "unknown key"},
		{"duplicate key in merged mapping", "interfaces:\n  - <<: {name: eth0, name: eth1}\n", 2, "interfaces[0].name", "duplicate key (first defined at line 2)"},
		{"merge cycle", "interfaces:\n  - &i\n    name: eth0\n    <<: *i\n", 0, "", ""}, // valid: a mapping merging itself is a no-op
		{"merge sequence of scalars", "interfaces:\n  - <<: [1]\n    name: eth0\n", 2, "interfaces[0]", "merge key << expects mappings, got integer 1"},
		{"second document empty", "interfaces: [{name: eth0}]\n---\n", 0, "", ""},
		{"second document syntax error", "interfaces: [{name: eth0}]\n---\na: [\n", 3, "", "invalid YAML"},
		{"invalid utf8", "interfaces:\n  - name: eth0\n  - name: \xff\n", 3, "", "invalid YAML"},
		{"tls ca empty", "interfaces: [{name: eth0}]\nexport: {collectors: [{address: 'h:1', transport: tls, tls: {ca: ''}}]}\n", 2, "export.collectors[0].tls.ca", "must not be empty"},
		{"tls null", "interfaces: [{name: eth0}]\nexport:\n  collectors:\n    - address: 'h:1'\n      transport: tls\n      tls: ~\n", 6, "export.collectors[0].tls.ca", "required key is missing"},
		{"tls ca directory", "interfaces: [{name: eth0}]\nexport: {collectors: [{address: 'h:1', transport: tls, tls: {ca: ../testdata}}]}\n", 2, "export.collectors[0].tls.ca", "CA file ../testdata: is a directory"},
		{"tls cert is ca", "interfaces: [{name: eth0}]\nexport: {collectors: [{address: 'h:1', transport: tls, tls: {ca: ../testdata/configs/tls/ca.pem, cert: ../testdata/configs/tls/client.key, key: ../testdata/configs/tls/client.key}}]}\n", 2, "export.collectors[0].tls.cert", "no PEM certificate found"},
		{"tls duplicate", "interfaces: [{name: eth0}]\nexport:\n  collectors:\n    - {address: 'h:1', transport: tls, tls: {ca: ../testdata/configs/tls/ca.pem}}\n    - {address: 'h:1', transport: tls, tls: {ca: ../testdata/configs/tls/ca.pem, server_name: other}}\n", 5, "export.collectors[1]", "duplicate collector (same as export.collectors[0] at line 4)"},
		{"tls server name ip", "interfaces: [{name: eth0}]\nexport: {collectors: [{address: 'h:1', transport: tls, tls: {ca: ../testdata/configs/tls/ca.pem, server_name: '2001:db8::1'}}]}\n", 0, "", ""},
		{"tls empty with tcp", "interfaces: [{name: eth0}]\nexport: {collectors: [{address: 'h:1', transport: tcp, tls: {}}]}\n", 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.in))
			if tt.line == 0 {
				if err != nil {
					t.Fatalf("Parse: %v, want success", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse error %v (%T), want *Error", err, err)
			}
			if e.File != "t.yaml" || e.Line != tt.line || e.Field != tt.field || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("Parse error %q, want t.yaml:%d: field %q: ...%s...", err, tt.line, tt.field, tt.msg)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing file: %v, want fs.ErrNotExist", err)
	}
	var e *Error
	if errors.As(err, &e) {
		t.Errorf("I/O error %v should not be an *Error", err)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "x.yaml", Line: 7, Field: "datapath.map", Msg: "bad"}, "x.yaml:7: datapath.map: bad"},
		{Error{File: "x.yaml", Line: 3, Msg: "invalid YAML: oops"}, "x.yaml:3: invalid YAML: oops"},
		{Error{File: "x.yaml", Field: "interfaces", Msg: "m"}, "x.yaml: interfaces: m"},
		{Error{Line: 2, Field: "f", Msg: "m"}, "line 2: f: m"},
		{Error{Field: "f", Msg: "m"}, "f: m"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestValidateWithoutPositions(t *testing.T) {
	cfg := Default()
	err := cfg.Validate()
	var e *Error
	if !errors.As(err, &e) || e.Line != 0 || e.Field != "interfaces" || err.Error() != "interfaces: at least one interface is required" {
		t.Fatalf("Default().Validate() = %v, want a position-less interfaces error", err)
	}
	cfg.Interfaces = append(cfg.Interfaces, defaultInterfaceNamed("eth0"))
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate with one interface: %v", err)
	}
	cfg.Datapath.Map = "bogus"
	if err := cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), "datapath.map: unknown map kind") {
		t.Fatalf("Validate with bad map = %v", err)
	}
}

func TestValidateAfterParseKeepsPositions(t *testing.T) {
	cfg, err := Parse("p.yaml", []byte("log: {level: warn}\ninterfaces:\n  - name: eth0\n    egress: none\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Interfaces[0].Ingress = "none"
	if err := cfg.Validate(); err == nil || err.Error() != "p.yaml:3: interfaces[0]: ingress and egress are both none; nothing would be captured" {
		t.Fatalf("Validate = %v", err)
	}
	cfg.Interfaces[0].Ingress = "xdp"
	cfg.Timeouts.Active = 0 // not in the file: reported at the document
	if err := cfg.Validate(); err == nil || err.Error() != "p.yaml:1: timeouts.active: must be greater than 0, got 0s" {
		t.Fatalf("Validate = %v", err)
	}
}

func TestMapKinds(t *testing.T) {
	kinds := MapKinds()
	want := []string{"hash", "percpu_hash", "lru_hash", "lru_percpu_hash", "array", "percpu_array", "ringbuf"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("MapKinds() = %v, want %v", kinds, want)
	}
	kinds[0] = "mutated"
	if MapKinds()[0] != "hash" {
		t.Error("MapKinds returns a shared slice")
	}
	for _, k := range want {
		in := fmt.Sprintf("interfaces: [{name: eth0}]\ndatapath: {map: %s}\n", k)
		if _, err := Parse("k.yaml", []byte(in)); err != nil {
			t.Errorf("map %s: %v", k, err)
		}
	}
}

func TestRingSizeForms(t *testing.T) {
	tests := map[string]int{
		"4096":       4096,
		"'8192'":     8192,
		"4KiB":       4 << 10,
		"64 KiB":     64 << 10,
		"16MiB":      16 << 20,
		"1GiB":       1 << 30,
		"0x1000_000": 1 << 24,
	}
	for in, want := range tests {
		cfg, err := Parse("r.yaml", []byte("interfaces: [{name: eth0}]\ndatapath: {ring_size: "+in+"}\n"))
		if err != nil {
			t.Errorf("ring_size %s: %v", in, err)
			continue
		}
		if cfg.Datapath.RingSize != want {
			t.Errorf("ring_size %s = %d, want %d", in, cfg.Datapath.RingSize, want)
		}
	}
}

func TestCheckInterfaces(t *testing.T) {
	src := "interfaces:\n  - name: eth0\n  - name: veth9\n    ingress: tc\n  - name: eth1\n"
	cfg, err := Parse("c.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	errNoLink := errors.New("link not found")
	var asked []string
	fake := func(present ...string) func(string) error {
		asked = nil
		return func(name string) error {
			asked = append(asked, name)
			if slices.Contains(present, name) {
				return nil
			}
			return errNoLink
		}
	}

	if err := cfg.CheckInterfaces(fake("eth0", "veth9", "eth1")); err != nil {
		t.Fatalf("all present: %v", err)
	}
	if want := []string{"eth0", "veth9", "eth1"}; !slices.Equal(asked, want) {
		t.Errorf("asked %v, want %v", asked, want)
	}

	err = cfg.CheckInterfaces(fake("eth0", "eth1"))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("missing interface: %v (%T), want *Error", err, err)
	}
	if want := `c.yaml:3: interfaces[1].name: interface "veth9": link not found`; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if !errors.Is(err, errNoLink) {
		t.Error("error does not wrap the lookup error")
	}
	if want := []string{"eth0", "veth9"}; !slices.Equal(asked, want) {
		t.Errorf("asked %v, want %v (stop at the first failure)", asked, want)
	}

	// A multi-line lookup error must not break the one-line format.
	err = cfg.CheckInterfaces(func(string) error { return errors.New("a\nb") })
	if err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("error = %q, want a single line", err)
	}
}

func TestLogger(t *testing.T) {
	cfg, err := Parse("l.yaml", []byte("interfaces: [{name: eth0}]\nlog: {level: warn, format: json}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := cfg.Logger(&buf)
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("output %q is not one JSON record: %v", buf.String(), err)
	}
	if rec["msg"] != "shown" || rec["level"] != "WARN" || rec["k"] != 1.0 {
		t.Errorf("record = %v", rec)
	}

	cfg.Log = Log{Level: "debug", Format: "text"}
	buf.Reset()
	cfg.Logger(&buf).Debug("dbg")
	if out := buf.String(); !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "msg=dbg") {
		t.Errorf("text output = %q", out)
	}
}

// FuzzParse checks that Parse never panics and that every error it returns
// is a single-line *Error with a line number.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("../testdata/configs/*/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, exampleFile)
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if e.Line < 1 || e.File != "fuzz.yaml" {
				t.Fatalf("error %q has file %q, line %d", err, e.File, e.Line)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error %q is not a single line", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse succeeded but Validate fails: %v", err)
		}
	})
}
