package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"sync"
	"syscall"

	"github.com/xflow-net/xflow/collector"
)

// cmdCollect is a small IPFIX collector for testing: it prints one line
// (or JSON object) per flow record until SIGINT or SIGTERM, then its
// counters on standard error.
func cmdCollect(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("collect", stderr)
	listen := fs.String("listen", "udp://127.0.0.1:4739", "`udp://HOST:PORT` or tcp://HOST:PORT to receive IPFIX on")
	asJSON := fs.Bool("json", false, "print one JSON object per record")
	verbose := fs.Bool("v", false, "log connections and decoding problems")
	if err := parseFlags(fs, args); err != nil {
		return err
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
	fmt.Fprintf(stderr, "xflow collect: listening on %s\n", *listen)
	<-ctx.Done()
	c.Close()
	mu.Lock()
	out.Flush()
	mu.Unlock()
	st := c.Stats()
	fmt.Fprintf(stderr, "xflow collect: %d messages, %d records, %d options records, %d decode errors, %d sequence gaps, %d missing templates\n",
		st.Messages, st.Records, st.OptionsRecords, st.DecodeErrors, st.SequenceGaps, st.MissingTemplate)
	return nil
}
