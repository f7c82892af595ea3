package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/clickagg/clickagg/sink"
)

// cmdStorage is `clickagg storage status`: url_clicks' partitions per
// window size, their retention and sizes.
func cmdStorage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const use = "usage: clickagg storage status [--partitions] [--json]"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprintln(stdout, use)
		return flag.ErrHelp
	}
	if len(args) == 0 || args[0] != "status" {
		fmt.Fprintln(stderr, use)
		return errUsage
	}
	fs := flag.NewFlagSet("clickagg storage status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := configFlags(fs, "postgres", "postgres_schema")
	list := fs.Bool("partitions", false, "list every partition too")
	asJSON := fs.Bool("json", false, "print JSON (always with the partitions)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, pool, err := loadPostgres(ctx, load)
	if err != nil {
		return err
	}
	defer pool.Close()
	sizes, err := sink.ReadStorage(ctx, pool, cfg.PostgresSchema)
	if err != nil {
		return fmt.Errorf("%w (has `clickagg migrate` run on schema %s?)", err, cfg.PostgresSchema)
	}
	if *asJSON {
		type size struct {
			sink.SizeStorage
			Retention string `json:"retention"` // "" : forever
			Span      string `json:"span"`
		}
		out := make([]size, len(sizes))
		for i, s := range sizes {
			out[i] = size{SizeStorage: s, Span: sink.SizeLabel(s.Span.Milliseconds())}
			if s.Retention > 0 {
				out[i].Retention = sink.SizeLabel(s.Retention.Milliseconds())
			}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"schema": cfg.PostgresSchema, "window_sizes": out})
	}
	if len(sizes) == 0 {
		fmt.Fprintf(stdout, "schema %s: no window size written yet\n", cfg.PostgresSchema)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WINDOW\tRETENTION\tSPAN\tPARTITIONS\tROWS (EST.)\tSIZE\tOLDEST WINDOW\tEXPIRED BEFORE")
	for _, s := range sizes {
		keep := "forever"
		if s.Retention > 0 {
			keep = sink.SizeLabel(s.Retention.Milliseconds())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", s.Label, keep, sink.SizeLabel(s.Span.Milliseconds()), len(s.Partitions),
			s.Rows, humanBytes(s.Bytes), timeOrDash(s.Oldest), timeOrDash(s.ExpiredBefore))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !*list {
		return nil
	}
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tWINDOW_START FROM\tTO\tROWS (EST.)\tSIZE\tSTATE")
	for _, s := range sizes {
		for _, p := range s.Partitions {
			state, rows := "attached", fmt.Sprint(p.Rows)
			switch {
			case p.Detaching:
				state = "detaching (expired)"
			case p.Detached:
				state = "detached (expired)"
			}
			if p.Rows < 0 {
				rows = "?" // never analyzed
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Start.Format(time.RFC3339), p.End.Format(time.RFC3339),
				rows, humanBytes(p.Bytes), state)
		}
	}
	return tw.Flush()
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// humanBytes prints n in binary units: 8.0 KiB, 1.5 GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
