package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/clickagg/clickagg/internal/bench"
	"github.com/clickagg/clickagg/internal/kafkalocal"
	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/clickagg/clickagg/internal/pglocal"
	"github.com/twmb/franz-go/pkg/kfake"
)

// cmdBench runs the benchmark harness (internal/bench; BENCHMARKS.md).
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clickagg bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := configFlags(fs, "postgres")
	workloads := fs.String("workload", "zipf", "comma list of: zipf, uniform, multi, freshness, recovery, all (those five), rowheavy (about one url_clicks row per 3 records), history, longrun, backfill (zipf by run, then the same records from a file by clickagg backfill)")
	records := fs.Int64("records", 0, "override the workloads' record counts (0: their defaults)")
	brokerKind := fs.String("broker", "auto", "auto (the real Kafka broker when its jars are present), kafka, or kfake")
	jsonOut := fs.String("json", "", "also write the results as JSON to this file")
	freshRate := fs.Float64("fresh-rate", 100_000, "freshness scenario: records per second")
	freshFor := fs.Duration("fresh-duration", 30*time.Second, "freshness scenario: how long to produce")
	recRate := fs.Float64("recovery-rate", 50_000, "recovery scenario: records per second")
	recRuns := fs.Int("recovery-runs", 3, "recovery scenario: runs of each variant (median and max reported)")
	profile := fs.String("cpuprofile-dir", "", "write a CPU profile of each aggregator run into this folder")
	logDir := fs.String("log-dir", "", "write each aggregator run's log into this folder")
	aggArgs := fs.String("aggregator-args", "", "extra flags for clickagg run, space-separated (experiments)")
	shape := fs.String("shape", "clicks", "records of the zipf, uniform and multi workloads: clicks, or tracker (Segment-style events read with "+
		strings.Join(bench.ShapeArgs("tracker"), " ")+", verified under that mapping)")
	histRows := fs.Int64("history-rows", 100_000_000, "history workload: url_clicks rows pre-filled (over 7 days of 1-minute windows)")
	histQueries := fs.Int("history-queries", 100, "history workload: timed runs of each README query")
	baseline := fs.String("baseline-binary", "", "history workload: also measure this clickagg binary (e.g. a previous release, for its table layout)")
	pgProfile := fs.String("postgres-settings", "test", "settings of the PostgreSQL the harness starts: "+strings.Join(slices.Sorted(maps.Keys(bench.PostgresProfiles)), ", ")+" (BENCHMARKS.md, Server settings)")
	pgExtra := fs.String("postgres-setting", "", "comma list of name=value server settings added to --postgres-settings (experiments)")
	pgStatements := fs.Int("postgres-statements", 0, "profile each run's PostgreSQL statements (pg_stat_statements): print and record the top N by execution time")
	peers := fs.Bool("peers", false, "run the zipf workload's topic through clickagg, then Flink and Kafka Streams (built by make peers into --peers-dir) on the same broker and PostgreSQL, and compare every window with clickagg's")
	peersDir := fs.String("peers-dir", "peers", "with --peers: the folder of the peers (flink, kstreams), each built into its target/")
	peerJVMOpts := fs.String("peer-jvm-opts", "-Xmx3g", "with --peers: the peers' JVM options, space-separated")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	pgSettings, ok := bench.PostgresProfiles[*pgProfile]
	if !ok {
		return badConfig("--postgres-settings %q: want one of %s", *pgProfile, strings.Join(slices.Sorted(maps.Keys(bench.PostgresProfiles)), ", "))
	}
	pgSettings = append(slices.Clone(pgSettings), splitList(*pgExtra)...)
	if *pgStatements > 0 {
		pgSettings = append(pgSettings, bench.StatementsLibrary)
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	var list []string
	for _, w := range splitList(*workloads) {
		switch w {
		case "all":
			list = append(list, "zipf", "uniform", "multi", "freshness", "recovery")
		case "zipf", "uniform", "multi", "rowheavy", "freshness", "recovery", "history", "longrun", "backfill":
			list = append(list, w)
		default:
			return badConfig("--workload %q: want zipf, uniform, multi, rowheavy, freshness, recovery, all, history, longrun or backfill", w)
		}
	}
	if *peers {
		explicit := false
		fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "workload" })
		if explicit && *workloads != "zipf" {
			return badConfig("--peers: runs the zipf workload only, not --workload %s", *workloads)
		}
		if *shape == "tracker" {
			return badConfig("--peers: the peers read the clicks shape only")
		}
		list = nil
	}
	switch *shape {
	case "clicks", "":
		*shape = ""
	case "tracker":
		for _, w := range list {
			if w == "freshness" || w == "recovery" || w == "history" || w == "longrun" || w == "backfill" {
				return badConfig("--shape tracker: only for the zipf, uniform and multi workloads, not %s", w)
			}
		}
	default:
		return badConfig("--shape %q: want clicks or tracker", *shape)
	}
	// NB: before the long pre-load, not after it.
	for flagName, d := range map[string]string{"--cpuprofile-dir": *profile, "--log-dir": *logDir} {
		if d == "" {
			continue
		}
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("%s: %w", flagName, err)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "clickagg-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", args...) }
	env := bench.Env{Binary: exe, Dir: dir, Logf: logf, DSN: cfg.Postgres, LogDir: *logDir, Out: stdout}

	if env.DSN == "" {
		srv, err := pglocal.Start(ctx, pglocal.Options{Database: "bench", Settings: pgSettings})
		if err != nil {
			return fmt.Errorf("start local postgres (or set DATABASE_URL): %w", err)
		}
		defer srv.Stop()
		env.DSN = srv.DSN()
		if env.PostgresPID, err = srv.PostmasterPID(); err != nil {
			return err
		}
		env.Statements = *pgStatements
		logf("PostgreSQL settings (%s): %s", *pgProfile, strings.Join(pgSettings, " "))
	} else {
		logf("PostgreSQL at DATABASE_URL: its CPU is not measured (the harness measures the server it starts)")
	}
	useKafka := *brokerKind == "kafka"
	if *brokerKind == "auto" {
		ok, why := kafkalocal.Available()
		useKafka = ok
		if !ok {
			logf("real Kafka broker unavailable (%s); using kfake in its own process", why)
		}
	}
	if useKafka {
		b, err := kafkalocal.Start(ctx, kafkalocal.Options{Logf: logf, Config: map[string]string{
			"log.segment.bytes": "268435456", "num.io.threads": "2", "num.network.threads": "2",
		}})
		if err != nil {
			return fmt.Errorf("start the Kafka broker: %w", err)
		}
		defer b.Stop()
		env.Brokers, env.Broker, env.BrokerPID = []string{b.Addr()}, "kafka", b.Pid()
	} else {
		addr, pid, stop, err := startKfakeProcess(exe)
		if err != nil {
			return err
		}
		defer stop()
		env.Brokers, env.Broker, env.BrokerPID = []string{addr}, "kfake", pid
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		logf("no /proc (%v): PostgreSQL's and the broker's CPU are not measured", err)
		env.PostgresPID, env.BrokerPID = 0, 0
	}
	logf("broker %s at %s, PostgreSQL ready", env.Broker, env.Brokers[0])

	var results []bench.Result
	if *peers {
		if results, err = runPeers(ctx, env, *records, *peersDir, strings.Fields(*peerJVMOpts)); err != nil {
			return err
		}
	}
	for i, name := range list {
		var r bench.Result
		switch name {
		case "freshness":
			logf("freshness: %.0f records/s for %s with early results every 1s", *freshRate, *freshFor)
			r, err = bench.Freshness(ctx, env, *freshRate, *freshFor)
		case "history":
			rs, herr := runHistory(ctx, env, *records, *histRows, *histQueries, *baseline, i)
			if herr != nil {
				return herr
			}
			results = append(results, rs...)
			continue
		case "longrun":
			r, err = bench.LongRun(ctx, env, *records)
		case "recovery":
			for _, rebuild := range []bool{false, true} {
				logf("recovery (rebuild=%v): %.0f records/s, SIGKILL after 20s, %d runs", rebuild, *recRate, *recRuns)
				var runs []bench.Result
				for i := range *recRuns {
					r, err = bench.Recovery(ctx, env, *recRate, 20*time.Second, rebuild, i)
					if err != nil {
						return err
					}
					runs = append(runs, r)
				}
				r = bench.Summarize(runs)
				r.Broker = env.Broker
				results = append(results, r)
				bench.PrintTable(stdout, []bench.Result{r})
			}
			continue
		default:
			w, ok := bench.Workloads[name]
			if !ok {
				w = bench.Workloads["zipf"] // NB: backfill: zipf's records, by run and from a file
			}
			if *records > 0 {
				w.Records = *records
			}
			w.Shape = *shape
			topic := fmt.Sprintf("bench-%s-%d", name, i)
			logf("%s: pre-loading %d records (%d URLs, windows %v, shape %s)", name, w.Records, w.URLs, w.Windows, cmp.Or(w.Shape, "clicks"))
			exp, took, perr := bench.Preload(ctx, env, topic, w, 1)
			if perr != nil {
				return perr
			}
			logf("%s: pre-loaded in %s; running clickagg run --exit-when-idle", name, took.Round(time.Millisecond))
			schema := "bench_" + name
			extra := []string{"--postgres-schema", schema}
			if *profile != "" {
				extra = append(extra, "--cpuprofile", filepath.Join(*profile, name+".pprof"))
			}
			extra = append(extra, strings.Fields(*aggArgs)...)
			r, err = bench.RunAggregator(ctx, env, topic, topic, w, extra...)
			if err != nil {
				return err
			}
			r.PreloadSeconds = took.Seconds()
			if st, err := bench.TableStats(ctx, env.DSN, schema); err == nil {
				r.Extra = st
			}
			r.ValidRecords = exp.Valid
			if exp.Filtered > 0 {
				if r.Extra == nil {
					r.Extra = map[string]any{}
				}
				r.Extra["filtered"] = exp.Filtered
			}
			if verr := bench.Verify(ctx, env.DSN, schema, exp); verr != nil {
				r.VerifyError = verr.Error()
			} else {
				r.Verified = true
			}
			if name == "backfill" {
				r.Broker = env.Broker
				results = append(results, r)
				bench.PrintTable(stdout, []bench.Result{r})
				if r, err = runBackfillBench(ctx, env, w, exp, logf); err != nil {
					return err
				}
			}
		}
		if err != nil {
			return err
		}
		r.Broker = env.Broker
		results = append(results, r)
		bench.PrintTable(stdout, []bench.Result{r})
	}
	fmt.Fprintln(stdout)
	bench.PrintTable(stdout, results)
	if *jsonOut != "" {
		out := map[string]any{"time": time.Now().UTC(), "version": version, "results": results}
		if env.PostgresPID != 0 {
			out["postgres_settings"] = pgSettings // what postgres_cpu_seconds assumes
			out["postgres_settings_profile"] = *pgProfile
		}
		b, _ := json.MarshalIndent(out, "", "  ")
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	for _, r := range results {
		// NB: a peer that is not exact is a finding, not a failed run; a
		// peer that did not finish is.
		if !r.Verified && (r.Contender == "" || r.Contender == "clickagg" || r.Extra["run_failed"] == true) {
			name := r.Workload
			if r.Contender != "" {
				name += " " + r.Contender
			}
			return fmt.Errorf("%s: verification failed: %s", name, r.VerifyError)
		}
	}
	return nil
}

