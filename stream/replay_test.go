package stream

import (
	"fmt"
	"github.com/clickagg/clickagg/base"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// Replay tests: a harness that writes each Ready into maps standing in
// for PostgreSQL and the state store, and the randomized crash-and-restore
// check that rebuilt and resumed operators emit exactly what an
// uninterrupted one does.

// harness runs an operator through checkpoints, writing each Ready into
// maps that stand in for PostgreSQL and the state store, and records
// everything it emits. It checks the operator's side of the protocol (what
// a Ready says to write); package checkpoint's datadriven tests run the
// same protocol against the real store and database.
type harness struct {
	op      *Operator
	hold    bool                             // Ready holds windows (HoldWindows)
	rng     *rand.Rand                       // non-nil: sometimes holds only some (holdArg)
	store   map[base.Window]map[string]int64 // counts carried over from earlier checkpoints
	reg     map[base.Window]base.OpenWindow  // the stored registry
	emitted map[string]int64                 // window@url -> clicks emitted
	late    map[string]int64
	totals  map[string]int64
	pos     base.Position // the last checkpoint
}

// holdArg is Ready's holdUntil: nothing without hold; with hold, every
// holdable window or, with rng, sometimes only those up to a random one's
// end, as the coordinator does past its memory budget.
func holdArg(op *Operator, flush, hold bool, rng *rand.Rand) int64 {
	if !hold {
		return HoldNone
	}
	var ends []int64
	op.Holdable(flush, func(end int64, _ int) { ends = append(ends, end) })
	if rng == nil || len(ends) == 0 || rng.IntN(2) == 0 {
		return HoldAll
	}
	return ends[rng.IntN(len(ends))] - int64(rng.IntN(2))
}

func newHarness(op *Operator) *harness {
	return &harness{op: op, store: map[base.Window]map[string]int64{}, reg: map[base.Window]base.OpenWindow{},
		emitted: map[string]int64{}, late: map[string]int64{}, totals: map[string]int64{}}
}

func (h *harness) checkpoint(flush bool) {
	rd := h.op.Ready(flush, holdArg(h.op, flush, h.hold, h.rng))
	h.write(rd)
	h.op.Advance(rd)
}

// write applies a Ready: the emission (PostgreSQL) unless replaying, then
// the state batch.
func (h *harness) write(rd *Ready) {
	smallest := h.op.Sizes()[0]
	emit := func(w base.Window, url string, n int64) {
		h.emitted[fmt.Sprintf("%d/%d@%s", w.Size, w.Start, url)] += n
		if w.Size == smallest {
			h.totals[url] += n
		}
	}
	for _, e := range rd.Emit {
		if !e.Stored && len(h.store[e.Window]) > 0 {
			panic(fmt.Sprintf("window %v: not Stored, but the store holds %v", e.Window, h.store[e.Window]))
		}
		for url, n := range h.store[e.Window] {
			emit(e.Window, url, n)
		}
		for url, n := range e.Counts.All() {
			emit(e.Window, url, n)
		}
		delete(h.store, e.Window)
		delete(h.reg, e.Window)
	}
	for w, c := range rd.Late {
		for url, n := range c.All() {
			emit(w, url, n)
			h.late[url] += n
		}
	}
	for w, c := range rd.Keep {
		h.addToStore(w, c)
	}
	maps.Copy(h.reg, rd.Open)
	if !rd.Replaying {
		h.pos = rd.Position
	}
}

func (h *harness) addToStore(w base.Window, c *Counts) {
	if h.store[w] == nil {
		h.store[w] = map[string]int64{}
	}
	for url, n := range c.All() {
		h.store[w][url] += n
	}
}

// spill moves a replaying operator's counts to the store, as a checkpoint
// during a replay does.
func (h *harness) spill() {
	rd := h.op.Ready(false, HoldNone)
	if !rd.Replaying || len(rd.Emit) > 0 || len(rd.Late) > 0 {
		panic("a replaying operator's Ready emits")
	}
	h.write(rd)
	h.op.Advance(rd)
}

// resumeLocal restarts from the stored state, as a partition whose local
// state matches its checkpoint is opened.
func (h *harness) resumeLocal(opts OperatorOptions) {
	h.op, _ = NewOperator(opts)
	h.op.Resume(h.pos.NextOffset, h.pos.Watermark, maps.Clone(h.reg))
}

// TestReplayRebuildsExactly checks deterministic emission and rebuild by replay:
// crash after any checkpoint and restore, then carry on; the total emitted
// per window and URL equals an uninterrupted run's, which equals the count
// of valid records (late policy count). Restores either lose the local
// state and rebuild by replaying [restart offset, next offset) with the
// recorded watermark, or resume from it, replaying what held windows kept
// in memory only — with spills to the store during that replay and a
// second crash after one.
func TestReplayRebuildsExactly(t *testing.T) {
	type variant struct {
		name  string
		hold  bool  // 1m windows held in memory across checkpoints
		local bool  // the first crash keeps the local state (later ones always do)
		twice bool  // the first crash's replay spills to the store, crashes again, resumes again
		recs  int64 // HoldRecords
	}
	variants := []variant{
		{name: "rebuild"},
		{name: "rebuild-held", hold: true},
		{name: "local-held", hold: true, local: true},
		{name: "local-held-twice", hold: true, local: true, twice: true},
		{name: "local-held-short", hold: true, local: true, recs: 150}, // 7m windows held too
	}
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			recs := randomRecords(rng, 3000)
			opts := OperatorOptions{Windows: []time.Duration{time.Minute, 7 * time.Minute}, OutOfOrder: 3 * time.Second}
			// Checkpoint schedule: every few records, some with flush, some
			// not holding windows (as under memory pressure), and idle
			// watermark advances in between.
			type step struct {
				at                  int
				flush, nohold, fail bool
				idle                int64
			}
			var steps []step
			for i := rng.IntN(50); i < len(recs); i += 1 + rng.IntN(200) {
				s := step{at: i, flush: rng.IntN(8) == 0, nohold: rng.IntN(5) == 0, fail: rng.IntN(6) == 0}
				if rng.IntN(10) == 0 {
					s.idle = recs[i].TimestampMs + int64(rng.IntN(120))*sec
				}
				steps = append(steps, s)
			}
			// replay feeds the records a restored operator asks for up to
			// the checkpoint; spillAt >= 0 spills once at that record, and
			// crash then restores again from the stored state.
			replay := func(h *harness, spillAt int64, crash func()) {
				for i := h.op.NextOffset(); i < h.pos.NextOffset; i++ {
					if i == spillAt && h.op.Replaying() {
						h.spill()
						if crash != nil {
							crash()
							crash = nil
							i = h.op.NextOffset() - 1
							continue
						}
					}
					if out := h.op.proc(recs[i]); !out.Replayed {
						t.Fatalf("record %d processed live during replay", i)
					}
				}
				if h.op.Replaying() || h.op.NextOffset() != h.pos.NextOffset || h.op.Watermark() != h.pos.Watermark {
					t.Fatalf("after replay: replaying %v next %d wm %d, want %d %d", h.op.Replaying(), h.op.NextOffset(), h.op.Watermark(), h.pos.NextOffset, h.pos.Watermark)
				}
			}
			// run crashes after the checkpoints in crashes: the first as v
			// says, later ones keeping the local state.
			run := func(v variant, crashes ...int) *harness {
				o := opts
				if v.hold {
					o.HoldWindows, o.HoldRecords = time.Minute, v.recs
				}
				if v.recs > 0 {
					o.HoldWindows = 7 * time.Minute
				}
				op, _ := NewOperator(o)
				op.StartReplay(0, 0, NoWatermark)
				h := newHarness(op)
				h.rng = rng
				next := 0
				for si, s := range steps {
					for ; next < s.at; next++ {
						h.op.proc(recs[next])
					}
					if s.idle != 0 {
						h.op.AdvanceWatermark(s.idle)
					}
					h.hold = v.hold && !s.nohold
					if s.fail {
						// A checkpoint that fails after the loop processed
						// a few more records.
						rd := h.op.Ready(s.flush, holdArg(h.op, s.flush, v.hold && rng.IntN(2) == 0, rng))
						for end := min(len(recs), next+rng.IntN(50)); next < end; next++ {
							h.op.proc(recs[next])
						}
						h.op.Abort(rd)
					}
					h.checkpoint(s.flush)
					nth := slices.Index(crashes, si)
					if nth < 0 {
						continue
					}
					// Some replays spill to the store midway, as checkpoints
					// during a replay do.
					spillAt := int64(-1)
					if h.pos.NextOffset > h.pos.RestartOffset && rng.IntN(2) == 0 {
						spillAt = h.pos.RestartOffset + rng.Int64N(h.pos.NextOffset-h.pos.RestartOffset)
					}
					if nth == 0 && !v.local {
						// Crash: lose the operator and the store, keep what
						// was emitted and the recorded position; rebuild by
						// replay (spilling midway as checkpoints during a
						// replay do); the next checkpoint writes the rest.
						op2, _ := NewOperator(o)
						op2.StartReplay(h.pos.RestartOffset, h.pos.NextOffset, h.pos.Watermark)
						h.op, h.store, h.reg = op2, map[base.Window]map[string]int64{}, map[base.Window]base.OpenWindow{}
						replay(h, spillAt, nil)
						continue
					}
					// Crash: lose the operator, keep the store.
					h.resumeLocal(o)
					// NB: checkpoints come at most 250 records apart.
					if n := h.pos.NextOffset - h.op.NextOffset(); v.recs > 0 && n > v.recs+250 {
						t.Fatalf("%s: a local restart replays %d records, more than HoldRecords %d allows", v.name, n, v.recs)
					}
					var crash func()
					if nth == 0 && v.twice && h.op.Replaying() {
						spillAt = h.op.NextOffset() + rng.Int64N(h.pos.NextOffset-h.op.NextOffset())
						crash = func() { h.resumeLocal(o) }
					}
					replay(h, spillAt, crash)
				}
				for ; next < len(recs); next++ {
					h.op.proc(recs[next])
				}
				h.checkpoint(true)
				return h
			}
			want := expectedCounts(recs, opts)
			base := run(variants[0], -1)
			if diff := diffCounts(base.emitted, want); diff != "" {
				t.Fatalf("uninterrupted run: %s", diff)
			}
			for _, v := range variants {
				if v.hold {
					if diff := diffCounts(run(v, -1).emitted, want); diff != "" {
						t.Fatalf("%s, uninterrupted: %s", v.name, diff)
					}
				}
				for _, crash := range []int{0, len(steps) / 3, len(steps) / 2, len(steps) - 1} {
					h := run(v, crash, crash+1+rng.IntN(5), crash+6+rng.IntN(5))
					if diff := diffCounts(h.emitted, want); diff != "" {
						t.Fatalf("%s, crash after checkpoint %d: %s", v.name, crash, diff)
					}
					if fmt.Sprint(h.totals) != fmt.Sprint(base.totals) {
						t.Fatalf("%s, crash after checkpoint %d: totals differ", v.name, crash)
					}
				}
			}
		})
	}
}

