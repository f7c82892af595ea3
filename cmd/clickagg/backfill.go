package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/clickagg/clickagg/backfill"
	"github.com/clickagg/clickagg/checkpoint"
	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/state"
	"github.com/clickagg/clickagg/stream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// backfillKeys are the settings backfill takes: the connection, and every
// one that decides what counts and how it is checkpointed. (A file may
// hold the others, for run; they are ignored.)
var backfillKeys = []string{"postgres", "postgres_schema", "windows", "checkpoint_interval", "out_of_orderness",
	"max_url_bytes", "hold_windows", "url.normalize", "input.url", "input.ts", "input.id", "input.ts_format",
	"input.filter", "late.policy", "dedup.window", "shutdown_timeout", "log.level", "log.format"}

// defaultBackfillState is backfill's state folder: never run's, whose
// store a backfill would otherwise wipe (another identity) or wait for
// (its lock).
const defaultBackfillState = "./clickagg-backfill-state"

func cmdBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clickagg backfill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: clickagg backfill [flags] FILE|GLOB|- ...\n\n"+
			"Count archived JSON lines (plain, gzip or zstd; - is stdin) into the tables, exactly once.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	load := configFlags(fs, backfillKeys...)
	name := fs.String("name", backfill.DefaultName, "backfill name: its checkpoints rows are group backfill:NAME; "+
		"files counted under one name are never counted twice in it")
	stateDir := fs.String("state-dir", defaultBackfillState, "folder of backfill's local state store (not run's state_dir)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return badConfig("backfill: no input; give files, globs or - (stdin)")
	}
	if strings.TrimSpace(*name) == "" || strings.ContainsAny(*name, ":\n") {
		return badConfig("backfill: --name %q: must not be empty or hold a colon or a newline", *name)
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if err := cfg.requirePostgres(); err != nil {
		return err
	}
	if cfg.late == stream.LateDeadLetter {
		return badConfig("late.policy dead-letter: not for backfill (no dead-letter topic); use count or drop")
	}
	if cfg.Input.TSSource == "record" {
		return badConfig("input.ts_source record: not for backfill (a line has no record timestamp)")
	}
	paths, err := backfill.Expand(fs.Args())
	if err != nil {
		return badConfig("backfill: %v", err)
	}
	log, err := newLogger(cfg.Log.Level, cfg.Log.Format, stderr)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck
	inputs, err := backfill.Identify(paths, os.Stdin)
	if err != nil {
		return badConfig("backfill: %v", err)
	}
	pool, err := sink.NewPool(ctx, cfg.Postgres)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrate(ctx, pool, cfg.PostgresSchema, log); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	popts := cfg.pipelineOptions("clickagg-backfill", log, checkpoint.NewMetrics(reg))
	popts.StatsInterval = -1
	stores := newStateStore(state.Options{Dir: *stateDir, PointLookups: cfg.Dedup.Window > 0,
		LongWindows: slices.Max(cfg.windows) >= time.Hour}, backfill.StateIdentity(popts, *name), log, reg)
	store, err := stores.open(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()
	log.Info("backfill started", zap.String("version", version), zap.String("group", backfill.Group(*name)),
		zap.Int("inputs", len(inputs)), zap.Strings("windows", cfg.Windows), zap.String("state_dir", *stateDir),
		zap.String("postgres_schema", cfg.PostgresSchema), zap.Stringer("input", cfg.inputOptions()))
	start := time.Now()
	rep, err := backfill.Run(ctx, pool, store, inputs, backfill.Options{Pipeline: popts, Name: *name,
		Schema: cfg.PostgresSchema, Progress: backfillProgress(stderr, log)})
	var refused *backfill.RefusedError
	switch {
	case errors.As(err, &refused):
		return badConfig("%s", refused.Msg)
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("backfill interrupted: %d of %d inputs counted; the next run resumes from the last checkpoint", done(rep), len(inputs))
	case err != nil:
		return err
	}
	printBackfill(stdout, rep, time.Since(start))
	return nil
}

// done counts the inputs finished (or skipped).
func done(rep *backfill.Report) int {
	if rep == nil {
		return 0
	}
	return len(rep.Inputs) - 1
}

// backfillProgress shows how far the backfill is: a bar with rate and ETA
// rewritten in place on a terminal, a log line every 10 s (and after each
// input) otherwise.
func backfillProgress(stderr io.Writer, log *zap.Logger) func(backfill.Progress) {
	eta := func(p backfill.Progress) (time.Duration, bool) {
		if p.TotalBytes <= 0 || p.Bytes <= 0 {
			return 0, false
		}
		left := float64(p.TotalBytes-p.Bytes) / float64(p.Bytes) * float64(p.Elapsed)
		return time.Duration(left).Round(time.Second), true
	}
	rate := func(p backfill.Progress) float64 { return float64(p.Records) / max(p.Elapsed.Seconds(), 1e-9) }
	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		return func(p backfill.Progress) {
			const width = 30
			bar, pct := strings.Repeat("·", width), "  ?%"
			if p.TotalBytes > 0 {
				frac := min(float64(p.Bytes)/float64(p.TotalBytes), 1)
				n := int(frac * width)
				bar, pct = strings.Repeat("█", n)+strings.Repeat("·", width-n), fmt.Sprintf("%3.0f%%", 100*frac)
			}
			left := "ETA ?"
			if d, ok := eta(p); ok {
				left = "ETA " + d.String()
			}
			end := ""
			if p.Done && p.Input == p.Inputs {
				end = "\n"
			}
			fmt.Fprintf(f, "\r\033[Kbackfill %s %s  input %d/%d  %s records  %s/s  %s%s",
				bar, pct, p.Input, p.Inputs, human(float64(p.Records)), human(rate(p)), left, end)
		}
	}
	var last time.Time
	return func(p backfill.Progress) {
		if !p.Done && time.Since(last) < 10*time.Second {
			return
		}
		last = time.Now()
		fields := []zap.Field{zap.Int("input", p.Input), zap.Int("inputs", p.Inputs), zap.String("name", p.Name),
			zap.Int64("bytes", p.Bytes), zap.Int64("total_bytes", p.TotalBytes), zap.Int64("records", p.Records),
			zap.Int64("replayed", p.Replayed), zap.Float64("records_per_sec", rate(p)), zap.Bool("input_done", p.Done)}
		if d, ok := eta(p); ok {
			fields = append(fields, zap.Duration("eta", d))
		}
		log.Info("backfill progress", fields...)
	}
}

