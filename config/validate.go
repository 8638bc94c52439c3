package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/xflow-net/xflow/exporter/transport"
)

// Limits enforced by Validate.
const (
	maxIfNameLen = 15 // IFNAMSIZ - 1
	minMaxFlows  = 1
	maxMaxFlows  = 1 << 24
	minRingSize  = 4096
	maxRingSize  = 1 << 30
	minMTU       = 512
	maxMTU       = 65000
)

// Validate checks the semantic constraints of the configuration and returns
// the first violation as an *Error. Parse and Load call it; call it again
// after modifying a configuration in code. For configurations that were not
// parsed from a file the error carries no position.
func (c *Config) Validate() error {
	for _, check := range []func() *Error{
		c.validateInterfaces,
		c.validateDatapath,
		c.validatePinPath,
		c.validateTimeouts,
		c.validateExport,
		c.validateLog,
		c.validateMetrics,
		c.validateSampling,
		c.validateFilters,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateInterfaces() *Error {
	if len(c.Interfaces) == 0 {
		return c.errorf("interfaces", "at least one interface is required")
	}
	first := map[string]int{} // name -> index
	for i, ifc := range c.Interfaces {
		p := indexPath("interfaces", i)
		name := p + ".name"
		if ifc.Name == "" && !c.has(name) {
			return c.errorf(name, "required key is missing")
		}
		if msg := checkIfName(ifc.Name); msg != "" {
			return c.errorf(name, "%s", msg)
		}
		if j, dup := first[ifc.Name]; dup {
			other := indexPath("interfaces", j)
			return c.errorf(name, "duplicate interface %s (already used by %s%s)", quote(ifc.Name), other, c.at(other+".name"))
		}
		first[ifc.Name] = i

		if err := c.checkEnum(p+".ingress", "ingress mode", ifc.Ingress, ingressModes); err != nil {
			return err
		}
		if err := c.checkEnum(p+".egress", "egress mode", ifc.Egress, egressModes); err != nil {
			return err
		}
		if err := c.checkEnum(p+".xdp_mode", "XDP mode", ifc.XDPMode, xdpModes); err != nil {
			return err
		}
		if err := c.checkEnum(p+".tc_mode", "TC mode", ifc.TCMode, tcModes); err != nil {
			return err
		}
		if ifc.Ingress == "none" && ifc.Egress == "none" {
			return c.errorf(p, "ingress and egress are both none; nothing would be captured")
		}
		if ifc.XDPMode != defaultXDPMode && ifc.Ingress != "xdp" {
			return c.errorf(p+".xdp_mode", "xdp_mode %s requires ingress: xdp (ingress is %s)", ifc.XDPMode, quote(ifc.Ingress))
		}
		if ifc.TCMode != defaultTCMode && ifc.Ingress != "tc" && ifc.Egress != "tc" {
			return c.errorf(p+".tc_mode", "tc_mode %s has no effect: neither ingress nor egress is tc", ifc.TCMode)
		}
	}
	return nil
}

// checkIfName applies the kernel's rules for interface names
// (dev_valid_name) and returns a description of the problem, if any.
func checkIfName(name string) string {
	switch {
	case name == "":
		return "interface name must not be empty"
	case len(name) > maxIfNameLen:
		return fmt.Sprintf("interface name %s is too long (%d bytes, max %d)", quote(name), len(name), maxIfNameLen)
	case name == "." || name == "..":
		return fmt.Sprintf("interface name %s is not allowed", quote(name))
	}
	for _, r := range name {
		if r == '/' || r == ':' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Sprintf("interface name %s contains invalid character %q", quote(name), r)
		}
	}
	return ""
}

func (c *Config) validateDatapath() *Error {
	dp := c.Datapath
	if err := c.checkEnum("datapath.map", "map kind", dp.Map, mapKinds); err != nil {
		return err
	}
	if dp.MaxFlows < minMaxFlows || dp.MaxFlows > maxMaxFlows {
		return c.errorf("datapath.max_flows", "max_flows %d out of range %d..%d", dp.MaxFlows, minMaxFlows, maxMaxFlows)
	}
	if dp.RingSize < minRingSize || dp.RingSize > maxRingSize {
		return c.errorf("datapath.ring_size", "ring_size %d out of range %d..%d (4KiB..1GiB)", dp.RingSize, minRingSize, maxRingSize)
	}
	if dp.RingSize&(dp.RingSize-1) != 0 {
		return c.errorf("datapath.ring_size", "ring_size %d is not a power of two", dp.RingSize)
	}
	return nil
}

func (c *Config) validatePinPath() *Error {
	p := c.PinPath
	switch {
	case p == "":
		return c.errorf("pin_path", "must not be empty")
	case strings.ContainsRune(p, 0):
		return c.errorf("pin_path", "pin path %s contains a NUL byte", quote(p))
	case !path.IsAbs(p):
		return c.errorf("pin_path", "pin path %s is not absolute", quote(p))
	case path.Clean(p) == "/":
		return c.errorf("pin_path", "pin path must be a directory below /, not / itself")
	}
	return nil
}

func (c *Config) validateTimeouts() *Error {
	t := c.Timeouts
	for _, d := range []struct {
		field string
		value fmt.Stringer
		ok    bool
	}{
		{"timeouts.active", t.Active, t.Active > 0},
		{"timeouts.inactive", t.Inactive, t.Inactive > 0},
		{"timeouts.scan_interval", t.ScanInterval, t.ScanInterval > 0},
	} {
		if !d.ok {
			return c.errorf(d.field, "must be greater than 0, got %v", d.value)
		}
	}
	for _, limit := range []struct {
		field, name string
		value       fmt.Stringer
		exceeded    bool
	}{
		{"timeouts.inactive", "inactive timeout", t.Inactive, t.ScanInterval > t.Inactive},
		{"timeouts.active", "active timeout", t.Active, t.ScanInterval > t.Active},
	} {
		if !limit.exceeded {
			continue
		}
		// Blame scan_interval unless it was left at its default and the
		// timeout was set explicitly.
		if !c.has("timeouts.scan_interval") && c.has(limit.field) {
			return c.errorf(limit.field, "%s %v is shorter than scan_interval %v (default)", limit.name, limit.value, t.ScanInterval)
		}
		return c.errorf("timeouts.scan_interval", "scan_interval %v is longer than the %s %v", t.ScanInterval, limit.name, limit.value)
	}
	return nil
}

func (c *Config) validateExport() *Error {
	x := c.Export
	if x.TemplateRefresh <= 0 {
		return c.errorf("export.template_refresh", "must be greater than 0, got %v", x.TemplateRefresh)
	}
	if x.MTU < minMTU || x.MTU > maxMTU {
		return c.errorf("export.mtu", "mtu %d out of range %d..%d", x.MTU, minMTU, maxMTU)
	}
	type collectorKey struct{ address, protocol, transport string }
	first := map[collectorKey]int{}
	for i, col := range x.Collectors {
		p := indexPath("export.collectors", i)
		if col.Protocol == "kafka" || col.Kafka != nil {
			if err := c.validateKafka(p, col); err != nil {
				return err
			}
			// One topic on one cluster is one destination, whatever the
			// other settings: name the cluster by its sorted brokers.
			brokers := slices.Sorted(slices.Values(col.Kafka.Brokers))
			key := collectorKey{strings.Join(brokers, ",") + "/" + col.Kafka.Topic, col.Protocol, ""}
			if j, dup := first[key]; dup {
				other := indexPath("export.collectors", j)
				return c.errorf(p, "duplicate collector: topic %s on the same brokers as %s%s", quote(col.Kafka.Topic), other, c.at(other))
			}
			first[key] = i
			continue
		}
		if col.Address == "" && !c.has(p+".address") {
			return c.errorf(p+".address", "required key is missing")
		}
		if msg := checkAddress(col.Address); msg != "" {
			return c.errorf(p+".address", "%s", msg)
		}
		if err := c.checkEnum(p+".protocol", "protocol", col.Protocol, protocols); err != nil {
			return err
		}
		if err := c.checkEnum(p+".transport", "transport", col.Transport, transports); err != nil {
			return err
		}
		if col.Protocol != "ipfix" && col.Transport != "udp" {
			return c.errorf(p+".transport", "protocol %s supports only transport udp, not %s", col.Protocol, col.Transport)
		}
		if err := c.validateTLS(p, col); err != nil {
			return err
		}
		key := collectorKey{col.Address, col.Protocol, col.Transport}
		if j, dup := first[key]; dup {
			other := indexPath("export.collectors", j)
			return c.errorf(p, "duplicate collector (same as %s%s)", other, c.at(other))
		}
		first[key] = i
	}
	return nil
}

// validateKafka checks a destination with protocol kafka, or one that has
// kafka settings (then the protocol must be kafka).
func (c *Config) validateKafka(p string, col Collector) *Error {
	k := col.Kafka
	if col.Protocol != "kafka" {
		for _, key := range []string{"brokers", "topic", "format", "compression", "partition_key", "acks", "sasl"} {
			if c.has(p + "." + key) {
				return c.errorf(p+"."+key, "%s is a setting of protocol kafka (protocol is %s)", key, col.Protocol)
			}
		}
		return c.errorf(p+".protocol", "kafka settings need protocol: kafka (protocol is %s)", col.Protocol)
	}
	if k == nil {
		return c.errorf(p+".brokers", "required key is missing: protocol kafka needs brokers, a list of host:port")
	}
	if c.has(p + ".address") {
		return c.errorf(p+".address", "protocol kafka takes brokers (a list of host:port), not address")
	}
	switch {
	case len(k.Brokers) == 0 && !c.has(p+".brokers"):
		return c.errorf(p+".brokers", "required key is missing: protocol kafka needs brokers, a list of host:port")
	case len(k.Brokers) == 0:
		return c.errorf(p+".brokers", "at least one broker is required")
	}
	seen := map[string]int{}
	for j, b := range k.Brokers {
		bp := indexPath(p+".brokers", j)
		if msg := checkAddress(b); msg != "" {
			return c.errorf(bp, "%s", msg)
		}
		if first, dup := seen[b]; dup {
			return c.errorf(bp, "duplicate broker %s (already %s)", quote(b), indexPath(p+".brokers", first))
		}
		seen[b] = j
	}
	if k.Topic == "" && !c.has(p+".topic") {
		return c.errorf(p+".topic", "required key is missing: the Kafka topic to produce to")
	}
	if msg := checkTopic(k.Topic); msg != "" {
		return c.errorf(p+".topic", "%s", msg)
	}
	for _, e := range []struct {
		key, what, value string
		allowed          []string
	}{
		{"transport", "transport", col.Transport, kafkaTransports},
		{"format", "format", k.Format, kafkaFormats},
		{"compression", "compression", k.Compression, kafkaCompressions},
		{"partition_key", "partition key", k.PartitionKey, kafkaPartitionKeys},
		{"acks", "acks", k.Acks, kafkaAcks},
	} {
		if err := c.checkEnum(p+"."+e.key, e.what, e.value, e.allowed); err != nil {
			if e.key == "transport" {
				err.Msg = fmt.Sprintf("protocol kafka supports transport tcp or tls, not %s", quote(e.value))
			}
			return err
		}
	}
	if err := c.validateSASL(p+".sasl", k.SASL); err != nil {
		return err
	}
	return c.validateTLS(p, col)
}

// checkTopic applies Kafka's rules for topic names.
func checkTopic(t string) string {
	switch {
	case t == "":
		return "topic must not be empty"
	case len(t) > 249:
		return fmt.Sprintf("topic %s is too long (%d bytes, max 249)", quote(t), len(t))
	case t == "." || t == "..":
		return fmt.Sprintf("topic %s is not allowed", quote(t))
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Sprintf("topic %s contains invalid character %q (want letters, digits, '.', '_' and '-')", quote(t), r)
		}
	}
	return ""
}

