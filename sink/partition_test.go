package sink

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	h1 = 60 * m1
	d1 = 24 * h1
)

// committer drives one partition's checkpoints row forward.
type committer struct {
	t     testing.TB
	w     *Writer
	p     int32
	parts int
	cur   Row
	// totals is the checkpoints' TotalsWindow; zero: m1.
	totals int64
}

func newCommitter(t testing.TB, w *Writer, p int32, parts int) *committer {
	t.Helper()
	start := pos(0, NoWatermark, 0)
	if _, err := w.InitRow(context.Background(), p, start); err != nil {
		t.Fatal(err)
	}
	return &committer{t: t, w: w, p: p, parts: parts, cur: start}
}

// commit writes clicks with the partition's watermark moved to wm.
func (c *committer) commit(wm int64, clicks ...ClickDelta) (Result, error) {
	next := pos(c.cur.NextOffset+1, wm, c.cur.NextOffset+1)
	res, err := c.w.Commit(context.Background(), &Checkpoint{TopicPartitions: c.parts, TotalsWindow: cmp.Or(c.totals, m1),
		Partitions: []PartitionUpdate{{Partition: c.p, Expect: c.cur, Next: next}}, Clicks: clicks})
	if err == nil {
		c.cur = next
	}
	return res, err
}

func (c *committer) mustCommit(wm int64, clicks ...ClickDelta) Result {
	c.t.Helper()
	res, err := c.commit(wm, clicks...)
	if err != nil {
		c.t.Fatal(err)
	}
	return res
}

// maintainUntil runs Maintain over and over on a goroutine of its own
// until stop is closed, handing each result to each (on that goroutine)
// and a failure to errs; wg is done once it returned.
func maintainUntil(ctx context.Context, w *Writer, opts MaintainOptions, stop <-chan struct{}, wg *sync.WaitGroup,
	errs chan<- error, each func(MaintainResult)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			res, err := w.Maintain(ctx, opts)
			if err != nil {
				errs <- fmt.Errorf("maintain: %w", err)
				return
			}
			each(res)
		}
	}()
}

func click(url string, start, size, n int64) ClickDelta {
	return ClickDelta{URL: url, WindowStart: start, WindowEnd: start + size, Clicks: n}
}

// partitionNames returns the span tables of one size, as ReadStorage sees them.
func partitionNames(t testing.TB, pool *pgxpool.Pool, size int64) []string {
	t.Helper()
	st, err := ReadStorage(context.Background(), pool, DefaultSchema)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range st {
		if s.Size.Milliseconds() == size {
			for _, p := range s.Partitions {
				names = append(names, p.Name)
			}
		}
	}
	return names
}

