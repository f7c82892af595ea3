package stream

import (
	"maps"
	"math"
	"slices"

	"github.com/clickagg/clickagg/base"
)

// A checkpoint takes one Ready from each partition's operator, in one step
// (Operator.Ready), and hands it back in one step: Advance once the
// checkpoint committed and its state batch is written, Abort if it failed.
// Between the two the operator goes on processing records into fresh
// buffers. A Ready is self-contained: it says everything the checkpoint
// writes, to PostgreSQL and to the state store, so the coordinator only
// translates it; it never asks the operator what to write.

// Ready is one checkpoint of one partition.
type Ready struct {
	// Replaying is set when the operator was rebuilding state: the Ready
	// then only moves what the replay rebuilt into the state store (Keep,
	// Open, Sightings), with no transaction: it has no Position, emits
	// nothing and writes no tag.
	Replaying bool
	// Position is the partition's new checkpoint position (live only).
	base.Position
	// Flush is set when the checkpoint emits every open window's partial
	// counts (early results, the final checkpoint).
	Flush bool

	// Emit lists the windows this checkpoint emits, ordered by end then
	// size: those the watermark closed (final) plus, with Flush, every open
	// one. Late holds the counts of late records (policy count) per closed
	// window: they add to clicks and late_clicks.
	Emit []Emission
	Late map[base.Window]*Counts

	// What the state batch writes once the transaction committed (or, when
	// Replaying, at once): delete the emitted windows (Emit: the registry
	// entry, and the counts when Stored); add Keep, the counts of windows
	// left open that are not held in memory; set Open, the registry of
	// windows left open; store the dedup sightings (Sightings), expire
	// those in slots before ExpireBefore, and write Dedup, the clock and
	// its history, when not nil.
	Keep         map[base.Window]*Counts
	Open         map[base.Window]base.OpenWindow
	ExpireBefore int64
	Dedup        *base.DedupState

	seen    map[string]int64 // dedup sightings taken
	horizon int64            // sightings at or before it are not kept
	dd      *dedup

	// For Abort: every count taken, the emitted windows' registry entries,
	// the hold bookkeeping before the take, and the dedup history marks
	// the checkpoint made unnecessary.
	taken    map[base.Window]*Counts
	emitted  map[base.Window]int64
	memFrom  map[base.Window]int64
	base     int64
	heldKeys int
	dropped  []base.ClockMark
}

// Emission is one window a checkpoint emits: the counts added since the
// previous checkpoint (nil when none) and, when Stored, the counts the
// state store carries from earlier ones, which the coordinator reads back
// and adds.
type Emission struct {
	Window base.Window
	Counts *Counts
	Stored bool
}

// Sightings calls fn for each dedup sighting (slot of event time, id,
// latest event time) the state store must keep.
func (r *Ready) Sightings(fn func(slot int64, id string, t int64)) {
	for id, t := range r.seen {
		if t > r.horizon {
			fn(r.dd.slotOf(t), id, t)
		}
	}
}

// HoldNone and HoldAll are Ready's holdUntil for holding no window in
// memory and every holdable one.
const (
	HoldNone = NoWatermark
	HoldAll  = NoCap
)

// Holdable calls fn for each window that Ready(flush, HoldAll) would keep
// in memory (an open window it does not emit, no longer than HoldWindows),
// with the window's end and its number of pending counters. The
// coordinator uses it to keep the held windows of all partitions within
// one memory budget.
func (o *Operator) Holdable(flush bool, fn func(end int64, keys int)) {
	if o.Replaying() || flush {
		return
	}
	for w, c := range o.pending {
		if o.holdable(w) {
			fn(w.End(), c.Len())
		}
	}
}

// holdable reports whether a checkpoint taken now may keep window w's
// pending counts in memory: it does not emit it, and HoldWindows,
// HoldRecords and the log floor allow it.
func (o *Operator) holdable(w base.Window) bool {
	if w.ClosedBy(o.wm) {
		return false
	}
	from, held := o.memFrom[w]
	if !held {
		from = o.base
	}
	return w.Size <= o.holdMax && o.next-from <= o.holdRecs && from >= o.logFloor
}