func (c *Config) validateSASL(p string, s SASL) *Error {
	if s == (SASL{}) {
		if c.has(p) {
			return c.errorf(p+".mechanism", "required key is missing: %s", oneOf(saslMechanisms))
		}
		return nil
	}
	if s.Mechanism == "" && !c.has(p+".mechanism") {
		return c.errorf(p+".mechanism", "required key is missing: %s", oneOf(saslMechanisms))
	}
	if err := c.checkEnum(p+".mechanism", "SASL mechanism", s.Mechanism, saslMechanisms); err != nil {
		return err
	}
	switch {
	case s.Username == "" && !c.has(p+".username"):
		return c.errorf(p+".username", "required key is missing: the SASL user name")
	case s.Username == "":
		return c.errorf(p+".username", "must not be empty")
	case s.Password == "" && c.has(p+".password"):
		return c.errorf(p+".password", "must not be empty")
	case s.Password == "":
		return c.errorf(p+".password", "required key is missing: give one of password, password_file or password_env")
	}
	return nil
}

// validateTLS checks the tls settings of the collector at path p: only
// with transport tls, which needs at least a CA; cert and key together;
// and files that can be read and hold what they should (PEM), so that a
// bad file is found by `xflow check`, not at the first connection.
func (c *Config) validateTLS(p string, col Collector) *Error {
	t := col.TLS
	tp := p + ".tls"
	if col.Transport != "tls" {
		if t != (TLS{}) {
			return c.errorf(tp, "tls settings need transport: tls (transport is %s)", col.Transport)
		}
		return nil
	}
	peer := "the collector's certificate"
	if col.Protocol == "kafka" {
		peer = "the brokers' certificates"
	}
	if t == (TLS{}) && !c.has(tp) {
		return c.errorf(tp, "required key is missing: transport tls needs tls.ca, the CA bundle that verifies %s", peer)
	}
	switch {
	case t.CA == "" && !c.has(tp+".ca"):
		return c.errorf(tp+".ca", "required key is missing: the PEM CA bundle that verifies %s", peer)
	case t.CA == "":
		return c.errorf(tp+".ca", "must not be empty")
	case t.Cert != "" && t.Key == "":
		return c.errorf(tp+".key", "required with tls.cert: a client certificate needs its private key")
	case t.Key != "" && t.Cert == "":
		return c.errorf(tp+".cert", "required with tls.key: a client key needs its certificate")
	}
	if name := t.ServerName; name != "" {
		if _, err := netip.ParseAddr(name); err != nil && !validHostname(name) {
			return c.errorf(tp+".server_name", "invalid server name %s (want a host name or an IP address)", quote(name))
		}
	}
	if _, err := col.TLSConfig(); err != nil {
		if fe, ok := errors.AsType[*transport.TLSFileError](err); ok {
			e := c.errorf(tp+"."+fe.Role, "%s", fe.Error())
			e.Err = err
			return e
		}
		return c.errorf(tp, "%v", err)
	}
	return nil
}