// windowClicks reads url_clicks as url@start(ms)/size(ms) → clicks.
func windowClicks(t testing.TB, pool *pgxpool.Pool) map[string]int64 {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT url, window_start, window_end, window_size = window_end - window_start, clicks FROM clickagg.url_clicks`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for rows.Next() {
		var url string
		var start, end time.Time
		var sizeOK bool
		var n int64
		if err := rows.Scan(&url, &start, &end, &sizeOK, &n); err != nil {
			t.Fatal(err)
		}
		if !sizeOK {
			t.Fatalf("row %s %s: window_size is not window_end - window_start", url, start)
		}
		out[fmt.Sprintf("%s@%d/%d", url, start.UnixMilli(), end.Sub(start).Milliseconds())] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func total(t testing.TB, pool *pgxpool.Pool, url string) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), `SELECT coalesce(sum(clicks), 0) FROM clickagg.url_totals WHERE url = $1`, url).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPartitionsExistBeforeRowsNeedThem: Maintain creates the spans of the
// watermark (or now) and the next one; a checkpoint creates any other it
// writes (old late data, a new window size), and recovers from a partition
// dropped by hand.
func TestPartitionsExistBeforeRowsNeedThem(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	if _, err := w.Maintain(ctx, MaintainOptions{Sizes: []int64{m1, h1, d1}, Now: time.UnixMilli(t0 + 3*h1)}); err != nil {
		t.Fatal(err)
	}
	if got, want := partitionNames(t, pool, m1), []string{"url_clicks_1m_p20260101", "url_clicks_1m_p20260102"}; !slices.Equal(got, want) {
		t.Fatalf("1m partitions ahead = %v, want %v", got, want)
	}
	// 1h: weeks from the epoch (a Thursday): 2026-01-01 is a Thursday.
	if got, want := partitionNames(t, pool, h1), []string{"url_clicks_1h_p20260101", "url_clicks_1h_p20260108"}; !slices.Equal(got, want) {
		t.Fatalf("1h partitions ahead = %v, want %v", got, want)
	}
	if got := partitionNames(t, pool, d1); len(got) != 2 {
		t.Fatalf("1d partitions ahead = %v, want 2", got)
	}

	c := newCommitter(t, w, 0, 1)
	old := t0 - 10*d1
	c.mustCommit(t0+3*h1, click("/a", t0+2*h1, m1, 2), click("/a", old, m1, 1), click("/a", t0, 5*m1, 4))
	if got := partitionNames(t, pool, m1); !slices.Contains(got, "url_clicks_1m_p20251222") {
		t.Fatalf("late data 10 days back: partitions %v lack url_clicks_1m_p20251222", got)
	}
	if got := partitionNames(t, pool, 5*m1); !slices.Equal(got, []string{"url_clicks_5m_p20260101"}) {
		t.Fatalf("new window size: partitions %v", got)
	}
	want := map[string]int64{
		fmt.Sprintf("/a@%d/%d", t0+2*h1, m1): 2,
		fmt.Sprintf("/a@%d/%d", old, m1):     1,
		fmt.Sprintf("/a@%d/%d", t0, 5*m1):    4,
	}
	if got := windowClicks(t, pool); !mapsEqual(got, want) {
		t.Fatalf("url_clicks = %v, want %v", got, want)
	}

	// Someone drops a partition by hand: the writer still believes in it,
	// gets "no partition", creates it again and commits.
	if _, err := pool.Exec(ctx, `DROP TABLE clickagg.url_clicks_1m_p20251222`); err != nil {
		t.Fatal(err)
	}
	c.mustCommit(t0+3*h1, click("/b", old, m1, 7))
	want = map[string]int64{
		fmt.Sprintf("/a@%d/%d", t0+2*h1, m1): 2,
		fmt.Sprintf("/b@%d/%d", old, m1):     7,
		fmt.Sprintf("/a@%d/%d", t0, 5*m1):    4,
	}
	if got := windowClicks(t, pool); !mapsEqual(got, want) {
		t.Fatalf("after a partition was dropped by hand: url_clicks = %v, want %v", got, want)
	}
	// No default partition: nothing lands anywhere unplanned.
	var defaults int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_partitioned_table WHERE partdefid <> 0`).Scan(&defaults); err != nil || defaults != 0 {
		t.Fatalf("default partitions = %d, %v; want none", defaults, err)
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestRetentionDropsWholeSpansAndLateClicksStayOut: with 1m=2d, Maintain
// drops the days more than two behind the global watermark; a late click
// for a dropped day adds to url_totals and Result.Expired but does not
// bring the row or the partition back.
func TestRetentionDropsWholeSpansAndLateClicksStayOut(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	c0, c1 := newCommitter(t, w, 0, 2), newCommitter(t, w, 1, 2)
	noon := func(day int64) int64 { return t0 + day*d1 + 12*h1 }
	for day := range int64(5) {
		c0.mustCommit(noon(day)+m1, click("/a", noon(day), m1, 1))
	}
	opts := MaintainOptions{Sizes: []int64{m1}, Retention: map[int64]int64{m1: 2 * d1}, TopicPartitions: 2, Now: time.UnixMilli(t0)}
	// Partition 1 has no watermark yet: nothing expires.
	if res, err := w.Maintain(ctx, opts); err != nil || res.Dropped != 0 {
		t.Fatalf("Maintain without a global watermark = %+v, %v; want nothing dropped", res, err)
	}
	c1.mustCommit(noon(4) + m1)
	res, err := w.Maintain(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Global watermark day 4 12:01; keep 2 days: from day 2 00:00.
	if res.Dropped != 2 {
		t.Fatalf("dropped %d partitions, want 2 (days 0 and 1)", res.Dropped)
	}
	names := partitionNames(t, pool, m1)
	if names[0] != "url_clicks_1m_p20260103" {
		t.Fatalf("oldest partition %s, want url_clicks_1m_p20260103 (day 2)", names[0])
	}
	st, _ := ReadStorage(ctx, pool, DefaultSchema)
	if got := st[0].ExpiredBefore.UnixMilli(); got != t0+2*d1 {
		t.Fatalf("expired_before = %s, want day 2", st[0].ExpiredBefore)
	}
	if st[0].Retention != 48*time.Hour {
		t.Fatalf("retention recorded = %s, want 48h", st[0].Retention)
	}
	if got := st[0].Oldest.UnixMilli(); got != noon(2) {
		t.Fatalf("oldest window = %s, want day 2 noon", st[0].Oldest)
	}
	if n := total(t, pool, "/a"); n != 5 {
		t.Fatalf("url_totals = %d, want 5 (never expired)", n)
	}

	// Late clicks: day 1 is expired, day 3 is kept.
	res2 := c0.mustCommit(noon(4)+m1, click("/a", noon(1), m1, 3), click("/a", noon(3), m1, 1))
	if res2.Expired[m1] != 3 || len(res2.Expired) != 1 {
		t.Fatalf("Result.Expired = %v, want 3 clicks of 1m windows", res2.Expired)
	}
	want := map[string]int64{
		fmt.Sprintf("/a@%d/%d", noon(2), m1): 1,
		fmt.Sprintf("/a@%d/%d", noon(3), m1): 2,
		fmt.Sprintf("/a@%d/%d", noon(4), m1): 1,
	}
	if got := windowClicks(t, pool); !mapsEqual(got, want) {
		t.Fatalf("url_clicks = %v, want %v", got, want)
	}
	if n := total(t, pool, "/a"); n != 9 {
		t.Fatalf("url_totals = %d, want 9 (expired late clicks still count)", n)
	}
	if names := partitionNames(t, pool, m1); names[0] != "url_clicks_1m_p20260103" {
		t.Fatalf("a late click brought back an expired partition: %v", names)
	}
	// Idempotent.
	if res, err := w.Maintain(ctx, opts); err != nil || res.Dropped != 0 {
		t.Fatalf("second Maintain = %+v, %v; want nothing dropped", res, err)
	}
}

// TestExpiryUnderConcurrentCheckpoints: three partitions' writers commit
// clicks (many late, into any of ten days) while Maintain expires days
// behind the advancing global watermark. No checkpoint fails, and what
// remains is exact: every kept window holds every click sent to it, no
// row lies before expired_before, and url_totals holds everything.
func TestExpiryUnderConcurrentCheckpoints(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	const parts, rounds = 3, 40
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	opts := MaintainOptions{Sizes: []int64{m1}, Retention: map[int64]int64{m1: 3 * d1}, TopicPartitions: parts, Now: time.UnixMilli(t0)}
	var (
		mu      sync.Mutex
		sent    = map[string]int64{} // window key → clicks
		totals  int64
		expired int64
	)
	var wg sync.WaitGroup
	errs := make(chan error, parts+1)
	for p := range int32(parts) {
		c := newCommitter(t, w, p, parts)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 7))
			for r := range int64(rounds) {
				wm := t0 + r*d1/4 // six hours a round: ten days in all
				var clicks []ClickDelta
				for range 20 {
					start := floorTo(t0+rng.Int64N(wm-t0+d1), m1)
					clicks = append(clicks, click(fmt.Sprintf("/u%d", rng.IntN(5)), start, m1, 1+rng.Int64N(3)))
				}
				res, err := c.commit(wm, clicks...)
				if err != nil {
					errs <- fmt.Errorf("partition %d round %d: %w", p, r, err)
					return
				}
				mu.Lock()
				for _, cl := range clicks {
					sent[fmt.Sprintf("%s@%d/%d", cl.URL, cl.WindowStart, m1)] += cl.Clicks
					totals += cl.Clicks
				}
				expired += res.Expired[m1]
				mu.Unlock()
			}
		}()
	}
	stop := make(chan struct{})
	var maintained sync.WaitGroup
	drops := 0
	maintainUntil(ctx, w, opts, stop, &maintained, errs, func(res MaintainResult) { drops += res.Dropped })
	wg.Wait()
	close(stop)
	maintained.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	res, err := w.Maintain(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	drops += res.Dropped
	st, err := ReadStorage(ctx, pool, DefaultSchema)
	if err != nil {
		t.Fatal(err)
	}
	before := st[0].ExpiredBefore.UnixMilli()
	// Global watermark: round 39's, 9.75 days; keep 3: from day 6.
	if before != t0+6*d1 || drops != 6 {
		t.Fatalf("expired_before = %s, %d partitions dropped; want day 6, 6", st[0].ExpiredBefore, drops)
	}
	want := map[string]int64{}
	for k, n := range sent {
		_, rest, _ := strings.Cut(k, "@")
		start, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, '/')], 10, 64)
		if start >= before {
			want[k] = n
		}
	}
	if got := windowClicks(t, pool); !mapsEqual(got, want) {
		t.Fatalf("url_clicks after expiry differs: %d rows, want %d", len(got), len(want))
	}
	var sum int64
	if err := pool.QueryRow(ctx, `SELECT sum(clicks) FROM clickagg.url_totals`).Scan(&sum); err != nil || sum != totals {
		t.Fatalf("url_totals sum = %d, %v; want %d", sum, err, totals)
	}
	t.Logf("%d clicks, %d of them expired on arrival; %d partitions dropped", totals, expired, drops)
}

