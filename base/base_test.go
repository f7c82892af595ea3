package base

import (
	"slices"
	"testing"
)

func TestWindow(t *testing.T) {
	w := Window{Size: 60_000, Start: 120_000}
	if w.End() != 180_000 || w.ClosedBy(179_999) || !w.ClosedBy(180_000) || w.ClosedBy(NoWatermark) {
		t.Fatalf("End/ClosedBy wrong for %v", w)
	}
	if got := w.String(); got != "1m0s@1970-01-01T00:02:00Z" {
		t.Fatalf("String: %q", got)
	}
	ws := []Window{{60_000, 120_000}, {3_600_000, 0}, {60_000, 0}}
	slices.SortFunc(ws, Compare)
	if ws[0] != (Window{60_000, 0}) || ws[2] != (Window{3_600_000, 0}) {
		t.Fatalf("Compare order: %v", ws)
	}
	slices.SortFunc(ws, CompareByEnd)
	if ws[0] != (Window{60_000, 0}) || ws[1] != (Window{60_000, 120_000}) {
		t.Fatalf("CompareByEnd order: %v", ws)
	}
}

func TestStart(t *testing.T) {
	p := Start(7)
	if p.NextOffset != 7 || p.RestartOffset != 7 || p.DedupOffset != 7 || p.Watermark != NoWatermark || p.DedupClock != NoWatermark {
		t.Fatalf("Start(7) = %+v", p)
	}
}
