package bench

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/clickagg/clickagg/sink"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// HistoryStart is the event time the workloads start at (Preload); the
// history workload's pre-filled rows lie in the days before it.
var HistoryStart = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// History is one run of the history workload: the zipf records ingested
// into a schema that already holds Rows rows of 1-minute url_clicks
// history (spread over Days days before HistoryStart) and a url_totals
// row for every URL, or into an empty one (Rows 0).
type History struct {
	Name   string
	Binary string // the clickagg whose migrate and run make the schema (a previous release: its layout)
	Rows   int64
	Days   int
	// QueryRuns is how many times each README query is timed (with
	// random parameters) after the run; 0: not timed.
	QueryRuns int
}

// RunHistory runs h over the pre-loaded topic (w, expected counts exp)
// and returns its measurements; the schema is dropped afterwards.
func RunHistory(ctx context.Context, env Env, topic string, w Workload, exp oracle.Expected, h History) (Result, error) {
	schema := "bench_" + strings.ReplaceAll(h.Name, "-", "_")
	cfg, err := pgxpool.ParseConfig(env.DSN)
	if err != nil {
		return Result{}, err
	}
	// NB: the history's indexes are built once per loaded day (LoadSpan,
	// and the heap table's at the end).
	cfg.ConnConfig.RuntimeParams["maintenance_work_mem"] = "1GB"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		return Result{}, err
	}
	migrate := exec.CommandContext(ctx, h.Binary, "migrate", "--postgres-schema", schema)
	migrate.Env = append(os.Environ(), "DATABASE_URL="+env.DSN)
	if out, err := migrate.CombinedOutput(); err != nil {
		return Result{}, fmt.Errorf("%s migrate: %w: %s", h.Binary, err, out)
	}
	extra := map[string]any{}
	partitioned, err := isPartitioned(ctx, pool, schema)
	if err != nil {
		return Result{}, err
	}
	extra["layout"] = map[bool]string{true: "partitioned", false: "heap"}[partitioned]
	if h.Rows > 0 {
		env.Logf("%s: pre-filling %d rows of url_clicks history over %d days (%s table)", h.Name, h.Rows, h.Days, extra["layout"])
		t0 := time.Now()
		n, err := prefillHistory(ctx, pool, schema, partitioned, h.Rows, h.Days, w.URLs)
		if err != nil {
			return Result{}, fmt.Errorf("pre-fill history: %w", err)
		}
		extra["history_rows"] = n
		extra["prefill_s"] = fmt.Sprintf("%.0f", time.Since(t0).Seconds())
		env.Logf("%s: %d rows pre-filled in %s", h.Name, n, time.Since(t0).Round(time.Second))
		// NB: what a long-running table looks like: vacuumed, analyzed.
		totals, err := totalsTable(ctx, pool, schema)
		if err != nil {
			return Result{}, err
		}
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE `+pgx.Identifier{schema, "url_clicks"}.Sanitize()+`, `+totals); err != nil {
			return Result{}, err
		}
		exp.Totals = maps.Clone(exp.Totals)
		for id := range w.URLs {
			exp.Totals[urlPrefix+strconv.Itoa(id)] += historyTotal(id)
		}
		exp.Since = HistoryStart.UnixMilli()
	}
	if size, err := clicksBytes(ctx, pool, schema, partitioned); err == nil {
		extra["url_clicks_GiB_before"] = fmt.Sprintf("%.1f", float64(size)/(1<<30))
	}
	env.Binary = h.Binary
	r, err := RunAggregator(ctx, env, topic, schema, w, "--postgres-schema", schema)
	if err != nil {
		return Result{}, err
	}
	r.Workload = h.Name
	r.ValidRecords = exp.Valid
	if verr := oracle.Compare(ctx, pool, schema, exp); verr != nil {
		r.VerifyError = verr.Error()
	} else {
		r.Verified = true
	}
	if h.QueryRuns > 0 && h.Rows > 0 {
		lat, err := queryLatency(ctx, pool, schema, partitioned, h, w.URLs)
		if err != nil {
			return Result{}, err
		}
		maps.Copy(extra, lat)
	}
	r.Extra = extra
	_, err = pool.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	return r, err
}

// urlPrefix is Preload's URL prefix.
const urlPrefix = "https://example.com/p/"

// totalsTable is the table holding url_totals: url_totals_base since
// schema version 6 (url_totals is a view), url_totals before (a baseline
// binary's schema).
func totalsTable(ctx context.Context, pool *pgxpool.Pool, schema string) (string, error) {
	var base bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{schema, "url_totals_base"}.Sanitize()).Scan(&base); err != nil {
		return "", err
	}
	if base {
		return pgx.Identifier{schema, "url_totals_base"}.Sanitize(), nil
	}
	return pgx.Identifier{schema, "url_totals"}.Sanitize(), nil
}

// historyTotal is the url_totals value pre-filled for URL id.
func historyTotal(id int) int64 { return 1000 + int64(id%97) }

func isPartitioned(ctx context.Context, pool *pgxpool.Pool, schema string) (bool, error) {
	var ok bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
WHERE table_schema = $1 AND table_name = 'url_clicks' AND column_name = 'window_size')`, schema).Scan(&ok)
	return ok, err
}

