package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
	"weak"
)

// IPFIX over TLS (RFC 7011 section 10.4.2: TLS over TCP). A TLS stream is
// a Stream like a TCP one; only DialTLSStream differs.

// TLSFileError is a problem with one of the files of a TLS configuration:
// it cannot be read, or holds no usable PEM data.
type TLSFileError struct {
	Role string // "ca", "cert" or "key" (the configuration's keys)
	File string
	Err  error
}

func (e *TLSFileError) Error() string {
	what := map[string]string{"ca": "CA file", "cert": "certificate file", "key": "key file"}[e.Role]
	if what == "" {
		what = e.Role + " file"
	}
	return what + " " + e.File + ": " + e.Reason()
}

// Reason is the problem without the file's name.
func (e *TLSFileError) Reason() string {
	err := e.Err
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		err = pe.Err // the path is already named
	}
	return err.Error()
}

func (e *TLSFileError) Unwrap() error { return e.Err }

// LoadCA reads a PEM bundle of CA certificates.
func LoadCA(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &TLSFileError{Role: "ca", File: file, Err: err}
	}
	certs, err := parseCertificates(data)
	if err != nil {
		return nil, &TLSFileError{Role: "ca", File: file, Err: err}
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// LoadKeyPair reads a PEM certificate (chain) and the PEM private key that
// goes with it.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, &TLSFileError{Role: "cert", File: certFile, Err: err}
	}
	if _, err := parseCertificates(certPEM); err != nil {
		return tls.Certificate{}, &TLSFileError{Role: "cert", File: certFile, Err: err}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, &TLSFileError{Role: "key", File: keyFile, Err: err}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The certificate is sound: the key is at fault.
		msg := strings.TrimPrefix(err.Error(), "tls: ")
		if strings.Contains(msg, "does not match") {
			msg = "private key does not match the certificate in " + certFile
		}
		return tls.Certificate{}, &TLSFileError{Role: "key", File: keyFile, Err: errors.New(msg)}
	}
	return pair, nil
}

// parseCertificates returns the certificates of the CERTIFICATE blocks of
// PEM data; other blocks are skipped.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if bytes.Contains(data, []byte("-----BEGIN")) {
			return nil, errors.New("no PEM certificate found (no -----BEGIN CERTIFICATE----- block)")
		}
		return nil, errors.New("no PEM certificate found (want PEM, -----BEGIN CERTIFICATE-----)")
	}
	return certs, nil
}

// TLSConfig returns the client configuration of a TLS collector at
// address: the collector's certificate must chain to a certificate of the
// PEM bundle ca and name serverName (default: the host of address, a name
// or an IP address); cert and key (PEM), both or neither, are the client
// certificate for collectors that require one (mutual TLS). TLS 1.2 at
// least. A problem with a file is a *TLSFileError naming it.
//
// The files are read now; DialTLSStream names ca in its errors.
func TLSConfig(ca, cert, key, serverName, address string) (*tls.Config, error) {
	if ca == "" {
		return nil, errors.New("no CA file: the collector's certificate cannot be verified")
	}
	if (cert == "") != (key == "") {
		return nil, errors.New("a client certificate needs both a certificate file and a key file")
	}
	if serverName == "" {
		host, _, err := net.SplitHostPort(address)
		if err != nil || host == "" {
			return nil, fmt.Errorf("no server name, and none in address %q", address)
		}
		serverName = host
	}
	pool, err := LoadCA(ca)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		RootCAs:    pool,
		ServerName: serverName,
		MinVersion: tls.VersionTLS12,
		// Reconnections resume the session (a shorter handshake); and
		// without a cache, a TLS 1.3 client does not ask for the session
		// tickets that tell DialTLSStream promptly that the collector
		// accepted its certificate.
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
	}
	if cert != "" {
		pair, err := LoadKeyPair(cert, key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	caFiles.Store(weak.Make(cfg), ca)
	runtime.AddCleanup(cfg, func(k weak.Pointer[tls.Config]) { caFiles.Delete(k) }, weak.Make(cfg))
	return cfg, nil
}

// caFiles names the CA file of each configuration TLSConfig made, for
// DialTLSStream's messages; entries go with their configuration.
var caFiles sync.Map // weak.Pointer[tls.Config] -> string

func caFile(cfg *tls.Config) string {
	if v, ok := caFiles.Load(weak.Make(cfg)); ok {
		return v.(string)
	}
	return ""
}

// maxVerdictWait bounds how long DialTLSStream waits, after a TLS 1.3
// handshake in which the collector asked for a client certificate, for
// the collector to say whether it accepts it (see DialTLSStream).
const maxVerdictWait = time.Second

// DialTLSStream connects to address and runs the TLS handshake with cfg
// (see TLSConfig; cfg.ServerName, if empty, is the host of address), all
// within timeout. The Stream is then used as DialStream's.
//
// A collector whose certificate does not verify is refused with an error
// that says so: "collector ADDRESS: TLS handshake: the collector's
// certificate is not trusted by the configured CA (ca FILE): x509: ..."
// (it wraps the *tls.CertificateVerificationError).
//
// With TLS 1.3 a client's handshake is over before the server has checked
// the client's certificate, and a collector that refuses it says so in an
// alert afterwards. So when the collector asked for a client certificate,
// DialTLSStream waits for that verdict: the alert (an error), or the
// session tickets a collector sends once it has accepted the certificate,
// or, from one that sends none, nothing for up to a second (or what is
// left of timeout), which counts as accepted.
func DialTLSStream(ctx context.Context, address string, cfg *tls.Config, timeout, writeTimeout time.Duration) (*Stream, error) {
	if cfg == nil {
		return nil, fmt.Errorf("collector %s: no TLS configuration", address)
	}
	ca := caFile(cfg)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	s := &Stream{tcp: tc, writeTimeout: writeTimeout}

	cc := cfg.Clone()
	if cc.ServerName == "" {
		if host, _, err := net.SplitHostPort(address); err == nil {
			cc.ServerName = host
		}
	}
	if cc.ClientSessionCache == nil {
		cc.ClientSessionCache = tls.NewLRUClientSessionCache(1) // see TLSConfig
	}
	h := &handshake{address: address, ca: ca, timeout: timeout, haveCert: len(cc.Certificates) > 0 || cc.GetClientCertificate != nil}
	getCert := cc.GetClientCertificate
	certs := cc.Certificates
	cc.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		h.asked, h.acceptable = true, cri.AcceptableCAs
		var cert *tls.Certificate
		if getCert != nil {
			c, err := getCert(cri)
			if err != nil {
				return nil, err
			}
			cert = c
		} else {
			// What crypto/tls does without GetClientCertificate: the
			// first certificate the collector can take, else none.
			cert = new(tls.Certificate)
			for i := range certs {
				if cri.SupportsCertificate(&certs[i]) == nil {
					cert = &certs[i]
					break
				}
			}
		}
		h.offered = cert != nil && len(cert.Certificate) > 0
		return cert, nil
	}
	conn := tls.Client(countingConn{tc, &s.written}, cc)
	s.conn, s.tls = conn, conn
	if err := conn.HandshakeContext(ctx); err != nil {
		tc.Close()
		return nil, h.error(err)
	}
	if h.asked && conn.ConnectionState().Version >= tls.VersionTLS13 {
		wait := maxVerdictWait
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if err := s.awaitVerdict(wait); err != nil {
			tc.Close()
			return nil, h.error(err)
		}
	}
	return s, nil
}

