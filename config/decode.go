package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// The configuration is first parsed into a yaml.Node tree and then walked by
// a small decoder that knows the schema. Walking the nodes ourselves gives
// an exact line for every key and value and makes unknown keys, duplicate
// keys and type mismatches easy to report uniformly.

// YAML core schema tags as reported by yaml.Node.ShortTag.
const (
	tagStr       = "!!str"
	tagInt       = "!!int"
	tagFloat     = "!!float"
	tagBool      = "!!bool"
	tagNull      = "!!null"
	tagTimestamp = "!!timestamp"
	tagMerge     = "!!merge"
)

// maxAliasChain bounds alias-to-alias resolution. The parser does not
// produce such chains, but the walker must never loop.
const maxAliasChain = 16

// parseYAML parses data as a single YAML document and returns its root node,
// or nil if the document is empty.
func parseYAML(file string, data []byte) (root *yaml.Node, err error) {
	// The parser reports malformed input by panicking internally and turns
	// that into an error; it re-panics on internal inconsistencies. Treat
	// those as syntax errors too rather than crash the caller.
	defer func() {
		if r := recover(); r != nil {
			root = nil
			err = &Error{File: file, Line: 1, Msg: oneLine(fmt.Sprintf("invalid YAML: %v", r))}
		}
	}()

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(file, data, err)
	}
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, syntaxError(file, data, err)
		}
		// Tolerate empty documents such as a trailing "---".
		if !isNull(documentRoot(&next)) {
			return nil, &Error{
				File: file,
				Line: max(next.Line, 1),
				Msg:  "multiple YAML documents; the configuration must be a single document",
			}
		}
	}
	return documentRoot(&doc), nil
}

func documentRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return doc.Content[0]
	}
	return nil
}

// syntaxError converts a yaml parser error ("yaml: line 3: message") into an
// *Error, keeping the parser's line number. A few errors come without a
// line; for those the line is recovered from data where possible.
func syntaxError(file string, data []byte, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil && n >= 1 {
				line, msg = n, text
			}
		}
	}
	if line == 0 {
		line = guessLine(data, msg)
	}
	return &Error{File: file, Line: line, Msg: oneLine("invalid YAML: " + msg), Err: err}
}

// guessLine finds the line of the problem described by a yaml error message
// that carries no line number, defaulting to 1.
func guessLine(data []byte, msg string) int {
	off := -1
	switch {
	case strings.HasPrefix(msg, "unknown anchor '"):
		name, _, _ := strings.Cut(strings.TrimPrefix(msg, "unknown anchor '"), "'")
		off = findAlias(data, name)
	case strings.Contains(msg, "UTF-8"), strings.Contains(msg, "control characters"):
		off = firstInvalidChar(data)
	}
	if off < 0 {
		return 1
	}
	return 1 + bytes.Count(data[:off], []byte("\n"))
}

// findAlias returns the offset of the first alias "*name" in data, or -1.
func findAlias(data []byte, name string) int {
	alias := []byte("*" + name)
	for i := 0; ; {
		j := bytes.Index(data[i:], alias)
		if j < 0 {
			return -1
		}
		end := i + j + len(alias)
		if end == len(data) || bytes.IndexByte([]byte(" \t\r\n,]}"), data[end]) >= 0 {
			return i + j
		}
		i = end
	}
}

// firstInvalidChar returns the offset of the first byte sequence that is not
// valid UTF-8 or is a character YAML does not allow in a stream, or -1.
func firstInvalidChar(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		if !yamlPrintable(r) {
			return i
		}
		i += size
	}
	return -1
}

// yamlPrintable reports whether r may appear in a YAML stream (YAML 1.2
// section 5.1, c-printable, plus the byte order mark).
func yamlPrintable(r rune) bool {
	switch {
	case r == '\t', r == '\n', r == '\r':
		return true
	case r >= 0x20 && r <= 0x7e, r == 0x85:
		return true
	case r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		return true
	}
	return false
}

// isNull reports whether n is absent or an explicit null ("", "~", "null").
func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == tagNull)
}

// decoder walks the node tree of one file.
type decoder struct {
	file  string
	lines map[string]int // field path -> line, shared with Config.lines
}

