package stream

import (
	"fmt"
	"github.com/clickagg/clickagg/base"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// dedupRecords makes a stream where about a quarter of the records repeat
// an earlier id, some shortly after it and some long after (beyond the
// dedup window), with out-of-order and late event times and some records
// without an id.
func dedupRecords(rng *rand.Rand, n int) []Record {
	recs := make([]Record, 0, n)
	type ev struct {
		id  string
		url string
		ts  int64
	}
	var past []ev
	now := t0
	for i := range n {
		now += int64(rng.IntN(400))
		e := ev{id: fmt.Sprintf("e%d", i), url: fmt.Sprintf("/u%d", rng.IntN(7)), ts: now}
		switch x := rng.IntN(100); {
		case x < 20 && len(past) > 0: // a retry of a recent click
			e = past[max(0, len(past)-1-rng.IntN(40))]
		case x < 25 && len(past) > 0: // a retry of any earlier click
			e = past[rng.IntN(len(past))]
		case x < 30:
			e.id = "" // no id: never deduplicated
		case x < 35:
			e.ts -= int64(rng.IntN(90)) * sec // late or out of order
		}
		past = append(past, e)
		v := fmt.Appendf(nil, `{"url":%q,"ts":%d,"id":%q}`, e.url, e.ts, e.id)
		if e.id == "" {
			v = click(e.url, e.ts)
		}
		recs = append(recs, Record{Offset: int64(i), TimestampMs: e.ts, Value: v})
	}
	return recs
}

// naiveDuplicates applies the documented rule directly: a record is a
// duplicate when an earlier record with its id had an event time above the
// clock (the highest earlier event time) minus the window.
func naiveDuplicates(recs []Record, window int64) map[int64]bool {
	dup := map[int64]bool{}
	clock := NoWatermark
	for i, r := range recs {
		c, _ := (&Decoder{}).Decode(r.Value)
		if len(c.ID) > 0 && clock != NoWatermark {
			for _, e := range recs[:i] {
				ec, _ := (&Decoder{}).Decode(e.Value)
				if string(ec.ID) == string(c.ID) && ec.TimeMs > clock-window {
					dup[r.Offset] = true
					break
				}
			}
		}
		clock = max(clock, c.TimeMs)
	}
	return dup
}

// dedupRun drives an operator with checkpoints that persist sightings to a
// simulated state store, as the checkpoint package does.
type dedupRun struct {
	op    *Operator
	store map[slotID]int64
	dup   map[int64]bool
}

type slotID struct {
	slot int64
	id   string
}

func newDedupRun(op *Operator, store map[slotID]int64) *dedupRun {
	r := &dedupRun{op: op, store: store, dup: map[int64]bool{}}
	op.SetLookup(func(slot int64, id []byte) (int64, bool, error) {
		t, ok := r.store[slotID{slot, string(id)}]
		return t, ok, nil
	})
	return r
}

func (r *dedupRun) process(rec Record) {
	if out := r.op.proc(rec); out.Duplicate {
		r.dup[rec.Offset] = true
	}
}

func (r *dedupRun) checkpoint(flush bool) *Ready {
	rd := r.op.Ready(flush, HoldNone)
	for k := range r.store {
		if k.slot < rd.ExpireBefore {
			delete(r.store, k)
		}
	}
	rd.Sightings(func(slot int64, id string, t int64) { r.store[slotID{slot, id}] = t })
	r.op.Advance(rd)
	return rd
}

// TestDedupRestoreDecidesAlike checks that dedup decisions replay alike: after
// a crash at any checkpoint, both a local resume and a rebuild without
// local state (replay from the dedup restart offset) make exactly the
// decisions an uninterrupted run makes, for every record whose count is
// not emitted yet; and those decisions follow the documented rule.
func TestDedupRestoreDecidesAlike(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 11))
			recs := dedupRecords(rng, 2500)
			window := time.Duration(5+rng.IntN(60)) * time.Second
			opts := OperatorOptions{Windows: []time.Duration{time.Minute, 10 * time.Minute},
				OutOfOrder: 3 * time.Second, DedupWindow: window}
			want := naiveDuplicates(recs, window.Milliseconds())

			a := newDedupRun(newOp(t, opts), map[slotID]int64{})
			type ckpt struct {
				p     base.Position
				store map[slotID]int64
				dd    base.DedupState
				open  map[base.Window]base.OpenWindow
			}
			var ckpts []ckpt
			for i, rec := range recs {
				a.process(rec)
				if rng.IntN(60) == 0 {
					if rng.IntN(10) == 0 {
						a.op.AdvanceWatermark(rec.TimestampMs + int64(rng.IntN(100))*sec)
					}
					rd := a.checkpoint(rng.IntN(6) == 0)
					p := rd.Position
					ckpts = append(ckpts, ckpt{p: p, store: maps.Clone(a.store), dd: *rd.Dedup, open: rd.Open})
					if p.NextOffset != int64(i+1) || p.DedupOffset > p.RestartOffset {
						t.Fatalf("plan %+v after record %d", p, i)
					}
				}
			}
			for off := range recs {
				if a.dup[int64(off)] != want[int64(off)] {
					t.Fatalf("record %d (%s): duplicate %v, rule says %v", off, recs[off].Value, a.dup[int64(off)], want[int64(off)])
				}
			}
			for k, c := range ckpts {
				p := c.p
				// Local resume: the state store as it was at the checkpoint.
				local := newDedupRun(newOp(t, opts), maps.Clone(c.store))
				local.op.Resume(p.NextOffset, p.Watermark, c.open)
				local.op.ResumeDedup(c.dd)
				if k%2 == 0 {
					// As the pipeline does: the stored sightings fill the
					// filter that spares most store reads. (Odd checkpoints
					// resume without it: every lookup reads the store.)
					for k, t := range c.store {
						if k.slot >= local.op.DedupLiveSlot() {
							local.op.LoadSighting(k.slot, []byte(k.id), t)
						}
					}
					local.op.FinishLoad()
				}
				// Rebuild: no local state at all.
				rebuilt := newDedupRun(newOp(t, opts), map[slotID]int64{})
				rebuilt.op.StartReplayDedup(p.DedupOffset, p.RestartOffset, p.NextOffset, p.Watermark, p.DedupClock)
				for _, rec := range recs[p.DedupOffset:] {
					if rec.Offset >= p.NextOffset {
						local.process(rec)
					}
					rebuilt.process(rec)
				}
				for off := p.RestartOffset; off < int64(len(recs)); off++ {
					if off >= p.NextOffset && local.dup[off] != a.dup[off] {
						t.Fatalf("checkpoint %d %+v, local resume: record %d duplicate %v, uninterrupted %v", k, p, off, local.dup[off], a.dup[off])
					}
					if rebuilt.dup[off] != a.dup[off] {
						t.Fatalf("checkpoint %d %+v, rebuild: record %d duplicate %v, uninterrupted %v", k, p, off, rebuilt.dup[off], a.dup[off])
					}
				}
			}
			if n := len(want); n < len(recs)/20 {
				t.Fatalf("only %d duplicates in %d records: the test does not exercise dedup", n, len(recs))
			}
		})
	}
}