// handshake is what DialTLSStream learns of a handshake, to explain its
// failure.
type handshake struct {
	address, ca string
	timeout     time.Duration
	haveCert    bool     // a client certificate is configured
	asked       bool     // the collector asked for a client certificate
	acceptable  [][]byte // the CAs it named (DER subjects)
	offered     bool     // a client certificate was sent
}

// awaitVerdict waits up to wait for the collector to send something after
// the handshake, and lets crypto/tls read it.
func (s *Stream) awaitVerdict(wait time.Duration) error {
	raw, err := s.tcp.SyscallConn()
	if err != nil {
		return err
	}
	s.tcp.SetReadDeadline(time.Now().Add(wait))
	var perr error
	err = raw.Read(func(fd uintptr) bool {
		readable, err := s.peekFD(fd)
		perr = err
		return readable || err != nil // else wait until readable
	})
	s.tcp.SetReadDeadline(time.Time{})
	var ne net.Error
	switch {
	case perr != nil:
		return perr
	case errors.As(err, &ne) && ne.Timeout():
		return nil // silence: accepted
	case err != nil:
		return err
	}
	// Long enough for the rest of a flight that has begun to arrive; an
	// alert that comes later still, Alive finds.
	return s.readTLS(min(wait, 10*time.Millisecond))
}

// error explains a failed handshake.
func (h *handshake) error(err error) error {
	inCA := "the configured CA"
	if h.ca != "" {
		inCA += " (ca " + h.ca + ")"
	}
	var (
		cve  *tls.CertificateVerificationError
		ua   x509.UnknownAuthorityError
		he   x509.HostnameError
		ci   x509.CertificateInvalidError
		oe   *net.OpError
		what string
	)
	remote := errors.As(err, &oe) && oe.Op == "remote error"
	switch {
	case errors.As(err, &ua):
		what = "the collector's certificate is not trusted by " + inCA
	case errors.As(err, &he):
		what = "the collector's certificate is not valid for the name " + he.Host + " (see tls.server_name)"
	case errors.As(err, &ci):
		what = "the collector's certificate is not valid"
	case errors.As(err, &cve):
		what = "the collector's certificate does not verify against " + inCA
	case h.asked && !h.offered && h.haveCert && remote:
		what = "the collector requires a client certificate issued by a CA it names" + h.names() +
			", and the configured one is not"
	case h.asked && !h.offered && remote:
		what = "the collector requires a client certificate (tls.cert and tls.key)"
	case h.offered && remote:
		what = "the collector refused the client certificate"
	case h.asked && errors.Is(err, ErrPeerClosed):
		what = "the collector asked for a client certificate, then closed the connection"
	case remote:
		what = "refused by the collector"
	case errors.Is(err, context.DeadlineExceeded):
		what = fmt.Sprintf("no answer within %s (is it a TLS collector?)", h.timeout)
	}
	if what == "" {
		return fmt.Errorf("collector %s: TLS handshake: %w", h.address, err)
	}
	return fmt.Errorf("collector %s: TLS handshake: %s: %w", h.address, what, err)
}

// names lists the CAs the collector named for client certificates.
func (h *handshake) names() string {
	var names []string
	for _, der := range h.acceptable {
		var rdn pkix.RDNSequence
		if rest, err := asn1.Unmarshal(der, &rdn); err != nil || len(rest) > 0 {
			continue
		}
		var n pkix.Name
		n.FillFromRDNSequence(&rdn)
		names = append(names, n.String())
	}
	if len(names) == 0 {
		return ""
	}
	return " (" + strings.Join(names, "; ") + ")"
}
