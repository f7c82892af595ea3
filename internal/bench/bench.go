// Package bench is the harness behind `clickagg bench`: it starts a broker
// (the real Apache Kafka broker when its jars are present, else an embedded
// kfake broker in a process of its own) and a PostgreSQL, pre-loads a topic
// with a seeded workload, runs `clickagg run` as a subprocess and measures
// it — wall time, records/s, CPU seconds from rusage, records per
// CPU-second, PostgreSQL's and the broker's CPU over the run from /proc and
// the whole pipeline's (proccpu.go), peak RSS, PostgreSQL rows and
// transactions — and verifies the
// resulting counts exactly against counts computed from the generated
// input. A benchmark that loses data does not count. Product feature:
// part of the binary.
package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/clickagg/clickagg/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Workload is one pre-loaded benchmark.
type Workload struct {
	Name       string
	Records    int64
	URLs       int
	Zipf       float64 // 0: uniform
	Windows    []time.Duration
	EventSpan  time.Duration // event time the records cover
	Partitions int32
	// Env is added to the aggregator's environment, e.g. a Go memory limit
	// for the memory-budget workload (as a Kubernetes pod would set).
	Env []string
	// Shape is the records' shape (gen.Options.Shape): "" or "clicks", or
	// "tracker", read with TrackerInput (ShapeArgs) and verified by the
	// oracle under that mapping.
	Shape string
}

// TrackerInput is the input mapping that reads the tracker shape.
var TrackerInput = stream.InputOptions{URL: "context.page.url", TS: "timestamp", ID: "messageId", Filter: []string{"type==track"}}

// ShapeArgs are the `clickagg run` flags that read the shape.
func ShapeArgs(shape string) []string {
	if shape == "tracker" {
		return InputArgs(TrackerInput)
	}
	return nil
}

// InputArgs are the --input-* flags of the mapping in.
func InputArgs(in stream.InputOptions) []string {
	var args []string
	for _, f := range []struct{ flag, v string }{{"--input-url", in.URL}, {"--input-ts", in.TS}, {"--input-id", in.ID},
		{"--input-ts-format", in.TSFormat}, {"--input-ts-source", in.TSSource}, {"--input-filter", strings.Join(in.Filter, ",")}} {
		if f.v != "" {
			args = append(args, f.flag, f.v)
		}
	}
	return args
}

// Workloads are the standard ones (BENCHMARKS.md).
var Workloads = map[string]Workload{
	"zipf": {Name: "zipf", Records: 10_000_000, URLs: 1_000_000, Zipf: 1.1,
		Windows: []time.Duration{time.Minute}, EventSpan: 30 * time.Minute, Partitions: 12},
	"uniform": {Name: "uniform", Records: 20_000_000, URLs: 10_000_000,
		Windows: []time.Duration{24 * time.Hour}, EventSpan: time.Hour, Partitions: 12,
		Env: []string{"GOMEMLIMIT=400MiB"}},
	// rowheavy: about one url_clicks row per 3 records (3.5 M rows): a
	// URL space wide for its rate, each URL in most minutes a few times.
	"rowheavy": {Name: "rowheavy", Records: 10_000_000, URLs: 125_000,
		Windows: []time.Duration{time.Minute}, EventSpan: 30 * time.Minute, Partitions: 12},
	"multi": {Name: "multi", Records: 10_000_000, URLs: 1_000_000, Zipf: 1.1,
		Windows: []time.Duration{time.Minute, time.Hour, 24 * time.Hour}, EventSpan: 30 * time.Minute, Partitions: 12},
}

// Env is what a benchmark runs against.
type Env struct {
	Binary  string // the clickagg binary
	Brokers []string
	Broker  string // "kafka" or "kfake"
	DSN     string
	Dir     string // scratch folder
	Logf    func(format string, args ...any)
	// LogDir, when set, receives each aggregator run's log as
	// <group>.log.
	LogDir string
	Out    io.Writer // where results are printed as they come
	// OnLog, when set, sees each JSON log line of the aggregator runs.
	OnLog func(line map[string]any)
	// PostgresPID and BrokerPID, when set, are the postmaster's and the
	// broker's process ids: each run also measures their process trees'
	// CPU (proccpu.go).
	PostgresPID, BrokerPID int
	// Statements, when above zero, profiles each aggregator run's
	// PostgreSQL statements (pg_stat_statements, which the server must
	// load: StatementsLibrary) into Result.Statements, this many.
	Statements int
}

