// Package config loads and validates the xflow YAML configuration.
//
// Every problem found in a configuration file is reported as a single-line
// *Error of the form
//
//	FILE:LINE: FIELD: message
//
// where FIELD is the dotted path of the offending setting, for example
// "interfaces[1].xdp_mode" or "export.collectors[0].address".
package config

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/xflow-net/xflow/bpf/kind"
	"github.com/xflow-net/xflow/exporter/transport"
)

// Config is the complete xflow configuration.
type Config struct {
	Interfaces []Interface
	Datapath   Datapath
	PinPath    string
	Timeouts   Timeouts
	Export     Export
	Log        Log
	Metrics    Metrics
	Sampling   Sampling // the default for every interface
	Filters    []Filter // in-kernel filter rules, first match wins

	// file and lines remember where each setting came from so that
	// validation errors detected after parsing can still be positioned.
	// lines maps a field path ("" for the document itself) to its line.
	file  string
	lines map[string]int
}

// Interface describes one network interface to attach to.
type Interface struct {
	Name    string // kernel interface name
	Ingress string // xdp, tc or none
	Egress  string // tc or none
	XDPMode string // auto, native or generic
	TCMode  string // auto, tcx or clsact
	// Sampling overrides the top-level sampling for this interface.
	Sampling *Sampling
}

// Datapath configures the BPF flow table.
type Datapath struct {
	Map      string // one of MapKinds()
	MaxFlows int    // maximum number of flow entries
	RingSize int    // ring buffer size in bytes (map: ringbuf only)
}

// Timeouts configures flow expiry.
type Timeouts struct {
	Active       time.Duration // export long-lived flows after this long
	Inactive     time.Duration // expire flows idle for this long
	ScanInterval time.Duration // how often the flow table is scanned
}

// Export configures flow export.
type Export struct {
	ObservationDomain uint32
	TemplateRefresh   time.Duration
	MTU               int
	Collectors        []Collector
}

// Collector is one flow collector to export to: an IPFIX or NetFlow
// collector at Address, or (protocol kafka) a Kafka topic.
type Collector struct {
	Address   string // host:port; not for kafka
	Protocol  string // ipfix, netflow9, netflow5 or kafka
	Transport string // udp, tcp or tls (TLS over TCP: IPFIX and kafka); kafka: tcp or tls, default tcp
	TLS       TLS    // transport tls only
	Kafka     *Kafka // protocol kafka only (nil otherwise)
}

// Kafka configures a destination with protocol kafka: flow records are
// produced to Topic as goflow2 FlowMessages, one per Kafka record. It is
// a pointer in Collector so that Collector stays comparable; compare two
// with Equal.
type Kafka struct {
	Brokers      []string // bootstrap brokers, host:port (required)
	Topic        string   // required
	Format       string   // protobuf (length-delimited, as goflow2 writes) or json
	Compression  string   // none, gzip, snappy, lz4 or zstd
	PartitionKey string   // none, addresses or conversation
	Acks         string   // all, leader or none
	SASL         SASL     // Mechanism "" means no SASL
}

// Equal reports whether two Kafka settings are the same.
func (k *Kafka) Equal(o *Kafka) bool {
	if k == nil || o == nil {
		return k == o
	}
	return slices.Equal(k.Brokers, o.Brokers) && k.Topic == o.Topic && k.Format == o.Format &&
		k.Compression == o.Compression && k.PartitionKey == o.PartitionKey && k.Acks == o.Acks && k.SASL == o.SASL
}

// SASL authenticates a Kafka destination. The password is given in exactly
// one of three ways: inline (password), from a file (password_file, its
// first line; relative names from the configuration file's directory) or
// from an environment variable (password_env). Parse reads the file or the
// variable and stores the result in Password, so a problem with either is
// a configuration error.
type SASL struct {
	Mechanism    string // plain, scram-sha-256 or scram-sha-512; "" for none
	Username     string
	Password     Secret // the password, however it was given
	PasswordFile string // where it came from, if from a file
	PasswordEnv  string // where it came from, if from the environment
}

