package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startAggregator starts `clickagg run` without waiting for it.
func startAggregator(env Env, topic, group, schema string, extra ...string) (*exec.Cmd, error) {
	args := append([]string{"run", "--brokers", strings.Join(env.Brokers, ","), "--topic", topic, "--group", group,
		"--postgres-schema", schema, "--http-addr", "off", "--log-level", "warn"}, extra...)
	cmd := exec.Command(env.Binary, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+env.DSN)
	dir := env.Dir
	if env.LogDir != "" {
		dir = env.LogDir
	}
	logf, err := os.Create(filepath.Join(dir, group+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	return cmd, cmd.Start()
}

func percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Freshness produces at a constant rate with early results every second
// and measures produce-to-visible-in-PostgreSQL latency from timestamped
// marker records.
func Freshness(ctx context.Context, env Env, rate float64, d time.Duration) (Result, error) {
	topic, group, schema := "bench-fresh", "bench-fresh", "bench_fresh"
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		return Result{}, err
	}
	defer cl.Close()
	if err := gen.EnsureTopic(ctx, kadm.NewClient(cl), topic, 12); err != nil {
		return Result{}, err
	}
	agg, err := startAggregator(env, topic, group, schema, "--state-dir", filepath.Join(env.Dir, "state-fresh"),
		"--early-interval", "1s", "--checkpoint-interval", "200ms", "--windows", "1m")
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = agg.Process.Signal(syscall.SIGTERM); _ = agg.Wait() }()
	pool, err := pgxpool.New(ctx, env.DSN)
	if err != nil {
		return Result{}, err
	}
	defer pool.Close()

	pctx, stop := context.WithTimeout(ctx, d)
	defer stop()
	g, err := gen.New(gen.Options{Rate: rate, URLs: 100_000, Zipf: 1.1, Seed: 3, Unkeyed: true})
	if err != nil {
		return Result{}, err
	}
	loadDone := make(chan gen.Stats, 1)
	go func() {
		st, _ := gen.Produce(pctx, cl, topic, g, nil)
		loadDone <- st
	}()
	// Markers: one every 50ms, each its own URL, acknowledged time recorded.
	type marker struct{ acked time.Time }
	pending := map[string]*marker{}
	ackc := make(chan struct {
		url string
		at  time.Time
	}, 1024)
	var lat []time.Duration
	markTick := time.NewTicker(50 * time.Millisecond)
	pollTick := time.NewTicker(20 * time.Millisecond)
	defer markTick.Stop()
	defer pollTick.Stop()
	q := `SELECT url FROM ` + pgx.Identifier{schema, "url_totals"}.Sanitize() + ` WHERE url = ANY($1)`
	n := 0
	end := time.Now().Add(d + 15*time.Second)
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return Result{}, ctx.Err()
		case <-markTick.C:
			if pctx.Err() != nil {
				continue
			}
			n++
			url := fmt.Sprintf("marker-%d", n)
			rec := &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, `{"url":%q,"ts":%d}`, url, time.Now().UnixMilli())}
			cl.Produce(pctx, rec, func(_ *kgo.Record, err error) {
				if err == nil {
					ackc <- struct {
						url string
						at  time.Time
					}{url, time.Now()}
				}
			})
		case a := <-ackc:
			pending[a.url] = &marker{acked: a.at}
		case <-pollTick.C:
			if len(pending) == 0 {
				if pctx.Err() != nil {
					end = time.Now()
				}
				continue
			}
			urls := make([]string, 0, len(pending))
			for u := range pending {
				urls = append(urls, u)
			}
			rows, err := pool.Query(ctx, q, urls)
			if err != nil {
				continue // schema not created yet
			}
			now := time.Now()
			for rows.Next() {
				var u string
				if rows.Scan(&u) == nil {
					if m := pending[u]; m != nil {
						lat = append(lat, now.Sub(m.acked))
						delete(pending, u)
					}
				}
			}
			rows.Close()
		}
	}
	st := <-loadDone
	r := Result{Workload: "freshness", Records: st.Produced, WallSeconds: d.Seconds(), RecordsPerSec: float64(st.Produced) / d.Seconds(),
		Verified: len(pending) == 0,
		Extra: map[string]any{
			"target_rate": rate, "markers": len(lat), "lost_markers": len(pending),
			"p50_ms": percentile(lat, 0.5).Milliseconds(), "p99_ms": percentile(lat, 0.99).Milliseconds(),
			"max_ms": percentile(lat, 1).Milliseconds(),
		}}
	if !r.Verified {
		r.VerifyError = fmt.Sprintf("%d markers never became visible", len(pending))
	}
	return r, nil
}