// checkAddress validates a collector's host:port and returns a description
// of the problem, if any. Host names are not resolved.
func checkAddress(addr string) string {
	if addr == "" {
		return "address must not be empty"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if strings.Count(addr, ":") > 1 && !strings.HasPrefix(addr, "[") {
			return fmt.Sprintf("invalid address %s: IPv6 addresses must be bracketed, as in [::1]:4739", quote(addr))
		}
		reason := "want host:port"
		if ae, ok := errors.AsType[*net.AddrError](err); ok {
			reason = ae.Err + "; want host:port"
		}
		return fmt.Sprintf("invalid address %s: %s", quote(addr), reason)
	}
	if host == "" {
		return fmt.Sprintf("missing host in address %s", quote(addr))
	}
	if port == "" {
		return fmt.Sprintf("missing port in address %s", quote(addr))
	}
	for _, r := range port {
		if r < '0' || r > '9' {
			return fmt.Sprintf("invalid port %s in address %s (want a number)", quote(port), quote(addr))
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("port %s out of range 1..65535", literal(port))
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if strings.Contains(host, ":") {
		return fmt.Sprintf("invalid IPv6 address %s", quote(host))
	}
	if !validHostname(host) {
		return fmt.Sprintf("invalid host %s in address %s", quote(host), quote(addr))
	}
	return ""
}

// validHostname reports whether s is syntactically a DNS name.
func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func (c *Config) validateMetrics() *Error {
	if c.Metrics.Listen == "" {
		return nil // disabled
	}
	if msg := checkAddress(c.Metrics.Listen); msg != "" {
		return c.errorf("metrics.listen", "%s", msg)
	}
	return nil
}

func (c *Config) validateLog() *Error {
	if err := c.checkEnum("log.level", "log level", c.Log.Level, logLevels); err != nil {
		return err
	}
	return c.checkEnum("log.format", "log format", c.Log.Format, logFormats)
}

func (c *Config) checkEnum(field, what, value string, allowed []string) *Error {
	if slices.Contains(allowed, value) {
		return nil
	}
	return c.errorf(field, "unknown %s %s (%s)", what, quote(value), oneOf(allowed))
}

// at returns " at line N" for a field whose position is known.
func (c *Config) at(field string) string {
	if l := c.line(field); l > 0 {
		return " at line " + strconv.Itoa(l)
	}
	return ""
}
