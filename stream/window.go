package stream

import (
	"github.com/clickagg/clickagg/base"
)

// NoWatermark is base.NoWatermark: no event time seen yet, every window
// open.
const NoWatermark = base.NoWatermark

// Assign returns the window of the given size that holds event time ts (ms).
// size must be positive. Negative times round toward negative infinity, so
// the window always satisfies Start <= ts < End.
func Assign(ts, size int64) base.Window {
	start := ts - ts%size
	if ts%size < 0 {
		start -= size
	}
	return base.Window{Size: size, Start: start}
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
