package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/clickagg/clickagg/sink"
)

func cmdQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const use = "usage: clickagg query top [--window 1m] [--limit 10] | clickagg query url [--limit 20] URL"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprintln(stdout, use)
		return flag.ErrHelp
	}
	if len(args) == 0 || (args[0] != "top" && args[0] != "url") {
		fmt.Fprintln(stderr, use)
		return errUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("clickagg query "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := configFlags(fs, "postgres", "postgres_schema")
	window := fs.Duration("window", time.Minute, "window size (top)")
	limit := fs.Int("limit", 10, "rows to print")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if err := cfg.requirePostgres(); err != nil {
		return err
	}
	if *limit < 1 {
		return badConfig("--limit %d: must be at least 1", *limit)
	}
	pool, err := sink.NewPool(ctx, cfg.Postgres)
	if err != nil {
		return err
	}
	defer pool.Close()
	r, err := sink.NewReader(pool, cfg.PostgresSchema)
	if err != nil {
		return err
	}
	switch sub {
	case "top":
		if fs.NArg() > 0 {
			return badConfig("query top: unexpected argument %q", fs.Arg(0))
		}
		start, ok, err := r.LatestWindow(ctx, *window)
		if err != nil {
			return err
		}
		if !ok {
			fmt.Fprintf(stdout, "no %s windows yet\n", *window)
			return nil
		}
		rows, err := r.Top(ctx, *window, start, *limit)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "top %d URLs, %s window %s – %s\n", len(rows), *window,
			start.UTC().Format(time.RFC3339), start.Add(*window).UTC().Format(time.RFC3339))
		printWindows(stdout, rows, false)
	case "url":
		if fs.NArg() != 1 {
			return badConfig("query url: exactly one URL argument expected")
		}
		rows, total, err := r.URL(ctx, fs.Arg(0), *limit)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d clicks in total\n", fs.Arg(0), total)
		printWindows(stdout, rows, true)
	}
	return nil
}

func printWindows(w io.Writer, rows []sink.WindowCount, withWindow bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	if withWindow {
		fmt.Fprintln(tw, "WINDOW START\tSIZE\tCLICKS\tLATE\tFINAL\t")
	} else {
		fmt.Fprintln(tw, "CLICKS\tLATE\tFINAL\tURL\t")
	}
	for _, r := range rows {
		if withWindow {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%t\t\n", r.WindowStart.UTC().Format(time.RFC3339),
				r.WindowEnd.Sub(r.WindowStart), r.Clicks, r.LateClicks, r.Final)
		} else {
			fmt.Fprintf(tw, "%d\t%d\t%t\t%s\t\n", r.Clicks, r.LateClicks, r.Final, r.URL)
		}
	}
	tw.Flush()
}