// entry is a value to decode: its field path, the line to report problems
// at (the key's line for mapping values, the item's line for sequence
// items) and its node with aliases resolved.
type entry struct {
	path string
	line int
	node *yaml.Node
}

// field describes one known key of a mapping.
type field struct {
	name   string
	decode func(e entry) error
}

func (d *decoder) errorf(line int, path, format string, args ...any) *Error {
	return &Error{
		File:  d.file,
		Line:  max(line, 1),
		Field: path,
		Msg:   oneLine(fmt.Sprintf(format, args...)),
	}
}

func (d *decoder) typeError(e entry, want string) *Error {
	return d.errorf(e.line, e.path, "expected %s, got %s", want, describe(e.node))
}

// resolve follows aliases to the anchored node.
func (d *decoder) resolve(path string, line int, n *yaml.Node) (*yaml.Node, error) {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i == maxAliasChain {
			return nil, d.errorf(line, path, "alias chain too long")
		}
		n = n.Alias
	}
	if n == nil {
		return nil, d.errorf(line, path, "unresolved alias")
	}
	return n, nil
}

func (d *decoder) decodeConfig(root *yaml.Node, c *Config) error {
	if root == nil {
		return d.errorf(1, "interfaces", "configuration is empty; at least one interface is required")
	}
	root, err := d.resolve("", root.Line, root)
	if err != nil {
		return err
	}
	if isNull(root) {
		return d.errorf(1, "interfaces", "configuration is empty; at least one interface is required")
	}
	d.lines[""] = max(root.Line, 1)
	if root.Kind != yaml.MappingNode {
		return d.errorf(root.Line, "", "the top level must be a mapping of settings, got %s", describe(root))
	}
	return d.mapping(entry{path: "", line: root.Line, node: root}, []field{
		{"interfaces", func(e entry) error {
			c.Interfaces = []Interface{}
			return d.sequence(e, func(e entry) error {
				ifc := defaultInterface()
				if err := d.decodeInterface(e, &ifc); err != nil {
					return err
				}
				c.Interfaces = append(c.Interfaces, ifc)
				return nil
			})
		}},
		{"datapath", func(e entry) error { return d.decodeDatapath(e, &c.Datapath) }},
		{"pin_path", d.stringField(&c.PinPath)},
		{"timeouts", func(e entry) error { return d.decodeTimeouts(e, &c.Timeouts) }},
		{"export", func(e entry) error { return d.decodeExport(e, &c.Export) }},
		{"log", func(e entry) error { return d.decodeLog(e, &c.Log) }},
		{"metrics", func(e entry) error {
			return d.mapping(e, []field{{"listen", d.stringField(&c.Metrics.Listen)}})
		}},
		{"sampling", func(e entry) error { return d.decodeSampling(e, &c.Sampling) }},
		{"filters", func(e entry) error { return d.decodeFilters(e, c) }},
	})
}

func (d *decoder) decodeInterface(e entry, ifc *Interface) error {
	return d.mapping(e, []field{
		{"name", d.stringField(&ifc.Name)},
		{"ingress", d.stringField(&ifc.Ingress)},
		{"egress", d.stringField(&ifc.Egress)},
		{"xdp_mode", d.stringField(&ifc.XDPMode)},
		{"tc_mode", d.stringField(&ifc.TCMode)},
		{"sampling", func(e entry) error {
			s := defaultSampling()
			ifc.Sampling = &s
			return d.decodeSampling(e, ifc.Sampling)
		}},
	})
}

func (d *decoder) decodeDatapath(e entry, dp *Datapath) error {
	return d.mapping(e, []field{
		{"map", d.stringField(&dp.Map)},
		{"max_flows", d.intField(&dp.MaxFlows)},
		{"ring_size", d.sizeField(&dp.RingSize)},
	})
}

func (d *decoder) decodeTimeouts(e entry, t *Timeouts) error {
	return d.mapping(e, []field{
		{"active", d.durationField(&t.Active)},
		{"inactive", d.durationField(&t.Inactive)},
		{"scan_interval", d.durationField(&t.ScanInterval)},
	})
}