func clicksBytes(ctx context.Context, pool *pgxpool.Pool, schema string, partitioned bool) (int64, error) {
	t := pgx.Identifier{schema, "url_clicks"}.Sanitize()
	q := `SELECT pg_total_relation_size('` + t + `')`
	if partitioned {
		q = `SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint FROM pg_partition_tree('` + t + `')`
	}
	var n int64
	err := pool.QueryRow(ctx, q).Scan(&n)
	return n, err
}

// prefillHistory writes rows of 1-minute windows, the same number each
// minute, over the days before HistoryStart, and a url_totals row for
// every URL. Each day is loaded before its indexes are built (a new
// partition attached afterwards; for the heap table, its indexes dropped
// and rebuilt at the end), two days at a time.
func prefillHistory(ctx context.Context, pool *pgxpool.Pool, schema string, partitioned bool, rows int64, days, urls int) (int64, error) {
	s := pgx.Identifier{schema}.Sanitize()
	perMinute := max((rows+int64(days*1440)-1)/int64(days*1440), 1) // NB: at least rows
	totals, err := totalsTable(ctx, pool, schema)
	if err != nil {
		return 0, err
	}
	if _, err := pool.Exec(ctx, `INSERT INTO `+totals+` (url, clicks) SELECT $1 || id, 1000 + id % 97 FROM generate_series(0, $2 - 1) id`,
		urlPrefix, urls); err != nil {
		return 0, err
	}
	var w *sink.Writer
	if partitioned {
		var err error
		if w, err = sink.NewWriter(pool, sink.Options{Schema: schema}); err != nil {
			return 0, err
		}
	} else if _, err := pool.Exec(ctx, `ALTER TABLE `+s+`.url_clicks DROP CONSTRAINT url_clicks_pkey;
DROP INDEX `+s+`.url_clicks_size_start_idx; DROP INDEX `+s+`.url_clicks_open_idx`); err != nil {
		return 0, err
	}
	// NB: URL ids (m·7919 + 7i) mod urls: distinct within a minute (7 and
	// the 1,000,000 URLs share no factor), spread over all URLs. Rows go
	// in window order, as checkpoints write them: the BRIN index on
	// window_start (schema version 7) relies on it, and without the ORDER
	// BY the heap interleaves the day's minutes.
	insert := func(ctx context.Context, table string, from time.Time) error {
		cols, size := `url, window_start, window_end, clicks, late_clicks, final, updated_at`, ``
		if partitioned {
			cols, size = `url, window_start, window_end, window_size, clicks, late_clicks, final, updated_at`, `interval '1 minute', `
		}
		m0 := from.Unix() / 60
		_, err := pool.Exec(ctx, `INSERT INTO `+table+` (`+cols+`)
SELECT $1 || ((m * 7919 + i * 7) % $2), to_timestamp(m * 60), to_timestamp(m * 60 + 60), `+size+`1 + (m + i) % 5, 0, true, to_timestamp(m * 60 + 65)
FROM generate_series($3::bigint, $4::bigint) m, generate_series(0, $5::bigint - 1) i
ORDER BY m, i`, urlPrefix, urls, m0, m0+1439, perMinute)
		return err
	}
	load := func(day int) error {
		from := HistoryStart.AddDate(0, 0, -days+day)
		if !partitioned {
			return insert(ctx, s+`.url_clicks`, from)
		}
		return w.LoadSpan(ctx, time.Minute, from, func(ctx context.Context, table string) error { return insert(ctx, table, from) })
	}
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		next  = make(chan int)
	)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range next {
				if err := load(d); err != nil {
					mu.Lock()
					first = cmpErr(first, fmt.Errorf("day %d: %w", d, err))
					mu.Unlock()
				}
			}
		}()
	}
	for d := range days {
		next <- d
	}
	close(next)
	wg.Wait()
	if first != nil {
		return 0, first
	}
	if !partitioned {
		// The indexes of migration 1, built once.
		if _, err := pool.Exec(ctx, `ALTER TABLE `+s+`.url_clicks ADD CONSTRAINT url_clicks_pkey PRIMARY KEY (url, window_start, window_end);
CREATE INDEX url_clicks_size_start_idx ON `+s+`.url_clicks ((window_end - window_start), window_start);
CREATE INDEX url_clicks_open_idx ON `+s+`.url_clicks (window_end) WHERE NOT final`); err != nil {
			return 0, err
		}
	}
	return perMinute * int64(days*1440), nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// queryLatency times the README's two queries, each h.QueryRuns times
