package stream

import (
	"fmt"
	"math"
	"time"
)

// NoWatermark is the watermark of a partition that has seen no event time
// yet: every window is open.
const NoWatermark int64 = math.MinInt64

// Window is one tumbling window of one size: event times in [Start, Start+Size).
// Windows are aligned to the Unix epoch in UTC.
type Window struct {
	Size  int64 // milliseconds
	Start int64 // Unix milliseconds, a multiple of Size
}

// End returns the window's exclusive end in Unix milliseconds.
func (w Window) End() int64 { return w.Start + w.Size }

// String formats the window for logs and tests, e.g. "1m@2026-01-01T00:00:00Z".
func (w Window) String() string {
	return fmt.Sprintf("%s@%s", time.Duration(w.Size)*time.Millisecond,
		time.UnixMilli(w.Start).UTC().Format(time.RFC3339))
}

// Assign returns the window of the given size that holds event time ts (ms).
// size must be positive. Negative times round toward negative infinity, so
// the window always satisfies Start <= ts < End.
func Assign(ts, size int64) Window {
	start := ts - ts%size
	if ts%size < 0 {
		start -= size
	}
	return Window{Size: size, Start: start}
}

// ClosedBy reports whether watermark wm has passed the window's end, that is,
// no on-time record can still fall into it.
func (w Window) ClosedBy(wm int64) bool {
	return wm != NoWatermark && w.End() <= wm
}

// nextWatermark returns the watermark after seeing event time ts: the maximum
// event time seen minus the allowed out-of-orderness, never going back.
func nextWatermark(wm, ts, outOfOrder int64) int64 {
	cand := ts - outOfOrder
	if wm == NoWatermark || cand > wm {
		return cand
	}
	return wm
}