// stored reports whether the store may hold counts of window w, whose first
// pending record is at offset first: unless memFrom says they were all in
// memory since then.
func stored(memFrom map[base.Window]int64, w base.Window, first int64) bool {
	mf, held := memFrom[w]
	return !held || mf > first
}

// Ready takes the next checkpoint: it applies it as if it committed
// (emitted windows leave the registry) and moves the counts added since
// the previous checkpoint into the returned Ready. With flush every open
// window's partial counts are emitted too. Open windows no longer than
// HoldWindows that end at or before holdUntil keep their counts in memory
// instead (see Holdable). While replaying, it returns the rebuilt counts to
// spill to the store (Ready.Replaying).
func (o *Operator) Ready(flush bool, holdUntil int64) *Ready {
	r := &Ready{Flush: flush, taken: o.pending, Late: o.lateBuf,
		memFrom: maps.Clone(o.memFrom), base: o.base, heldKeys: o.heldKeys}
	if o.Replaying() {
		o.readyReplaying(r)
	} else {
		o.readyLive(r, holdUntil)
	}
	o.lateBuf = make(map[base.Window]*Counts)
	clear(o.last)
	return r
}

func (o *Operator) readyLive(r *Ready, holdUntil int64) {
	r.Position = base.Position{NextOffset: o.next, Watermark: o.wm, RestartOffset: o.next}
	r.emitted = make(map[base.Window]int64)
	for w, first := range o.open {
		if flush := r.Flush; flush || w.ClosedBy(o.wm) {
			r.Emit = append(r.Emit, Emission{Window: w, Counts: o.pending[w], Stored: stored(o.memFrom, w, first)})
			r.emitted[w] = first
			continue
		}
		r.RestartOffset = min(r.RestartOffset, first)
	}
	slices.SortFunc(r.Emit, func(a, b Emission) int { return base.CompareByEnd(a.Window, b.Window) })
	for w := range r.emitted {
		delete(o.open, w)
	}
	r.DedupOffset, r.DedupClock = r.RestartOffset, NoWatermark
	histKeep := 0
	if o.dd != nil && len(o.dd.hist) > 0 {
		r.DedupOffset, r.DedupClock, histKeep = o.dd.restart(r.RestartOffset)
	}

	// Held windows keep their counts; the others' go to the store (Keep).
	kept := make(map[base.Window]*Counts)
	o.heldKeys = 0
	if holdUntil != HoldNone && !r.Flush { // NB: a flush emits every window: none is held
		for w, c := range o.pending {
			if w.End() > holdUntil || !o.holdable(w) {
				continue
			}
			kept[w] = c
			o.heldKeys += c.Len()
			if _, held := o.memFrom[w]; !held {
				// NB: none of its records below its first pending one
				// is in memory.
				o.memFrom[w] = max(o.base, o.open[w])
			}
		}
	}
	for w := range o.memFrom {
		if _, ok := kept[w]; !ok {
			// Its counts go to the store with this checkpoint (or it had
			// none in memory).
			delete(o.memFrom, w)
		}
	}
	r.Keep = make(map[base.Window]*Counts, len(o.pending))
	for w, c := range o.pending {
		if _, held := kept[w]; !held {
			if _, emitted := r.emitted[w]; !emitted {
				r.Keep[w] = c
			}
		}
	}
	for w := range kept {
		delete(r.taken, w) // NB: r.taken is o.pending, replaced below
	}
	o.pending = kept
	o.base = r.NextOffset
	r.Open = o.registry(nil)

	r.ExpireBefore = math.MinInt64
	if d := o.dd; d != nil {
		r.dd, r.horizon = d, d.horizon()
		r.ExpireBefore = d.liveSlot()
		d.filter.expire(r.ExpireBefore)
		// NB: the history marks before the dedup restart are no longer
		// needed (given back if the checkpoint fails).
		r.dropped = slices.Clone(d.hist[:histKeep])
		d.hist = slices.Delete(d.hist, 0, histKeep)
		r.Dedup = &base.DedupState{Clock: d.clock, Hist: slices.Clone(d.hist)}
		r.seen = d.take()
	}
}

