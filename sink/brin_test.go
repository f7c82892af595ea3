package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// statementLog records the statements a connection runs.
type statementLog struct {
	on   bool
	stmt []loggedStatement
}

type loggedStatement struct {
	sql  string
	args []any
}

func (l *statementLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if l.on {
		l.stmt = append(l.stmt, loggedStatement{data.SQL, data.Args})
	}
	return ctx
}

func (l *statementLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// heapBlocks runs EXPLAIN (ANALYZE, BUFFERS) of sql and returns the plan,
// the blocks its scans of url_clicks partitions touched (not those of the
// catalog), and whether one of them is a sequential scan.
func heapBlocks(t testing.TB, conn *pgx.Conn, sql string, args ...any) (plan string, blocks int64, seq bool) {
	t.Helper()
	var out []byte
	if err := conn.QueryRow(context.Background(), `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) `+sql, args...).Scan(&out); err != nil {
		t.Fatalf("EXPLAIN %s: %v", sql, err)
	}
	var plans []struct{ Plan map[string]any }
	if err := json.Unmarshal(out, &plans); err != nil {
		t.Fatal(err)
	}
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		if rel, _ := n["Relation Name"].(string); strings.HasPrefix(rel, "url_clicks") {
			hit, _ := n["Shared Hit Blocks"].(float64)
			read, _ := n["Shared Read Blocks"].(float64)
			blocks += int64(hit + read)
			seq = seq || n["Node Type"] == "Seq Scan"
		}
		kids, _ := n["Plans"].([]any)
		for _, k := range kids {
			walk(k.(map[string]any))
		}
	}
	walk(plans[0].Plan)
	return string(out), blocks, seq
}