// runHistory pre-loads the zipf workload once and ingests it into an
// empty schema, one with history, and the same empty one again (noise
// bracket); with a baseline binary, into its empty and full schemas too.
func runHistory(ctx context.Context, env bench.Env, records, rows int64, queries int, baseline string, i int) ([]bench.Result, error) {
	w := bench.Workloads["zipf"]
	if records > 0 {
		w.Records = records
	}
	topic := fmt.Sprintf("bench-history-%d", i)
	env.Logf("history: pre-loading %d zipf records", w.Records)
	exp, took, err := bench.Preload(ctx, env, topic, w, 1)
	if err != nil {
		return nil, err
	}
	runs := []bench.History{
		{Name: "history-empty", Binary: env.Binary},
		{Name: "history-full", Binary: env.Binary, Rows: rows, Days: 7, QueryRuns: queries},
		{Name: "history-empty2", Binary: env.Binary},
	}
	if baseline != "" {
		runs = append(runs,
			bench.History{Name: "baseline-empty", Binary: baseline},
			bench.History{Name: "baseline-full", Binary: baseline, Rows: rows, Days: 7, QueryRuns: queries})
	}
	var out []bench.Result
	for _, h := range runs {
		env.Logf("%s: ingesting %d records", h.Name, w.Records)
		r, err := bench.RunHistory(ctx, env, topic, w, exp, h)
		if err != nil {
			return out, fmt.Errorf("%s: %w", h.Name, err)
		}
		r.Broker, r.PreloadSeconds = env.Broker, took.Seconds()
		bench.PrintTable(env.Out, []bench.Result{r})
		out = append(out, r)
	}
	return out, nil
}

