// Package base holds the value types every layer of clickagg shares: a
// tumbling Window and a partition's checkpoint Position. The window
// operator (package stream) produces them, the state store (package state)
// keys and tags its data with them, and PostgreSQL (package sink) records
// them; none of those packages imports another, and all import this one.
//
// Units: event times, window starts and sizes, and watermarks are Unix
// milliseconds (int64); NoWatermark means "no watermark yet".
package base

import (
	"cmp"
	"fmt"
	"math"
	"time"
)

// NoWatermark is the watermark of a partition that has seen no event time
// yet: every window is open. It is the lowest int64, so comparisons need no
// special case. PostgreSQL stores it as NULL.
const NoWatermark int64 = math.MinInt64

// Window is one tumbling window of one size: event times in [Start,
// Start+Size). Windows are aligned to the Unix epoch in UTC.
type Window struct {
	Size  int64 // milliseconds
	Start int64 // Unix milliseconds, a multiple of Size
}

// End returns the window's exclusive end in Unix milliseconds.
func (w Window) End() int64 { return w.Start + w.Size }

// ClosedBy reports whether watermark wm has passed the window's end: no
// on-time record can still fall into it.
func (w Window) ClosedBy(wm int64) bool {
	return wm != NoWatermark && w.End() <= wm
}

// String formats the window for logs and tests, e.g. "1m0s@2026-01-01T00:00:00Z".
func (w Window) String() string {
	return fmt.Sprintf("%s@%s", time.Duration(w.Size)*time.Millisecond,
		time.UnixMilli(w.Start).UTC().Format(time.RFC3339))
}

// Compare orders windows by size, then start: the order of the state
// store's keys.
func Compare(a, b Window) int {
	if c := cmp.Compare(a.Size, b.Size); c != 0 {
		return c
	}
	return cmp.Compare(a.Start, b.Start)
}

// CompareByEnd orders windows by end, then size: the order a checkpoint
// emits them in.
func CompareByEnd(a, b Window) int {
	if c := cmp.Compare(a.End(), b.End()); c != 0 {
		return c
	}
	return cmp.Compare(a.Size, b.Size)
}

// Position is how far one partition's results go: what its checkpoints row
// in PostgreSQL records, and the tag its local state carries. Local state
// whose tag equals the row is that very checkpoint's; any other is rebuilt.
type Position struct {
	// NextOffset is the next offset to process: every record below it is
	// counted in PostgreSQL (emitted) or in the open windows below.
	NextOffset int64
	// Watermark is the partition's watermark (Unix ms, or NoWatermark):
	// windows ending at or before it were emitted.
	Watermark int64
	// RestartOffset is the lowest offset whose record is not yet emitted:
	// a rebuild replays from here to NextOffset.
	RestartOffset int64
	// DedupOffset is where a replay starts to rebuild dedup sightings (at
	// most RestartOffset); DedupClock is the dedup clock just before it
	// (Unix ms, or NoWatermark). Without dedup: RestartOffset and
	// NoWatermark.
	DedupOffset int64
	DedupClock  int64
}

// Start returns the position of a partition that starts at offset off
// with nothing counted.
func Start(off int64) Position {
	return Position{NextOffset: off, Watermark: NoWatermark, RestartOffset: off, DedupOffset: off, DedupClock: NoWatermark}
}

// ClockMark records where a partition's dedup clock (the highest event
// time seen) entered a slot of event time: the record at Offset moved it
// from Before into Slot. A replay that starts at Offset with the clock at
// Before rebuilds the same dedup decisions.
type ClockMark struct {
	Slot   int64
	Offset int64
	Before int64
}

// DedupState is a partition's dedup clock and its history of marks, oldest
// first: what the state store keeps of it.
type DedupState struct {
	Clock int64
	Hist  []ClockMark
}

// OpenWindow is one entry of a partition's open-window registry: a window
// with counts not yet emitted.
type OpenWindow struct {
	// First is the lowest offset of a record of the window not yet
	// emitted: a rebuild replays from the lowest First.
	First int64
	// MemFrom is, for a window whose newest counts were held in memory
	// across checkpoints, the offset from which the state store lacks its
	// records (a restart replays them); -1 when the store has them all.
	MemFrom int64
}
