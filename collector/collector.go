// Package collector is a small IPFIX collector, the core of `xflow collect`:
// it listens on UDP, TCP or TLS over TCP, decodes IPFIX messages (RFC 7011)
// with github.com/calmh/ipfix, and hands out one Record per flow record.
//
// Decoding state is kept per transport session, as RFC 7011 says: over UDP
// per exporter address (ip:port) and observation domain, over TCP (and TLS)
// per connection and observation domain, so a new TCP connection starts with no
// templates and its own sequence numbers. Interface names, learnt from the
// exporter's interfaceName options records, are kept per exporter IP address
// and observation domain, so that they survive a reconnection; names sent
// under domain 0 apply to the exporter's other domains too (xflow sends its
// options records there).
package collector

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/calmh/ipfix"
)

// Record is one decoded flow record, with the keys of `xflow flows --json`
// plus more.
type Record struct {
	Src       string `json:"src"`
	Dst       string `json:"dst"`
	SrcPort   uint16 `json:"src_port"`
	DstPort   uint16 `json:"dst_port"` // ICMP: type<<8 | code
	Proto     uint8  `json:"proto"`
	Iface     string `json:"iface"`     // the name from the exporter's interfaceName options records, else the ifindex in decimal; "" without an interface element
	Direction string `json:"direction"` // "ingress" / "egress" from flowDirection (61); "" without it
	VLAN      uint16 `json:"vlan"`
	Packets   uint64 `json:"packets"`
	Bytes     uint64 `json:"bytes"`
	TCPFlags  uint16 `json:"tcp_flags"`
	First     string `json:"first"` // RFC 3339 with milliseconds, UTC; "" without a start time
	Last      string `json:"last"`
	Start     uint64 `json:"start"` // ms since the epoch (flowStartMilliseconds 152)
	End       uint64 `json:"end"`   // ms since the epoch (flowEndMilliseconds 153)

	FlowEndReason     uint8  `json:"flow_end_reason"`
	ObservationDomain uint32 `json:"observation_domain"`
	Exporter          string `json:"exporter"` // the exporter's address, ip:port
	IfIndex           uint32 `json:"ifindex"`
	TOS               uint8  `json:"tos"`
	IPVersion         uint8  `json:"ip_version"`
	// SamplingRate is N for packets sampled 1:N (counts are as sampled:
	// multiply by N), 0 (left out of the JSON) when the record says nothing
	// of sampling.
	SamplingRate uint32 `json:"sampling_rate,omitempty"`
}

// Stats are a collector's counters since Listen.
type Stats struct {
	Messages        uint64 // IPFIX messages received (framing intact)
	Records         uint64 // flow records decoded
	TemplateRecords uint64 // template and options template records, withdrawals included
	OptionsRecords  uint64 // data records that are not flows: options data (interface names, statistics), records without addresses
	DecodeErrors    uint64 // malformed messages or sets; over TCP, a framing error ends the connection
	// SequenceGaps counts messages whose sequence number is not the number
	// of data records the transport session had before (per exporter and
	// domain over UDP, per connection and domain over TCP). After a message
	// with a data set that could not be decoded, the next message's number
	// is taken as is.
	SequenceGaps    uint64
	MissingTemplate uint64 // data sets for templates not (or no longer) known; their records are lost
	Connections     uint64 // TCP connections accepted (TLS: before the handshake)
	HandshakeErrors uint64 // TLS handshakes that failed (an untrusted or missing client certificate, no common version, a client that is not TLS)
}

// Options configures a collector.
type Options struct {
	// Listen is "udp://HOST:PORT", "tcp://HOST:PORT" or "tls://HOST:PORT"
	// (IPv6 as [::1]); a bare HOST:PORT is UDP. Port 0 picks a free port:
	// see Addr.
	Listen string
	// TLS is the server configuration of a tls:// collector (RFC 7011
	// section 10.4.2, TLS over TCP), required for tls:// and refused for
	// the others: at least the collector's certificate; ClientAuth and
	// ClientCAs to require client certificates. TLS 1.2 at least, unless
	// it says more.
	TLS *tls.Config
	// Logger gets connections and decoding problems; nil: no logging.
	Logger *slog.Logger
	// OnRecord, if set, is called with each flow record, on the goroutine
	// that decoded it: one for the UDP socket, one per TCP connection (so
	// calls can be concurrent with TCP). Records then returns nil.
	OnRecord func(Record)
	// Buffer is the capacity of the Records channel (default 1024).
	Buffer int
}