// TestMigrateFromUnpartitionedKeepsRows: a database at schema version 3
// (one heap url_clicks) with rows of two sizes over several days is
// migrated: every row is kept, in the right partition, and checkpoints
// add to the migrated rows.
func TestMigrateFromUnpartitionedKeepsRows(t *testing.T) {
	ctx := context.Background()
	pool, conn := newEmptyPool(t)
	if n, err := migrateTo(ctx, conn.Conn(), DefaultSchema, 3); err != nil || n != 3 {
		t.Fatalf("migrate to 3 = %d, %v", n, err)
	}
	if _, err := conn.Exec(ctx, `
INSERT INTO clickagg.url_clicks (url, window_start, window_end, clicks, late_clicks, final, updated_at)
SELECT '/u' || (g % 100), s, s + size, g, g % 3, g % 2 = 0, timestamptz '2026-01-05'
FROM generate_series(1, 3000) g,
	LATERAL (SELECT CASE WHEN g % 4 = 0 THEN interval '1 hour' ELSE interval '1 minute' END AS size) z,
	LATERAL (SELECT date_bin(z.size, timestamptz '2026-01-01' + g * interval '7 minutes', timestamptz '1970-01-01') AS s) w
ON CONFLICT DO NOTHING;
INSERT INTO clickagg.url_totals (url, clicks) VALUES ('/u1', 42)`); err != nil {
		t.Fatal(err)
	}
	const cols = `url, window_start, window_end, clicks, late_clicks, final, updated_at`
	before := snapshot(t, conn, cols)
	if n, err := Migrate(ctx, conn.Conn(), DefaultSchema); err != nil || n != SchemaVersion-3 {
		t.Fatalf("Migrate = %d, %v", n, err)
	}
	conn.Release()
	after := snapshot(t, pool, cols)
	if len(after) != len(before) || len(before) < 2900 {
		t.Fatalf("rows: %d before, %d after", len(before), len(after))
	}
	for i := range before {
		if fmt.Sprint(before[i]) != fmt.Sprint(after[i]) {
			t.Fatalf("row %d changed: %v → %v", i, before[i], after[i])
		}
	}
	// 2026-01-01 + 3000·7 min ≈ 14.6 days: 15 daily 1m spans, 3 weekly 1h spans.
	if n := len(partitionNames(t, pool, m1)); n != 15 {
		t.Fatalf("1m partitions after migration: %d, want 15", n)
	}
	if n := len(partitionNames(t, pool, h1)); n != 3 {
		t.Fatalf("1h partitions after migration: %d, want 3", n)
	}
	var misplaced int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM clickagg.url_clicks WHERE window_size <> window_end - window_start`).Scan(&misplaced); err != nil || misplaced != 0 {
		t.Fatalf("rows whose window_size is wrong: %d, %v", misplaced, err)
	}
	// A checkpoint adds to a migrated row.
	var start time.Time
	var clicks int64
	if err := pool.QueryRow(ctx, `SELECT window_start, clicks FROM clickagg.url_clicks WHERE url = '/u7' AND window_size = '1 minute' ORDER BY window_start LIMIT 1`).Scan(&start, &clicks); err != nil {
		t.Fatal(err)
	}
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	c := newCommitter(t, w, 0, 1)
	c.mustCommit(NoWatermark, click("/u7", start.UnixMilli(), m1, 5))
	var got int64
	if err := pool.QueryRow(ctx, `SELECT clicks FROM clickagg.url_clicks WHERE url = '/u7' AND window_size = '1 minute' AND window_start = $1`, start).Scan(&got); err != nil || got != clicks+5 {
		t.Fatalf("migrated row after a checkpoint: %d, %v; want %d", got, err, clicks+5)
	}
	if n := total(t, pool, "/u1"); n != 42 {
		t.Fatalf("url_totals after migration: %d, want 42", n)
	}
}

// snapshot reads every url_clicks row's cols, in key order.
func snapshot(t testing.TB, q querier, cols string) [][]any {
	t.Helper()
	rows, err := q.Query(context.Background(), `SELECT `+cols+` FROM clickagg.url_clicks ORDER BY url, window_start, window_end`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDeltasSpans: the deltas name each partition they touch once, whatever
// the order the windows come in (new sizes, late windows, back and forth
// across a day's boundary).
func TestDeltasSpans(t *testing.T) {
	var d Deltas
	for _, c := range []struct{ start, size int64 }{
		{t0, m1}, {t0 + m1, m1}, {t0 + d1 - m1, m1}, {t0 + d1, m1}, {t0 + 5, m1},
		{t0, h1}, {t0 - 3*d1, m1}, {t0 + d1 + h1, m1}, {t0, m1}, {t0 + 8*d1, h1},
	} {
		d.AddClick("/a", c.start, c.start+c.size, 1, 0)
	}
	want := []spanKey{{m1, t0}, {m1, t0 + d1}, {h1, t0}, {m1, t0 - 3*d1}, {h1, t0 + 7*d1}}
	if !slices.Equal(d.spans, want) {
		t.Fatalf("spans = %v, want %v", d.spans, want)
	}
	d.Reset()
	if d.AddClick("/a", t0, t0+m1, 1, 0); !slices.Equal(d.spans, []spanKey{{m1, t0}}) {
		t.Fatalf("after Reset: spans = %v", d.spans)
	}
}