func randomRecords(rng *rand.Rand, n int) []Record {
	var recs []Record
	ts := t0
	for i := range n {
		ts += int64(rng.IntN(400))
		at := ts
		switch x := rng.IntN(100); {
		case x < 10:
			at -= int64(rng.IntN(3000)) // out of order, mostly on time
		case x < 14:
			at -= int64(60+rng.IntN(600)) * sec // late
		}
		v := click(fmt.Sprintf("/u%d", rng.IntN(12)), at)
		switch rng.IntN(40) {
		case 0:
			v = []byte(`{"url":`)
		case 1:
			v = fmt.Appendf(nil, `{"url":"/nots%d"}`, rng.IntN(3)) // record timestamp applies
		}
		recs = append(recs, Record{Offset: int64(i), TimestampMs: at, Value: v})
	}
	return recs
}

func expectedCounts(recs []Record, opts OperatorOptions) map[string]int64 {
	var dec Decoder
	want := map[string]int64{}
	for _, r := range recs {
		c, reason := dec.Decode(r.Value)
		if reason != ReasonNone {
			continue
		}
		ts := c.TimeMs
		if !c.HasTime {
			ts = r.TimestampMs
		}
		for _, d := range opts.Windows {
			w := Assign(ts, d.Milliseconds())
			want[fmt.Sprintf("%d/%d@%s", w.Size, w.Start, c.URL)]++
		}
	}
	return want
}

func diffCounts(got, want map[string]int64) string {
	var diffs []string
	for k, v := range want {
		if got[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s: got %d want %d", k, got[k], v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: got %d want none", k, v))
		}
	}
	slices.Sort(diffs)
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("... %d in all", len(diffs)))
	}
	return strings.Join(diffs, "; ")
}