// Collector receives IPFIX messages. Its records go to Options.OnRecord, or
// else to the Records channel, which must be drained: a full channel holds
// up decoding (UDP messages are then dropped by the kernel, TCP exporters
// slowed down).
type Collector struct {
	o        Options
	log      *slog.Logger
	udp      *net.UDPConn
	tcp      *net.TCPListener
	tls      *tls.Config // tls://: connections are TLS servers
	records  chan Record
	done     chan struct{}
	stopCtx  func() bool
	wg       sync.WaitGroup
	closing  sync.Once
	closeErr error

	mu    sync.Mutex
	conns map[net.Conn]struct{}

	namesMu   sync.RWMutex
	names     map[nameKey]map[uint32]string
	selectors map[selectorKey]uint32 // sampling.go

	nMessages, nRecords, nTemplateRecords, nOptionsRecords, nDecodeErrors,
	nSequenceGaps, nMissingTemplate, nConnections, nHandshakeErrors atomic.Uint64
}

type nameKey struct {
	exporter netip.Addr
	domain   uint32
}

// Listen binds the address of o.Listen and starts receiving. The collector
// stops when ctx ends or Close is called.
func Listen(ctx context.Context, o Options) (*Collector, error) {
	network, address, err := parseListen(o.Listen)
	if err != nil {
		return nil, err
	}
	if network == "tls" && o.TLS == nil {
		return nil, fmt.Errorf("listen %q: TLS needs a server configuration (certificate and key)", o.Listen)
	}
	if network != "tls" && o.TLS != nil {
		return nil, fmt.Errorf("listen %q: a TLS configuration, but not a tls:// address", o.Listen)
	}
	if o.Buffer <= 0 {
		o.Buffer = 1024
	}
	c := &Collector{
		o:     o,
		log:   o.Logger,
		done:  make(chan struct{}),
		conns: map[net.Conn]struct{}{},
		names: map[nameKey]map[uint32]string{},
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if o.OnRecord == nil {
		c.records = make(chan Record, o.Buffer)
	}
	if o.TLS != nil {
		c.tls = o.TLS.Clone()
		if c.tls.MinVersion < tls.VersionTLS12 {
			c.tls.MinVersion = tls.VersionTLS12
		}
	}
	var lc net.ListenConfig
	switch network {
	case "udp":
		pc, err := lc.ListenPacket(ctx, "udp", address)
		if err != nil {
			return nil, err
		}
		c.udp = pc.(*net.UDPConn)
		_ = c.udp.SetReadBuffer(4 << 20) // best effort: bursts of export packets
	case "tcp", "tls":
		ln, err := lc.Listen(ctx, "tcp", address)
		if err != nil {
			return nil, err
		}
		c.tcp = ln.(*net.TCPListener)
	}
	c.log = c.log.With("listen", network+"://"+c.Addr().String())
	c.wg.Add(1)
	if c.udp != nil {
		go c.serveUDP()
	} else {
		go c.acceptTCP()
	}
	c.stopCtx = context.AfterFunc(ctx, c.shutdown)
	return c, nil
}

func parseListen(s string) (network, address string, err error) {
	network, address, found := strings.Cut(s, "://")
	if !found {
		network, address = "udp", s
	}
	switch network {
	case "udp", "tcp", "tls":
	default:
		return "", "", fmt.Errorf("listen %q: want udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT", s)
	}
	if _, _, err := net.SplitHostPort(address); err != nil {
		return "", "", fmt.Errorf("listen %q: %w", s, err)
	}
	return network, address, nil
}

// Addr is the address the collector listens on.
func (c *Collector) Addr() net.Addr {
	if c.udp != nil {
		return c.udp.LocalAddr()
	}
	return c.tcp.Addr()
}

// Records returns the channel of flow records, closed once Close has
// returned; nil when Options.OnRecord is set.
func (c *Collector) Records() <-chan Record { return c.records }

// Stats returns the counters.
func (c *Collector) Stats() Stats {
	return Stats{
		Messages:        c.nMessages.Load(),
		Records:         c.nRecords.Load(),
		TemplateRecords: c.nTemplateRecords.Load(),
		OptionsRecords:  c.nOptionsRecords.Load(),
		DecodeErrors:    c.nDecodeErrors.Load(),
		SequenceGaps:    c.nSequenceGaps.Load(),
		MissingTemplate: c.nMissingTemplate.Load(),
		Connections:     c.nConnections.Load(),
		HandshakeErrors: c.nHandshakeErrors.Load(),
	}
}

// closeDrain bounds how long Close reads what TCP exporters sent before
// they noticed the collector closing.
const closeDrain = 2 * time.Second

// Close stops receiving, closes the socket and the TCP connections (reading
// what the exporters had sent, see closeDrain), waits for the goroutines,
// and closes the Records channel. Records not yet handed out are discarded.
func (c *Collector) Close() error {
	c.stopCtx()
	c.shutdown()
	return c.closeErr
}

func (c *Collector) shutdown() {
	c.closing.Do(func() {
		close(c.done)
		if c.udp != nil {
			c.closeErr = c.udp.Close()
		} else {
			c.closeErr = c.tcp.Close()
		}
		// TCP: a graceful end. Half-close each connection (FIN): the
		// exporter sees it, stops sending and closes its side, and what it
		// sent before is still read here, until its FIN or for at most
		// closeDrain. Nothing it wrote is lost unread. TLS: the same, with
		// a close_notify alert before the FIN (a connection still in its
		// handshake is just closed).
		c.mu.Lock()
		for conn := range c.conns {
			switch tc := conn.(type) {
			case *net.TCPConn:
				if tc.CloseWrite() == nil {
					tc.SetReadDeadline(time.Now().Add(closeDrain))
					continue
				}
			case *tls.Conn:
				if tc.CloseWrite() == nil {
					if raw, ok := tc.NetConn().(*net.TCPConn); ok {
						raw.CloseWrite()
					}
					tc.SetReadDeadline(time.Now().Add(closeDrain))
					continue
				}
			}
			conn.Close()
		}
		c.mu.Unlock()
		c.wg.Wait()
		if c.records != nil {
			close(c.records)
		}
	})
}

func (c *Collector) emit(r Record) {
	c.nRecords.Add(1)
	if c.o.OnRecord != nil {
		c.o.OnRecord(r)
		return
	}
	select {
	case c.records <- r:
	case <-c.done:
	}
}

func (c *Collector) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func (c *Collector) serveUDP() {
	defer c.wg.Done()
	d := newDecoder(c)
	buf := make([]byte, 65536)
	for {
		n, from, err := c.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if c.closed() || errors.Is(err, net.ErrClosed) {
				return
			}
			c.log.Warn("udp read", "err", err)
			time.Sleep(10 * time.Millisecond) // not a busy loop on a persistent error
			continue
		}
		from = unmap(from)
		// One message per datagram (RFC 7011 section 10.3.3); more are
		// taken if the lengths say so.
		b := buf[:n]
		for len(b) > 0 {
			l, err := messageLength(b)
			if err != nil {
				c.nDecodeErrors.Add(1)
				c.log.Debug("bad message", "exporter", from, "err", err)
				break
			}
			d.message(from, b[:l])
			b = b[l:]
		}
	}
}

