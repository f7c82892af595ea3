package sink

import (
	"context"
	"testing"
	"time"
)

// TestURLWindowsBySize: the status page's chart reads one URL's windows of
// one size, newest first, bounded by time and count; URL still returns
// every size with the total.
func TestURLWindowsBySize(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	w, err := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	if err != nil {
		t.Fatal(err)
	}
	start := pos(0, NoWatermark, 0)
	if _, err := w.InitRow(ctx, 0, start); err != nil {
		t.Fatal(err)
	}
	cp := &Checkpoint{Partitions: []PartitionUpdate{{Partition: 0, Expect: start, Next: pos(10, t0, 0)}}, TotalsWindow: m1}
	for i := range int64(5) {
		cp.Clicks = append(cp.Clicks, ClickDelta{URL: "/a", WindowStart: t0 + i*m1, WindowEnd: t0 + (i+1)*m1, Clicks: i + 1})
	}
	cp.Clicks = append(cp.Clicks, ClickDelta{URL: "/a", WindowStart: t0, WindowEnd: t0 + 60*m1, Clicks: 15},
		ClickDelta{URL: "/b", WindowStart: t0, WindowEnd: t0 + m1, Clicks: 9})
	if _, err := w.Commit(ctx, cp); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(pool, DefaultSchema)
	if err != nil {
		t.Fatal(err)
	}
	at := func(ms int64) time.Time { return time.UnixMilli(ms) }
	got, err := r.URLWindows(ctx, "/a", time.Minute, time.Time{}, time.Time{}, 3)
	if err != nil {
		t.Fatal(err)
	}
	var clicks []int64
	for _, wc := range got {
		if wc.WindowEnd.Sub(wc.WindowStart) != time.Minute || wc.URL != "/a" {
			t.Errorf("row %+v: not a 1m window of /a", wc)
		}
		clicks = append(clicks, wc.Clicks)
	}
	if len(clicks) != 3 || clicks[0] != 5 || clicks[1] != 4 || clicks[2] != 3 {
		t.Fatalf("newest three 1m windows of /a: clicks %v, want [5 4 3]", clicks)
	}
	got, err = r.URLWindows(ctx, "/a", time.Minute, at(t0+m1), at(t0+3*m1), 100)
	if err != nil || len(got) != 2 || got[0].Clicks != 3 || got[1].Clicks != 2 {
		t.Fatalf("1m windows of /a in [t0+1m, t0+3m): %+v, %v; want clicks 3, 2", got, err)
	}
	all, total, err := r.URL(ctx, "/a", time.Time{}, time.Time{}, 100)
	if err != nil || len(all) != 6 || total != 15 {
		t.Fatalf("URL(/a) = %d windows, total %d, %v; want 6 (both sizes), 15", len(all), total, err)
	}
	if n, err := r.URLTotal(ctx, "/nope"); err != nil || n != 0 {
		t.Fatalf("URLTotal(/nope) = %d, %v; want 0", n, err)
	}
}