// Secret is a string that does not print: %v, %+v, %#v and slog show
// "[redacted]", so a configuration can be logged whole.
type Secret string

func (Secret) String() string                 { return "[redacted]" }
func (Secret) GoString() string               { return `"[redacted]"` }
func (Secret) LogValue() slog.Value           { return slog.StringValue("[redacted]") }
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Equal reports whether two collectors have the same settings.
func (c Collector) Equal(o Collector) bool {
	a, b := c, o
	a.Kafka, b.Kafka = nil, nil
	return a == b && c.Kafka.Equal(o.Kafka)
}

// Name identifies the destination in logs and metrics: its address, or
// for kafka "kafka://BROKER[,BROKER...]/TOPIC".
func (c Collector) Name() string {
	if c.Protocol == "kafka" && c.Kafka != nil {
		return "kafka://" + strings.Join(c.Kafka.Brokers, ",") + "/" + c.Kafka.Topic
	}
	return c.Address
}

// TLS configures a collector with transport tls (RFC 7011 section 10.4.2).
// Relative file names in a file are taken from the file's directory: Parse
// stores them joined to it.
type TLS struct {
	CA         string // PEM CA bundle that verifies the collector's certificate (required)
	Cert       string // PEM client certificate, for collectors that require one (mutual TLS); with Key
	Key        string // PEM private key of Cert
	ServerName string // name the collector's certificate must hold; default: the host of Address
}

// TLSConfig returns the TLS client configuration of a collector with
// transport tls, reading its files (transport.TLSConfig); nil for the other
// transports.
//
// For kafka the certificate of each broker must name the host it is
// dialled by, unless server_name is set: the configuration returned then
// has no ServerName and the Kafka client fills it per broker.
func (c Collector) TLSConfig() (*tls.Config, error) {
	if c.Transport != "tls" {
		return nil, nil
	}
	if c.Protocol == "kafka" {
		// Any host:port will do for the default name: it is cleared.
		cfg, err := transport.TLSConfig(c.TLS.CA, c.TLS.Cert, c.TLS.Key, c.TLS.ServerName, "broker:0")
		if err != nil {
			return nil, err
		}
		if c.TLS.ServerName == "" {
			cfg.ServerName = ""
		}
		return cfg, nil
	}
	return transport.TLSConfig(c.TLS.CA, c.TLS.Cert, c.TLS.Key, c.TLS.ServerName, c.Address)
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Listen string // host:port serving /metrics; "" disables it
}

// DefaultMetricsListen is where /metrics is served unless configured:
// loopback only.
const DefaultMetricsListen = "127.0.0.1:9180"

// Log configures logging.
type Log struct {
	Level  string // debug, info, warn or error
	Format string // text or json
}

// Default values.
const (
	defaultIngress           = "xdp"
	defaultEgress            = "tc"
	defaultXDPMode           = "auto"
	defaultTCMode            = "auto"
	defaultMap               = string(kind.Default)
	defaultMaxFlows          = 65536
	defaultRingSize          = 16 << 20
	defaultPinPath           = "/sys/fs/bpf/xflow"
	defaultActive            = 60 * time.Second
	defaultInactive          = 15 * time.Second
	defaultScanInterval      = time.Second
	defaultObservationDomain = 1
	defaultTemplateRefresh   = 60 * time.Second
	defaultMTU               = 1400
	defaultProtocol          = "ipfix"
	defaultTransport         = "udp"
	defaultLogLevel          = "info"
	defaultLogFormat         = "text"

	defaultKafkaTransport    = "tcp"
	defaultKafkaFormat       = "protobuf"
	defaultKafkaCompression  = "lz4"
	defaultKafkaPartitionKey = "none"
	defaultKafkaAcks         = "all"
)