// with random parameters inside the history: the top 10 URLs of an hour of
// 1-minute windows, and one URL's 1-minute windows of a day.
func queryLatency(ctx context.Context, pool *pgxpool.Pool, schema string, partitioned bool, h History, urls int) (map[string]any, error) {
	t := pgx.Identifier{schema, "url_clicks"}.Sanitize()
	size := `window_size = interval '1 minute'`
	if !partitioned {
		size = `window_end - window_start = interval '1 minute'`
	}
	top := `SELECT url, sum(clicks) AS clicks FROM ` + t + ` WHERE ` + size + `
  AND window_start >= $1::timestamptz - interval '1 hour' AND window_start < $1::timestamptz
GROUP BY url ORDER BY clicks DESC LIMIT 10`
	one := `SELECT window_start, clicks, final FROM ` + t + ` WHERE url = $1 AND ` + size + `
  AND window_start >= $2::timestamptz AND window_start < $2::timestamptz + interval '1 day' ORDER BY window_start`
	rng := rand.New(rand.NewPCG(1, 2))
	first := HistoryStart.AddDate(0, 0, -h.Days)
	out := map[string]any{}
	for _, q := range []struct {
		name string
		args func() []any
		sql  string
	}{
		{"q_top_hour", func() []any {
			return []any{first.Add(time.Hour + time.Duration(rng.Int64N(int64(h.Days)*1440-60))*time.Minute)}
		}, top},
		{"q_url_day", func() []any {
			return []any{urlPrefix + strconv.Itoa(rng.IntN(urls)), first.AddDate(0, 0, rng.IntN(h.Days))}
		}, one},
	} {
		var lat []time.Duration
		for i := range h.QueryRuns + 3 {
			t0 := time.Now()
			rows, err := pool.Query(ctx, q.sql, q.args()...)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", q.name, err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil {
				return nil, fmt.Errorf("%s: %w", q.name, err)
			}
			if i >= 3 { // NB: the first runs plan and warm up
				lat = append(lat, time.Since(t0))
			}
		}
		slices.Sort(lat)
		out[q.name+"_p50_ms"] = fmt.Sprintf("%.1f", float64(percentile(lat, 0.5).Microseconds())/1000)
		out[q.name+"_p99_ms"] = fmt.Sprintf("%.1f", float64(percentile(lat, 0.99).Microseconds())/1000)
	}
	return out, nil
}
