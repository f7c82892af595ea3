package sink

import (
	"context"
	"errors"
	"fmt"
	"github.com/clickagg/clickagg/base"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/testutil/pgtest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// newPool returns a pool on a fresh database migrated to SchemaVersion.
func newPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pool, conn := newEmptyPool(t)
	defer conn.Release()
	if n, err := Migrate(ctx, conn.Conn(), DefaultSchema); err != nil || n != SchemaVersion {
		t.Fatalf("Migrate = %d, %v", n, err)
	}
	if n, err := Migrate(ctx, conn.Conn(), DefaultSchema); err != nil || n != 0 {
		t.Fatalf("second Migrate = %d, %v; want 0 applied", n, err)
	}
	return pool
}

// newEmptyPool returns a pool on a fresh database, nothing migrated, and
// one of its connections (the caller releases it).
func newEmptyPool(t testing.TB) (*pgxpool.Pool, *pgxpool.Conn) {
	t.Helper()
	pool, err := NewPool(context.Background(), pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	conn, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return pool, conn
}

const (
	t0 = int64(1767225600000) // 2026-01-01T00:00:00Z
	m1 = int64(60_000)
)

func pos(next, wm, restart int64) Row {
	return Row{Position: base.Position{NextOffset: next, Watermark: wm, RestartOffset: restart}}
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO clickagg.schema_migrations (version) VALUES (999)`); err != nil {
		t.Fatal(err)
	}
	conn, _ := pool.Acquire(ctx)
	defer conn.Release()
	if _, err := Migrate(ctx, conn.Conn(), DefaultSchema); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("err = %v, want ErrSchemaTooNew", err)
	}
}

func TestCommitAddsDeltasAndFencesStaleWriters(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	w, err := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	if err != nil {
		t.Fatal(err)
	}
	start := pos(0, NoWatermark, 0)
	if got, err := w.InitRow(ctx, 0, start); err != nil || got != start {
		t.Fatalf("InitRow = %+v, %v", got, err)
	}
	// Init never overwrites an existing row.
	if got, err := w.InitRow(ctx, 0, pos(99, 1, 99)); err != nil || got != start {
		t.Fatalf("second InitRow = %+v, %v; want the existing row", got, err)
	}
	cp := func(expect, next Row, clicks int64) *Checkpoint {
		return &Checkpoint{
			Partitions: []PartitionUpdate{{Partition: 0, Expect: expect, Next: next}},
			Clicks: []ClickDelta{{URL: "/a", WindowStart: t0, WindowEnd: t0 + m1, Clicks: clicks}, {URL: "/b", WindowStart: t0, WindowEnd: t0 + m1, Clicks: 1, LateClicks: 1},
				// not the totals window: no url_totals delta
				{URL: "/a", WindowStart: t0, WindowEnd: t0 + 60*m1, Clicks: 7}},
			TotalsWindow: m1,
		}
	}
	a := pos(10, t0, 5)
	if _, err := w.Commit(ctx, cp(start, a, 3)); err != nil {
		t.Fatal(err)
	}
	b := pos(20, t0+1000, 12)
	if _, err := w.Commit(ctx, cp(a, b, 4)); err != nil {
		t.Fatal(err)
	}
	// A zombie still holding position a cannot write.
	_, err = w.Commit(ctx, cp(a, pos(15, t0+500, 9), 100))
	var fe *FencedError
	if !errors.As(err, &fe) || !errors.Is(err, ErrFenced) || fe.Found[0] != b || fe.Expected[0] != a {
		t.Fatalf("stale commit: err = %v (%+v), want fenced with found %+v", err, fe, b)
	}
	// Same next offset, other watermark: still fenced (an idle advance or
	// an early flush moves the row without moving the offset).
	if _, err := w.Commit(ctx, cp(pos(20, t0, 12), pos(20, t0+2000, 12), 1)); !errors.Is(err, ErrFenced) {
		t.Fatalf("watermark mismatch: err = %v, want fenced", err)
	}
	if _, err := w.Commit(ctx, cp(pos(20, t0+1000, 5), pos(20, t0+2000, 20), 1)); !errors.Is(err, ErrFenced) {
		t.Fatalf("restart offset mismatch: err = %v, want fenced", err)
	}
	// Repeating the last commit (its acknowledgement lost) is recognised
	// and writes nothing twice.
	res, err := w.Commit(ctx, cp(a, b, 4))
	if err != nil || !res.Recovered {
		t.Fatalf("repeated commit: %+v, %v; want Recovered", res, err)
	}
	var clicksA, hourA, clicksB, lateB, totalA int64
	if err := pool.QueryRow(ctx, `SELECT
	(SELECT clicks FROM clickagg.url_clicks WHERE url = '/a' AND window_end - window_start = interval '1 minute'),
	(SELECT clicks FROM clickagg.url_clicks WHERE url = '/a' AND window_end - window_start = interval '1 hour'),
	(SELECT clicks FROM clickagg.url_clicks WHERE url = '/b'),
	(SELECT late_clicks FROM clickagg.url_clicks WHERE url = '/b'),
	(SELECT clicks FROM clickagg.url_totals WHERE url = '/a')`).Scan(&clicksA, &hourA, &clicksB, &lateB, &totalA); err != nil {
		t.Fatal(err)
	}
	// NB: url_totals follow the 1m windows only.
	if clicksA != 7 || hourA != 14 || clicksB != 2 || lateB != 2 || totalA != 7 {
		t.Fatalf("clicks /a %d (1h %d) /b %d late /b %d total /a %d; want 7 (14) 2 2 7", clicksA, hourA, clicksB, lateB, totalA)
	}
	got, err := w.ReadRows(ctx, []int32{0, 1})
	if err != nil || len(got) != 1 || got[0] != b {
		t.Fatalf("ReadRows = %v, %v", got, err)
	}
}

func TestWindowsBecomeFinalWhenEveryPartitionPassed(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	for p := range int32(2) {
		if _, err := w.InitRow(ctx, p, pos(0, NoWatermark, 0)); err != nil {
			t.Fatal(err)
		}
	}
	final := func() map[string]bool {
		rows, err := pool.Query(ctx, `SELECT url, final FROM clickagg.url_clicks`)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for rows.Next() {
			var u string
			var f bool
			rows.Scan(&u, &f)
			out[u] = f
		}
		return out
	}
	// Partition 0 passes the window's end; partition 1 has no watermark.
	_, err := w.Commit(ctx, &Checkpoint{TopicPartitions: 2,
		Partitions: []PartitionUpdate{{Partition: 0, Expect: pos(0, NoWatermark, 0), Next: pos(5, t0+2*m1, 5)}},
		Clicks:     []ClickDelta{{URL: "/a", WindowStart: t0, WindowEnd: t0 + m1, Clicks: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	if f := final(); f["/a"] {
		t.Fatal("final while partition 1 has no watermark")
	}
	// Partition 1 passes too: the earlier row is finalized.
	res, err := w.Commit(ctx, &Checkpoint{TopicPartitions: 2,
		Partitions: []PartitionUpdate{{Partition: 1, Expect: pos(0, NoWatermark, 0), Next: pos(3, t0+m1, 3)}},
		Clicks:     []ClickDelta{{URL: "/b", WindowStart: t0, WindowEnd: t0 + m1, Clicks: 3}, {URL: "/c", WindowStart: t0 + m1, WindowEnd: t0 + 2*m1, Clicks: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if f := final(); !f["/a"] || !f["/b"] || f["/c"] {
		t.Fatalf("final = %v; want /a and /b final, /c open (ends after the global watermark)", f)
	}
	if res.FinalUntil != t0+m1 {
		t.Fatalf("FinalUntil = %d, want %d", res.FinalUntil, t0+m1)
	}
	// A topic with more partitions than rows finalizes nothing.
	w3, _ := NewWriter(pool, Options{Group: "g3", Topic: "clicks"})
	w3.InitRow(ctx, 0, pos(0, NoWatermark, 0))
	if _, err := w3.Commit(ctx, &Checkpoint{TopicPartitions: 3,
		Partitions: []PartitionUpdate{{Partition: 0, Expect: pos(0, NoWatermark, 0), Next: pos(1, t0+9*m1, 1)}},
		Clicks:     []ClickDelta{{URL: "/d", WindowStart: t0, WindowEnd: t0 + m1, Clicks: 1}}}); err != nil {
		t.Fatal(err)
	}
	if f := final(); f["/d"] {
		t.Fatal("final although 2 of 3 partitions never checkpointed")
	}
}

func TestRetryable(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&FencedError{}, false},
		{context.Canceled, false},
		{&pgconn.PgError{Code: "40P01"}, true},  // deadlock
		{&pgconn.PgError{Code: "40001"}, true},  // serialization
		{&pgconn.PgError{Code: "57P01"}, true},  // admin shutdown
		{&pgconn.PgError{Code: "08006"}, true},  // connection failure
		{&pgconn.PgError{Code: "53300"}, true},  // too many connections
		{&pgconn.PgError{Code: "42P01"}, false}, // undefined table
		{&pgconn.PgError{Code: "23505"}, false}, // unique violation
		{fmt.Errorf("commit: %w", syscall.ECONNRESET), true},
		{fmt.Errorf("commit: %w", pgconn.ErrConnClosed), true},
		{fmt.Errorf("commit: %w", errAttemptTimeout), true},
		{errors.New("cannot encode value"), false}, // a bug: fail loudly
	}
	for _, c := range cases {
		if got := Retryable(c.err); got != c.want {
			t.Errorf("Retryable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestCommitSurvivesPostgresRestart(t *testing.T) {
	srv := pgtest.NewServer(t)
	ctx := context.Background()
	pool, err := NewPool(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	conn, _ := pool.Acquire(ctx)
	if _, err := Migrate(ctx, conn.Conn(), DefaultSchema); err != nil {
		t.Fatal(err)
	}
	conn.Release()
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "t"})
	w.InitRow(ctx, 0, pos(0, NoWatermark, 0))
	cp := &Checkpoint{Partitions: []PartitionUpdate{{Partition: 0, Expect: pos(0, NoWatermark, 0), Next: pos(1, t0, 1)}},
		Clicks: []ClickDelta{{URL: "/a", WindowStart: t0, WindowEnd: t0 + m1, Clicks: 1}}}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	_, err = w.Commit(ctx, cp)
	if err == nil || !Retryable(err) {
		t.Fatalf("commit while PostgreSQL is down: %v; want a retryable error", err)
	}
	if err := srv.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err = w.Commit(ctx, cp)
		if err == nil || !Retryable(err) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // retry interval
	}
	if err != nil {
		t.Fatalf("commit after restart: %v", err)
	}
}

// BenchmarkCommit measures one checkpoint transaction writing 10,000
// url_clicks and 10,000 url_totals deltas (half new rows, half updates).
func BenchmarkCommit(b *testing.B) {
	pool := newPool(b)
	ctx := context.Background()
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "t"})
	cur := pos(0, NoWatermark, 0)
	if _, err := w.InitRow(ctx, 0, cur); err != nil {
		b.Fatal(err)
	}
	const rows = 10_000
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cp := &Checkpoint{TopicPartitions: 1, TotalsWindow: m1}
		next := pos(cur.NextOffset+rows, t0+int64(i)*m1, cur.NextOffset+rows)
		cp.Partitions = []PartitionUpdate{{Partition: 0, Expect: cur, Next: next}}
		for j := range rows {
			u := fmt.Sprintf("https://example.com/%d", (i*rows/2+j)%(rows*4))
			cp.Clicks = append(cp.Clicks, ClickDelta{URL: u, WindowStart: t0, WindowEnd: t0 + m1, Clicks: 1})
		}
		if _, err := w.Commit(ctx, cp); err != nil {
			b.Fatal(err)
		}
		cur = next
	}
	b.ReportMetric(float64(2*rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// TestCommitSpilledDeltas: a checkpoint larger than the memory bound is
// staged through a temporary file and committed the same way; a retry
// reads the file again.
func TestCommitSpilledDeltas(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "t"})
	w.InitRow(ctx, 0, pos(0, NoWatermark, 0))
	dir := t.TempDir()
	d := &Deltas{SpillDir: dir, SpillBytes: 4096}
	for i := range 5000 {
		u := fmt.Sprintf("/u%d", i%1000)
		d.AddClick(u, t0, t0+m1, 1, 0)
	}
	if files, _ := os.ReadDir(dir); len(files) != 1 {
		t.Fatalf("%d spill files, want 1", len(files))
	}
	cp := &Checkpoint{Deltas: d, TotalsWindow: m1, Partitions: []PartitionUpdate{{Partition: 0, Expect: pos(0, NoWatermark, 0), Next: pos(5000, t0, 5000)}}}
	res, err := w.Commit(ctx, cp)
	// NB: the totals are read from url_clicks until folded: no
	// url_totals_base row is written.
	if err != nil || res.ClickRows != 1000 || res.TotalRows != 0 {
		t.Fatalf("Commit = %+v, %v", res, err)
	}
	var totals int64
	if err := pool.QueryRow(ctx, `SELECT sum(clicks) FROM clickagg.url_totals`).Scan(&totals); err != nil || totals != 5000 {
		t.Fatalf("url_totals sum = %d, %v; want 5000", totals, err)
	}
	var sum, n int64
	if err := pool.QueryRow(ctx, `SELECT sum(clicks), count(*) FROM clickagg.url_clicks`).Scan(&sum, &n); err != nil || sum != 5000 || n != 1000 {
		t.Fatalf("url_clicks sum %d rows %d (%v), want 5000 and 1000", sum, n, err)
	}
	d.Reset()
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Fatalf("Reset left %d spill files", len(files))
	}
}

// TestDedupPositionRoundTrips: the dedup restart offset and clock are
// written and fenced with the rest of the row, and a row from before they
// existed (NULL columns) reads as "dedup restarts where windows do, with no
// clock".
func TestDedupPositionRoundTrips(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	w, err := NewWriter(pool, Options{Group: "g", Topic: "dedup"})
	if err != nil {
		t.Fatal(err)
	}
	start := Row{Position: base.Position{NextOffset: 0, Watermark: NoWatermark, RestartOffset: 0, DedupOffset: 0, DedupClock: NoWatermark}}
	if got, err := w.InitRow(ctx, 0, start); err != nil || got != start {
		t.Fatalf("InitRow = %+v, %v", got, err)
	}
	next := Row{Position: base.Position{NextOffset: 50, Watermark: t0, RestartOffset: 40, DedupOffset: 12, DedupClock: t0 - 5000}}
	if _, err := w.Commit(ctx, &Checkpoint{Partitions: []PartitionUpdate{{Partition: 0, Expect: start, Next: next}}}); err != nil {
		t.Fatal(err)
	}
	got, err := w.ReadRows(ctx, []int32{0})
	if err != nil || got[0] != next {
		t.Fatalf("ReadRows = %+v, %v; want %+v", got[0], err, next)
	}
	// Same offsets and watermark, another dedup position: fenced.
	stale, later := next, next
	stale.DedupOffset, later.NextOffset = 11, 60
	if _, err := w.Commit(ctx, &Checkpoint{Partitions: []PartitionUpdate{{Partition: 0, Expect: stale, Next: later}}}); !errors.Is(err, ErrFenced) {
		t.Fatalf("dedup offset mismatch: err = %v, want fenced", err)
	}
	if _, err := pool.Exec(ctx, `UPDATE clickagg.checkpoints SET dedup_offset = NULL, dedup_clock = NULL WHERE topic = 'dedup'`); err != nil {
		t.Fatal(err)
	}
	old := Row{Position: base.Position{NextOffset: 50, Watermark: t0, RestartOffset: 40, DedupOffset: 40, DedupClock: NoWatermark}}
	if got, err := w.ReadRows(ctx, []int32{0}); err != nil || got[0] != old {
		t.Fatalf("ReadRows of a pre-dedup row = %+v, %v; want %+v", got[0], err, old)
	}
	if _, err := w.Commit(ctx, &Checkpoint{Partitions: []PartitionUpdate{{Partition: 0, Expect: old, Next: next}}}); err != nil {
		t.Fatalf("commit over a pre-dedup row: %v", err)
	}
}

// TestMaxURLBytesFitsIndex: a URL of MaxURLBytes bytes that does not
// compress is stored in url_clicks and url_totals; 8 bytes more no longer
// fits url_clicks' primary key, so the bound is the server's, and tight.
func TestMaxURLBytesFitsIndex(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	w, err := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	if err != nil {
		t.Fatal(err)
	}
	// NB: random letters defeat the index's compression of long keys.
	rng := rand.New(rand.NewPCG(1, 2))
	url := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = 'a' + byte(rng.IntN(26))
		}
		return string(b)
	}
	start := pos(0, NoWatermark, 0)
	if _, err := w.InitRow(ctx, 0, start); err != nil {
		t.Fatal(err)
	}
	fits := url(MaxURLBytes)
	cp := func(expect, next Row, u string) *Checkpoint {
		return &Checkpoint{
			Partitions:   []PartitionUpdate{{Partition: 0, Expect: expect, Next: next}},
			Clicks:       []ClickDelta{{URL: u, WindowStart: t0, WindowEnd: t0 + m1, Clicks: 1}},
			TotalsWindow: m1,
		}
	}
	a := pos(1, NoWatermark, 0)
	if _, err := w.Commit(ctx, cp(start, a, fits)); err != nil {
		t.Fatalf("commit a %d-byte URL: %v", MaxURLBytes, err)
	}
	var n int64
	if err := pool.QueryRow(ctx, `SELECT (SELECT clicks FROM clickagg.url_clicks WHERE url = $1) + (SELECT clicks FROM clickagg.url_totals WHERE url = $1)`, fits).Scan(&n); err != nil || n != 2 {
		t.Fatalf("stored %d-byte URL: clicks + total = %d, %v; want 2", MaxURLBytes, n, err)
	}
	_, err = w.Commit(ctx, cp(a, pos(2, NoWatermark, 0), url(MaxURLBytes+8)))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "54000" {
		t.Fatalf("commit a %d-byte URL: %v; want SQLSTATE 54000 (index row too large): is MaxURLBytes too low?", MaxURLBytes+8, err)
	}
}

// TestMigrateRefusesLatin1: a database whose encoding cannot hold every
// UTF-8 URL is refused before anything is counted into it.
func TestMigrateRefusesLatin1(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	cfg := pool.Config().ConnConfig.Copy()
	cfg.Database += "_latin1"
	name := pgx.Identifier{cfg.Database}.Sanitize()
	if _, err := pool.Exec(ctx, `CREATE DATABASE `+name+` ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := pool.Exec(ctx, `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	})
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := Migrate(ctx, conn, DefaultSchema); !errors.Is(err, ErrEncoding) {
		t.Fatalf("Migrate into a LATIN1 database: %v, want ErrEncoding", err)
	}
}