// Allowed values of the enumerated settings.
var (
	ingressModes = []string{"xdp", "tc", "none"}
	egressModes  = []string{"tc", "none"}
	xdpModes     = []string{"auto", "native", "generic"}
	tcModes      = []string{"auto", "tcx", "clsact"}
	mapKinds     = kind.Names() // the data plane's list
	protocols    = []string{"ipfix", "netflow9", "netflow5", "kafka"}
	transports   = []string{"udp", "tcp", "tls"}
	logLevels    = []string{"debug", "info", "warn", "error"}
	logFormats   = []string{"text", "json"}

	kafkaTransports    = []string{"tcp", "tls"}
	kafkaFormats       = []string{"protobuf", "json"}
	kafkaCompressions  = []string{"none", "gzip", "snappy", "lz4", "zstd"}
	kafkaPartitionKeys = []string{"none", "addresses", "conversation"}
	kafkaAcks          = []string{"all", "leader", "none"}
	saslMechanisms     = []string{"plain", "scram-sha-256", "scram-sha-512"}
)

// DefaultKafka returns the defaults of a kafka destination, without brokers
// or topic.
func DefaultKafka() *Kafka {
	return &Kafka{
		Format:       defaultKafkaFormat,
		Compression:  defaultKafkaCompression,
		PartitionKey: defaultKafkaPartitionKey,
		Acks:         defaultKafkaAcks,
	}
}

// MapKinds returns the valid values of datapath.map.
func MapKinds() []string {
	return append([]string(nil), mapKinds...)
}

// Default returns a configuration with every default applied and no
// interfaces. It does not pass Validate until an interface is added.
func Default() *Config {
	return &Config{
		Datapath: Datapath{
			Map:      defaultMap,
			MaxFlows: defaultMaxFlows,
			RingSize: defaultRingSize,
		},
		PinPath: defaultPinPath,
		Timeouts: Timeouts{
			Active:       defaultActive,
			Inactive:     defaultInactive,
			ScanInterval: defaultScanInterval,
		},
		Export: Export{
			ObservationDomain: defaultObservationDomain,
			TemplateRefresh:   defaultTemplateRefresh,
			MTU:               defaultMTU,
			Collectors:        []Collector{},
		},
		Log: Log{
			Level:  defaultLogLevel,
			Format: defaultLogFormat,
		},
		Metrics:  Metrics{Listen: DefaultMetricsListen},
		Sampling: defaultSampling(),
		Filters:  []Filter{},
	}
}

func defaultInterface() Interface {
	return Interface{
		Ingress: defaultIngress,
		Egress:  defaultEgress,
		XDPMode: defaultXDPMode,
		TCMode:  defaultTCMode,
	}
}

func defaultCollector() Collector {
	return Collector{
		Protocol:  defaultProtocol,
		Transport: defaultTransport,
	}
}

// Load reads and parses the configuration file at path. I/O errors are
// returned wrapped (use errors.Is with fs.ErrNotExist etc.); every problem
// with the file's contents is an *Error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses a configuration from data, applies defaults and validates
// it. filename is used in error messages, and relative file names in the
// configuration (a collector's tls files) are taken from its directory.
// Every error returned is an *Error with Line >= 1.
func Parse(filename string, data []byte) (*Config, error) {
	top, err := parseYAML(filename, data)
	if err != nil {
		return nil, err
	}
	cfg := Default()
	cfg.file = filename
	cfg.lines = map[string]int{"": 1}
	d := &decoder{file: filename, lines: cfg.lines}
	if err := d.decodeConfig(top, cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// CheckInterfaces calls exists for the name of every configured interface,
// in order, and returns the first failure as an *Error positioned at that
// interface's name. The *Error wraps the error returned by exists.
func (c *Config) CheckInterfaces(exists func(name string) error) error {
	for i, ifc := range c.Interfaces {
		if err := exists(ifc.Name); err != nil {
			e := c.errorf(fmt.Sprintf("interfaces[%d].name", i), "interface %s: %v", quote(ifc.Name), err)
			e.Err = err
			return e
		}
	}
	return nil
}

// Logger returns a logger writing to w with the configured level and
// format (text or JSON).
func (c *Config) Logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.slogLevel()}
	var h slog.Handler
	if c.Log.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h)
}

func (c *Config) slogLevel() slog.Level {
	switch c.Log.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}
