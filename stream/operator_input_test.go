package stream

// Operator tests of the input mapping: a record input.filter excludes is
// Outcome.Filtered, counted nowhere (no window, no late count, no dedup
// sighting, no watermark move), not a rejection, and decided the same way
// by a replay; ts_source record uses the Kafka record timestamp.

import (
	"fmt"
	"github.com/clickagg/clickagg/base"
	"testing"
	"time"
)

// trackEvent is a tracker-style event for the mapping filteredInput.
func trackEvent(typ, url string, ts int64, id string) []byte {
	return fmt.Appendf(nil, `{"type":%q,"page":{"url":%q},"t":%d,"mid":%q}`, typ, url, ts, id)
}

var filteredInput = InputOptions{URL: "page.url", TS: "t", TSFormat: "unix_ms", ID: "mid", Filter: []string{"type==track"}}

func TestOperatorFiltered(t *testing.T) {
	opts := OperatorOptions{Windows: []time.Duration{time.Minute}, Input: filteredInput}
	recs := []Record{
		{Offset: 0, Value: trackEvent("track", "/a", t0+5*sec, "e1")},
		{Offset: 1, Value: trackEvent("page", "/b", t0+6*sec, "e2")},
		{Offset: 2, Value: trackEvent("page", "/c", t0+2*minute, "e3")},  // would close window t0
		{Offset: 3, Value: trackEvent("track", "/a", t0+70*sec, "e4")},   // closes window t0
		{Offset: 4, Value: trackEvent("page", "/late", t0+sec, "e5")},    // would be late
		{Offset: 5, Value: []byte(`{"type":"page"}`)},                    // no url: filtered, not missing_url
		{Offset: 6, Value: []byte(`{"type":"page","t":"bad"}`)},          // bad ts: filtered first
		{Offset: 7, Value: []byte(`{"type":"page",`)},                    // invalid JSON is still a rejection
		{Offset: 8, Value: []byte("{\"type\":\"page\",\"x\":\"\xff\"}")}, // so is invalid UTF-8
		{Offset: 9, Value: []byte(`{"type":"track"}`)},                   // passes the filter: missing_url
		{Offset: 10, Value: trackEvent("track", "/a", t0+71*sec, "e6")},
	}
	want := []Outcome{
		{}, {Filtered: true}, {Filtered: true}, {}, {Filtered: true}, {Filtered: true}, {Filtered: true},
		{Reason: ReasonInvalidJSON}, {Reason: ReasonInvalidUTF8}, {Reason: ReasonMissingURL}, {},
	}

	live := newOp(t, opts)
	for i, r := range recs {
		wm := live.Watermark()
		out := live.proc(r)
		if out != want[i] {
			t.Errorf("offset %d: %+v, want %+v", r.Offset, out, want[i])
		}
		if out.Filtered && live.Watermark() != wm {
			t.Errorf("offset %d: a filtered record moved the watermark from %d to %d", r.Offset, wm-t0, live.Watermark()-t0)
		}
	}
	if got := live.Watermark(); got != t0+71*sec {
		t.Errorf("watermark %d, want %d (the filtered record at +2m must not count)", got-t0, 71*sec)
	}
	if len(live.lateBuf) != 0 {
		t.Errorf("late counts %v: a filtered record was counted late", live.lateBuf)
	}
	wantPending := map[base.Window]map[string]int64{
		{Size: minute, Start: t0}:          {"/a": 1},
		{Size: minute, Start: t0 + minute}: {"/a": 2},
	}
	checkPending(t, "live", live, wantPending)
	rd := live.Ready(false, HoldNone)
	if len(rd.Emit) != 1 || rd.Emit[0].Window.Start != t0 || rd.Emit[0].Counts.Len() != 1 || rd.Emit[0].Counts.Get("/a") != 1 {
		t.Errorf("emitted %s, want window 0 with /a once", emitted(rd))
	}
	if len(rd.Late) != 0 {
		t.Errorf("late counts %v, want none", rd.Late)
	}

	// A replay of the same records from the start decides every record the
	// same way and rebuilds the same counts.
	replay, err := NewOperator(opts)
	if err != nil {
		t.Fatal(err)
	}
	replay.StartReplay(0, int64(len(recs)), NoWatermark)
	for i, r := range recs {
		out := replay.proc(r)
		w := want[i]
		w.Replayed = true
		if out != w {
			t.Errorf("replay offset %d: %+v, want %+v", r.Offset, out, w)
		}
	}
	if replay.Replaying() {
		t.Fatal("still replaying")
	}
	checkPending(t, "replay", replay, wantPending)
}