// runPeers pre-loads the zipf workload once and runs it through clickagg
// (whose windows are the reference) and then each peer built in dir, each
// with a consumer group and schema of its own; a peer whose folder is
// absent is skipped with a message.
func runPeers(ctx context.Context, env bench.Env, records int64, dir string, jvmOpts []string) ([]bench.Result, error) {
	var peers []bench.Peer
	for _, p := range bench.Peers(dir, jvmOpts) {
		if _, err := os.Stat(p.Dir); errors.Is(err, fs.ErrNotExist) {
			env.Logf("peers: %s: no %s; skipped", p.Name, p.Dir)
			continue
		}
		if _, _, err := bench.PeerClassPath(p.Dir); err != nil {
			return nil, fmt.Errorf("--peers: %s: %w", p.Name, err)
		}
		peers = append(peers, p)
	}
	if len(peers) == 0 {
		return nil, fmt.Errorf("--peers: no peer in %s (run make peers from the repository, or set --peers-dir)", dir)
	}
	w := bench.Workloads["zipf"]
	if records > 0 {
		w.Records = records
	}
	const topic = "bench-peers"
	env.Logf("peers: pre-loading %d zipf records (%d URLs, %d partitions)", w.Records, w.URLs, w.Partitions)
	exp, took, err := bench.Preload(ctx, env, topic, w, 1)
	if err != nil {
		return nil, err
	}
	const refSchema = "bench_peers_clickagg"
	env.Logf("peers: pre-loaded in %s; running clickagg", took.Round(time.Millisecond))
	r, err := bench.RunAggregator(ctx, env, topic, topic+"-clickagg", w, "--postgres-schema", refSchema)
	if err != nil {
		return nil, err
	}
	r.Contender, r.Broker, r.PreloadSeconds, r.ValidRecords = "clickagg", env.Broker, took.Seconds(), exp.Valid
	if r.Extra, err = bench.TableStats(ctx, env.DSN, refSchema); err != nil {
		return nil, err
	}
	r.Extra["invalid_skipped"] = w.Records - exp.Valid
	if verr := bench.Verify(ctx, env.DSN, refSchema, exp); verr != nil {
		r.VerifyError = verr.Error()
	} else {
		r.Verified = true
	}
	results := []bench.Result{r}
	bench.PrintTable(env.Out, results)
	for _, p := range peers {
		env.Logf("peers: running %s (lateness %dms)", p.Name, p.LatenessMs)
		r, err := bench.RunPeer(ctx, env, p, topic, w)
		if err != nil {
			// NB: the other peers still run; the command fails at the end.
			env.Logf("peers: %s failed: %v", p.Name, err)
			first, _, _ := strings.Cut(err.Error(), "\n")
			results = append(results, bench.Result{Workload: w.Name, Contender: p.Name, Broker: env.Broker,
				Records: w.Records, VerifyError: "run failed: " + first, Extra: map[string]any{"run_failed": true}})
			continue
		}
		r.Broker, r.PreloadSeconds = env.Broker, took.Seconds()
		schema := bench.PeerSchema(p.Name)
		if err := bench.ComparePeer(ctx, env.DSN, schema, refSchema, w.Windows[0], &r); err != nil {
			return results, err
		}
		if err := bench.VerifyPeer(ctx, env.DSN, schema, w.Windows[0], exp, &r); err != nil {
			return results, err
		}
		results = append(results, r)
		bench.PrintTable(env.Out, []bench.Result{r})
	}
	return results, nil
}

