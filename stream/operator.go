package stream

import (
	"bytes"
	"fmt"
	"github.com/clickagg/clickagg/base"
	"math"
	"slices"
)

// Record is one Kafka record as the operator sees it.
type Record struct {
	Offset      int64
	Key         []byte // the Kafka record key (checked by dedup scope global)
	TimestampMs int64  // the Kafka record timestamp, used when the event has no ts
	Value       []byte
	Control     bool // a transaction marker: advances the offset, counts nothing
}

// Outcome says what Process did with one record.
type Outcome struct {
	// Reason is why the record was rejected; ReasonNone when it was valid.
	Reason Reason
	// Late has bit i set when the record was late for window size i
	// (Sizes()[i]); it was counted or dropped there as the policy says.
	Late uint32
	// Replayed is set when the record was processed while rebuilding state
	// from already-checkpointed input: the caller must not count it again in
	// its metrics.
	Replayed bool
	// Duplicate is set when dedup found the record's id seen already: it
	// was counted nowhere.
	Duplicate bool
	// Misrouted is set (dedup scope global) when a record with an id has
	// a Kafka key that is neither its id nor its URL: its copies may land
	// on other partitions, where they are not caught.
	Misrouted bool
	// Filtered is set when the record is valid JSON but fails a condition
	// of OperatorOptions.Input.Filter: it is not a click. It is counted
	// nowhere (no window, no dedup sighting, no watermark move) and is not
	// a rejection: Reason stays ReasonNone. The decision depends on the
	// record's value alone, so a replay makes it again.
	Filtered bool
}

// Operator is the window operator of one partition. It is a deterministic
// state machine: the same records, from the same starting state, give the
// same state and the same checkpoint plans. Not safe for concurrent use.
type Operator struct {
	sizes      []int64 // ascending, ms
	outOfOrder int64
	late       LatePolicy
	maxAhead   int64 // ms; 0: off
	maxBehind  int64 // ms; 0: off
	dec        Decoder

	next int64 // next offset to process
	wm   int64
	// own is the partition's own watermark (newest event time minus the
	// out-of-orderness, or an idle advance); wm follows it up to wmCap
	// (see SetWatermarkCap).
	own         int64
	wmCap       int64
	replayUntil int64 // while replaying: the checkpointed next offset; else -1
	countFrom   int64 // while replaying: records below only reload dedup sightings
	dd          *dedup
	keyed       bool
	normalize   bool
	urlBuf      []byte // the normalized URL of the record being processed

	// open maps each window holding pending (not yet emitted) counts to the
	// lowest offset of a record pending in it. Pending counts from earlier
	// checkpoints live in the state store; the part added since the last
	// checkpoint lives in pending.
	open    map[base.Window]int64
	pending map[base.Window]*Counts
	lateBuf map[base.Window]*Counts
	// last caches, per window size, the window the previous record went to
	// and its pending counts: consecutive records mostly share a window.
	last []lastWindow

	// Held windows (HoldWindows). pending holds the counts of a window in
	// memFrom for its records at offsets >= memFrom[w] (the state store
	// holds those below), and of any other window for its records at
	// offsets >= base, the next offset of the last checkpoint taken.
	holdMax    int64 // ms; 0: off
	holdRecs   int64
	memFrom    map[base.Window]int64
	base       int64
	heldKeys   int  // keys in held windows when the last checkpoint was taken
	heldReplay bool // replaying held windows over local state: count a record only into a window of memFrom, from its offset there
	// logFloor is where the log starts as SkipTo learned it: a window whose
	// memory-only counts go back below it is not held any more, since a
	// restart could not replay them.
	logFloor int64
}

type lastWindow struct {
	w      base.Window
	counts *Counts // nil: nothing cached
}