// messageLength checks an IPFIX message header at the start of b and
// returns the message's length.
func messageLength(b []byte) (int, error) {
	if len(b) < msgHeaderLen {
		return 0, fmt.Errorf("%d bytes: shorter than a message header", len(b))
	}
	if v := binary.BigEndian.Uint16(b); v != 10 {
		return 0, fmt.Errorf("version %d, want 10 (IPFIX)", v)
	}
	l := int(binary.BigEndian.Uint16(b[2:]))
	if l < msgHeaderLen || l > len(b) {
		return 0, fmt.Errorf("message length %d in %d bytes", l, len(b))
	}
	return l, nil
}

func (c *Collector) acceptTCP() {
	defer c.wg.Done()
	for {
		conn, err := c.tcp.Accept()
		if err != nil {
			if c.closed() || errors.Is(err, net.ErrClosed) {
				return
			}
			c.log.Warn("tcp accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c.mu.Lock()
		if c.closed() {
			c.mu.Unlock()
			conn.Close()
			return
		}
		if c.tls != nil {
			conn = tls.Server(conn, c.tls)
		}
		c.conns[conn] = struct{}{}
		c.wg.Add(1)
		c.mu.Unlock()
		c.nConnections.Add(1)
		go c.serveTCP(conn)
	}
}

func (c *Collector) serveTCP(conn net.Conn) {
	defer c.wg.Done()
	defer func() {
		c.mu.Lock()
		delete(c.conns, conn)
		c.mu.Unlock()
		conn.Close()
	}()
	from := unmap(conn.RemoteAddr().(*net.TCPAddr).AddrPort())
	log := c.log.With("exporter", from)
	if tc, ok := conn.(*tls.Conn); ok {
		if !c.handshake(tc, log) {
			return
		}
	} else {
		log.Info("exporter connected")
	}
	d := newDecoder(c)
	r := bufio.NewReaderSize(conn, 64<<10)
	buf := make([]byte, 65536)
	for {
		// ipfix.Read frames the stream by the header's length field.
		msg, _, err := ipfix.Read(r, buf)
		if err != nil {
			switch {
			case c.closed():
			case errors.Is(err, io.EOF):
				log.Info("exporter disconnected")
			case errors.Is(err, ipfix.ErrVersion), errors.Is(err, io.ErrUnexpectedEOF):
				// A bad header, or a connection closed in the middle of a
				// message: the stream is out of sync or cut.
				c.nDecodeErrors.Add(1)
				log.Warn("bad IPFIX stream, closing the connection", "err", err)
			default:
				log.Info("exporter connection ended", "err", err)
			}
			return
		}
		d.message(from, msg)
	}
}

// handshakeTimeout bounds a TLS exporter's handshake.
const handshakeTimeout = 10 * time.Second

// handshake runs the TLS handshake of an exporter's connection and reports
// whether it succeeded.
func (c *Collector) handshake(tc *tls.Conn, log *slog.Logger) bool {
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		if !c.closed() {
			c.nHandshakeErrors.Add(1)
			log.Warn("TLS handshake failed", "err", err)
		}
		return false
	}
	st := tc.ConnectionState()
	args := []any{"tls", tls.VersionName(st.Version)}
	if len(st.PeerCertificates) > 0 {
		args = append(args, "client", st.PeerCertificates[0].Subject.String())
	}
	log.Info("exporter connected", args...)
	return true
}

const (
	msgHeaderLen = 16
	setHeaderLen = 4
)

// sessionKey names a transport session's state for one observation domain.
type sessionKey struct {
	from   netip.AddrPort
	domain uint32
}

type session struct {
	ipfix     *ipfix.Session
	templates map[uint16]*template
	seqKnown  bool
	nextSeq   uint32
	lastSeen  time.Time
}

type template struct {
	scope  int // scope field count; 0: a template (not options)
	fields []ipfix.TemplateFieldSpecifier
	flow   bool // a template with source and destination addresses
}

// decoder decodes the messages of one UDP socket or one TCP connection; it
// is used by one goroutine.
type decoder struct {
	c         *Collector
	sessions  map[sessionKey]*session
	scratch   []byte
	lastSweep time.Time
}

// UDP transport sessions idle this long are forgotten.
const sessionIdle = 30 * time.Minute

func newDecoder(c *Collector) *decoder {
	return &decoder{c: c, sessions: map[sessionKey]*session{}, lastSweep: time.Now()}
}

func (d *decoder) session(k sessionKey, now time.Time) *session {
	if now.Sub(d.lastSweep) > time.Minute {
		d.lastSweep = now
		for k, s := range d.sessions {
			if now.Sub(s.lastSeen) > sessionIdle {
				delete(d.sessions, k)
			}
		}
	}
	s := d.sessions[k]
	if s == nil {
		s = &session{ipfix: ipfix.NewSession(), templates: map[uint16]*template{}}
		d.sessions[k] = s
	}
	s.lastSeen = now
	return s
}

// message decodes one IPFIX message, whose header messageLength checked.
func (d *decoder) message(from netip.AddrPort, msg []byte) {
	c := d.c
	c.nMessages.Add(1)
	seq := binary.BigEndian.Uint32(msg[8:])
	domain := binary.BigEndian.Uint32(msg[12:])
	s := d.session(sessionKey{from, domain}, time.Now())
	log := c.log
	if log.Enabled(context.Background(), slog.LevelDebug) {
		log = log.With("exporter", from, "domain", domain, "seq", seq)
	}
	if s.seqKnown && seq != s.nextSeq {
		c.nSequenceGaps.Add(1)
		log.Debug("sequence gap", "want", s.nextSeq, "lost", int32(seq-s.nextSeq))
	}

	var count uint32 // data records in this message
	uncounted := false
	for b := msg[msgHeaderLen:]; len(b) > 0; {
		if len(b) < setHeaderLen {
			c.nDecodeErrors.Add(1)
			log.Debug("bad message", "err", fmt.Sprintf("%d bytes after the last set", len(b)))
			uncounted = true
			break
		}
		id := binary.BigEndian.Uint16(b)
		l := int(binary.BigEndian.Uint16(b[2:]))
		if l < setHeaderLen || l > len(b) {
			c.nDecodeErrors.Add(1)
			log.Debug("bad message", "err", fmt.Sprintf("set %d: length %d in %d bytes", id, l, len(b)))
			uncounted = true
			break
		}
		set := b[setHeaderLen:l]
		b = b[l:]
		switch {
		case id == 2 || id == 3:
			if err := d.templates(s, id, set); err != nil {
				c.nDecodeErrors.Add(1)
				log.Debug("bad template set", "set", id, "err", err)
			}
		case id >= 256:
			n, ok := d.data(s, from, domain, msg[:msgHeaderLen], id, set, log)
			count += n
			if !ok {
				uncounted = true
			}
		default:
			c.nDecodeErrors.Add(1)
			log.Debug("bad message", "err", fmt.Sprintf("reserved set ID %d", id))
		}
	}
	s.nextSeq = seq + count
	s.seqKnown = !uncounted
}

// templates reads a template set (id 2) or an options template set (id 3).
// The templates are registered in the ipfix.Session, which decodes the data
// sets, and in s.templates, which tells the flows from the options.
// (calmh/ipfix v1.3.0 skips options template sets, and reads padding at
// the end of a template set as records: hence the parsing here.)
func (d *decoder) templates(s *session, id uint16, b []byte) error {
	hdrLen := 4 // template ID, field count
	if id == 3 {
		hdrLen = 6 // and scope field count
	}
	for len(b) > 0 {
		if len(b) < 4 || allZero(b) {
			return nil // padding
		}
		tid := binary.BigEndian.Uint16(b)
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n == 0 { // withdrawal
			d.c.nTemplateRecords.Add(1)
			b = b[4:]
			switch {
			case tid == id: // all the templates (2) or options templates (3)
				for t, tpl := range s.templates {
					if (tpl.scope > 0) == (id == 3) {
						s.withdraw(t)
					}
				}
			case tid >= 256:
				s.withdraw(tid)
			default:
				return fmt.Errorf("withdrawal of template ID %d", tid)
			}
			continue
		}
		if tid < 256 {
			return fmt.Errorf("template ID %d", tid)
		}
		if len(b) < hdrLen {
			return fmt.Errorf("template %d: truncated", tid)
		}
		scope := 0
		if id == 3 {
			scope = int(binary.BigEndian.Uint16(b[4:]))
			if scope == 0 || scope > n {
				return fmt.Errorf("options template %d: scope field count %d of %d fields", tid, scope, n)
			}
		}
		b = b[hdrLen:]
		fields := make([]ipfix.TemplateFieldSpecifier, n)
		var minLen int
		for i := range fields {
			if len(b) < 4 {
				return fmt.Errorf("template %d: truncated", tid)
			}
			f := &fields[i]
			f.FieldID = binary.BigEndian.Uint16(b)
			f.Length = binary.BigEndian.Uint16(b[2:])
			b = b[4:]
			if f.FieldID&0x8000 != 0 {
				if len(b) < 4 {
					return fmt.Errorf("template %d: truncated", tid)
				}
				f.FieldID &^= 0x8000
				f.EnterpriseID = binary.BigEndian.Uint32(b)
				b = b[4:]
			}
			if f.Length == 65535 {
				minLen++
			} else {
				minLen += int(f.Length)
			}
		}
		d.c.nTemplateRecords.Add(1)
		if minLen == 0 {
			// The session would read such a template as a withdrawal.
			s.withdraw(tid)
			return fmt.Errorf("template %d: records of 0 bytes", tid)
		}
		t := &template{scope: scope, fields: fields}
		if scope == 0 {
			has := map[uint16]bool{}
			for _, f := range fields {
				if f.EnterpriseID == 0 {
					has[f.FieldID] = true
				}
			}
			t.flow = has[ieSrcIPv4] && has[ieDstIPv4] || has[ieSrcIPv6] && has[ieDstIPv6]
		}
		s.templates[tid] = t
		s.ipfix.LoadTemplateRecords([]ipfix.TemplateRecord{{TemplateID: tid, FieldSpecifiers: fields}})
	}
	return nil
}

func (s *session) withdraw(tid uint16) {
	delete(s.templates, tid)
	s.ipfix.LoadTemplateRecords([]ipfix.TemplateRecord{{TemplateID: tid}}) // no fields: forgotten
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// data decodes a data set with calmh/ipfix and hands out its records. It
// returns the number of records and whether that number is known.
func (d *decoder) data(s *session, from netip.AddrPort, domain uint32, hdr []byte, id uint16, set []byte, log *slog.Logger) (uint32, bool) {
	c := d.c
	t := s.templates[id]
	if t == nil {
		c.nMissingTemplate.Add(1)
		log.Debug("data set for an unknown template", "template", id)
		return 0, false
	}
	// The session parses whole messages: give it this set alone.
	d.scratch = append(d.scratch[:0], hdr...)
	d.scratch = binary.BigEndian.AppendUint16(d.scratch, id)
	d.scratch = binary.BigEndian.AppendUint16(d.scratch, uint16(setHeaderLen+len(set)))
	d.scratch = append(d.scratch, set...)
	binary.BigEndian.PutUint16(d.scratch[2:], uint16(len(d.scratch)))
	m, err := s.ipfix.ParseBuffer(d.scratch)
	if err != nil {
		c.nDecodeErrors.Add(1)
		log.Debug("bad data set", "template", id, "err", err)
		return 0, false
	}
	for _, rec := range m.DataRecords {
		if len(rec.Fields) != len(t.fields) {
			continue // cannot happen: the session has the same template
		}
		switch {
		case t.scope > 0:
			c.nOptionsRecords.Add(1)
			d.options(t, rec.Fields, from, domain)
		case !t.flow:
			c.nOptionsRecords.Add(1)
		default:
			c.emit(d.flowRecord(t, rec.Fields, from, domain))
		}
	}
	return uint32(len(m.DataRecords)), true
}

// Information elements (IANA IPFIX registry) read here.
const (
	ieOctetDelta     = 1
	iePacketDelta    = 2
	ieProto          = 4
	ieTOS            = 5
	ieTCPFlags       = 6
	ieSrcPort        = 7
	ieSrcIPv4        = 8
	ieIngressIf      = 10
	ieDstPort        = 11
	ieDstIPv4        = 12
	ieEgressIf       = 14
	ieSrcIPv6        = 27
	ieDstIPv6        = 28
	ieICMPv4         = 32
	ieVLAN           = 58
	ieIPVersion      = 60
	ieDirection      = 61
	ieIfName         = 82
	ieIfDescription  = 83
	ieOctetTotal     = 85
	iePacketTotal    = 86
	ieEndReason      = 136
	ieICMPv6         = 139
	ieStartSeconds   = 150
	ieEndSeconds     = 151
	ieStartMillis    = 152
	ieEndMillis      = 153
	ieICMPTypeV4     = 176
	ieICMPCodeV4     = 177
	ieICMPTypeV6     = 178
	ieICMPCodeV6     = 179
	ieDot1qVLAN      = 243
	rfc3339Milli     = "2006-01-02T15:04:05.000Z07:00"
	directionUnknown = -1
)

// num reads an unsigned integer of any (reduced-size) length up to 8.
func num(b []byte) uint64 {
	if len(b) > 8 {
		return 0
	}
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

func addr(b []byte) (netip.Addr, bool) {
	return netip.AddrFromSlice(b)
}

// options reads an options data record: interfaceName (82, else
// interfaceDescription 83) scoped by ingressInterface (10) or
// egressInterface (14) names an ifindex.
func (d *decoder) options(t *template, fields [][]byte, from netip.AddrPort, domain uint32) {
	var (
		index, hasIndex = uint32(0), false
		name, desc      string
		smp             rateReader
	)
	defer func() { d.c.learnSelector(nameKey{from.Addr(), domain}, &smp) }()
	for i, f := range t.fields {
		if f.EnterpriseID != 0 {
			continue
		}
		smp.field(f.FieldID, fields[i])
		switch {
		case i < t.scope && (f.FieldID == ieIngressIf || f.FieldID == ieEgressIf):
			index, hasIndex = uint32(num(fields[i])), true
		case i >= t.scope && f.FieldID == ieIfName:
			name = strings.TrimRight(string(fields[i]), "\x00")
		case i >= t.scope && f.FieldID == ieIfDescription:
			desc = strings.TrimRight(string(fields[i]), "\x00")
		}
	}
	if name == "" {
		name = desc
	}
	if !hasIndex || name == "" {
		return
	}
	k := nameKey{from.Addr(), domain}
	c := d.c
	c.namesMu.Lock()
	defer c.namesMu.Unlock()
	m := c.names[k]
	if m == nil {
		m = map[uint32]string{}
		c.names[k] = m
	}
	m[index] = name
}

// ifaceName is the name the exporter gave index in domain, else in domain
// 0: RFC 7011 §3.1 has exporters send what no single observation domain is
// relevant to (xflow's interface names and statistics) under domain 0.
func (c *Collector) ifaceName(exporter netip.Addr, domain, index uint32) (string, bool) {
	c.namesMu.RLock()
	defer c.namesMu.RUnlock()
	if n, ok := c.names[nameKey{exporter, domain}][index]; ok {
		return n, true
	}
	n, ok := c.names[nameKey{exporter, 0}][index]
	return n, ok
}

func (d *decoder) flowRecord(t *template, fields [][]byte, from netip.AddrPort, domain uint32) Record {
	r := Record{ObservationDomain: domain, Exporter: from.String()}
	var (
		src, dst                   netip.Addr
		in, eg                     uint32
		hasIn, hasEg               bool
		dir                        = directionUnknown
		packets, octets            uint64
		hasPackets, hasOctets      bool
		icmp                       uint16
		hasICMP                    bool
		icmpType, icmpCode         uint8
		hasICMPType, hasICMPCode   bool
		startSec, endSec           uint64
		vlan, dot1q                uint16
		hasVLAN                    bool
		hasStartMillis, hasEndMill bool
		smp                        rateReader
	)
	for i, f := range t.fields {
		if f.EnterpriseID != 0 {
			continue
		}
		v := fields[i]
		smp.field(f.FieldID, v)
		switch f.FieldID {
		case ieSrcIPv4, ieSrcIPv6:
			if a, ok := addr(v); ok {
				src = a
			}
		case ieDstIPv4, ieDstIPv6:
			if a, ok := addr(v); ok {
				dst = a
			}
		case ieSrcPort:
			r.SrcPort = uint16(num(v))
		case ieDstPort:
			r.DstPort = uint16(num(v))
		case ieProto:
			r.Proto = uint8(num(v))
		case ieTOS:
			r.TOS = uint8(num(v))
		case ieTCPFlags:
			r.TCPFlags = uint16(num(v))
		case ieIngressIf:
			in, hasIn = uint32(num(v)), true
		case ieEgressIf:
			eg, hasEg = uint32(num(v)), true
		case ieDirection:
			dir = int(num(v))
		case ieVLAN:
			vlan, hasVLAN = uint16(num(v)), true
		case ieDot1qVLAN:
			dot1q = uint16(num(v))
		case iePacketDelta:
			r.Packets, hasPackets = num(v), true
		case ieOctetDelta:
			r.Bytes, hasOctets = num(v), true
		case iePacketTotal:
			packets = num(v)
		case ieOctetTotal:
			octets = num(v)
		case ieStartMillis:
			r.Start, hasStartMillis = num(v), true
		case ieEndMillis:
			r.End, hasEndMill = num(v), true
		case ieStartSeconds:
			startSec = num(v)
		case ieEndSeconds:
			endSec = num(v)
		case ieEndReason:
			r.FlowEndReason = uint8(num(v))
		case ieIPVersion:
			r.IPVersion = uint8(num(v))
		case ieICMPv4, ieICMPv6:
			icmp, hasICMP = uint16(num(v)), true
		case ieICMPTypeV4, ieICMPTypeV6:
			icmpType, hasICMPType = uint8(num(v)), true
		case ieICMPCodeV4, ieICMPCodeV6:
			icmpCode, hasICMPCode = uint8(num(v)), true
		}
	}
	r.SamplingRate = d.c.recordRate(nameKey{from.Addr(), domain}, &smp)
	if !hasPackets {
		r.Packets = packets
	}
	if !hasOctets {
		r.Bytes = octets
	}
	if !hasVLAN {
		vlan = dot1q
	}
	r.VLAN = vlan
	if !hasStartMillis {
		r.Start = startSec * 1000
	}
	if !hasEndMill {
		r.End = endSec * 1000
	}
	r.Src, r.Dst = src.String(), dst.String()
	if r.IPVersion == 0 {
		if src.Is4() {
			r.IPVersion = 4
		} else if src.Is6() {
			r.IPVersion = 6
		}
	}
	// icmpTypeCode is only meaningful for ICMP flows: exporters send it as
	// 0 for the others, where destinationTransportPort holds the port.
	if r.Proto == 1 || r.Proto == 58 {
		switch {
		case hasICMP:
			r.DstPort = icmp
		case hasICMPType || hasICMPCode:
			r.DstPort = uint16(icmpType)<<8 | uint16(icmpCode)
		}
	}
	switch dir {
	case 0:
		r.Direction = "ingress"
	case 1:
		r.Direction = "egress"
	case directionUnknown:
	default:
		r.Direction = fmt.Sprintf("direction(%d)", dir)
	}
	hasIf := hasIn || hasEg
	switch {
	case hasEg && (dir == 1 || !hasIn):
		r.IfIndex = eg
	case hasIn:
		r.IfIndex = in
	}
	if hasIf {
		if n, ok := d.c.ifaceName(from.Addr(), domain, r.IfIndex); ok {
			r.Iface = n
		} else {
			r.Iface = fmt.Sprint(r.IfIndex)
		}
	}
	if r.Start != 0 {
		r.First = time.UnixMilli(int64(r.Start)).UTC().Format(rfc3339Milli)
	}
	if r.End != 0 {
		r.Last = time.UnixMilli(int64(r.End)).UTC().Format(rfc3339Milli)
	}
	return r
}