// readyReplaying moves a replay's rebuilt counts and sightings out, to be
// written to the store with no tag: the partition is not restored yet.
func (o *Operator) readyReplaying(r *Ready) {
	r.Replaying = true
	r.ExpireBefore, r.horizon = math.MinInt64, math.MinInt64
	if len(o.pending) == 0 && len(o.open) == 0 && (o.dd == nil || len(o.dd.seen) == 0) {
		return // NB: nothing to spill: the hold baseline stays
	}
	r.Keep = o.pending
	// NB: a held window's counts go to the store now: from here on only
	// its newer records are in memory.
	r.Open = o.registry(o.pending)
	for w := range o.pending {
		if _, held := o.memFrom[w]; held {
			o.memFrom[w] = o.next
		}
	}
	if !o.heldReplay {
		// NB: replaying held windows, the other windows' records up to
		// replayUntil are in the store, and none of them is pending.
		o.base = o.next
	}
	o.pending = make(map[base.Window]*Counts)
	o.heldKeys = 0
	if d := o.dd; d != nil {
		r.dd = d
		r.seen = d.take()
	}
}

// registry returns the open-window registry: each open window's lowest
// pending offset and, for a held window, the offset from which the store
// lacks its records; a held window with counts in spilled moves to the
// operator's next offset (its counts so far go to the store).
func (o *Operator) registry(spilled map[base.Window]*Counts) map[base.Window]base.OpenWindow {
	out := make(map[base.Window]base.OpenWindow, len(o.open))
	for w, first := range o.open {
		mf, held := o.memFrom[w]
		switch {
		case !held:
			mf = -1
		case spilled[w] != nil:
			mf = o.next
		}
		out[w] = base.OpenWindow{First: first, MemFrom: mf}
	}
	return out
}

// Abort gives a Ready back after its checkpoint failed: its counts are
// added to what arrived since, emitted windows are open again. The
// operator is then as if Ready had not been called, plus the newer
// records.
func (o *Operator) Abort(r *Ready) {
	merge := func(dst map[base.Window]*Counts, src map[base.Window]*Counts) {
		for w, c := range src {
			d := dst[w]
			if d == nil {
				dst[w] = c
				continue
			}
			for url, n := range c.All() {
				d.AddString(url, n)
			}
		}
	}
	merge(o.pending, r.taken)
	merge(o.lateBuf, r.Late)
	for w, first := range r.emitted {
		if cur, ok := o.open[w]; !ok || first < cur {
			o.open[w] = first
		}
	}
	o.memFrom, o.base, o.heldKeys = r.memFrom, r.base, r.heldKeys
	if o.dd != nil {
		o.dd.giveBack(r.seen, r.dropped)
	}
	clear(o.last)
}

// Advance tells the operator that r's checkpoint committed and its state
// batch is written: the sightings it took are in the store now.
func (o *Operator) Advance(r *Ready) {
	if o.dd != nil && r != nil {
		o.dd.inflight = nil
	}
}

// OpenWindows returns how many windows hold counts not yet emitted.
func (o *Operator) OpenWindows() int { return len(o.open) }

// PendingKeys returns about how many (window, URL) counters were added
// since the last checkpoint (not counting those held since before it); the
// runner uses it to checkpoint early under load.
func (o *Operator) PendingKeys() int {
	n := -o.heldKeys
	for _, c := range o.pending {
		n += c.Len()
	}
	for _, c := range o.lateBuf {
		n += c.Len()
	}
	if o.dd != nil {
		n += len(o.dd.seen)
	}
	return max(n, 0)
}

// HeldKeys returns how many (window, URL) counters held windows kept in
// memory when the last checkpoint was taken.
func (o *Operator) HeldKeys() int { return o.heldKeys }