// NewOperator validates opts and returns an operator with no state; call
// Resume or StartReplay before Process.
func NewOperator(opts OperatorOptions) (*Operator, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	m, err := opts.Input.compile()
	if err != nil {
		return nil, err
	}
	sizes := make([]int64, 0, len(opts.Windows))
	for _, w := range opts.Windows {
		sizes = append(sizes, w.Milliseconds())
	}
	slices.Sort(sizes)
	var dd *dedup
	if w := opts.DedupWindow; w > 0 {
		dd = newDedup(w.Milliseconds())
	}
	holdMax := opts.HoldWindows.Milliseconds()
	if dd != nil {
		holdMax = 0
	}
	holdRecs := opts.HoldRecords
	if holdRecs == 0 {
		holdRecs = DefaultHoldRecords
	}
	maxURL := opts.MaxURLBytes
	return &Operator{
		holdMax:     holdMax,
		holdRecs:    holdRecs,
		memFrom:     make(map[base.Window]int64),
		dd:          dd,
		keyed:       opts.DedupKeyed && dd != nil,
		normalize:   opts.NormalizeURLs,
		sizes:       sizes,
		outOfOrder:  opts.OutOfOrder.Milliseconds(),
		late:        opts.Late,
		maxAhead:    opts.MaxFutureSkew.Milliseconds(),
		maxBehind:   opts.MaxPastSkew.Milliseconds(),
		dec:         Decoder{MaxURLBytes: maxURL, m: m},
		wm:          NoWatermark,
		own:         NoWatermark,
		wmCap:       NoCap,
		replayUntil: -1,
		open:        make(map[base.Window]int64),
		pending:     make(map[base.Window]*Counts),
		lateBuf:     make(map[base.Window]*Counts),
		last:        make([]lastWindow, len(sizes)),
	}, nil
}

// Sizes returns the window sizes in milliseconds, smallest first. The caller
// must not modify the slice.
func (o *Operator) Sizes() []int64 { return o.sizes }

// NextOffset returns the offset of the next record the operator expects.
func (o *Operator) NextOffset() int64 { return o.next }

// Watermark returns the current watermark (NoWatermark if none).
func (o *Operator) Watermark() int64 { return o.wm }

// OwnWatermark returns the watermark the partition's own records give:
// the newest event time seen minus the out-of-orderness (or an idle
// advance, AdvanceWatermark), at least the watermark. The watermark trails
// it when capped (SetWatermarkCap).
func (o *Operator) OwnWatermark() int64 { return o.own }

// NoCap is SetWatermarkCap's value for no cap.
const NoCap = int64(math.MaxInt64)

// SetWatermarkCap caps the watermark at c: from now on it follows the
// partition's own watermark only up to c, and it rises at once to
// min(own, c) if that is higher. It never moves back. The runner uses it to
// align partitions that are catching up (a window closes on a partition
// only once the slowest of them passed it), so that a window's rows are
// written once, complete. The watermark is recorded in each checkpoint, so
// replays do not depend on the cap. Not allowed while
// replaying; it reports whether the watermark moved.
func (o *Operator) SetWatermarkCap(c int64) bool {
	o.wmCap = c
	if o.Replaying() {
		return false
	}
	return o.raiseWatermark()
}

// raiseWatermark moves wm to min(own, wmCap) when that is higher.
func (o *Operator) raiseWatermark() bool {
	if cand := min(o.own, o.wmCap); cand > o.wm { // NB: NoWatermark is the lowest value
		o.wm = cand
		return true
	}
	return false
}

// Replaying reports whether the operator is rebuilding state from records
// below the checkpointed offset. It emits nothing meanwhile.
func (o *Operator) Replaying() bool { return o.replayUntil >= 0 }

// ReplayUntil returns the checkpointed next offset the replay runs to, or -1.
func (o *Operator) ReplayUntil() int64 { return o.replayUntil }

// Resume starts the operator from local state that matches the
// checkpoint: next offset, watermark and the open-window registry. Without
// held windows (every MemFrom -1) it is live at once; with them it first
// replays from the lowest MemFrom to next, counting records into the held
// windows only.
func (o *Operator) Resume(next, wm int64, reg map[base.Window]base.OpenWindow) {
	o.reset()
	o.next, o.wm, o.own, o.base = next, wm, wm, next
	if o.dd != nil {
		o.dd.start(next, NoWatermark)
	}
	from := next
	for w, e := range reg {
		o.open[w] = e.First
		// NB: a MemFrom at or past the checkpoint is never written (Ready
		// holds from below it): a window the store has every record of.
		if e.MemFrom >= 0 && e.MemFrom < next {
			o.memFrom[w] = e.MemFrom
			from = min(from, e.MemFrom)
		}
	}
	if from < next {
		o.heldReplay = true
		o.next, o.replayUntil = from, next
	}
}

// ResumeDedup restores the dedup clock and its history from local state,
// after Resume.
func (o *Operator) ResumeDedup(s base.DedupState) {
	if o.dd != nil && len(s.Hist) > 0 {
		o.dd.resume(s.Clock, s.Hist)
	}
}