func (d *decoder) decodeExport(e entry, x *Export) error {
	return d.mapping(e, []field{
		{"observation_domain", func(e entry) error {
			v, err := d.integer(e)
			if err != nil {
				return err
			}
			if v < 0 || v > math.MaxUint32 {
				return d.errorf(e.line, e.path, "observation_domain %d out of range 0..%d", v, uint32(math.MaxUint32))
			}
			x.ObservationDomain = uint32(v)
			return nil
		}},
		{"template_refresh", d.durationField(&x.TemplateRefresh)},
		{"mtu", d.intField(&x.MTU)},
		{"collectors", func(e entry) error {
			x.Collectors = []Collector{}
			return d.sequence(e, func(e entry) error {
				col := defaultCollector()
				// The kafka keys are decoded into k; col gets it if the
				// protocol is kafka or any of them is present (Validate
				// then says they need protocol: kafka).
				k := DefaultKafka()
				kafkaKeys := false
				kafka := func(f func(entry) error) func(entry) error {
					return func(e entry) error { kafkaKeys = true; return f(e) }
				}
				if err := d.mapping(e, []field{
					{"address", d.stringField(&col.Address)},
					{"protocol", d.stringField(&col.Protocol)},
					{"transport", d.stringField(&col.Transport)},
					{"tls", func(e entry) error { return d.decodeTLS(e, &col.TLS) }},
					{"brokers", kafka(d.stringsField(&k.Brokers))},
					{"topic", kafka(d.stringField(&k.Topic))},
					{"format", kafka(d.stringField(&k.Format))},
					{"compression", kafka(d.stringField(&k.Compression))},
					{"partition_key", kafka(d.stringField(&k.PartitionKey))},
					{"acks", kafka(d.stringField(&k.Acks))},
					{"sasl", kafka(func(e entry) error { return d.decodeSASL(e, &k.SASL) })},
				}); err != nil {
					return err
				}
				if col.Protocol == "kafka" || kafkaKeys {
					col.Kafka = k
				}
				if _, set := d.lines[e.path+".transport"]; col.Protocol == "kafka" && !set {
					col.Transport = defaultKafkaTransport
				}
				x.Collectors = append(x.Collectors, col)
				return nil
			})
		}},
	})
}

func (d *decoder) decodeTLS(e entry, t *TLS) error {
	return d.mapping(e, []field{
		{"ca", d.fileField(&t.CA)},
		{"cert", d.fileField(&t.Cert)},
		{"key", d.fileField(&t.Key)},
		{"server_name", d.stringField(&t.ServerName)},
	})
}

// decodeSASL decodes a kafka destination's sasl block and resolves its
// password from the one source given: password, password_file (its first
// line) or password_env.
func (d *decoder) decodeSASL(e entry, s *SASL) error {
	var password string
	if err := d.mapping(e, []field{
		{"mechanism", d.stringField(&s.Mechanism)},
		{"username", d.stringField(&s.Username)},
		{"password", d.stringField(&password)},
		{"password_file", d.fileField(&s.PasswordFile)},
		{"password_env", d.stringField(&s.PasswordEnv)},
	}); err != nil {
		return err
	}
	// Two sources: blame the later one in the file.
	type source struct {
		key  string
		line int
	}
	var given []source
	for _, k := range []string{"password", "password_file", "password_env"} {
		if l, ok := d.lines[e.path+"."+k]; ok {
			given = append(given, source{k, l})
		}
	}
	if len(given) > 1 {
		slices.SortStableFunc(given, func(a, b source) int { return a.line - b.line })
		return d.errorf(given[1].line, e.path+"."+given[1].key, "give the password one way only: %s or %s", given[0].key, given[1].key)
	}
	switch {
	case s.PasswordFile != "":
		p := e.path + ".password_file"
		data, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			msg := err.Error()
			if pe, ok := errors.AsType[*fs.PathError](err); ok {
				msg = pe.Err.Error()
			}
			e := d.errorf(d.lines[p], p, "password file %s: %s", s.PasswordFile, msg)
			e.Err = err
			return e
		}
		line, _, _ := strings.Cut(string(data), "\n")
		password = strings.TrimSuffix(line, "\r")
		if password == "" {
			return d.errorf(d.lines[p], p, "password file %s: the first line is empty", s.PasswordFile)
		}
	case s.PasswordEnv != "":
		p := e.path + ".password_env"
		v, ok := os.LookupEnv(s.PasswordEnv)
		if !ok {
			return d.errorf(d.lines[p], p, "environment variable %s is not set", quote(s.PasswordEnv))
		}
		if v == "" {
			return d.errorf(d.lines[p], p, "environment variable %s is empty", quote(s.PasswordEnv))
		}
		password = v
	}
	s.Password = Secret(password)
	return nil
}