// Result is one benchmark's measurements. CPUSeconds is the aggregator's;
// PostgresCPUSeconds and BrokerCPUSeconds are the servers' over the same
// run (nil when not measured), and TotalCPUSeconds the whole pipeline's,
// the three summed (nil unless both servers were measured).
type Result struct {
	Workload           string         `json:"workload"`
	Contender          string         `json:"contender,omitempty"` // the peer comparison's: clickagg, flink, ...
	Shape              string         `json:"shape,omitempty"`     // "" for clicks
	Broker             string         `json:"broker"`
	Records            int64          `json:"records"`
	ValidRecords       int64          `json:"valid_records"`
	Windows            []string       `json:"windows"`
	WallSeconds        float64        `json:"wall_seconds"`
	RecordsPerSec      float64        `json:"records_per_second"`
	CPUSeconds         float64        `json:"cpu_seconds"`
	RecordsPerCPU      float64        `json:"records_per_cpu_second"`
	PostgresCPUSeconds *float64       `json:"postgres_cpu_seconds,omitempty"`
	BrokerCPUSeconds   *float64       `json:"broker_cpu_seconds,omitempty"`
	TotalCPUSeconds    *float64       `json:"total_cpu_seconds,omitempty"`
	RecordsPerTotalCPU *float64       `json:"records_per_total_cpu_second,omitempty"`
	PeakRSSMiB         float64        `json:"peak_rss_mib"`
	RowsWritten        int64          `json:"postgres_rows_written"`
	Transactions       int64          `json:"postgres_transactions"`
	Verified           bool           `json:"verified"`
	VerifyError        string         `json:"verify_error,omitempty"`
	PreloadSeconds     float64        `json:"preload_seconds"`
	Extra              map[string]any `json:"extra,omitempty"`
	Statements         []Statement    `json:"postgres_statements,omitempty"`
}

// Preload creates the topic and fills it with the workload's records,
// returning the expected counts: for the clicks shape from what the
// generator made, for the tracker shape from the oracle's decoding of each
// record under TrackerInput (which must agree with the generator).
func Preload(ctx context.Context, env Env, topic string, w Workload, seed uint64) (oracle.Expected, time.Duration, error) {
	exp := oracle.NewExpected()
	var mapping *oracle.Mapping
	if w.Shape == "tracker" {
		m, err := oracle.NewMapping(TrackerInput)
		if err != nil {
			return exp, 0, err
		}
		mapping = m
	}
	var disagree int64
	var firstDisagreement string
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...), kgo.ProducerLinger(20*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(500_000), kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	if err != nil {
		return exp, 0, err
	}
	defer cl.Close()
	if err := gen.EnsureTopic(ctx, kadm.NewClient(cl), topic, w.Partitions); err != nil {
		return exp, 0, err
	}
	g, err := gen.New(genOptions(w, seed))
	if err != nil {
		return exp, 0, err
	}
	t0 := time.Now()
	// NB: Produce serializes its onEvent calls.
	st, err := gen.Produce(ctx, cl, topic, g, func(ev gen.Event, r *kgo.Record) {
		if mapping == nil {
			if ev.Valid() {
				exp.Add(ev.URL, ev.Time.UnixMilli(), w.Windows)
			}
			return
		}
		url, ts, _, res := mapping.Decode(r.Value, r.Timestamp.UnixMilli(), 0)
		switch res {
		case oracle.Valid:
			exp.Add(url, ts, w.Windows)
		case oracle.Filtered:
			exp.Filtered++
		default:
			exp.Invalid++
		}
		want := oracle.Invalid
		switch {
		case ev.Valid():
			want = oracle.Valid
		case ev.Kind == "filtered":
			want = oracle.Filtered
		}
		if res != want || (res == oracle.Valid && (url != ev.URL || ts != ev.Time.UnixMilli())) {
			if disagree++; disagree == 1 {
				firstDisagreement = fmt.Sprintf("%s record %s: oracle %v %q %d", ev.Kind, r.Value, res, url, ts)
			}
		}
	})
	if err != nil {
		return exp, 0, err
	}
	if disagree > 0 {
		return exp, 0, fmt.Errorf("the oracle and the generator disagree on %d records, first: %s", disagree, firstDisagreement)
	}
	if st.Produced != w.Records {
		return exp, 0, fmt.Errorf("produced %d of %d records", st.Produced, w.Records)
	}
	return exp, time.Since(t0), nil
}