// LoadSighting tells dedup about a sighting the state store holds in
// slot, after ResumeDedup; FinishLoad says they all were. Until then every
// id not seen since the resume costs a store read per live slot.
func (o *Operator) LoadSighting(slot int64, id []byte, t int64) {
	if o.dd != nil {
		o.dd.filterLoad(slot, id, t)
	}
}

// DedupLiveSlot returns the first slot of event time holding live
// sightings.
func (o *Operator) DedupLiveSlot() int64 {
	if o.dd == nil {
		return noSlot
	}
	return o.dd.liveSlot()
}

// FinishLoad marks the loaded sightings complete.
func (o *Operator) FinishLoad() {
	if o.dd != nil {
		o.dd.filterReady = true
	}
}

// Deduplicating reports whether dedup by event id is on.
func (o *Operator) Deduplicating() bool { return o.dd != nil }

// SetLookup sets where dedup finds the sightings already in the state
// store. Without one, only sightings since the last restore count.
func (o *Operator) SetLookup(fn Lookup) {
	if o.dd != nil {
		o.dd.lookup = fn
	}
}

// StartReplay starts rebuilding state: records from offset from up to (not
// including) until are replayed with the watermark fixed at wm, the one
// recorded with the checkpoint. Records of windows that wm has closed were
// emitted already and are skipped; the rest rebuild the open windows. When
// from >= until there is nothing to replay and the operator is live at once.
func (o *Operator) StartReplay(from, until, wm int64) {
	o.StartReplayDedup(from, from, until, wm, NoWatermark)
}

// StartReplayDedup is StartReplay for a checkpoint with a dedup restart
// offset: records from offset from reload dedup sightings with the dedup
// clock starting at clock, and only those from countFrom on rebuild window
// counts too.
func (o *Operator) StartReplayDedup(from, countFrom, until, wm, clock int64) {
	o.reset()
	if o.dd == nil || countFrom < from {
		from = countFrom
	}
	o.next, o.wm, o.own, o.countFrom, o.base = from, wm, wm, countFrom, countFrom
	if o.dd != nil {
		o.dd.start(from, clock)
	}
	if from < until {
		o.replayUntil = until
	} else {
		o.next = until
	}
}

func (o *Operator) reset() {
	o.next, o.wm, o.own, o.replayUntil, o.countFrom, o.base, o.heldKeys = 0, NoWatermark, NoWatermark, -1, 0, 0, 0
	clear(o.open)
	clear(o.pending)
	clear(o.lateBuf)
	clear(o.last)
	clear(o.memFrom)
	o.heldReplay, o.logFloor = false, 0
}

// EndReplay gives up a replay whose remaining records are gone (deleted by
// retention, or the log truncated): the operator goes live at the
// checkpointed offset with what it rebuilt.
func (o *Operator) EndReplay() {
	if o.replayUntil >= 0 {
		o.finishReplay()
	}
}

// finishReplay switches from replay to live at the checkpointed offset.
func (o *Operator) finishReplay() {
	o.next = o.replayUntil
	o.replayUntil = -1
	o.heldReplay = false
}

