package sink

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// addTestSpans creates the partitions of spans in schema.
func addTestSpans(t testing.TB, pool *pgxpool.Pool, schema string, spans ...spanKey) {
	t.Helper()
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		return addSpans(context.Background(), tx, pgx.Identifier{schema}.Sanitize(), spans)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// insertWindows inserts n rows (URLs /r0 … ) into each window of size
// starting at from, from + size, … before to, in that order.
func insertWindows(t testing.TB, pool *pgxpool.Pool, size, from, to int64, n int) {
	t.Helper()
	insertURLs(t, pool, "/r", size, from, to, n)
}

// insertURLs is insertWindows with URLs prefix0, prefix1, …
func insertURLs(t testing.TB, pool *pgxpool.Pool, prefix string, size, from, to int64, n int) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `INSERT INTO clickagg.url_clicks (url, window_start, window_end, window_size, clicks)
SELECT $5 || i, s, s + $3::interval, $3::interval, 1
FROM generate_series($1::timestamptz, $2::timestamptz - $3::interval, $3::interval) s, generate_series(0, $4 - 1) i
ORDER BY s, i`, time.UnixMilli(from), time.UnixMilli(to), time.Duration(size)*time.Millisecond, n, prefix); err != nil {
		t.Fatal(err)
	}
}

// checkBounds compares windowBound with max and min over every size.
func checkBounds(t testing.TB, q querier, step string) {
	t.Helper()
	ctx := context.Background()
	for _, size := range []int64{m1, 5 * m1, h1, 10 * m1, 10_000} {
		d := time.Duration(size) * time.Millisecond
		var wantMax, wantMin *time.Time
		rows, err := q.Query(ctx, `SELECT max(window_start), min(window_start) FROM clickagg.url_clicks WHERE window_size = $1`, d)
		if err == nil {
			_, err = pgx.CollectExactlyOneRow(rows, func(r pgx.CollectableRow) (int, error) { return 0, r.Scan(&wantMax, &wantMin) })
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			edge windowEdge
			want *time.Time
		}{{newestWindow, wantMax}, {oldestWindow, wantMin}} {
			got, err := windowBound(ctx, q, DefaultSchema, d, c.edge)
			if err != nil {
				t.Fatalf("%s: %s %s window: %v", step, c.edge, SizeLabel(size), err)
			}
			if (got == nil) != (c.want == nil) || (got != nil && !got.Equal(*c.want)) {
				t.Fatalf("%s: %s %s window = %v, want %v", step, c.edge, SizeLabel(size), got, c.want)
			}
		}
	}
}

// TestWindowBoundIsMaxAndMin: windowBound gives max(window_start) and
// min(window_start) of a size whatever where its rows lie: several spans,
// an empty newest span, sizes without rows or without any partition,
// one window of many rows, late rows in an old span written after newer
// ones, a partition whose last blocks hold dead rows only, DEFAULT
// partitions.
func TestWindowBoundIsMaxAndMin(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	checkBounds(t, pool, "no window size")
	// 1m: four days, the last one empty (created ahead); 5m: a partition,
	// no rows; 1h: an old week of rows, a newer empty week.
	addTestSpans(t, pool, DefaultSchema, spanKey{m1, t0}, spanKey{m1, t0 + d1}, spanKey{m1, t0 + 2*d1}, spanKey{m1, t0 + 3*d1},
		spanKey{5 * m1, t0}, spanKey{h1, spanOf(h1, t0).start}, spanKey{h1, spanOf(h1, t0).start + 7*d1})
	checkBounds(t, pool, "empty partitions")
	insertWindows(t, pool, h1, spanOf(h1, t0).start, spanOf(h1, t0).start+2*d1, 3)
	insertWindows(t, pool, m1, t0+10*m1, t0+d1, 20)
	checkBounds(t, pool, "one span")
	// Day 3: windows of 40 rows, then one window of 30,000 rows (several
	// BRIN block ranges), then two windows of 40 again.
	insertWindows(t, pool, m1, t0+2*d1, t0+2*d1+600*m1, 40)
	insertWindows(t, pool, m1, t0+2*d1+600*m1, t0+2*d1+601*m1, 30_000)
	checkBounds(t, pool, "a large window last")
	insertWindows(t, pool, m1, t0+2*d1+601*m1, t0+2*d1+603*m1, 40)
	checkBounds(t, pool, "three spans")
	// Late rows, written after the newer spans: in the oldest span before
	// its first window, and in day 2 (empty until now).
	insertWindows(t, pool, m1, t0, t0+m1, 5)
	insertWindows(t, pool, m1, t0+d1+500*m1, t0+d1+501*m1, 5)
	// And in day 3, out of order: an older window after the newest ones.
	insertURLs(t, pool, "/late", m1, t0+2*d1+3*m1, t0+2*d1+4*m1, 7)
	checkBounds(t, pool, "late rows")
	// The newest windows deleted: day 3's last blocks hold dead rows only
	// (the sample grows until it finds a live one).
	if _, err := pool.Exec(ctx, `DELETE FROM clickagg.url_clicks WHERE window_size = '1 minute' AND window_start >= $1`,
		time.UnixMilli(t0+2*d1+590*m1)); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, pool, "newest rows deleted")
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE clickagg.url_clicks`); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, pool, "vacuumed")
	// Every row of the oldest span deleted, not vacuumed.
	if _, err := pool.Exec(ctx, `DELETE FROM clickagg.url_clicks WHERE window_size = '1 minute' AND window_start < $1`,
		time.UnixMilli(t0+d1)); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, pool, "oldest span emptied")
	// DEFAULT partitions: of the 1m table (rows outside every span, older
	// and newer than the others), and of url_clicks (a size with no table
	// of its own).
	if _, err := pool.Exec(ctx, `CREATE TABLE clickagg.url_clicks_1m_default (LIKE clickagg.url_clicks INCLUDING DEFAULTS);
ALTER TABLE clickagg.url_clicks_1m ATTACH PARTITION clickagg.url_clicks_1m_default DEFAULT;
CREATE TABLE clickagg.url_clicks_default (LIKE clickagg.url_clicks INCLUDING DEFAULTS);
ALTER TABLE clickagg.url_clicks ATTACH PARTITION clickagg.url_clicks_default DEFAULT`); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, pool, "empty DEFAULT partitions")
	insertWindows(t, pool, 10_000, t0, t0+m1, 3)
	insertWindows(t, pool, m1, t0-5*d1, t0-5*d1+m1, 1)
	checkBounds(t, pool, "rows in DEFAULT partitions")
	insertWindows(t, pool, m1, t0+9*d1, t0+9*d1+m1, 1)
	checkBounds(t, pool, "the newest row in a DEFAULT partition")
	// Within a transaction (as the totals use it).
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { checkBounds(t, tx, "in a transaction"); return nil }); err != nil {
		t.Fatal(err)
	}
}