// TestLatestWindowReadsTheNewestRows: on a table of many rows, the
// statements windowBound runs read a few block ranges of url_clicks,
// where max(window_start) reads every block of the size.
func TestLatestWindowReadsTheNewestRows(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	addTestSpans(t, pool, DefaultSchema, spanKey{m1, t0}, spanKey{m1, t0 + d1}, spanKey{m1, t0 + 2*d1}, spanKey{m1, t0 + 3*d1})
	// Three days of 1-minute windows of 100 rows, the third up to 18:00;
	// the fourth day's span is empty.
	insertWindows(t, pool, m1, t0, t0+2*d1+18*h1, 100)
	// NB: autovacuum summarizes the BRIN block ranges as the rows move
	// past them (autosummarize); here they are summarized at once.
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE clickagg.url_clicks`); err != nil {
		t.Fatal(err)
	}
	cfg := pool.Config().ConnConfig.Copy()
	log := &statementLog{}
	cfg.Tracer = log
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var total int64
	if err := conn.QueryRow(ctx, `SELECT sum(pg_relation_size(relid) / current_setting('block_size')::int)::bigint
FROM pg_partition_tree('clickagg.url_clicks') WHERE isleaf`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	for _, edge := range []windowEdge{newestWindow, oldestWindow} {
		agg := map[windowEdge]string{newestWindow: "max", oldestWindow: "min"}[edge]
		plain, all, _ := heapBlocks(t, conn, `SELECT `+agg+`(window_start) FROM clickagg.url_clicks WHERE window_size = $1`, time.Minute)
		if all < total*9/10 {
			t.Fatalf("%s(window_start) read %d of %d blocks; the test expects it to read them all:\n%s", agg, all, total, plain)
		}
		log.on, log.stmt = true, nil
		got, err := windowBound(ctx, conn, DefaultSchema, time.Minute, edge)
		log.on = false
		want := map[windowEdge]int64{newestWindow: t0 + 2*d1 + 18*h1 - m1, oldestWindow: t0}[edge]
		if err != nil || got == nil || got.UnixMilli() != want {
			t.Fatalf("%s window = %v, %v; want %v", edge, got, err, time.UnixMilli(want).UTC())
		}
		var blocks int64
		var plans []string
		seq := false
		for _, s := range log.stmt {
			plan, n, sq := heapBlocks(t, conn, s.sql, s.args...)
			blocks, seq = blocks+n, seq || sq
			plans = append(plans, fmt.Sprintf("%s %v: %d blocks\n%s", s.sql, s.args, n, plan))
		}
		t.Logf("%s window: %d statements read %d of the %d blocks (%s(window_start): %d)", edge, len(log.stmt), blocks, total, agg, all)
		// NB: the sample (128 blocks) and a block range or two for the
		// rows past it.
		if blocks > 3*sampleBlocks+128 || seq {
			t.Fatalf("%s window read %d of %d blocks:\n%s", edge, blocks, total, strings.Join(plans, "\n"))
		}
	}
	// The README's queries, now() at 18:00 of the third day: the hour's
	// rows and the newest window's by the BRIN index of the third day's
	// partition, one URL's day by its primary key.
	now := time.UnixMilli(t0 + 2*d1 + 18*h1)
	for _, c := range []struct{ query, index string }{
		{`SELECT url, sum(clicks) AS clicks, sum(late_clicks) AS late FROM clickagg.url_clicks
WHERE window_size = interval '1 minute' AND window_start >= $1::timestamptz - interval '1 hour'
GROUP BY url ORDER BY clicks DESC LIMIT 10`, "Bitmap Index Scan on url_clicks_1m_p20260103_window_start_idx"},
		{`SELECT window_start, clicks, final FROM clickagg.url_clicks
WHERE url = '/r7' AND window_size = interval '1 minute' AND window_start >= date_trunc('day', $1::timestamptz, 'UTC')
ORDER BY window_start`, " url_clicks_1m_p20260103_pkey"},
		{`SELECT url, clicks, late_clicks, final FROM clickagg.url_clicks
WHERE window_size = interval '1 minute'
  AND window_start = (SELECT max(window_start) FROM clickagg.url_clicks
                      WHERE window_size = interval '1 minute' AND window_start >= $1::timestamptz - interval '10 minutes')
ORDER BY clicks DESC LIMIT 10`, "Bitmap Index Scan on url_clicks_1m_p20260103_window_start_idx"},
	} {
		var lines []string
		rows, err := conn.Query(ctx, `EXPLAIN (ANALYZE, COSTS off) `+c.query, now)
		if err == nil {
			lines, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			t.Fatal(err)
		}
		plan := strings.Join(lines, "\n")
		// NB: the fourth day's partition is empty: a Seq Scan there reads nothing.
		if !strings.Contains(plan, c.index) || regexp.MustCompile(`Seq Scan on url_clicks_1m_p2026010[123]`).MatchString(plan) {
			t.Fatalf("README query does not read by index:\n%s\n%s", c.query, plan)
		}
	}
}

// TestMigrateToBRINKeepsRows: a version-6 schema's url_clicks rows are all
// kept by migration 7, and its tables end with the same indexes as a
// schema created at version 7 with the same partitions (and partitions
// added after the migration get them too).
func TestMigrateToBRINKeepsRows(t *testing.T) {
	ctx := context.Background()
	pool, conn := newEmptyPool(t)
	defer conn.Release()
	if n, err := migrateTo(ctx, conn.Conn(), DefaultSchema, 6); err != nil || n != 6 {
		t.Fatalf("migrate to 6 = %d, %v", n, err)
	}
	spans := []spanKey{{m1, t0}, {m1, t0 + d1}, {h1, spanOf(h1, t0).start}}
	addTestSpans(t, pool, DefaultSchema, spans...)
	insertWindows(t, pool, m1, t0, t0+d1+h1, 20)
	insertWindows(t, pool, h1, spanOf(h1, t0).start, spanOf(h1, t0).start+d1, 20)
	const cols = `url, window_start, window_end, window_size, clicks, late_clicks, final, updated_at`
	before := snapshot(t, conn, cols)
	if n, err := Migrate(ctx, conn.Conn(), DefaultSchema); err != nil || n != 1 {
		t.Fatalf("Migrate = %d, %v; want 1 applied", n, err)
	}
	after := snapshot(t, pool, cols)
	if len(before) < 20*(1500+24) || fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("rows: %d before, %d after, or changed", len(before), len(after))
	}
	later := spanKey{m1, t0 + 2*d1}
	addTestSpans(t, pool, DefaultSchema, later)
	if n, err := Migrate(ctx, conn.Conn(), "fresh"); err != nil || n != SchemaVersion {
		t.Fatalf("Migrate fresh = %d, %v", n, err)
	}
	addTestSpans(t, pool, "fresh", append(spans, later)...)
	indexes := func(schema string) []string {
		rows, err := pool.Query(ctx, `SELECT tablename || ': ' || replace(indexdef, $1, 'S') FROM pg_indexes WHERE schemaname = $2 ORDER BY 1`,
			schema+".", schema)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	migrated, fresh := indexes(DefaultSchema), indexes("fresh")
	if !slices.Equal(migrated, fresh) {
		t.Fatalf("indexes after migration:\n%s\nof a fresh schema:\n%s", strings.Join(migrated, "\n"), strings.Join(fresh, "\n"))
	}
	joined := strings.Join(migrated, "\n")
	if strings.Contains(joined, "size_start") || strings.Count(joined, "USING brin (window_start) WITH (autosummarize='on')") != 4+2+1 {
		t.Fatalf("url_clicks indexes after migration:\n%s", joined)
	}
}
