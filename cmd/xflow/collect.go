package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/xflow-net/xflow/collector"
	"github.com/xflow-net/xflow/exporter/transport"
)

// cmdCollect is a small IPFIX collector for testing: it prints one line
// (or JSON object) per flow record until SIGINT or SIGTERM, then its
// counters on standard error.
func cmdCollect(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("collect", "[--listen udp://127.0.0.1:4739] [--json] [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]",
		"A small IPFIX collector for tests and demos: prints one line (or JSON object) per flow record\n"+
			"until SIGINT or SIGTERM, then its counters on standard error.", stdout)
	listen := fs.String("listen", "udp://127.0.0.1:4739", "receive IPFIX at `URL`: udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT")
	asJSON := fs.Bool("json", false, "print one JSON object per record")
	verbose := fs.Bool("v", false, "log connections and decoding problems")
	tlsCert := fs.String("tls-cert", "", "tls://: the collector's certificate (PEM `FILE`, the chain after it)")
	tlsKey := fs.String("tls-key", "", "tls://: its private key (PEM `FILE`)")
	tlsClientCA := fs.String("tls-client-ca", "", "tls://: require client certificates signed by a CA of this PEM `FILE`")
	if err := fs.parse(args); err != nil {
		return err
	}
	tlsConfig, err := collectTLS(*listen, *tlsCert, *tlsKey, *tlsClientCA)
	if err != nil {
		return usageErr(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	out := bufio.NewWriter(stdout)
	var mu sync.Mutex
	var werr error
	c, err := collector.Listen(ctx, collector.Options{
		Listen: *listen,
		TLS:    tlsConfig,
		Logger: log,
		OnRecord: func(r collector.Record) {
			mu.Lock()
			defer mu.Unlock()
			if *asJSON {
				werr = collector.WriteJSON(out, r)
			} else {
				_, werr = fmt.Fprintln(out, collector.Format(r))
			}
			if werr == nil {
				werr = out.Flush()
			}
		},
	})
	if err != nil {
		return usageErr(err)
	}
	switch {
	case *tlsClientCA != "":
		fmt.Fprintf(stderr, "xflow collect: listening on %s, client certificates signed by %s required\n", *listen, *tlsClientCA)
	default:
		fmt.Fprintf(stderr, "xflow collect: listening on %s\n", *listen)
	}
	<-ctx.Done()
	c.Close()
	mu.Lock()
	out.Flush()
	mu.Unlock()
	st := c.Stats()
	fmt.Fprintf(stderr, "xflow collect: %d messages, %d records, %d options records, %d decode errors, %d sequence gaps, %d missing templates",
		st.Messages, st.Records, st.OptionsRecords, st.DecodeErrors, st.SequenceGaps, st.MissingTemplate)
	if tlsConfig != nil {
		fmt.Fprintf(stderr, ", %d failed TLS handshakes", st.HandshakeErrors)
	}
	fmt.Fprintln(stderr)
	return nil
}

// collectTLS checks the TLS flags against the listen address and builds
// the server configuration of a tls:// collector (nil for the others).
// Problems name the flag and its file.
func collectTLS(listen, cert, key, clientCA string) (*tls.Config, error) {
	if !strings.HasPrefix(listen, "tls://") {
		for _, f := range []struct{ name, value string }{{"--tls-cert", cert}, {"--tls-key", key}, {"--tls-client-ca", clientCA}} {
			if f.value != "" {
				return nil, fmt.Errorf("%s needs --listen tls://HOST:PORT (listen is %s)", f.name, listen)
			}
		}
		return nil, nil
	}
	if cert == "" || key == "" {
		return nil, fmt.Errorf("--listen %s needs --tls-cert FILE and --tls-key FILE", listen)
	}
	flagOf := map[string]string{"cert": "--tls-cert", "key": "--tls-key", "ca": "--tls-client-ca"}
	fileErr := func(err error) error {
		if fe, ok := errors.AsType[*transport.TLSFileError](err); ok {
			return fmt.Errorf("%s %s: %s", flagOf[fe.Role], fe.File, fe.Reason())
		}
		return err
	}
	pair, err := transport.LoadKeyPair(cert, key)
	if err != nil {
		return nil, fileErr(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		pool, err := transport.LoadCA(clientCA)
		if err != nil {
			return nil, fileErr(err)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
