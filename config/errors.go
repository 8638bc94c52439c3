package config

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is a problem with a configuration. Its message is always a single
// line of the form "FILE:LINE: FIELD: message".
type Error struct {
	File  string // file name as given to Load or Parse
	Line  int    // 1-based line number; 0 if unknown
	Field string // dotted path such as "export.collectors[0].address"; empty for document-level errors
	Msg   string // description of the problem
	Err   error  // underlying cause, if any (see CheckInterfaces)
}

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// errorf returns an error for field positioned at the closest known line.
func (c *Config) errorf(field, format string, args ...any) *Error {
	return &Error{
		File:  c.file,
		Line:  c.line(field),
		Field: field,
		Msg:   oneLine(fmt.Sprintf(format, args...)),
	}
}

// line returns the line at which field was set or, if it was not set in the
// file, the line of its closest enclosing mapping or sequence. It returns 0
// for configurations not created by Parse.
func (c *Config) line(field string) int {
	for {
		if l, ok := c.lines[field]; ok {
			return l
		}
		if field == "" {
			return 0
		}
		field = parentPath(field)
	}
}

// has reports whether field was present in the file.
func (c *Config) has(field string) bool {
	_, ok := c.lines[field]
	return ok
}

// parentPath strips the last component of a field path:
// "a.b[2]" -> "a.b" -> "a" -> "".
func parentPath(field string) string {
	i := strings.LastIndexAny(field, ".[")
	if i < 0 {
		return ""
	}
	return field[:i]
}

// childPath returns the path of key inside the mapping at parent. Keys that
// are not plain identifiers are quoted so that the path stays one line.
func childPath(parent, key string) string {
	if !isIdent(key) {
		return parent + "[" + quote(key) + "]"
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

func isIdent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// maxQuoted is the number of bytes of a user-supplied value shown in
// messages.
const maxQuoted = 64

// quote returns s as a Go string literal, shortened if necessary, so that
// user input can never break the single-line error format.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "..."
}

// oneLine collapses any line breaks in s.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

// oneOf formats a list of allowed values for messages.
func oneOf(values []string) string {
	return "want one of " + strings.Join(values, ", ")
}