// Recovery SIGKILLs the aggregator at steady state and measures the time
// until processing resumes (the checkpointed offsets move again) and until
// the backlog that built up is consumed, once with the local state and once
// with it deleted (rebuild from PostgreSQL).
func Recovery(ctx context.Context, env Env, rate float64, steady time.Duration, rebuild bool, run int) (Result, error) {
	name := "recovery-local"
	if rebuild {
		name = "recovery-rebuild"
	}
	id := fmt.Sprintf("%s-%d", name, run)
	topic, group, schema := "bench-"+id, "bench-"+id, strings.ReplaceAll("bench_"+id, "-", "_")
	cl, err := kgo.NewClient(kgo.SeedBrokers(env.Brokers...), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(200_000))
	if err != nil {
		return Result{}, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := gen.EnsureTopic(ctx, adm, topic, 12); err != nil {
		return Result{}, err
	}
	stateDir := filepath.Join(env.Dir, "state-"+id)
	args := []string{"--state-dir", stateDir, "--windows", "1m", "--checkpoint-interval", "200ms",
		"--instance-id", id, "--session-timeout", "30s"}
	agg, err := startAggregator(env, topic, group, schema, args...)
	if err != nil {
		return Result{}, err
	}
	pool, err := pgxpool.New(ctx, env.DSN)
	if err != nil {
		return Result{}, err
	}
	defer pool.Close()
	pctx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	g, err := gen.New(gen.Options{Rate: rate, URLs: 100_000, Zipf: 1.1, Seed: 5, Unkeyed: true})
	if err != nil {
		return Result{}, err
	}
	go func() { _, _ = gen.Produce(pctx, cl, topic, g, nil) }()

	sumNext := func() int64 {
		var n int64
		_ = pool.QueryRow(ctx, `SELECT coalesce(sum(next_offset), 0) FROM `+pgx.Identifier{schema, "checkpoints"}.Sanitize()+
			` WHERE consumer_group = $1`, group).Scan(&n)
		return n
	}
	sumEnd := func() int64 {
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return -1
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return n
	}
	select {
	case <-ctx.Done():
		return Result{}, ctx.Err()
	case <-time.After(steady): // reach steady state
	}
	_ = agg.Process.Signal(syscall.SIGKILL)
	_ = agg.Wait()
	killedAt := time.Now()
	atKill := sumNext()
	if rebuild {
		if err := os.RemoveAll(stateDir); err != nil {
			return Result{}, err
		}
	}
	agg, err = startAggregator(env, topic, group, schema, args...)
	if err != nil {
		return Result{}, err
	}
	defer func() { _ = agg.Process.Signal(syscall.SIGTERM); _ = agg.Wait() }()
	restartedAt := time.Now()
	backlog := sumEnd()
	var resumed, caughtUp time.Duration
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) && caughtUp == 0 {
		n := sumNext()
		if resumed == 0 && n > atKill {
			resumed = time.Since(restartedAt)
		}
		if resumed != 0 && n >= backlog {
			caughtUp = time.Since(restartedAt)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	stopLoad()
	r := Result{Workload: name, Verified: caughtUp != 0, Extra: map[string]any{
		"rate": rate, "resume_ms": resumed.Milliseconds(), "caught_up_ms": caughtUp.Milliseconds(),
		"down_ms": restartedAt.Sub(killedAt).Milliseconds(), "backlog_records": backlog - atKill,
	}}
	if !r.Verified {
		r.VerifyError = "did not catch up within 3 minutes"
	}
	return r, nil
}

// Summarize reports several recovery runs: median and maximum times.
func Summarize(runs []Result) Result {
	ms := func(key string) []time.Duration {
		var out []time.Duration
		for _, r := range runs {
			if v, ok := r.Extra[key].(int64); ok {
				out = append(out, time.Duration(v)*time.Millisecond)
			}
		}
		return out
	}
	r := runs[0]
	r.Verified = true
	for _, x := range runs {
		if !x.Verified {
			r.Verified, r.VerifyError = false, x.VerifyError
		}
	}
	resume, caught := ms("resume_ms"), ms("caught_up_ms")
	r.Extra = map[string]any{
		"runs": len(runs), "rate": r.Extra["rate"],
		"resume_p50_ms": percentile(resume, 0.5).Milliseconds(), "resume_max_ms": percentile(resume, 1).Milliseconds(),
		"caught_up_p50_ms": percentile(caught, 0.5).Milliseconds(), "caught_up_max_ms": percentile(caught, 1).Milliseconds(),
	}
	return r
}
