package stream

import (
	"github.com/clickagg/clickagg/base"
	"testing"
	"time"
)

func TestAssign(t *testing.T) {
	const m = int64(time.Minute / time.Millisecond)
	cases := []struct {
		ts, size, start int64
	}{
		{0, m, 0},
		{1, m, 0},
		{m - 1, m, 0},
		{m, m, m},
		{m + 1, m, m},
		{-1, m, -m},
		{-m, m, -m},
		{-m - 1, m, -2 * m},
		{1767225600123, m, 1767225600000},        // 2026-01-01T00:00:00.123Z
		{1767225600123, 3600_000, 1767225600000}, // hour
		{1767225659999, 86_400_000, 1767225600000},       // day, UTC-aligned
		{1767225600000 + 100_000, 90_000, 1767225690000}, // 90s windows are epoch-aligned, not hour-aligned
	}
	for _, c := range cases {
		w := Assign(c.ts, c.size)
		if w.Start != c.start || w.Size != c.size {
			t.Errorf("Assign(%d, %d) = %+v, want start %d", c.ts, c.size, w, c.start)
		}
		if !(w.Start <= c.ts && c.ts < w.End()) {
			t.Errorf("Assign(%d, %d) = [%d, %d) does not hold ts", c.ts, c.size, w.Start, w.End())
		}
	}
}

func TestAssignProperties(t *testing.T) {
	sizes := []int64{1000, 60_000, 90_000, 3_600_000, 86_400_000}
	for ts := int64(-200_000); ts < 200_000; ts += 997 {
		for _, s := range sizes {
			w := Assign(ts, s)
			if w.Start%s != 0 || w.Start > ts || ts >= w.End() {
				t.Fatalf("Assign(%d, %d) = %+v: not epoch-aligned or not holding ts", ts, s, w)
			}
		}
	}
}

func TestWindowClosedBy(t *testing.T) {
	w := base.Window{Size: 60_000, Start: 120_000}
	cases := []struct {
		wm   int64
		want bool
	}{
		{NoWatermark, false},
		{0, false},
		{179_999, false},
		{180_000, true}, // the watermark reached the end: no on-time record can come
		{1 << 50, true},
	}
	for _, c := range cases {
		if got := w.ClosedBy(c.wm); got != c.want {
			t.Errorf("ClosedBy(%d) = %v, want %v", c.wm, got, c.want)
		}
	}
}

func TestNextWatermark(t *testing.T) {
	cases := []struct {
		wm, ts, ooo, want int64
	}{
		{NoWatermark, 10_000, 5_000, 5_000}, // first event
		{5_000, 12_000, 5_000, 7_000},       // advances with the max event time
		{7_000, 9_000, 5_000, 7_000},        // an older event never moves it back
		{7_000, 12_000, 5_000, 7_000},       // same max
		{7_000, 20_000, 0, 20_000},          // no out-of-orderness allowed
	}
	for _, c := range cases {
		if got := nextWatermark(c.wm, c.ts, c.ooo); got != c.want {
			t.Errorf("nextWatermark(%d, %d, %d) = %d, want %d", c.wm, c.ts, c.ooo, got, c.want)
		}
	}
}

func TestWindowString(t *testing.T) {
	w := base.Window{Size: 60_000, Start: 1767225600000}
	if got, want := w.String(), "1m0s@2026-01-01T00:00:00Z"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
}
