package stream

import (
	"github.com/clickagg/clickagg/base"
	"math"
	"slices"
)

// Deduplication by event id (README "Duplicates").
//
// The rule, per partition, with dedup window W: the clock is the highest
// event time of the valid records before this one. A valid record with an
// id is a duplicate when an earlier valid record on the partition had the
// same id and an event time within W of the clock (t > clock − W). Every
// valid record with an id is remembered (its id with the latest event time
// seen for it), duplicates included, so what is remembered does not depend
// on the decisions. The clock moves with the records only, never with the
// wall clock or the idle-partition watermark, so a replay decides exactly as
// the original run did.
//
// Restoring without local state replays from the dedup restart offset: the
// first record that pushed the clock into the oldest event-time slot a
// sighting still needed by the open windows can be in. Records from there up
// to the window restart offset only reload sightings; the clock at the
// dedup restart offset is recorded with it, so the replay's clock is exact.

// noSlot is the slot of NoWatermark: before every real slot.
const noSlot int64 = math.MinInt64

// dedupSlots is how many slots one dedup window spans (at least): the
// restart offset is exact to 1/dedupSlots of the window.
const dedupSlots = 8

// Lookup returns the event time the state store holds for id in slot (of
// event time), if any. The store keeps each sighting under the slot of its
// event time, so that sightings expire a slot at a time; an id seen again
// later also has an entry in a later slot. An error stops the record's
// processing: Operator.Process returns it.
type Lookup func(slot int64, id []byte) (t int64, ok bool, err error)

type dedup struct {
	window int64 // W, ms
	slot   int64 // slot width, ms
	span   int64 // slots that cover W
	clock  int64 // highest event time so far; NoWatermark when none
	hist   []base.ClockMark
	// seen holds the sightings since the last Take; inflight those of the
	// checkpoint being written; lookup reads the store beneath both.
	seen     map[string]int64
	inflight map[string]int64
	lookup   Lookup
	probe    []int64 // scratch: slots to read
	// filter holds every live sighting's id, so that most ids never seen
	// cost no store read; used only once complete (filterReady).
	filter      *seenFilter
	filterReady bool
}

func newDedup(window int64) *dedup {
	slot := (window + dedupSlots - 1) / dedupSlots
	return &dedup{
		window: window,
		slot:   slot,
		span:   (window + slot - 1) / slot,
		clock:  NoWatermark,
		seen:   make(map[string]int64),
		filter: newSeenFilter(),
	}
}

func (d *dedup) slotOf(t int64) int64 {
	if t == NoWatermark {
		return noSlot
	}
	q := t / d.slot
	if t%d.slot < 0 {
		q--
	}
	return q
}

// start resets to a clock of before at offset off (a fresh partition, or
// the start of a replay).
func (d *dedup) start(off, before int64) {
	d.clock = before
	d.hist = append(d.hist[:0], base.ClockMark{Slot: d.slotOf(before), Offset: off, Before: before})
	clear(d.seen)
	d.inflight = nil
	// NB: a fresh start or a rebuild begins with no stored sightings.
	d.filter, d.filterReady = newSeenFilter(), true
}

// resume restores the clock and its history from local state.
func (d *dedup) resume(clock int64, hist []base.ClockMark) {
	d.clock = clock
	d.hist = append(d.hist[:0], hist...)
	clear(d.seen)
	d.inflight = nil
	// NB: incomplete until the stored sightings are loaded (filterLoad).
	d.filter, d.filterReady = newSeenFilter(), false
}

// filterLoad adds a sighting the state store holds in slot.
func (d *dedup) filterLoad(slot int64, id []byte, t int64) {
	if t > d.horizon() {
		d.filter.add(slot, d.filter.hash(id))
	}
}

// liveSlot returns the first slot that can hold a live sighting (noSlot
// when there is no clock yet).
func (d *dedup) liveSlot() int64 {
	if h := d.horizon(); h != math.MinInt64 {
		return d.slotOf(h + 1)
	}
	return noSlot
}

// horizon returns the event time a sighting must exceed to count.
func (d *dedup) horizon() int64 {
	if d.clock == NoWatermark {
		return math.MinInt64
	}
	return d.clock - d.window
}

// get returns the latest live event time of id (filter hash h), if any:
// from the sightings not yet written, else from the store's live slots,
// newest first (a later slot holds a later event time).
func (d *dedup) get(id []byte, h uint64) (int64, bool, error) {
	if t, ok := d.seen[string(id)]; ok {
		return t, true, nil
	}
	if t, ok := d.inflight[string(id)]; ok {
		return t, true, nil
	}
	if d.lookup == nil || d.clock == NoWatermark {
		// NB: no clock, no record seen: nothing stored either.
		return 0, false, nil
	}
	lo, hi := d.liveSlot(), d.slotOf(d.clock)
	d.probe = d.probe[:0]
	if d.filterReady {
		d.probe = d.filter.candidates(lo, h, d.probe)
	} else {
		for s := hi; s >= lo; s-- {
			d.probe = append(d.probe, s)
		}
	}
	for _, s := range d.probe {
		if t, ok, err := d.lookup(s, id); ok || err != nil {
			return t, ok, err
		}
	}
	return 0, false, nil
}

// observe applies one valid record (offset off, event time ts) and reports
// whether it is a duplicate. Records without an id are never duplicates.
// A lookup error leaves the sightings and the clock as they were.
func (d *dedup) observe(off, ts int64, id []byte) (dup bool, err error) {
	if len(id) > 0 {
		h, hash := d.horizon(), d.filter.hash(id)
		t, ok, err := d.get(id, hash)
		if err != nil {
			return false, err
		}
		dup = ok && t > h
		if (!ok || ts > t) && ts > h {
			d.seen[string(id)] = ts
			d.filter.add(d.slotOf(ts), hash)
		}
	}
	if d.clock == NoWatermark || ts > d.clock {
		before := d.clock
		d.clock = ts
		if s := d.slotOf(ts); len(d.hist) == 0 || s > d.hist[len(d.hist)-1].Slot {
			d.hist = append(d.hist, base.ClockMark{Slot: s, Offset: off, Before: before})
		}
	}
	return dup, nil
}

// restart returns where a replay must start so that the records from
// windowRestart on decide as they did, and the clock before that offset;
// keep is the index of the history mark it comes from (earlier marks are no
// longer needed).
func (d *dedup) restart(windowRestart int64) (off, clock int64, keep int) {
	// k: the slot of the clock just before windowRestart.
	i := 0
	for j, m := range d.hist {
		if m.Offset < windowRestart {
			i = j
		}
	}
	k := d.hist[i].Slot
	need := noSlot
	if k != noSlot {
		need = k - d.span
	}
	// The first mark that reached slot need: every sighting still live at
	// windowRestart came at or after it.
	e := i
	for j := 0; j <= i; j++ {
		if d.hist[j].Slot >= need {
			e = j
			break
		}
	}
	return d.hist[e].Offset, d.hist[e].Before, e
}

// take returns the pending sightings and replaces them with a fresh
// map; the returned map stays readable (in flight) until release.
func (d *dedup) take() map[string]int64 {
	s := d.seen
	d.inflight = s
	d.seen = make(map[string]int64, len(s))
	return s
}

// giveBack merges sightings of a failed checkpoint back.
func (d *dedup) giveBack(s map[string]int64, dropped []base.ClockMark) {
	for id, t := range s {
		if cur, ok := d.seen[id]; !ok || t > cur {
			d.seen[id] = t
		}
	}
	d.inflight = nil
	if len(dropped) > 0 {
		d.hist = append(slices.Clone(dropped), d.hist...)
	}
}