// checkPending compares the operator's pending counts with want.
func checkPending(t *testing.T, name string, op *Operator, want map[base.Window]map[string]int64) {
	t.Helper()
	if len(op.pending) != len(want) {
		t.Errorf("%s: %d pending windows, want %d", name, len(op.pending), len(want))
	}
	for w, urls := range want {
		c := op.pending[w]
		if c == nil || c.Len() != len(urls) {
			t.Errorf("%s: window %d holds %v, want %v", name, w.Start-t0, c, urls)
			continue
		}
		for u, n := range urls {
			if got := c.Get(u); got != n {
				t.Errorf("%s: window %d %s = %d, want %d", name, w.Start-t0, u, got, n)
			}
		}
	}
}

// TestOperatorFilteredNoDedupSighting: a filtered record's id is not a
// sighting, and a filtered copy of a seen id is filtered, not a duplicate.
func TestOperatorFilteredNoDedupSighting(t *testing.T) {
	op := newOp(t, OperatorOptions{Windows: []time.Duration{time.Minute}, DedupWindow: time.Hour, Input: filteredInput})
	steps := []struct {
		rec  []byte
		want Outcome
	}{
		{trackEvent("page", "/a", t0, "e1"), Outcome{Filtered: true}},
		{trackEvent("track", "/a", t0+sec, "e1"), Outcome{}},
		{trackEvent("page", "/a", t0+2*sec, "e1"), Outcome{Filtered: true}},
		{trackEvent("track", "/a", t0+3*sec, "e1"), Outcome{Duplicate: true}},
	}
	for i, s := range steps {
		if out := op.proc(Record{Offset: int64(i), Value: s.rec}); out != s.want {
			t.Errorf("record %d: %+v, want %+v", i, out, s.want)
		}
	}
	checkPending(t, "dedup", op, map[base.Window]map[string]int64{{Size: minute, Start: t0}: {"/a": 1}})
}

// TestOperatorRecordTimestamp: with ts_source record the Kafka record
// timestamp decides the window, whatever the payload's ts holds.
func TestOperatorRecordTimestamp(t *testing.T) {
	op := newOp(t, OperatorOptions{Windows: []time.Duration{time.Minute}, MaxFutureSkew: time.Second,
		Input: InputOptions{TSSource: "record"}})
	recs := []Record{
		{Offset: 0, TimestampMs: t0 + 5*sec, Value: []byte(`{"url":"/a","ts":"garbage"}`)},
		{Offset: 1, TimestampMs: t0 + 65*sec, Value: click("/a", t0+50*minute)}, // far ahead: ignored, not skew-rejected
		{Offset: 2, TimestampMs: 5, Value: click("/a", t0)},                     // the record's time is out of range
	}
	want := []Outcome{{}, {}, {Reason: ReasonTimestampOutOfRange}}
	for i, r := range recs {
		if out := op.proc(r); out != want[i] {
			t.Errorf("offset %d: %+v, want %+v", r.Offset, out, want[i])
		}
	}
	checkPending(t, "record", op, map[base.Window]map[string]int64{
		{Size: minute, Start: t0}:          {"/a": 1},
		{Size: minute, Start: t0 + minute}: {"/a": 1},
	})
}