func (d *decoder) decodeLog(e entry, l *Log) error {
	return d.mapping(e, []field{
		{"level", d.stringField(&l.Level)},
		{"format", d.stringField(&l.Format)},
	})
}

// mapping decodes a mapping whose keys must all be listed in fields. Null
// values leave the corresponding setting at its default.
func (d *decoder) mapping(e entry, fields []field) error {
	if e.node.Kind != yaml.MappingNode {
		return d.typeError(e, "a mapping")
	}
	pairs, err := d.pairs(e.path, e.node, map[*yaml.Node]bool{})
	if err != nil {
		return err
	}
	for _, p := range pairs {
		path := childPath(e.path, p.key)
		f := findField(fields, p.key)
		if f == nil {
			return d.unknownKey(p.line, path, p.key, fields)
		}
		d.lines[path] = max(p.line, 1)
		v, err := d.resolve(path, p.line, p.value)
		if err != nil {
			return err
		}
		if isNull(v) {
			continue
		}
		if err := f.decode(entry{path: path, line: p.line, node: v}); err != nil {
			return err
		}
	}
	return nil
}

func findField(fields []field, name string) *field {
	for i := range fields {
		if fields[i].name == name {
			return &fields[i]
		}
	}
	return nil
}

func (d *decoder) unknownKey(line int, path, key string, fields []field) error {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	if s := suggest(key, names); s != "" {
		return d.errorf(line, path, "unknown key; did you mean %q?", s)
	}
	return d.errorf(line, path, "unknown key (%s)", oneOf(names))
}

// pair is one key of a mapping after merge keys have been expanded.
type pair struct {
	key   string
	line  int // line of the key
	value *yaml.Node
}