// human formats n with a K or M suffix.
func human(n float64) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.2f M", n/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f K", n/1e3)
	}
	return fmt.Sprintf("%.0f", n)
}

func printBackfill(w io.Writer, rep *backfill.Report, took time.Duration) {
	var records, replayed, accepted, late, dups, filtered int64
	rejected := map[string]int64{}
	for _, in := range rep.Inputs {
		if in.Skipped != "" {
			fmt.Fprintf(w, "%s: skipped (%s)\n", in.Name, in.Skipped)
			continue
		}
		fmt.Fprintf(w, "%s: %d records read from byte %d to %d (%d read again to rebuild open windows)\n",
			in.Name, in.Records, in.Start, in.Next, in.Replayed)
		records, replayed, accepted = records+in.Records, replayed+in.Replayed, accepted+in.Accepted
		late, dups, filtered = late+in.Late, dups+in.Duplicates, filtered+in.Filtered
		for r, n := range in.Rejected {
			rejected[r] += n
		}
	}
	var rej []string
	var nrej int64
	for _, r := range slices.Sorted(maps.Keys(rejected)) {
		rej = append(rej, fmt.Sprintf("%s %d", r, rejected[r]))
		nrej += rejected[r]
	}
	fmt.Fprintf(w, "backfill done in %s: %d inputs, %d records read (%d read again), %d accepted (%d late, %d duplicates), %d filtered, %d invalid",
		took.Round(time.Millisecond), len(rep.Inputs), records, replayed, accepted, late, dups, filtered, nrej)
	if len(rej) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(rej, ", "))
	}
	fmt.Fprintln(w)
}
