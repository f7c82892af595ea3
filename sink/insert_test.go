package sink

import (
	"context"
	"fmt"
	"testing"
)

// TestNewRowsInsertedThenUpsertedWhenTheyExist: a checkpoint of new rows
// inserts them (no upsert); late deltas in the same checkpoint add to a
// row it just inserted; a checkpoint whose on-time delta finds its row
// written by another partition's earlier checkpoint falls back to the
// upsert, with nothing of the failed insert left, and the next
// checkpoints upsert straight away. Every count stays exact.
func TestNewRowsInsertedThenUpsertedWhenTheyExist(t *testing.T) {
	pool := newPool(t)
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	a, b := newCommitter(t, w, 0, 2), newCommitter(t, w, 1, 2)
	late := func(url string, start, n int64) ClickDelta {
		return ClickDelta{URL: url, WindowStart: start, WindowEnd: start + m1, Clicks: n, LateClicks: n}
	}
	res := a.mustCommit(t0+m1, click("/x", t0, m1, 3), click("/y", t0, m1, 1), late("/x", t0, 2), late("/z", t0-m1, 1))
	if res.UpsertedAll || res.ClickRows != 4 { // NB: /x inserted, then its late delta added
		t.Fatalf("first checkpoint: upserted all %v, %d rows; want inserted, 4 rows written", res.UpsertedAll, res.ClickRows)
	}
	// Partition 1 emits the same window later (unaligned): /x exists.
	res = b.mustCommit(t0+m1, click("/x", t0, m1, 4), click("/w", t0, m1, 5))
	if !res.UpsertedAll || res.ClickRows != 2 {
		t.Fatalf("second checkpoint: upserted all %v, %d rows; want the upsert, 2 rows", res.UpsertedAll, res.ClickRows)
	}
	// The next one upserts without trying (it would have succeeded).
	if res = a.mustCommit(t0+2*m1, click("/v", t0+m1, m1, 1)); !res.UpsertedAll {
		t.Fatal("the checkpoint after a failed insert tried the insert again")
	}
	want := map[string]int64{
		fmt.Sprintf("/x@%d/%d", t0, m1): 9, fmt.Sprintf("/y@%d/%d", t0, m1): 1, fmt.Sprintf("/z@%d/%d", t0-m1, m1): 1,
		fmt.Sprintf("/w@%d/%d", t0, m1): 5, fmt.Sprintf("/v@%d/%d", t0+m1, m1): 1,
	}
	if got := windowClicks(t, pool); !mapsEqual(got, want) {
		t.Fatalf("url_clicks = %v, want %v", got, want)
	}
	var lateX int64
	if err := pool.QueryRow(context.Background(), `SELECT late_clicks FROM clickagg.url_clicks WHERE url = '/x'`).Scan(&lateX); err != nil || lateX != 2 {
		t.Fatalf("late_clicks of /x = %d, %v; want 2", lateX, err)
	}
	// After the backoff the insert is tried again, and works for new rows.
	// NB: a checkpoint without url_clicks deltas does not count.
	for i := range 7 {
		a.mustCommit(t0+2*m1, click(fmt.Sprintf("/s%d", i), t0+m1, m1, 1))
	}
	if res = a.mustCommit(t0+3*m1, click("/u", t0+2*m1, m1, 1)); res.UpsertedAll {
		t.Fatal("the insert was not tried again after the backoff")
	}
}
