package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/clickagg/clickagg/sink"
)

// TestSecondGroupRefused: group A counts the topic into the schema; a
// second group on the same schema (a rename, a blue/green switch) is
// refused, exit 2, with one line naming the owner and --takeover, and the
// counts stay exact (not doubled). With its checkpoints copied from A's
// and --takeover, the second group continues where A stopped: after more
// records, every count is still exact. Adding a window size logs its
// warning once and runs on.
func TestSecondGroupRefused(t *testing.T) {
	e := newEnv(t, 4)
	ctx := context.Background()
	produce := func(seed uint64) {
		e.produce(ctx, gen.Options{Count: 5_000, Rate: 5000, URLs: 200, Seed: seed, OutOfOrderFraction: 0.1, InvalidFraction: 0.01})
	}
	produce(31)
	a := e.run("--state-dir", t.TempDir(), "--exit-when-idle", "1s")
	if code := a.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("group A: exit code %d", code)
	}
	before := e.expectExact(ctx, e.records(ctx))

	groupA := e.group
	e.group = groupA + "-b"
	b := e.run("--state-dir", t.TempDir(), "--exit-when-idle", "1s")
	if code := b.wait(t, time.Minute); code != 2 {
		t.Fatalf("group B on A's schema: exit code %d, want 2", code)
	}
	last := b.tail(1)
	for _, want := range []string{`owned by group "` + groupA + `"`, "--takeover", "clickagg reset"} {
		if !strings.Contains(last, want) {
			t.Errorf("group B's last line lacks %q: %s", want, last)
		}
	}
	if len(b.logEntries("partition assigned")) != 0 {
		t.Errorf("the refused group consumed partitions")
	}
	e.expectExact(ctx, e.records(ctx)) // NB: not doubled
	t.Logf("refused: %s", last)

	// The takeover: B starts where A stopped (its checkpoints rows).
	if _, err := e.pool.Exec(ctx, `INSERT INTO clickagg.checkpoints (consumer_group, topic, partition, next_offset, watermark,
	restart_offset, dedup_offset, dedup_clock, dead_letter_partition, dead_letter_offset)
SELECT $2, topic, partition, next_offset, watermark, restart_offset, dedup_offset, dedup_clock, dead_letter_partition, dead_letter_offset
FROM clickagg.checkpoints WHERE consumer_group = $1`, groupA, e.group); err != nil {
		t.Fatal(err)
	}
	produce(32)
	b = e.run("--state-dir", t.TempDir(), "--exit-when-idle", "1s", "--takeover")
	if code := b.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("group B with --takeover: exit code %d", code)
	}
	if n := len(b.logEntries(`took over schema clickagg from group "` + groupA + `" (topic "` + e.topic + `"): counts continue from group "` + e.group + `"'s own checkpoints`)); n != 1 {
		t.Errorf("takeover logged %d times, want once", n)
	}
	after := e.expectExact(ctx, e.records(ctx))
	if after.Valid <= before.Valid {
		t.Fatalf("B counted nothing new: %d valid records before, %d after", before.Valid, after.Valid)
	}

	// A window size added: logged once, and the run goes on.
	produce(33)
	b = e.run("--state-dir", t.TempDir(), "--exit-when-idle", "1s", "--windows", "1m,5m,1h")
	if code := b.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("group B with 5m added: exit code %d", code)
	}
	const added = "window size 5m added: its rows start at the current position; earlier windows of 5m are not backfilled — see clickagg backfill / reprocess"
	if got := b.logEntries(added); len(got) != 1 || got[0]["level"] != "warn" {
		t.Errorf("adding 5m: log entries %v, want one warning", got)
	}
	// NB: the 5m rows hold exactly the valid records counted since it was
	// added; 1m, 1h and url_totals stay exact (compared without the 5m
	// rows, in a transaction rolled back).
	recs := e.records(ctx)
	exp := oracle.Compute(recs, windows, 2048)
	var fiveMin int64
	if err := e.pool.QueryRow(ctx, `SELECT coalesce(sum(clicks), 0) FROM clickagg.url_clicks WHERE window_size = interval '5 minutes'`).Scan(&fiveMin); err != nil {
		t.Fatal(err)
	}
	if fiveMin != exp.Valid-after.Valid {
		t.Errorf("5m rows hold %d clicks, want the %d valid records counted since 5m was added", fiveMin, exp.Valid-after.Valid)
	}
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, `DELETE FROM clickagg.url_clicks WHERE window_size = interval '5 minutes'`); err != nil {
		t.Fatal(err)
	}
	if err := oracle.Compare(ctx, tx, sink.DefaultSchema, exp); err != nil {
		t.Fatal(err)
	}
}
