package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/clickagg/clickagg/audit"
	"github.com/clickagg/clickagg/sink"
	"go.uber.org/zap"
)

// exitCode ends a command with a code of its own; what it means is printed
// already.
type exitCode struct{ code int }

func (e *exitCode) Error() string { return fmt.Sprintf("exit code %d", e.code) }

// audit exit codes: equal, different, not fully retained.
const (
	auditDifferent   = 1
	auditNotRetained = 2
)

func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clickagg audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// NB: every setting of run: the same file and environment work, and
	// the recount needs the run's decoding, mapping, dedup and late rules.
	load := configFlags(fs)
	fromS := fs.String("from", "", "RFC 3339 time: compare only windows starting at or after it")
	toS := fs.String("to", "", "RFC 3339 time: compare only windows starting before it")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	show := fs.Int("show", 20, "list at most this many differing rows")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return badConfig("audit: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if err := cfg.requirePostgres(); err != nil {
		return err
	}
	if *show < 0 {
		return badConfig("--show %d: must not be negative", *show)
	}
	from, to, err := parseRange(*fromS, *toS)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.Log.Level, cfg.Log.Format, stderr)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck
	kopts, err := cfg.kafkaOptions("clickagg-audit", nil).ClientOpts()
	if err != nil {
		return badConfig("%v", err)
	}
	pool, err := sink.NewReadPool(ctx, cfg.Postgres)
	if err != nil {
		return err
	}
	defer pool.Close()
	popts := cfg.pipelineOptions("clickagg-audit", nil, nil)
	opts := audit.Options{
		Client: kopts, Topic: cfg.Topic, Group: cfg.Group, Schema: cfg.PostgresSchema,
		Operator: popts.Operator, From: from, To: to, MaxDiffs: max(*show, 1),
		Progress: auditProgress(stderr, log),
	}
	log.Info("audit started", zap.String("topic", cfg.Topic), zap.String("group", cfg.Group), zap.Strings("windows", cfg.Windows),
		zap.String("from", *fromS), zap.String("to", *toS))
	rep, err := audit.Run(ctx, pool, opts)
	if err != nil {
		return err
	}
	if *show < len(rep.Diffs) {
		rep.Diffs = rep.Diffs[:*show]
	}
	result, code := "equal", exitOK
	switch {
	case len(rep.NotRetained) > 0:
		result, code = "not_retained", auditNotRetained
	case !rep.Matches():
		result, code = "different", auditDifferent
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Result string `json:"result"`
			*audit.Report
		}{result, rep}); err != nil {
			return err
		}
	} else {
		printAudit(stdout, rep, result)
	}
	if code != exitOK {
		return &exitCode{code}
	}
	return nil
}

// parseRange parses --from and --to.
func parseRange(fromS, toS string) (from, to time.Time, err error) {
	parse := func(name, v string) (time.Time, error) {
		if v == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return time.Time{}, badConfig("--%s %q: must be an RFC 3339 time (2026-01-01T00:00:00Z)", name, v)
		}
		return t, nil
	}
	if from, err = parse("from", fromS); err != nil {
		return
	}
	if to, err = parse("to", toS); err != nil {
		return
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		err = badConfig("--from %s: must be before --to %s", fromS, toS)
	}
	return
}

// auditProgress shows the recount's progress: one line rewritten in place
// on a terminal, a log line every 10 s otherwise.
func auditProgress(stderr io.Writer, log *zap.Logger) func(audit.Progress) {
	f, ok := stderr.(*os.File)
	if ok && isTerminal(f) {
		return func(p audit.Progress) {
			pct := 100.0
			if p.Total > 0 {
				pct = 100 * float64(p.Read) / float64(p.Total)
			}
			end := ""
			if p.Partitions == p.Of {
				end = "\n"
			}
			fmt.Fprintf(f, "\raudit: %d of %d records (%.0f%%), %d of %d partitions read%s", p.Read, p.Total, pct, p.Partitions, p.Of, end)
		}
	}
	var last time.Time
	return func(p audit.Progress) {
		if time.Since(last) < 10*time.Second && p.Partitions < p.Of {
			return
		}
		last = time.Now()
		log.Info("audit progress", zap.Int64("records_read", p.Read), zap.Int64("records_total", p.Total),
			zap.Int("partitions_read", p.Partitions), zap.Int("partitions", p.Of))
	}
}

func printAudit(w io.Writer, r *audit.Report, result string) {
	rng := "all windows"
	if r.From != nil || r.To != nil {
		f, t := "-∞", "+∞"
		if r.From != nil {
			f = r.From.UTC().Format(time.RFC3339)
		}
		if r.To != nil {
			t = r.To.UTC().Format(time.RFC3339)
		}
		rng = fmt.Sprintf("windows starting in [%s, %s)", f, t)
	}
	fmt.Fprintf(w, "audit of topic %s, group %s: %s of sizes %s, late policy %s\n", r.Topic, r.Group, rng, strings.Join(r.Windows, ","), r.Policy)
	if len(r.NotRetained) > 0 {
		fmt.Fprintln(w, "NOT RETAINED: records the recount needs were deleted from the topic; nothing was compared")
		for _, n := range r.NotRetained {
			fmt.Fprintf(w, "  partition %d: the log starts at offset %d; the recount needs %s\n", n.Partition, n.LogStart, n.NeedFrom)
		}
		fmt.Fprintln(w, "result: not retained (exit 2); a range starting later (--from) may still be")
		return
	}
	fmt.Fprintf(w, "recounted %d records of %d partitions up to their checkpointed offsets\n", r.RecordsRead, len(r.Partitions))
	fmt.Fprintf(w, "url_clicks: %d rows compared: %d equal, %d differing, %d missing, %d extra", r.Compared, r.Equal, r.Differing, r.Missing, r.Extra)
	if r.LateSensitive > 0 {
		fmt.Fprintf(w, ", %d late-sensitive (within the records the recount found late)", r.LateSensitive)
	}
	fmt.Fprintln(w)
	if r.Open > 0 {
		fmt.Fprintf(w, "  %d rows of windows still open on some partition were not compared\n", r.Open)
	}
	for _, size := range slices.Sorted(maps.Keys(r.Expired)) {
		fmt.Fprintf(w, "  %s windows before %s were expired by retention: not compared\n", size, r.Expired[size].Format(time.RFC3339))
	}
	if r.Excluded > 0 {
		fmt.Fprintf(w, "  %d rows of excluded (old or expired) windows were not compared\n", r.Excluded)
	}
	if r.LateDiffers > 0 {
		fmt.Fprintf(w, "  %d equal rows differ in late_clicks (idle advances and alignment move the pipeline's watermarks; not a failure)\n", r.LateDiffers)
	}
	if r.Totals.Compared {
		fmt.Fprintf(w, "url_totals: %d URLs compared: %d equal, %d differing, %d missing, %d extra\n",
			r.Totals.URLs, r.Totals.Equal, r.Totals.Differing, r.Totals.Missing, r.Totals.Extra)
	} else {
		fmt.Fprintf(w, "url_totals: not compared: %s\n", r.Totals.Reason)
	}
	if len(r.Diffs) > 0 {
		fmt.Fprintf(w, "first %d differences:\n", len(r.Diffs))
		for _, d := range r.Diffs {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
	switch result {
	case "equal":
		fmt.Fprintln(w, "result: equal")
	default:
		fmt.Fprintln(w, "result: different (exit 1)")
	}
}