// genOptions are the generator's options for w's records.
func genOptions(w Workload, seed uint64) gen.Options {
	return gen.Options{Count: w.Records, URLs: w.URLs, Zipf: w.Zipf, Seed: seed,
		StartTime: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC),
		EventRate: float64(w.Records) / w.EventSpan.Seconds(), URLPrefix: "https://example.com/p/",
		OutOfOrderFraction: 0.05, LateFraction: 0.001, InvalidFraction: 0.001, Unkeyed: true, Shape: w.Shape}
}

// RunAggregator runs `clickagg run --exit-when-idle` over the topic and
// measures it.
func RunAggregator(ctx context.Context, env Env, topic, group string, w Workload, extraArgs ...string) (Result, error) {
	const idle = 2 * time.Second
	sizes := make([]string, len(w.Windows))
	for i, d := range w.Windows {
		sizes[i] = shortDuration(d)
	}
	args := append([]string{"run", "--brokers", strings.Join(env.Brokers, ","), "--topic", topic, "--group", group,
		"--state-dir", filepath.Join(env.Dir, "state-"+group), "--windows", strings.Join(sizes, ","),
		"--exit-when-idle", idle.String(), "--http-addr", "off", "--log-format", "json",
		"--idle-timeout", "0s"}, ShapeArgs(w.Shape)...)
	args = append(args, extraArgs...)
	cmd := exec.CommandContext(ctx, env.Binary, args...)
	cmd.Env = append(append(os.Environ(), "DATABASE_URL="+env.DSN), w.Env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return Result{}, err
	}
	if env.Statements > 0 {
		if err := resetStatements(ctx, env.DSN); err != nil {
			return Result{}, err
		}
	}
	// NB: the servers' CPU from here, after the pre-load, to the end of
	// the run.
	marks, err := markServers(env)
	if err != nil {
		return Result{}, err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, err
	}
	var logOut io.Writer = io.Discard
	if env.LogDir != "" {
		f, err := os.Create(filepath.Join(env.LogDir, group+".log"))
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return Result{}, err
		}
		defer f.Close()
		logOut = f
	}
	var stopped map[string]any
	var tail []string
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(logOut, line)
		tail = append(tail, line)
		if len(tail) > 20 {
			tail = tail[1:]
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			if m["msg"] == "pipeline stopped" {
				stopped = m
			}
			if env.OnLog != nil {
				env.OnLog(m)
			}
		}
	}
	werr := cmd.Wait()
	wall := time.Since(t0) - idle
	if werr != nil {
		return Result{}, fmt.Errorf("clickagg run: %w\n%s", werr, strings.Join(tail, "\n"))
	}
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r := Result{
		Workload: w.Name, Shape: w.Shape, Records: w.Records, Windows: sizes,
		WallSeconds: wall.Seconds(),
		CPUSeconds:  (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds(),
	}
	if ru != nil {
		r.PeakRSSMiB = float64(ru.Maxrss) / 1024
	}
	if stopped != nil && num(stopped["peak_rss_bytes"]) > 0 {
		// NB: preferred to rusage, which can carry this (large) process's
		// peak into the child it forked.
		r.PeakRSSMiB = num(stopped["peak_rss_bytes"]) / (1 << 20)
	}
	if stopped != nil {
		r.RowsWritten = int64(num(stopped["rows_written"]))
		r.Transactions = int64(num(stopped["checkpoints"]))
	}
	r.RecordsPerSec = float64(w.Records) / r.WallSeconds
	r.RecordsPerCPU = float64(w.Records) / r.CPUSeconds
	if err := marks.finish(env, &r); err != nil {
		return r, err
	}
	if env.Statements > 0 {
		if r.Statements, err = topStatements(ctx, env.DSN, env.Statements); err != nil {
			return r, fmt.Errorf("pg_stat_statements: %w", err)
		}
		if env.Out != nil {
			PrintStatements(env.Out, w.Name, r.Statements)
		}
	}
	return r, nil
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

func shortDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// Verify compares every url_clicks and url_totals row with exp.
func Verify(ctx context.Context, dsn, schema string, exp oracle.Expected) error {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	return oracle.Compare(ctx, pool, schema, exp)
}

// TableStats returns PostgreSQL's row counters for the schema's tables:
// inserts, updates and how many updates were HOT (heap-only).
func TableStats(ctx context.Context, dsn, schema string) (map[string]any, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	// NB: the statistics collector reports with a delay; force a flush.
	_, _ = pool.Exec(ctx, `SELECT pg_stat_force_next_flush()`)
	// NB: url_clicks is partitioned: its counters are its partitions'
	// (url_clicks_<size>_p<day>), summed.
	rows, err := pool.Query(ctx, `SELECT CASE WHEN relname LIKE 'url\_clicks\_%' THEN 'url_clicks' WHEN relname = 'url_totals_base' THEN 'url_totals' ELSE relname END,
	sum(n_tup_ins)::bigint, sum(n_tup_upd)::bigint, sum(n_tup_hot_upd)::bigint
FROM pg_stat_user_tables WHERE schemaname = $1 GROUP BY 1`, schema)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	for rows.Next() {
		var name string
		var ins, upd, hot int64
		if err := rows.Scan(&name, &ins, &upd, &hot); err != nil {
			return nil, err
		}
		if name == "url_clicks" || name == "url_totals" {
			out[name] = fmt.Sprintf("ins=%d upd=%d hot=%d", ins, upd, hot)
		}
	}
	return out, rows.Err()
}

// PrintTable writes results as an aligned table.
func PrintTable(w io.Writer, rs []Result) {
	width := 13
	for _, r := range rs {
		width = max(width, len(tableName(r)))
	}
	fmt.Fprintf(w, "%-*s %-6s %12s %9s %12s %8s %14s %8s %12s %11s %16s %9s %10s %7s %s\n",
		width, "workload", "broker", "records", "wall s", "records/s", "CPU s", "records/CPU-s",
		"PG CPU s", "broker CPU s", "total CPU s", "rec/total-CPU-s", "RSS MiB", "PG rows", "PG txs", "verified")
	for _, r := range rs {
		v := "exact"
		switch {
		case r.Verified:
		case r.Contender != "" && r.Contender != "clickagg" && r.Extra["run_failed"] == nil:
			v = "NOT EXACT: " + r.VerifyError // NB: a finding about the peer, not a failed run
		default:
			v = "FAILED: " + r.VerifyError
		}
		if r.Extra != nil {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(r.Extra)) {
				parts = append(parts, fmt.Sprintf("%s=%v", k, r.Extra[k]))
			}
			v += " " + strings.Join(parts, " ")
		}
		fmt.Fprintf(w, "%-*s %-6s %12d %9.1f %12.0f %8.1f %14.0f %8s %12s %11s %16s %9.0f %10d %7d %s\n",
			width, tableName(r), r.Broker, r.Records, r.WallSeconds, r.RecordsPerSec, r.CPUSeconds, r.RecordsPerCPU,
			optional(r.PostgresCPUSeconds, 1), optional(r.BrokerCPUSeconds, 1), optional(r.TotalCPUSeconds, 1),
			optional(r.RecordsPerTotalCPU, 0), r.PeakRSSMiB, r.RowsWritten, r.Transactions, v)
	}
}

// tableName is r's name in PrintTable: the workload, its shape, the
// contender.
func tableName(r Result) string {
	name := r.Workload
	if r.Shape != "" {
		name += "/" + r.Shape
	}
	if r.Contender != "" {
		name += " " + r.Contender
	}
	return name
}

// optional formats a measurement that may be absent ("-").
func optional(v *float64, decimals int) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', decimals, 64)
}