// TestDedupFailedCheckpointGivesSightingsBack: a checkpoint that fails
// gives its sightings back, so a retry of one of its ids is still caught.
func TestDedupFailedCheckpointGivesSightingsBack(t *testing.T) {
	op := newOp(t, OperatorOptions{Windows: []time.Duration{time.Minute}, DedupWindow: time.Minute})
	rec := func(off int64, id string, ts int64) Record {
		return Record{Offset: off, TimestampMs: ts, Value: fmt.Appendf(nil, `{"url":"/a","ts":%d,"id":%q}`, ts, id)}
	}
	if out := op.proc(rec(0, "x", t0)); out.Duplicate {
		t.Fatal("first sighting is a duplicate")
	}
	s := op.Ready(false, HoldNone)
	if out := op.proc(rec(1, "x", t0)); !out.Duplicate {
		t.Fatal("retry while the checkpoint is in flight was not caught")
	}
	op.Abort(s) // the checkpoint failed
	if out := op.proc(rec(2, "x", t0+sec)); !out.Duplicate {
		t.Fatal("retry after a failed checkpoint was not caught")
	}
	if out := op.proc(rec(3, "", t0+sec)); out.Duplicate {
		t.Fatal("a record without id was deduplicated")
	}
	if out := op.proc(rec(4, "x", t0+2*time.Minute.Milliseconds())); !out.Duplicate {
		t.Fatal("a retry within the window of the clock was not caught")
	}
	// The clock is now t0+2m: the sighting at t0+2m is live, the rule
	// forgets one older than the window.
	if out := op.proc(rec(5, "y", t0)); out.Duplicate {
		t.Fatal("new id is a duplicate")
	}
	if out := op.proc(rec(6, "y", t0)); out.Duplicate {
		t.Fatal("an id last seen more than the window behind the clock is still remembered")
	}
}

func TestDedupScopeGlobalFlagsMisroutedRecords(t *testing.T) {
	op := newOp(t, OperatorOptions{Windows: []time.Duration{time.Minute}, DedupWindow: time.Minute, DedupKeyed: true})
	v := []byte(`{"url":"/a","ts":1767225600000,"id":"x1"}`)
	for i, tc := range []struct {
		key       string
		misrouted bool
	}{{"x1", false}, {"/a", false}, {"", true}, {"other", true}} {
		// NB: a fresh id each time, so none is a duplicate.
		val := []byte(strings.Replace(string(v), "x1", fmt.Sprint("x", i), 1))
		key := strings.Replace(tc.key, "x1", fmt.Sprint("x", i), 1)
		if out := op.proc(Record{Offset: int64(i), Key: []byte(key), Value: val}); out.Misrouted != tc.misrouted || out.Duplicate {
			t.Errorf("key %q: %+v, want misrouted %v", key, out, tc.misrouted)
		}
	}
	// Records without an id are never misrouted; scope partition checks nothing.
	if out := op.proc(Record{Offset: 10, Key: []byte("k"), Value: click("/a", t0)}); out.Misrouted {
		t.Error("a record without id was flagged")
	}
	op = newOp(t, OperatorOptions{Windows: []time.Duration{time.Minute}, DedupWindow: time.Minute})
	if out := op.proc(Record{Offset: 0, Key: []byte("k"), Value: v}); out.Misrouted {
		t.Error("scope partition flagged a record")
	}
}

// BenchmarkOperatorProcessDedup: every record has an id, a quarter of them
// retries; sightings stay in memory (no state store beneath).
func BenchmarkOperatorProcessDedup(b *testing.B) {
	op, _ := NewOperator(OperatorOptions{Windows: []time.Duration{time.Minute}, OutOfOrder: 5 * time.Second, DedupWindow: 10 * time.Minute})
	op.StartReplay(0, 0, NoWatermark)
	vals := make([][]byte, 4096)
	for i := range vals {
		id := i
		if i%4 == 3 {
			id = i - 1
		}
		vals[i] = fmt.Appendf(nil, `{"url":"https://example.com/page/%d","ts":%d,"id":"e%d"}`, i%1000, t0+int64(i), id)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		op.proc(Record{Offset: int64(i), Value: vals[i%len(vals)]})
		if i%100_000 == 99_999 {
			op.Advance(op.Ready(false, HoldNone))
		}
	}
}