// pairs returns the keys of mapping n in document order, rejecting
// duplicate and non-scalar keys. Merge keys ("<<: *anchor") are expanded:
// explicit keys take precedence over merged ones, and earlier merged
// mappings over later ones. merged guards against merge cycles and against
// expanding the same mapping twice.
func (d *decoder) pairs(path string, n *yaml.Node, merged map[*yaml.Node]bool) ([]pair, error) {
	merged[n] = true
	var (
		out    []pair
		seen   = map[string]int{} // key -> line
		merges []pair
	)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		kr, err := d.resolve(path, k.Line, k)
		if err != nil {
			return nil, err
		}
		if kr.Kind != yaml.ScalarNode {
			return nil, d.errorf(k.Line, path, "mapping keys must be strings, got %s", describe(kr))
		}
		if k.Kind == yaml.ScalarNode && kr.ShortTag() == tagMerge {
			merges = append(merges, pair{key: kr.Value, line: k.Line, value: v})
			continue
		}
		if first, dup := seen[kr.Value]; dup {
			return nil, d.errorf(k.Line, childPath(path, kr.Value), "duplicate key (first defined at line %d)", first)
		}
		seen[kr.Value] = k.Line
		out = append(out, pair{key: kr.Value, line: k.Line, value: v})
	}
	for _, m := range merges {
		v, err := d.resolve(path, m.line, m.value)
		if err != nil {
			return nil, err
		}
		var sources []*yaml.Node
		switch v.Kind {
		case yaml.MappingNode:
			sources = []*yaml.Node{v}
		case yaml.SequenceNode:
			for _, item := range v.Content {
				item, err := d.resolve(path, m.line, item)
				if err != nil {
					return nil, err
				}
				if item.Kind != yaml.MappingNode {
					return nil, d.errorf(m.line, path, "merge key << expects mappings, got %s", describe(item))
				}
				sources = append(sources, item)
			}
		default:
			return nil, d.errorf(m.line, path, "merge key << expects a mapping or a sequence of mappings, got %s", describe(v))
		}
		for _, src := range sources {
			if merged[src] {
				continue
			}
			sub, err := d.pairs(path, src, merged)
			if err != nil {
				return nil, err
			}
			for _, p := range sub {
				if _, ok := seen[p.key]; ok {
					continue
				}
				seen[p.key] = p.line
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// sequence decodes every item of a sequence with item.
func (d *decoder) sequence(e entry, item func(entry) error) error {
	if e.node.Kind != yaml.SequenceNode {
		return d.typeError(e, "a sequence")
	}
	for i, n := range e.node.Content {
		path := indexPath(e.path, i)
		line := max(n.Line, 1)
		d.lines[path] = line
		v, err := d.resolve(path, line, n)
		if err != nil {
			return err
		}
		if err := item(entry{path: path, line: line, node: v}); err != nil {
			return err
		}
	}
	return nil
}

// stringField returns a decoder storing a scalar as a string. Numbers and booleans
// are accepted verbatim, so "name: 10" is the interface named "10".
func (d *decoder) stringField(dst *string) func(entry) error {
	return func(e entry) error {
		if e.node.Kind == yaml.ScalarNode {
			switch e.node.ShortTag() {
			case tagStr, tagInt, tagFloat, tagBool, tagTimestamp:
				*dst = e.node.Value
				return nil
			}
		}
		return d.typeError(e, "a string")
	}
}

// stringsField returns a decoder storing a sequence of strings; a single
// string is taken as a sequence of one.
func (d *decoder) stringsField(dst *[]string) func(entry) error {
	return func(e entry) error {
		if e.node.Kind == yaml.ScalarNode {
			var v string
			if err := d.stringField(&v)(e); err != nil {
				return d.typeError(e, "a sequence of strings")
			}
			*dst = []string{v}
			return nil
		}
		if e.node.Kind != yaml.SequenceNode {
			return d.typeError(e, "a sequence of strings")
		}
		out := []string{}
		if err := d.sequence(e, func(e entry) error {
			var v string
			if err := d.stringField(&v)(e); err != nil {
				return err
			}
			out = append(out, v)
			return nil
		}); err != nil {
			return err
		}
		*dst = out
		return nil
	}
}

// fileField returns a decoder storing a file name; a relative name is taken
// from the directory of the configuration file.
func (d *decoder) fileField(dst *string) func(entry) error {
	str := d.stringField(dst)
	return func(e entry) error {
		if err := str(e); err != nil {
			return err
		}
		if *dst != "" && !filepath.IsAbs(*dst) {
			*dst = filepath.Join(filepath.Dir(d.file), *dst)
		}
		return nil
	}
}

// integer decodes a YAML integer (decimal, 0x, 0o, 0b, with optional _).
func (d *decoder) integer(e entry) (int64, error) {
	if e.node.Kind != yaml.ScalarNode {
		return 0, d.typeError(e, "an integer")
	}
	switch e.node.ShortTag() {
	case tagInt:
	case tagFloat:
		// The parser turns integers too big for 64 bits into floats.
		if isDecimal(e.node.Value) {
			return 0, d.errorf(e.line, e.path, "integer %s out of range", literal(e.node.Value))
		}
		return 0, d.typeError(e, "an integer")
	default:
		return 0, d.typeError(e, "an integer")
	}
	var v int64
	if err := e.node.Decode(&v); err != nil {
		var u uint64
		if e.node.Decode(&u) == nil {
			return 0, d.errorf(e.line, e.path, "integer %s out of range", literal(e.node.Value))
		}
		return 0, d.errorf(e.line, e.path, "invalid integer %s", literal(e.node.Value))
	}
	return v, nil
}

// isDecimal reports whether s is an optionally signed run of decimal digits
// (underscores allowed, as in YAML integers).
func isDecimal(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

// intField returns a decoder storing an integer; range checks are left to
// Validate.
func (d *decoder) intField(dst *int) func(entry) error {
	return func(e entry) error {
		v, err := d.integer(e)
		if err != nil {
			return err
		}
		if v < math.MinInt || v > math.MaxInt {
			return d.errorf(e.line, e.path, "integer %d out of range", v)
		}
		*dst = int(v)
		return nil
	}
}

// durationField returns a decoder storing a Go duration string such as "1m30s".
// A bare number is rejected because its unit would be ambiguous.
func (d *decoder) durationField(dst *time.Duration) func(entry) error {
	return func(e entry) error {
		if e.node.Kind == yaml.ScalarNode {
			switch e.node.ShortTag() {
			case tagStr:
				v, err := time.ParseDuration(strings.TrimSpace(e.node.Value))
				if err != nil {
					return d.errorf(e.line, e.path, "invalid duration %s (want e.g. \"30s\", \"1m30s\", \"500ms\")", quote(e.node.Value))
				}
				*dst = v
				return nil
			case tagInt, tagFloat:
				example := "30s"
				if _, err := time.ParseDuration(e.node.Value + "s"); err == nil {
					example = e.node.Value + "s"
				}
				return d.errorf(e.line, e.path, "duration %s has no unit (want e.g. %s)", literal(e.node.Value), quote(example))
			}
		}
		return d.typeError(e, "a duration such as \"30s\"")
	}
}

// sizeUnits are the suffixes accepted by sizeField.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10},
	{"MiB", 1 << 20},
	{"GiB", 1 << 30},
}

// sizeField returns a decoder storing a byte count given either as an integer or
// as a string with a binary suffix such as "16MiB".
func (d *decoder) sizeField(dst *int) func(entry) error {
	return func(e entry) error {
		if e.node.Kind != yaml.ScalarNode {
			return d.typeError(e, "a size such as \"16MiB\"")
		}
		switch e.node.ShortTag() {
		case tagInt:
			return d.intField(dst)(e)
		case tagStr:
			v, ok, inRange := parseSize(e.node.Value)
			if !ok {
				return d.errorf(e.line, e.path, "invalid size %s (want a byte count or a number with suffix KiB, MiB or GiB, e.g. \"16MiB\")", quote(e.node.Value))
			}
			if !inRange || v > math.MaxInt {
				return d.errorf(e.line, e.path, "size %s out of range", quote(e.node.Value))
			}
			*dst = int(v)
			return nil
		}
		return d.typeError(e, "a size such as \"16MiB\"")
	}
}

// parseSize parses "N", "NKiB", "NMiB" or "NGiB" (N decimal, optional
// space before the suffix). ok reports valid syntax, inRange that the value
// fits in an int64.
func parseSize(s string) (v int64, ok, inRange bool) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if num, found := strings.CutSuffix(s, u.suffix); found {
			s, mult = strings.TrimRight(num, " "), u.mult
			break
		}
	}
	if s == "" {
		return 0, false, false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, true, false
	}
	return n * mult, true, true
}

// describe names the kind and value of n for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.ScalarNode:
		switch tag := n.ShortTag(); tag {
		case tagStr:
			return "string " + quote(n.Value)
		case tagInt:
			return "integer " + literal(n.Value)
		case tagFloat:
			return "number " + literal(n.Value)
		case tagBool:
			return "boolean " + literal(n.Value)
		case tagNull:
			return "null"
		case tagTimestamp:
			return "timestamp " + literal(n.Value)
		default:
			return "value tagged " + quote(tag)
		}
	}
	return "nothing"
}

// literal shows a scalar verbatim if that is safe and short, quoted
// otherwise.
func literal(s string) string {
	if s == "" || len(s) > maxQuoted {
		return quote(s)
	}
	for _, r := range s {
		if r <= ' ' || r > '~' || r == '"' {
			return quote(s)
		}
	}
	return s
}

// suggest returns the candidate closest to key if it is a plausible typo.
func suggest(key string, candidates []string) string {
	best, bestDist := "", 3
	lk := strings.ToLower(key)
	for _, c := range candidates {
		if lk == c || strings.ReplaceAll(lk, "-", "_") == c {
			return c
		}
		if dist := editDistance(lk, c); dist < bestDist {
			best, bestDist = c, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
