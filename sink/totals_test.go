package sink

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// foldState reads totals_state.
func foldState(t testing.TB, pool *pgxpool.Pool) totalsState {
	t.Helper()
	w, _ := NewWriter(pool, Options{})
	st, err := w.readTotalsState(context.Background(), pool.QueryRow(context.Background(), w.sqlTotalsState))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// allTotals reads url_totals (the view) or, with table, another table of
// (url, clicks).
func allTotals(t testing.TB, pool *pgxpool.Pool, table string) map[string]int64 {
	t.Helper()
	return countsByURL(t, pool, `SELECT url, clicks FROM clickagg.`+table)
}

// clicksBefore sums url_clicks of size m1 per URL for windows starting
// before f.
func clicksBefore(t testing.TB, pool *pgxpool.Pool, f int64) map[string]int64 {
	t.Helper()
	return countsByURL(t, pool, `SELECT url, sum(clicks)::bigint FROM clickagg.url_clicks
WHERE window_size = '1 minute' AND window_start < $1 GROUP BY url`, time.UnixMilli(f).UTC())
}

// countsByURL runs a query of (url, count) rows and returns them as a map.
func countsByURL(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) map[string]int64 {
	t.Helper()
	rows, err := pool.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var url string
		var n int64
		if err := rows.Scan(&url, &n); err != nil {
			t.Fatal(err)
		}
		out[url] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTotalsExactWhileFolding: three partitions commit random clicks (late
// ones too, into windows already folded, and hour windows, which must not
// count) while Maintain folds in a loop and a reader polls url_totals. No
// URL's total ever goes down; at the end each equals the clicks sent; the
// fold moved, and url_totals_base holds exactly the folded windows.
func TestTotalsExactWhileFolding(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	const parts, rounds, urls = 3, 60, 8
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	opts := MaintainOptions{Sizes: []int64{m1, h1}, TopicPartitions: parts, Now: time.UnixMilli(t0)}
	var (
		mu   sync.Mutex
		sent = map[string]int64{}
	)
	var wg sync.WaitGroup
	errs := make(chan error, parts+2)
	for p := range int32(parts) {
		c := newCommitter(t, w, p, parts)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 11))
			for r := range int64(rounds) {
				wm := t0 + r*5*m1
				var clicks []ClickDelta
				for range 30 {
					// Anywhere from the start to 3 minutes past the
					// watermark: most are late, many into folded windows.
					start := floorTo(t0+rng.Int64N(wm-t0+3*m1), m1)
					url := fmt.Sprintf("/u%d", rng.IntN(urls))
					n := 1 + rng.Int64N(3)
					clicks = append(clicks, click(url, start, m1, n), click(url, floorTo(start, h1), h1, n))
					mu.Lock()
					sent[url] += n
					mu.Unlock()
				}
				if _, err := c.commit(wm, clicks...); err != nil {
					errs <- fmt.Errorf("partition %d round %d: %w", p, r, err)
					return
				}
			}
		}()
	}
	stop := make(chan struct{})
	var folds, moved atomic.Int64
	var bg sync.WaitGroup
	maintainUntil(ctx, w, opts, stop, &bg, errs, func(res MaintainResult) {
		folds.Add(1)
		if res.Fold.After != res.Fold.Before {
			moved.Add(1)
		}
	})
	var reads atomic.Int64
	bg.Add(1)
	go func() {
		defer bg.Done()
		seen := map[string]int64{}
		for {
			select {
			case <-stop:
				return
			default:
			}
			rows, err := pool.Query(ctx, `SELECT url, clicks FROM clickagg.url_totals`)
			if err != nil {
				errs <- err
				return
			}
			for rows.Next() {
				var url string
				var n int64
				if err := rows.Scan(&url, &n); err != nil {
					errs <- err
					return
				}
				if n < seen[url] {
					errs <- fmt.Errorf("url_totals %s went down: %d → %d", url, seen[url], n)
					rows.Close()
					return
				}
				seen[url] = n
			}
			if err := rows.Err(); err != nil {
				errs <- err
				return
			}
			reads.Add(1)
		}
	}()
	wg.Wait()
	close(stop)
	bg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := allTotals(t, pool, "url_totals"); !mapsEqual(got, sent) {
		t.Fatalf("url_totals = %v, want %v", got, sent)
	}
	res, err := w.Maintain(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	st := foldState(t, pool)
	wantF := t0 + (rounds-1)*5*m1
	if st.size != m1 || st.folded != wantF {
		t.Fatalf("totals_state = %+v, want 1m folded before the last watermark %d", st, wantF)
	}
	if got := allTotals(t, pool, "url_totals"); !mapsEqual(got, sent) {
		t.Fatalf("url_totals after the last fold = %v, want %v", got, sent)
	}
	if got, want := allTotals(t, pool, "url_totals_base"), clicksBefore(t, pool, st.folded); !mapsEqual(got, want) {
		t.Fatalf("url_totals_base = %v, want the 1m windows before folded_before: %v", got, want)
	}
	t.Logf("%d Maintain runs, %d moved the fold, %d reads; last fold: %d URLs, held checkpoints %s",
		folds.Load(), moved.Load(), reads.Load(), res.Fold.URLs, res.Fold.Took)
	if moved.Load() < 3 {
		t.Fatalf("the fold moved only %d times while checkpoints ran", moved.Load())
	}
}

// TestTotalsFoldAndRetention: late clicks for expired windows still count
// in url_totals (through url_totals_base) while folding; retention never
// expires a span at or after folded_before, even when no fold ran.
func TestTotalsFoldAndRetention(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	c := newCommitter(t, w, 0, 1)
	noon := func(day int64) int64 { return t0 + day*d1 + 12*h1 }
	for day := range int64(5) {
		c.mustCommit(noon(day)+m1, click("/a", noon(day), m1, 1))
	}
	opts := MaintainOptions{Sizes: []int64{m1}, Retention: map[int64]int64{m1: 2 * d1}, TopicPartitions: 1, Now: time.UnixMilli(t0)}
	res, err := w.Maintain(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Dropped != 2 || res.Fold.After != noon(4)+m1 {
		t.Fatalf("Maintain = %+v; want days 0 and 1 dropped, folded before day 4 12:01", res)
	}
	// Late: day 1 expired (base), day 3 folded (base), day 4 12:01 not
	// folded (url_clicks only).
	res2 := c.mustCommit(noon(4)+2*m1, click("/a", noon(1), m1, 3), click("/a", noon(3), m1, 10), click("/a", noon(4)+m1, m1, 100))
	if res2.Expired[m1] != 3 {
		t.Fatalf("Result.Expired = %v, want 3", res2.Expired)
	}
	if n := total(t, pool, "/a"); n != 5+3+10+100 {
		t.Fatalf("url_totals = %d, want 118", n)
	}
	if b := allTotals(t, pool, "url_totals_base")["/a"]; b != 5+3+10 {
		t.Fatalf("url_totals_base = %d, want 18 (the 12:01 window is not folded yet)", b)
	}

	// Retention ahead of the fold (Maintain folds first, so only when a fold
	// could not run): expiry stops at folded_before's span.
	if _, err := pool.Exec(ctx, `UPDATE clickagg.totals_state SET folded_before = $1`, time.UnixMilli(t0+2*d1+3*h1).UTC()); err != nil {
		t.Fatal(err)
	}
	if err := w.expire(ctx, map[int64]int64{m1: t0 + 4*d1}); err != nil {
		t.Fatal(err)
	}
	st, _ := ReadStorage(ctx, pool, DefaultSchema)
	if got := st[0].ExpiredBefore.UnixMilli(); got != t0+2*d1 {
		t.Fatalf("expired_before = %s, want day 2 (the span of folded_before)", st[0].ExpiredBefore)
	}
	if _, err := w.dropExpired(ctx, MaintainResult{}); err != nil {
		t.Fatal(err)
	}
	if names := partitionNames(t, pool, m1); names[0] != "url_clicks_1m_p20260103" {
		t.Fatalf("partitions %v: one at or after folded_before was dropped", names)
	}
	// (The hand-moved folded_before made the view count days 2–4 twice;
	// put it back and the totals are as before.)
	if _, err := pool.Exec(ctx, `UPDATE clickagg.totals_state SET folded_before = $1`, time.UnixMilli(noon(4)+m1).UTC()); err != nil {
		t.Fatal(err)
	}
	// The fold moves on with the watermark and retention follows it.
	c.mustCommit(noon(6)+m1, click("/a", noon(6), m1, 1))
	if res, err = w.Maintain(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if res.Fold.After != noon(6)+m1 || res.Fold.URLs != 1 || res.Dropped != 2 {
		t.Fatalf("Maintain = %+v; want a fold to day 6 12:01 and days 2 and 3 dropped", res)
	}
	if n := total(t, pool, "/a"); n != 119 {
		t.Fatalf("url_totals = %d, want 119", n)
	}
	if b := allTotals(t, pool, "url_totals_base")["/a"]; b != 119 {
		t.Fatalf("url_totals_base = %d, want 119 (everything folded)", b)
	}
}

// rangeStart is 2000-01-01, where the view starts counting a totals window
// size that has no url_clicks row yet.
const rangeStart = int64(946684800000)

// TestTotalsWindowSizeChange: url_totals follow the totals window; when
// it changes (a smaller size configured, then removed) what the view read
// from url_clicks of the old size is folded into url_totals_base: nothing
// counted twice, nothing lost.
func TestTotalsWindowSizeChange(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	c := newCommitter(t, w, 0, 1)
	want := int64(0)
	// Hour windows only.
	c.totals = h1
	c.mustCommit(t0+2*h1, click("/a", t0, h1, 5), click("/a", t0+h1, h1, 7))
	want += 12
	opts := MaintainOptions{Sizes: []int64{h1}, TopicPartitions: 1, Now: time.UnixMilli(t0)}
	if res, err := w.Maintain(ctx, opts); err != nil || res.Fold.After != t0+2*h1 {
		t.Fatalf("Maintain = %+v, %v; want folding from 02:00", res, err)
	}
	c.mustCommit(t0+3*h1, click("/a", t0+2*h1, h1, 3), click("/a", t0, h1, 1)) // 02:00 in url_clicks only; 00:00 late, to base
	want += 4
	if n := total(t, pool, "/a"); n != want {
		t.Fatalf("url_totals = %d, want %d", n, want)
	}
	// Minute windows added: they carry the totals from now on. The
	// checkpoint's hour deltas no longer count.
	c.totals = m1
	c.mustCommit(t0+3*h1+m1, click("/a", t0+3*h1, m1, 2), click("/a", t0+3*h1, h1, 2))
	want += 2
	// NB: no 1m row existed at the switch: the view counts them all.
	if st := foldState(t, pool); st.size != m1 || st.folded != rangeStart {
		t.Fatalf("totals_state = %+v, want 1m, counted by the view from the start", st)
	}
	if n := total(t, pool, "/a"); n != want {
		t.Fatalf("url_totals after the switch to 1m = %d, want %d", n, want)
	}
	opts.Sizes = []int64{m1, h1}
	c.mustCommit(t0+3*h1+5*m1, click("/a", t0+3*h1+m1, m1, 1), click("/a", t0+3*h1, h1, 1))
	want++
	if _, err := w.Maintain(ctx, opts); err != nil {
		t.Fatal(err)
	}
	c.mustCommit(t0+3*h1+6*m1, click("/a", t0+3*h1+5*m1, m1, 4), click("/a", t0+3*h1, h1, 4))
	want += 4
	if st := foldState(t, pool); st.size != m1 || st.folded != t0+3*h1+5*m1 {
		t.Fatalf("totals_state = %+v, want 1m folded before 03:05", st)
	}
	if n := total(t, pool, "/a"); n != want {
		t.Fatalf("url_totals while folding 1m = %d, want %d", n, want)
	}
	// Back to hours alone.
	c.totals = h1
	c.mustCommit(t0+3*h1+7*m1, click("/a", t0+3*h1, h1, 6))
	want += 6
	// NB: the hour rows up to 03:00 were counted through the 1m rows: the
	// view counts hours from past the newest, 04:00.
	if st := foldState(t, pool); st.size != h1 || st.folded != t0+4*h1 {
		t.Fatalf("totals_state = %+v, want 1h, counted by the view from 04:00", st)
	}
	if n := total(t, pool, "/a"); n != want {
		t.Fatalf("url_totals after the switch back to 1h = %d, want %d", n, want)
	}
	if b := allTotals(t, pool, "url_totals_base")["/a"]; b != want {
		t.Fatalf("url_totals_base = %d, want %d", b, want)
	}
}

// TestMigrateTotalsView: a version-5 schema's url_totals (a table, read by
// a live view too) reads the same through the view after migration 6, and
// the live view follows the new url_totals, not the renamed table.
func TestMigrateTotalsView(t *testing.T) {
	ctx := context.Background()
	pool, conn := newEmptyPool(t)
	released := false
	t.Cleanup(func() {
		if !released {
			conn.Release()
		}
	})
	if n, err := migrateTo(ctx, conn.Conn(), DefaultSchema, 5); err != nil || n != 5 {
		t.Fatalf("migrate to 5 = %d, %v", n, err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO clickagg.url_totals (url, clicks, updated_at)
SELECT '/u' || g, g, timestamptz '2026-01-05' FROM generate_series(1, 500) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := SwitchLive(ctx, pool, "clickagg_live", DefaultSchema); err != nil {
		t.Fatal(err)
	}
	before := allTotals(t, pool, "url_totals")
	// Another view on url_totals: migration 6 refuses (it would read the
	// renamed table) and says what to do.
	if _, err := conn.Exec(ctx, `CREATE VIEW public.my_totals AS SELECT url FROM clickagg.url_totals`); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(ctx, conn.Conn(), DefaultSchema); err == nil || !strings.Contains(err.Error(), "my_totals") {
		t.Fatalf("Migrate with a user's view on url_totals = %v; want it refused, naming the view", err)
	}
	if _, err := conn.Exec(ctx, `DROP VIEW public.my_totals`); err != nil {
		t.Fatal(err)
	}
	if n, err := Migrate(ctx, conn.Conn(), DefaultSchema); err != nil || n != SchemaVersion-5 {
		t.Fatalf("Migrate = %d, %v", n, err)
	}
	conn.Release()
	released = true
	if got := allTotals(t, pool, "url_totals"); !mapsEqual(got, before) || len(got) != 500 {
		t.Fatalf("url_totals after migration differ: %d rows", len(got))
	}
	var updated time.Time
	if err := pool.QueryRow(ctx, `SELECT updated_at FROM clickagg.url_totals WHERE url = '/u7'`).Scan(&updated); err != nil || !updated.Equal(time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("updated_at = %s, %v", updated, err)
	}
	// An older replica's totals upsert fails (and rolls its checkpoint back).
	if _, err := pool.Exec(ctx, `INSERT INTO clickagg.url_totals AS t (url, clicks, updated_at) VALUES ('/u7', 1, now())
ON CONFLICT (url) DO UPDATE SET clicks = t.clicks + excluded.clicks, updated_at = excluded.updated_at`); err == nil ||
		!strings.Contains(err.Error(), `cannot insert into view "url_totals"`) {
		t.Fatalf("an old replica's upsert into url_totals = %v; want cannot insert into view", err)
	}
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	c := newCommitter(t, w, 0, 1)
	c.mustCommit(t0+m1, click("/u7", t0, m1, 5))
	if _, err := w.Maintain(ctx, MaintainOptions{Sizes: []int64{m1}, TopicPartitions: 1, Now: time.UnixMilli(t0)}); err != nil {
		t.Fatal(err)
	}
	c.mustCommit(t0+2*m1, click("/u7", t0+m1, m1, 2)) // url_clicks only
	if b := allTotals(t, pool, "url_totals_base")["/u7"]; b != 12 {
		t.Fatalf("url_totals_base /u7 = %d, want 12", b)
	}
	for _, table := range []string{"clickagg.url_totals", "clickagg_live.url_totals"} {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT clicks FROM `+table+` WHERE url = '/u7'`).Scan(&n); err != nil || n != 14 {
			t.Fatalf("%s /u7 = %d, %v; want 14", table, n, err)
		}
	}
}

// TestTotalsViewUsesIndexes: reading one URL's total from the view scans
// url_totals_base's and url_clicks' primary keys, not the tables.
func TestTotalsViewUsesIndexes(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	c := newCommitter(t, w, 0, 1)
	c.mustCommit(t0+m1, click("/u1", t0, m1, 1))
	if err := w.EnsurePartitions(ctx, time.Minute, time.UnixMilli(t0), time.UnixMilli(t0+2*d1)); err != nil {
		t.Fatal(err)
	}
	if err := w.EnsurePartitions(ctx, time.Hour, time.UnixMilli(t0), time.UnixMilli(t0+2*d1)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
INSERT INTO clickagg.url_totals_base (url, clicks) SELECT '/u' || g, g FROM generate_series(2, 50000) g;
INSERT INTO clickagg.url_clicks (url, window_start, window_end, window_size, clicks)
SELECT '/u' || (g % 50000), s, s + z, z, 1
FROM generate_series(1, 200000) g, LATERAL (SELECT interval '1 minute' AS z) i,
	LATERAL (SELECT timestamptz '2026-01-01' + (g / 50000 + 1) * interval '1 minute' AS s) t;
INSERT INTO clickagg.url_clicks (url, window_start, window_end, window_size, clicks)
SELECT '/u' || g, timestamptz '2026-01-01', timestamptz '2026-01-01 01:00', interval '1 hour', 1 FROM generate_series(1, 50000) g;
UPDATE clickagg.totals_state SET folded_before = timestamptz '2026-01-01 00:02';
ANALYZE clickagg.url_totals_base, clickagg.url_clicks, clickagg.totals_state`); err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	rows, err := pool.Query(ctx, `EXPLAIN SELECT coalesce(sum(clicks), 0) FROM clickagg.url_totals WHERE url = $1`, "/u77")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	p := plan.String()
	t.Logf("plan:\n%s", p)
	// NB: the spans of the other days are empty: a Seq Scan there costs
	// nothing.
	if !strings.Contains(p, "url_totals_base_pkey") || !strings.Contains(p, "_pkey on url_clicks_1m_p20260101") ||
		strings.Contains(p, "Seq Scan on url_totals_base") || strings.Contains(p, "Seq Scan on url_clicks_1m_p20260101 ") ||
		strings.Contains(p, "Seq Scan on url_clicks_1h_p20260101 ") {
		t.Fatalf("one URL's total does not read by index:\n%s", p)
	}
	r, _ := NewReader(pool, DefaultSchema)
	if n, err := r.URLTotal(ctx, "/u77"); err != nil || n != 77+3 {
		t.Fatalf("URLTotal = %d, %v; want 80 (77 + the 1m windows from 00:02)", n, err)
	}
	// A fold of 150,000 rows over 50,000 URLs: how long checkpoints wait.
	before := allTotals(t, pool, "url_totals")
	res, err := w.foldTotals(ctx, t0+6*m1, 0, nil)
	if err != nil || res.After != t0+6*m1 || res.URLs != 50000 {
		t.Fatalf("fold = %+v, %v; want 50,000 URLs folded up to 00:06", res, err)
	}
	t.Logf("fold of 150,000 url_clicks rows into 50,000 URLs held the expiry lock %s", res.Took)
	if got := allTotals(t, pool, "url_totals"); !mapsEqual(got, before) {
		t.Fatal("url_totals changed by a fold")
	}
}

// TestTotalsFoldPeriod: with a fold period the fold moves folded_before in
// whole periods of event time only (each URL's url_totals_base row written
// once per period), except that it always reaches the retention cut of the
// totals size, so expiry never waits for a period to end; url_totals stays
// exact throughout.
func TestTotalsFoldPeriod(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	c := newCommitter(t, w, 0, 1)
	c.mustCommit(t0+2*d1+90*m1, click("/a", t0+10*m1, m1, 1), click("/a", t0+70*m1, m1, 2), click("/b", t0+2*d1+30*m1, m1, 4))
	want := map[string]int64{"/a": 3, "/b": 4}
	check := func(step string, period int64, retention map[int64]int64, after, urls int64, base map[string]int64) {
		t.Helper()
		res, err := w.Maintain(ctx, MaintainOptions{Sizes: []int64{m1}, TopicPartitions: 1, Now: time.UnixMilli(t0),
			FoldPeriod: period, Retention: retention})
		if err != nil {
			t.Fatal(err)
		}
		if res.Fold.After != after || res.Fold.URLs != urls {
			t.Fatalf("%s: folded before %s, %d URLs; want %s, %d", step, time.UnixMilli(res.Fold.After).UTC(), res.Fold.URLs,
				time.UnixMilli(after).UTC(), urls)
		}
		if got := allTotals(t, pool, "url_totals"); !mapsEqual(got, want) {
			t.Fatalf("%s: url_totals = %v, want %v", step, got, want)
		}
		if got := allTotals(t, pool, "url_totals_base"); !mapsEqual(got, base) {
			t.Fatalf("%s: url_totals_base = %v, want %v", step, got, base)
		}
	}
	// NB: 2026-01-01 (t0) is a Thursday, a boundary of 7-day periods
	// (counted from the Unix epoch, a Thursday too).
	check("week", 7*d1, nil, t0, 0, map[string]int64{})
	check("hour", h1, nil, t0+2*d1+h1, 2, want)
	c.mustCommit(t0+4*d1+30*m1, click("/c", t0+3*d1+10*m1, m1, 1))
	want["/c"] = 1
	check("week, retention 1d", 7*d1, map[int64]int64{m1: d1}, t0+3*d1, 0, map[string]int64{"/a": 3, "/b": 4})
}
