package stream

import (
	"bytes"
	"maps"
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
	open    map[Window]int64
	pending map[Window]*Counts
	lateBuf map[Window]*Counts
	// last caches, per window size, the window the previous record went to
	// and its pending counts: consecutive records mostly share a window.
	last []lastWindow

	// Held windows (HoldWindows). pending holds the counts of a window in
	// memFrom for its records at offsets >= memFrom[w] (the state store
	// holds those below), and of any other window for its records at
	// offsets >= base, the next offset of the last checkpoint taken.
	holdMax    int64 // ms; 0: off
	holdRecs   int64
	memFrom    map[Window]int64
	base       int64
	heldKeys   int  // keys in held windows when the last checkpoint was taken
	heldReplay bool // replaying held windows over local state: count a record only into a window of memFrom, from its offset there
	// logFloor is where the log starts as SkipTo learned it: a window whose
	// memory-only counts go back below it is not held any more, since a
	// restart could not replay them.
	logFloor int64
}

type lastWindow struct {
	w      Window
	counts *Counts // nil: nothing cached
}

// NewOperator validates opts and returns an operator with no state; call
// Resume or StartReplay before Process.
func NewOperator(opts OperatorOptions) (*Operator, error) {
	if err := opts.Validate(); err != nil {
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
		memFrom:     make(map[Window]int64),
		dd:          dd,
		keyed:       opts.DedupKeyed && dd != nil,
		normalize:   opts.NormalizeURLs,
		sizes:       sizes,
		outOfOrder:  opts.OutOfOrder.Milliseconds(),
		late:        opts.Late,
		maxAhead:    opts.MaxFutureSkew.Milliseconds(),
		maxBehind:   opts.MaxPastSkew.Milliseconds(),
		dec:         Decoder{MaxURLBytes: maxURL},
		wm:          NoWatermark,
		own:         NoWatermark,
		wmCap:       NoCap,
		replayUntil: -1,
		open:        make(map[Window]int64),
		pending:     make(map[Window]*Counts),
		lateBuf:     make(map[Window]*Counts),
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
// checkpoint: next offset, watermark, the open-window registry (window →
// lowest pending offset) and the held windows (window → offset from which
// its counts were in memory only; nil for none). Without held windows it is
// live at once; with them it first replays from the lowest of those
// offsets to next, counting records into the held windows only. It takes
// ownership of open and memFrom.
func (o *Operator) Resume(next, wm int64, open, memFrom map[Window]int64) {
	o.reset()
	o.next, o.wm, o.own, o.base = next, wm, wm, next
	if open != nil {
		o.open = open
	}
	if o.dd != nil {
		o.dd.start(next, NoWatermark)
	}
	if len(memFrom) == 0 {
		return
	}
	from := next
	for w, f := range memFrom {
		if f >= next {
			// NB: never written so (Take holds from below its checkpoint):
			// a window the store has every record of.
			delete(memFrom, w)
		}
		from = min(from, f)
	}
	o.memFrom = memFrom
	if from < next {
		o.heldReplay = true
		o.next, o.replayUntil = from, next
	}
}

// ResumeDedup restores the dedup clock and its history from local state,
// after Resume.
func (o *Operator) ResumeDedup(s DedupState) {
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
// below NextOffset (a duplicate delivery) is ignored.
func (o *Operator) Process(r Record) Outcome {
	if r.Offset < o.next {
		return Outcome{Replayed: true}
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
		return Outcome{Replayed: replaying}
	}
	c, reason := o.dec.Decode(r.Value)
	if reason != ReasonNone {
		return Outcome{Reason: reason, Replayed: replaying}
	}
	rawURL := c.URL
	if o.normalize {
		o.urlBuf = NormalizeURL(o.urlBuf[:0], c.URL)
		if len(o.urlBuf) == 0 {
			return Outcome{Reason: ReasonEmptyURL, Replayed: replaying}
		}
		c.URL = o.urlBuf
	}
	ts := c.TimeMs
	if !c.HasTime {
		ts = r.TimestampMs
		if !ValidEventTime(ts) {
			return Outcome{Reason: ReasonTimestampOutOfRange, Replayed: replaying}
		}
	} else {
		// NB: against the record's own timestamp, never the clock, so a replay decides the same way.
		if o.maxAhead > 0 && ts-r.TimestampMs > o.maxAhead {
			return Outcome{Reason: ReasonTimestampAhead, Replayed: replaying}
		}
		if o.maxBehind > 0 && r.TimestampMs-ts > o.maxBehind {
			return Outcome{Reason: ReasonTimestampBehind, Replayed: replaying}
		}
	}
	if o.dd != nil {
		// NB: before the window logic, and also for late records: the
		// sightings must not depend on the watermark.
		if dup := o.dd.observe(r.Offset, ts, c.ID); dup && !loadOnly {
			return Outcome{Duplicate: true, Replayed: replaying}
		}
	}
	if loadOnly {
		return Outcome{Replayed: true}
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
		return out
	}
	o.own = nextWatermark(o.own, ts, o.outOfOrder)
	o.raiseWatermark()
	return out
}

func add(m map[Window]*Counts, w Window, url []byte) {
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

// Plan is what one checkpoint of one partition emits and records.
type Plan struct {
	NextOffset    int64
	Watermark     int64
	RestartOffset int64 // lowest offset whose record is not yet emitted
	// DedupOffset is where a replay must start to rebuild the dedup
	// sightings the open windows' records need (at most RestartOffset),
	// and DedupClock the dedup clock just before it. Without dedup:
	// RestartOffset and NoWatermark.
	DedupOffset int64
	DedupClock  int64
	histKeep    int // dedup history marks before DedupOffset's, dropped by Take
	// Emit lists the windows whose pending counts this checkpoint emits,
	// ordered by end then size: the windows the watermark closed, plus every
	// open window when Flush is set. Closed ones become final.
	Emit  []Window
	Flush bool
}

// Plan computes the next checkpoint without changing the operator. With
// flush, every open window's partial counts are emitted too (early results,
// final checkpoint). Must not be called while replaying.
func (o *Operator) Plan(flush bool) Plan {
	if o.Replaying() {
		panic("stream: Plan called while replaying")
	}
	p := Plan{NextOffset: o.next, Watermark: o.wm, RestartOffset: o.next, Flush: flush}
	for w, first := range o.open {
		if flush || w.ClosedBy(o.wm) {
			p.Emit = append(p.Emit, w)
			continue
		}
		p.RestartOffset = min(p.RestartOffset, first)
	}
	slices.SortFunc(p.Emit, compareWindows)
	p.DedupOffset, p.DedupClock = p.RestartOffset, NoWatermark
	if o.dd != nil && len(o.dd.hist) > 0 {
		p.DedupOffset, p.DedupClock, p.histKeep = o.dd.restart(p.RestartOffset)
	}
	return p
}

func compareWindows(a, b Window) int {
	if a.End() != b.End() {
		if a.End() < b.End() {
			return -1
		}
		return 1
	}
	switch {
	case a.Size < b.Size:
		return -1
	case a.Size > b.Size:
		return 1
	}
	return 0
}

// Pending returns the counts added to window w since the last checkpoint
// (nil if none). The counts are owned by the operator until Take moves them
// to a snapshot or DropPending forgets them.
func (o *Operator) Pending(w Window) *Counts { return o.pending[w] }

// PendingWindows calls fn for every window with counts added since the last
// checkpoint.
func (o *Operator) PendingWindows(fn func(w Window, c *Counts)) {
	for w, c := range o.pending {
		fn(w, c)
	}
}

// LateCounts calls fn for every closed window that received late records
// since the last checkpoint (policy count).
func (o *Operator) LateCounts(fn func(w Window, c *Counts)) {
	for w, c := range o.lateBuf {
		fn(w, c)
	}
}

// OpenWindows calls fn for every open window with its lowest pending
// offset and, for a held window, the offset from which its counts are in
// memory only once the pending counts are in the state store (DropPending);
// -1 for the others.
func (o *Operator) OpenWindows(fn func(w Window, first, memFrom int64)) {
	for w, first := range o.open {
		mf, held := o.memFrom[w]
		switch {
		case !held:
			mf = -1
		case o.pending[w] != nil:
			mf = o.next
		}
		fn(w, first, mf)
	}
}

// DropPending forgets the pending counts after the caller has moved them
// to the state store (used while replaying, to bound memory). The
// open-window registry is kept.
func (o *Operator) DropPending() {
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
	clear(o.pending)
	clear(o.lateBuf)
	clear(o.last)
	o.heldKeys = 0
	if o.dd != nil {
		clear(o.dd.seen)
	}
}

// Sightings calls fn for every dedup sighting (id, latest event time) since
// the last checkpoint (used while replaying to move them to the store).
func (o *Operator) Sightings(fn func(slot int64, id string, t int64)) {
	if o.dd == nil {
		return
	}
	for id, t := range o.dd.seen {
		fn(o.dd.slotOf(t), id, t)
	}
}

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

// HoldNone and HoldAll are Take's holdUntil for holding no window and
// every holdable one.
const (
	HoldNone = NoWatermark
	HoldAll  = NoCap
)

// Holdable calls fn for each window Take(p, HoldAll) would keep in memory
// (the open windows p does not emit that are no longer than HoldWindows),
// with the window's end and its number of pending counters.
func (o *Operator) Holdable(p Plan, fn func(end int64, keys int)) {
	for w, c := range o.pending {
		if o.holdable(p, w) {
			fn(w.End(), c.Len())
		}
	}
}

// holdable reports whether Take(p, HoldAll) keeps window w's pending
// counts in memory: p does not emit it, and holds allows it.
func (o *Operator) holdable(p Plan, w Window) bool {
	return !p.Flush && !w.ClosedBy(p.Watermark) && o.holds(w, p.NextOffset)
}

// Stored reports whether the state store may hold counts of open window
// w: false when every record of it since its first pending one was held in
// memory (the store then has nothing to read back or delete).
func (o *Operator) Stored(w Window) bool { return stored(o.memFrom, w, o.open[w]) }

// stored reports whether the store may hold counts of window w, whose first
// pending record is at offset first: unless memFrom says they were all in
// memory since then.
func stored(memFrom map[Window]int64, w Window, first int64) bool {
	mf, held := memFrom[w]
	return !held || mf > first
}

// holds reports whether a checkpoint at offset next may keep window w's
// pending counts in memory.
func (o *Operator) holds(w Window, next int64) bool {
	from, held := o.memFrom[w]
	if !held {
		from = o.base
	}
	return w.Size <= o.holdMax && next-from <= o.holdRecs && from >= o.logFloor
}

// Snapshot is what one checkpoint takes from the operator: the counts added
// since the previous checkpoint, the registry of windows left open, and the
// windows the plan emitted. Processing goes on into fresh buffers while the
// checkpoint commits; Restore gives everything back if it fails.
type Snapshot struct {
	Pending map[Window]*Counts // on-time counts, including emitted windows'
	Late    map[Window]*Counts
	Open    map[Window]int64 // open windows after the plan, with their lowest pending offset
	Emitted map[Window]int64 // emitted windows, with their lowest pending offset
	// Seen are the dedup sightings since the previous checkpoint (id →
	// latest event time), Dedup the clock and history to store, and
	// Horizon the event time sightings must exceed to be kept. dropped are
	// the history marks the plan made unnecessary.
	Seen  map[string]int64
	Dedup DedupState
	// ExpireBefore is the first slot of event time (see SlotOf) with live
	// sightings: the store may drop those before it.
	ExpireBefore int64
	dd           *dedup
	Horizon      int64
	dropped      []ClockMark
	// Held are the windows whose counts Take kept in memory, with the
	// offset from which the state store does not have them: the registry
	// must say so.
	Held map[Window]int64
	// memFrom, base and heldKeys are the operator's before Take, for
	// Restore.
	memFrom  map[Window]int64
	base     int64
	heldKeys int
}

// Take applies plan p as if its checkpoint committed (emitted windows leave
// the registry) and moves the counts added since the previous checkpoint
// into the returned snapshot. Open windows no longer than HoldWindows that
// end at or before holdUntil keep their counts in memory instead (see
// Holdable).
func (o *Operator) Take(p Plan, holdUntil int64) *Snapshot {
	s := &Snapshot{Pending: o.pending, Late: o.lateBuf, Emitted: make(map[Window]int64, len(p.Emit)),
		memFrom: maps.Clone(o.memFrom), base: o.base, heldKeys: o.heldKeys}
	for _, w := range p.Emit {
		if first, ok := o.open[w]; ok {
			s.Emitted[w] = first
			delete(o.open, w)
		}
	}
	kept := make(map[Window]*Counts, len(o.pending))
	o.heldKeys = 0
	if holdUntil != HoldNone { // NB: a flush emits every window: none is held
		for w, c := range o.pending {
			if w.End() > holdUntil || !o.holdable(p, w) {
				continue
			}
			kept[w] = c
			delete(s.Pending, w) // NB: s.Pending is o.pending, replaced below
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
	s.Held = maps.Clone(o.memFrom)
	o.base = p.NextOffset
	s.Open = maps.Clone(o.open)
	if d := o.dd; d != nil {
		s.Horizon = d.horizon()
		s.dd = d
		s.ExpireBefore = d.liveSlot()
		d.filter.expire(s.ExpireBefore)
		// NB: the history marks before the plan's dedup restart are no
		// longer needed (given back if the checkpoint fails).
		s.dropped = slices.Clone(d.hist[:p.histKeep])
		d.hist = slices.Delete(d.hist, 0, p.histKeep)
		s.Dedup = DedupState{Clock: d.clock, Hist: slices.Clone(d.hist)}
		s.Seen = d.take()
	}
	o.pending = kept
	o.lateBuf = make(map[Window]*Counts)
	clear(o.last)
	return s
}

// Restore gives a snapshot back after its checkpoint failed: counts are
// added to what arrived since, emitted windows are open again. The
// operator is then as if Take had not happened, plus the newer records.
func (o *Operator) Restore(s *Snapshot) {
	merge := func(dst map[Window]*Counts, src map[Window]*Counts) {
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
	merge(o.pending, s.Pending)
	merge(o.lateBuf, s.Late)
	for w, first := range s.Emitted {
		if cur, ok := o.open[w]; !ok || first < cur {
			o.open[w] = first
		}
	}
	o.memFrom, o.base, o.heldKeys = s.memFrom, s.base, s.heldKeys
	if o.dd != nil {
		o.dd.giveBack(s.Seen, s.dropped)
	}
	clear(o.last)
}

// Stored reports whether the state store may hold counts of window w,
// which this snapshot emitted (see Operator.Stored).
func (s *Snapshot) Stored(w Window) bool { return stored(s.memFrom, w, s.Emitted[w]) }

// SlotOf returns the slot of event time t where the state store keeps a
// sighting of this snapshot. Safe to call concurrently with the operator.
func (s *Snapshot) SlotOf(t int64) int64 { return s.dd.slotOf(t) }

// Release tells the operator that snapshot s's checkpoint committed and
// its sightings are in the state store.
func (o *Operator) Release(s *Snapshot) {
	if o.dd != nil && s != nil {
		o.dd.inflight = nil
	}
}