// startKfakeProcess runs `clickagg kfake-broker` and returns its address
// and process id.
func startKfakeProcess(exe string) (string, int, func(), error) {
	cmd := exec.Command(exe, "kfake-broker")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return "", 0, nil, fmt.Errorf("kfake broker did not start: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	return strings.TrimSpace(line), cmd.Process.Pid, stop, nil
}

// cmdKfakeBroker is a hidden command: an embedded Kafka-protocol broker in a
// process of its own, so a benchmark measures the aggregator's CPU and the
// broker's apart.
// It prints its address and runs until SIGTERM.
func cmdKfakeBroker(ctx context.Context, _ []string, stdout, _ io.Writer) error {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintln(stdout, c.ListenAddrs()[0])
	<-ctx.Done() // NB: main cancels ctx on SIGTERM
	return nil
}

// runBackfillBench writes w's records (as the run just counted them) to a
// file and backfills it into a schema of its own, verified likewise.
func runBackfillBench(ctx context.Context, env bench.Env, w bench.Workload, exp oracle.Expected, logf func(string, ...any)) (bench.Result, error) {
	path, err := bench.WriteArchive(env, w, 1)
	if err != nil {
		return bench.Result{}, err
	}
	defer os.Remove(path)
	logf("backfill: %d records written to %s; running clickagg backfill", w.Records, path)
	schema := "bench_backfill_files"
	r, err := bench.RunBackfill(ctx, env, path, w, "--postgres-schema", schema)
	if err != nil {
		return r, err
	}
	r.ValidRecords = exp.Valid
	if verr := bench.Verify(ctx, env.DSN, schema, exp); verr != nil {
		r.VerifyError = verr.Error()
	} else {
		r.Verified = true
	}
	return r, nil
}
