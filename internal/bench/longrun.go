package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/clickagg/clickagg/sink"
	"github.com/jackc/pgx/v5/pgxpool"
)

// LongRun is the retention benchmark: 14 days of event time in one run
// (records over 200,000 URLs, 1-minute windows) with retention 1m=2d and
// maintenance every second. While it runs it samples, per day of event
// time reached by the global watermark, the bytes url_clicks takes; from
// the log it takes every checkpoint's duration and when partitions were
// dropped. The counts left are verified exactly (windows from
// expired_before on, and url_totals).
func LongRun(ctx context.Context, env Env, records int64) (Result, error) {
	const days = 14
	w := Workload{Name: "longrun", Records: 7_000_000, URLs: 200_000, Zipf: 1.1,
		Windows: []time.Duration{time.Minute}, EventSpan: days * 24 * time.Hour, Partitions: 12}
	if records > 0 {
		w.Records = records
	}
	topic, schema := "bench-longrun", "bench_longrun"
	env.Logf("longrun: pre-loading %d records over %d days of event time", w.Records, days)
	exp, took, err := Preload(ctx, env, topic, w, 2)
	if err != nil {
		return Result{}, err
	}
	pool, err := pgxpool.New(ctx, env.DSN)
	if err != nil {
		return Result{}, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
		return Result{}, err
	}

	var (
		mu  sync.Mutex
		cps []struct {
			end  time.Time
			took time.Duration
		}
		drops   []time.Time
		dropped float64
		// expireMax: the longest hold of the expiry lock, which bounds
		// what a drop can add to a checkpoint.
		expireMax time.Duration
		perDay    = make([]int64, days+1) // bytes when the watermark was last seen in that day
		stop      = make(chan struct{})
		sampling  sync.WaitGroup
	)
	env.OnLog = func(m map[string]any) {
		ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", fmt.Sprint(m["ts"]))
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch m["msg"] {
		case "checkpoint":
			// NB: zap writes durations as float seconds.
			cps = append(cps, checkpointTook{ts, time.Duration(num(m["took"]) * float64(time.Second))})
		case "storage maintenance":
			expireMax = max(expireMax, time.Duration(num(m["expire_took"])*float64(time.Second)))
			if n := num(m["partitions_dropped"]); n > 0 {
				drops = append(drops, ts)
				dropped += n
			}
		}
	}
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var wm *time.Time
			var n int64
			err := pool.QueryRow(ctx, `SELECT (SELECT min(watermark) FROM `+schema+`.checkpoints),
	(SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint FROM pg_partition_tree('`+schema+`.url_clicks'))`).Scan(&wm, &n)
			if err != nil || wm == nil {
				continue // not migrated yet, or no watermark
			}
			if d := int(wm.Sub(HistoryStart) / (24 * time.Hour)); d >= 0 && d <= days {
				mu.Lock()
				perDay[d] = n
				mu.Unlock()
			}
		}
	}()
	r, err := RunAggregator(ctx, env, topic, topic, w, "--postgres-schema", schema, "--retention", "1m=2d",
		"--storage-maintenance-interval", "1s", "--log-level", "debug")
	close(stop)
	sampling.Wait()
	if err != nil {
		return Result{}, err
	}
	r.PreloadSeconds = took.Seconds()
	r.ValidRecords = exp.Valid
	sizes, err := sink.ReadStorage(ctx, pool, schema)
	if err != nil {
		return Result{}, err
	}
	for _, st := range sizes {
		if !st.ExpiredBefore.IsZero() {
			exp.Expire(st.Size, st.ExpiredBefore.UnixMilli())
		}
	}
	if verr := oracle.Compare(ctx, pool, schema, exp); verr != nil {
		r.VerifyError = verr.Error()
	} else {
		r.Verified = true
	}

	// Checkpoints that ended within 3 s of a drop (the maintenance logs
	// after its drops).
	var all, near []time.Duration
	for _, c := range cps {
		all = append(all, c.took)
		for _, d := range drops {
			if c.end.After(d.Add(-3*time.Second)) && c.end.Before(d.Add(3*time.Second)) {
				near = append(near, c.took)
				break
			}
		}
	}
	slices.Sort(all)
	slices.Sort(near)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d.Microseconds())/1000) }
	var mib []string
	for _, b := range perDay {
		mib = append(mib, fmt.Sprintf("%.0f", float64(b)/(1<<20)))
	}
	r.Extra = map[string]any{
		"url_clicks_MiB_by_event_day": strings.Join(mib, ","),
		"partitions_dropped":          dropped,
		"checkpoints":                 len(all),
		"checkpoint_p50_ms":           ms(percentile(all, 0.5)),
		"checkpoint_max_ms":           ms(percentile(all, 1)),
		"checkpoints_near_drops":      len(near),
		"checkpoint_max_near_drop_ms": ms(percentile(near, 1)),
		"expiry_lock_max_ms":          ms(expireMax),
	}
	if _, err := pool.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
		return r, err
	}
	return r, nil
}

// checkpointTook is one checkpoint log line: when it ended, how long it took.
type checkpointTook struct {
	end  time.Time
	took time.Duration
}