// Process applies one record. Records must come in offset order; a record
// below NextOffset (a duplicate delivery) is ignored. An error comes only
// from dedup's Lookup (the state store failed): the record is half applied,
// and the operator must not be used again (the partition is opened afresh).
func (o *Operator) Process(r Record) (Outcome, error) {
	if r.Offset < o.next {
		return Outcome{Replayed: true}, nil
	}
	if o.replayUntil >= 0 && r.Offset >= o.replayUntil {
		// NB: the record at replayUntil-1 was not delivered (deleted or a
		// marker); everything below the checkpoint has been seen.
		o.finishReplay()
	}
	replaying := o.replayUntil >= 0
	loadOnly := replaying && r.Offset < o.countFrom
	o.next = r.Offset + 1
	if replaying && o.next >= o.replayUntil {
		defer o.finishReplay()
	}
	if r.Control {
		return Outcome{Replayed: replaying}, nil
	}
	c, reason := o.dec.Decode(r.Value)
	if reason == reasonFiltered {
		return Outcome{Filtered: true, Replayed: replaying}, nil
	}
	if reason != ReasonNone {
		return Outcome{Reason: reason, Replayed: replaying}, nil
	}
	rawURL := c.URL
	if o.normalize {
		o.urlBuf = NormalizeURL(o.urlBuf[:0], c.URL)
		if len(o.urlBuf) == 0 {
			return Outcome{Reason: ReasonEmptyURL, Replayed: replaying}, nil
		}
		c.URL = o.urlBuf
	}
	ts := c.TimeMs
	if !c.HasTime {
		ts = r.TimestampMs
		if !ValidEventTime(ts) {
			return Outcome{Reason: ReasonTimestampOutOfRange, Replayed: replaying}, nil
		}
	} else {
		// NB: against the record's own timestamp, never the clock, so a replay decides the same way.
		if o.maxAhead > 0 && ts-r.TimestampMs > o.maxAhead {
			return Outcome{Reason: ReasonTimestampAhead, Replayed: replaying}, nil
		}
		if o.maxBehind > 0 && r.TimestampMs-ts > o.maxBehind {
			return Outcome{Reason: ReasonTimestampBehind, Replayed: replaying}, nil
		}
	}
	if o.dd != nil {
		// NB: before the window logic, and also for late records: the
		// sightings must not depend on the watermark.
		dup, err := o.dd.observe(r.Offset, ts, c.ID)
		if err != nil {
			return Outcome{}, fmt.Errorf("dedup lookup at offset %d: %w", r.Offset, err)
		}
		if dup && !loadOnly {
			return Outcome{Duplicate: true, Replayed: replaying}, nil
		}
	}
	if loadOnly {
		return Outcome{Replayed: true}, nil
	}
	out := Outcome{Replayed: replaying}
	if o.keyed && len(c.ID) > 0 && !bytes.Equal(r.Key, c.ID) && !bytes.Equal(r.Key, rawURL) {
		out.Misrouted = true
	}
	for i, size := range o.sizes {
		w := Assign(ts, size)
		if w.ClosedBy(o.wm) {
			// While replaying, a closed window's records were emitted
			// before the checkpoint (on time or late): skip them.
			out.Late |= 1 << i
			if !replaying && o.late == LateCount {
				add(o.lateBuf, w, c.URL)
			}
			continue
		}
		if replaying && o.heldReplay {
			// NB: replaying held windows over local state: every other
			// window has these records in the store already. (A spill
			// moves memFrom to the replay's position: still right.)
			if from, ok := o.memFrom[w]; !ok || r.Offset < from {
				continue
			}
		}
		lw := &o.last[i]
		if lw.counts == nil || lw.w != w {
			counts := o.pending[w]
			if counts == nil {
				counts = NewCounts()
				o.pending[w] = counts
			}
			if _, ok := o.open[w]; !ok {
				o.open[w] = r.Offset
			}
			*lw = lastWindow{w: w, counts: counts}
		}
		lw.counts.Add(c.URL, 1)
	}
	if replaying {
		// NB: the watermark stays at the recorded one for the whole replay:
		// it decides which records were emitted already. Letting it move
		// (say, after out_of_orderness changed between runs) would close
		// windows early and skip records never emitted.
		out.Late = 0
		return out, nil
	}
	o.own = nextWatermark(o.own, ts, o.outOfOrder)
	o.raiseWatermark()
	return out, nil
}

func add(m map[base.Window]*Counts, w base.Window, url []byte) {
	c := m[w]
	if c == nil {
		c = NewCounts()
		m[w] = c
	}
	c.Add(url, 1)
}

// AdvanceWatermark moves the partition's own watermark forward to wm
// (never back), as the runner does for an idle partition; the watermark
// follows it up to the cap (SetWatermarkCap). It reports whether the
// watermark moved. Not allowed while replaying.
func (o *Operator) AdvanceWatermark(wm int64) bool {
	if o.Replaying() {
		return false
	}
	o.own = max(o.own, wm) // NB: NoWatermark is the lowest value
	return o.raiseWatermark()
}

// SkipTo moves the next expected offset forward to off when the records
// below it no longer exist (retention deleted them before they were
// processed): the partition is then not waiting for them. Windows whose
// counts are held in memory from below off go to the store at the next
// checkpoint: a restart could not replay them. Not allowed while replaying.
func (o *Operator) SkipTo(off int64) {
	if !o.Replaying() {
		o.next = max(o.next, off)
		o.logFloor = max(o.logFloor, off)
	}
}
