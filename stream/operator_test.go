package stream

import (
	"fmt"
	"github.com/clickagg/clickagg/base"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	sec    = int64(1000)
	minute = 60 * sec
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

func click(url string, ts int64) []byte {
	return fmt.Appendf(nil, `{"url":%q,"ts":%d}`, url, ts)
}

func newOp(t *testing.T, o OperatorOptions) *Operator {
	t.Helper()
	op, err := NewOperator(o)
	if err != nil {
		t.Fatal(err)
	}
	op.StartReplay(0, 0, NoWatermark)
	return op
}

func TestNewOperatorValidates(t *testing.T) {
	cases := []struct {
		o    OperatorOptions
		want string
	}{
		{OperatorOptions{}, "at least one window"},
		{OperatorOptions{Windows: []time.Duration{500 * time.Millisecond}}, "at least 1s"},
		{OperatorOptions{Windows: []time.Duration{time.Second + time.Microsecond}}, "whole number of milliseconds"},
		{OperatorOptions{Windows: []time.Duration{time.Minute, time.Minute}}, "only once"},
		{OperatorOptions{Windows: []time.Duration{time.Minute}, OutOfOrder: -time.Second}, "negative"},
	}
	for _, c := range cases {
		_, err := NewOperator(c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewOperator(%+v) = %v, want error containing %q", c.o, err, c.want)
		}
	}
}

func TestParseLatePolicy(t *testing.T) {
	for in, want := range map[string]LatePolicy{"": LateCount, "count": LateCount, "drop": LateDrop, "dead-letter": LateDeadLetter} {
		if got, err := ParseLatePolicy(in); err != nil || got != want {
			t.Errorf("ParseLatePolicy(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"deadletter", "ignore", "COUNT"} {
		if _, err := ParseLatePolicy(in); err == nil {
			t.Errorf("ParseLatePolicy(%q): want an error", in)
		}
	}
}

// TestOperatorScenario walks one partition through on-time, out-of-order,
// late and invalid records and two checkpoints, in the style of a golden
// script: each step states the operator's visible state.
func TestOperatorScenario(t *testing.T) {
	op := newOp(t, OperatorOptions{Windows: []time.Duration{time.Minute}, OutOfOrder: 10 * time.Second})
	off := int64(0)
	process := func(v []byte, recTS int64) Outcome {
		out := op.proc(Record{Offset: off, TimestampMs: recTS, Value: v})
		off++
		return out
	}
	expect := func(step string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: got %v, want %v", step, got, want)
		}
	}

	expect("on time", process(click("/a", t0+5*sec), 0), Outcome{})
	expect("watermark", op.Watermark(), t0-5*sec)
	expect("no ts: record timestamp", process([]byte(`{"url":"/b"}`), t0+50*sec), Outcome{})
	expect("watermark", op.Watermark(), t0+40*sec)
	expect("next window", process(click("/a", t0+65*sec), 0), Outcome{})
	expect("out of order, on time", process(click("/a", t0+59*sec), 0), Outcome{})
	expect("invalid", process([]byte(`{"url":""}`), 0), Outcome{Reason: ReasonEmptyURL})
	expect("absurd record timestamp", process([]byte(`{"url":"/c"}`), 12), Outcome{Reason: ReasonTimestampOutOfRange})

	// Checkpoint 1: watermark t0+55s has not closed [t0, t0+60s).
	p := op.Ready(false, HoldNone)
	expect("checkpoint 1", fmt.Sprint(p.NextOffset, p.Watermark-t0, p.RestartOffset, len(p.Emit)), fmt.Sprint(6, 55*sec, 0, 0))
	op.Advance(p)

	expect("closes the first window", process(click("/b", t0+75*sec), 0), Outcome{})
	expect("late for [t0, t0+60s)", process(click("/a", t0+1*sec), 0), Outcome{Late: 1})

	p = op.Ready(false, HoldNone)
	expect("checkpoint 2 emits: its counts went to the store at checkpoint 1", emitted(p), []string{"0: map[] stored"})
	expect("checkpoint 2 restart offset: first pending record of the open window", p.RestartOffset, int64(2))
	var late []string
	for w, c := range p.Late {
		late = append(late, fmt.Sprint(w.Start-t0, c))
	}
	expect("late counts", late, []string{"0 map[/a:1]"})
	expect("open after checkpoint 2", openWindows(p), []string{"60000@2"})
	expect("store: counts of the open window since checkpoint 1", fmt.Sprint(p.Keep), fmt.Sprintf("map[%v:map[/b:1]]", base.Window{Size: minute, Start: t0 + minute}))
	op.Advance(p)

	// A flush emits the open window too and moves the restart offset.
	p = op.Ready(true, HoldNone)
	expect("flush emits", emitted(p), []string{"60000: map[] stored"})
	expect("flush restart offset", p.RestartOffset, p.NextOffset)
	expect("open after the flush", openWindows(p), []string(nil))
}

// emitted lists a Ready's emissions as "start-t0: pending counts [stored]".
func emitted(rd *Ready) []string {
	var out []string
	for _, e := range rd.Emit {
		s := fmt.Sprintf("%d: %v", e.Window.Start-t0, e.Counts)
		if e.Stored {
			s += " stored"
		}
		out = append(out, s)
	}
	return out
}

// openWindows lists a Ready's registry as "start-t0@first offset".
func openWindows(rd *Ready) []string {
	var out []string
	for w, e := range rd.Open {
		out = append(out, fmt.Sprintf("%d@%d", w.Start-t0, e.First))
	}
	slices.Sort(out)
	return out
}

func TestLateDropAndMultipleSizes(t *testing.T) {
	op := newOp(t, OperatorOptions{Windows: []time.Duration{time.Hour, time.Minute}, Late: LateDrop})
	op.proc(Record{Offset: 0, Value: click("/a", t0+2*minute)})
	// Late for the minute window only: bit 0 is the smallest size (1m).
	out := op.proc(Record{Offset: 1, Value: click("/a", t0+30*sec)})
	if out.Late != 1 {
		t.Fatalf("Late = %b, want 1 (the 1m window only)", out.Late)
	}
	if len(op.lateBuf) != 0 {
		t.Fatal("policy drop kept late counts")
	}
	if got := op.pending[base.Window{Size: 60 * minute, Start: t0}].Get("/a"); got != 2 {
		t.Fatalf("hour window pending = %d, want 2 (the late-for-1m record is on time for 1h)", got)
	}
}

func TestControlRecordsAndDuplicatesAdvanceOnly(t *testing.T) {
	op := newOp(t, OperatorOptions{Windows: []time.Duration{time.Minute}})
	op.proc(Record{Offset: 0, Value: click("/a", t0)})
	if out := op.proc(Record{Offset: 0, Value: click("/a", t0)}); !out.Replayed {
		t.Fatal("a record below the next offset must be ignored")
	}
	op.proc(Record{Offset: 5, Control: true})
	if op.NextOffset() != 6 {
		t.Fatalf("next offset %d after a marker at 5, want 6", op.NextOffset())
	}
	if got := op.PendingKeys(); got != 1 {
		t.Fatalf("pending keys %d, want 1", got)
	}
}

func BenchmarkOperatorProcess(b *testing.B) {
	op, _ := NewOperator(OperatorOptions{Windows: []time.Duration{time.Minute}, OutOfOrder: 5 * time.Second})
	op.StartReplay(0, 0, NoWatermark)
	vals := make([][]byte, 1000)
	for i := range vals {
		vals[i] = click(fmt.Sprintf("https://example.com/page/%d", i), t0+int64(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		op.proc(Record{Offset: int64(i), Value: vals[i%len(vals)]})
	}
}

// The watermark must not move during a replay, even when out-of-orderness
// differs from the run that wrote the checkpoint (a config change between
// runs): records of windows the recorded watermark left open are pending.
func TestReplayKeepsRecordedWatermark(t *testing.T) {
	recs := []Record{
		{Offset: 0, Value: click("/a", t0+5*sec)},
		{Offset: 1, Value: click("/a", t0+65*sec)},
		{Offset: 2, Value: click("/a", t0+55*sec)},
	}
	live, _ := NewOperator(OperatorOptions{Windows: []time.Duration{time.Minute}, OutOfOrder: 10 * time.Second})
	live.StartReplay(0, 0, NoWatermark)
	for _, r := range recs {
		live.proc(r)
	}
	p := live.Ready(false, HoldNone)
	replay, _ := NewOperator(OperatorOptions{Windows: []time.Duration{time.Minute}, OutOfOrder: 2 * time.Second})
	replay.StartReplay(p.RestartOffset, p.NextOffset, p.Watermark)
	for _, r := range recs {
		replay.proc(r)
	}
	if replay.Watermark() != p.Watermark {
		t.Fatalf("watermark after replay %d, want the recorded %d", replay.Watermark(), p.Watermark)
	}
	if got := replay.pending[base.Window{Size: minute, Start: t0}].Get("/a"); got != 2 {
		t.Fatalf("rebuilt window holds %d clicks, want 2", got)
	}
}

// TestWatermarkCap: a capped watermark follows the partition's own one up
// to the cap, rises when the cap does, never moves back, and decides
// lateness; a replay ignores the cap.
func TestWatermarkCap(t *testing.T) {
	op, _ := NewOperator(OperatorOptions{Windows: []time.Duration{time.Minute}})
	op.StartReplay(0, 0, NoWatermark)
	op.SetWatermarkCap(NoWatermark) // held until the runner aligns it
	op.proc(Record{Offset: 0, Value: click("/a", t0+10*sec)})
	if op.Watermark() != NoWatermark || op.OwnWatermark() != t0+10*sec {
		t.Fatalf("held: watermark %d own %d, want none and %d", op.Watermark(), op.OwnWatermark(), t0+10*sec)
	}
	if !op.SetWatermarkCap(t0+5*sec) || op.Watermark() != t0+5*sec {
		t.Fatalf("cap below own: watermark %d, want the cap %d", op.Watermark(), t0+5*sec)
	}
	op.proc(Record{Offset: 1, Value: click("/a", t0+90*sec)})
	if op.Watermark() != t0+5*sec {
		t.Fatalf("own passed the cap: watermark %d, want the cap %d", op.Watermark(), t0+5*sec)
	}
	// base.Window [t0, t0+1m) is not closed by the capped watermark: on time.
	if out := op.proc(Record{Offset: 2, Value: click("/b", t0+20*sec)}); out.Late != 0 {
		t.Fatal("a record the cap keeps on time counted as late")
	}
	if op.SetWatermarkCap(t0) || op.Watermark() != t0+5*sec {
		t.Fatalf("lower cap moved the watermark back to %d", op.Watermark())
	}
	if !op.SetWatermarkCap(NoCap) || op.Watermark() != t0+90*sec {
		t.Fatalf("uncapped: watermark %d, want own %d", op.Watermark(), t0+90*sec)
	}
	if out := op.proc(Record{Offset: 3, Value: click("/b", t0+30*sec)}); out.Late == 0 {
		t.Fatal("record of a closed window not late")
	}
	op.SetWatermarkCap(t0 + 120*sec)
	if op.AdvanceWatermark(t0 + 200*sec); op.OwnWatermark() != t0+200*sec || op.Watermark() != t0+120*sec {
		t.Fatalf("capped idle advance: own %d watermark %d, want %d and the cap %d", op.OwnWatermark(), op.Watermark(), t0+200*sec, t0+120*sec)
	}
	op.SetWatermarkCap(NoCap)
	op.SkipTo(100) // records 4..99 deleted by retention
	op.SkipTo(50)  // never back
	if op.NextOffset() != 100 || op.Watermark() != t0+200*sec {
		t.Fatalf("skip: next %d watermark %d, want 100 and %d", op.NextOffset(), op.Watermark(), t0+200*sec)
	}
	p := op.Ready(false, HoldNone)
	replay, _ := NewOperator(OperatorOptions{Windows: []time.Duration{time.Minute}})
	replay.StartReplay(p.RestartOffset, p.NextOffset, p.Watermark)
	replay.SetWatermarkCap(NoWatermark)
	if replay.Watermark() != p.Watermark || replay.OwnWatermark() != p.Watermark {
		t.Fatalf("replay: watermark %d own %d, want the recorded %d", replay.Watermark(), replay.OwnWatermark(), p.Watermark)
	}
}

// TestSkipToReleasesHeldWindows: once retention deleted records a held
// window's memory-only counts go back to, the window is not held any more,
// so the next checkpoint writes it to the store.
func TestSkipToReleasesHeldWindows(t *testing.T) {
	op, _ := NewOperator(OperatorOptions{Windows: []time.Duration{time.Minute}, HoldWindows: time.Minute})
	op.StartReplay(0, 0, NoWatermark)
	for i := range 10 {
		op.proc(Record{Offset: int64(i), Value: click("/a", t0+int64(i)*sec)})
	}
	w := base.Window{Size: minute, Start: t0}
	if rd := op.Ready(false, HoldAll); rd.Open[w].MemFrom != 0 || rd.Keep[w] != nil {
		t.Fatalf("first checkpoint: registry %v, kept %v; want %v held from 0", rd.Open, rd.Keep, w)
	}
	op.proc(Record{Offset: 10, Value: click("/a", t0+20*sec)})
	op.SkipTo(100) // records 11..99 deleted by retention
	n := 0
	op.Holdable(false, func(int64, int) { n++ })
	if rd := op.Ready(false, HoldAll); n != 0 || rd.Open[w].MemFrom != -1 || rd.Keep[w] == nil {
		t.Fatalf("after SkipTo: %d holdable, registry %v; want none held", n, rd.Open)
	}
}

// TestAbortLosesNothing: a checkpoint that takes the counts, lets
// processing go on, then fails and gives them back, leaves the operator as
// if it had never been taken; emissions stay exact.
func TestAbortLosesNothing(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 11))
		recs := randomRecords(rng, 2000)
		opts := OperatorOptions{Windows: []time.Duration{time.Minute, 7 * time.Minute}, OutOfOrder: 3 * time.Second}
		if seed%2 == 1 {
			opts.HoldWindows = time.Minute
		}
		op, _ := NewOperator(opts)
		op.StartReplay(0, 0, NoWatermark)
		h := newHarness(op)
		h.rng = rng
		h.hold = seed%2 == 1
		for i := 0; i < len(recs); {
			// Process a stretch, then either checkpoint or fail one.
			for end := min(len(recs), i+1+rng.IntN(150)); i < end; i++ {
				h.op.proc(recs[i])
			}
			if rng.IntN(3) == 0 {
				flush := rng.IntN(4) == 0
				rd := h.op.Ready(flush, holdArg(h.op, flush, h.hold, rng))
				for end := min(len(recs), i+rng.IntN(80)); i < end; i++ {
					h.op.proc(recs[i]) // processing while the job runs
				}
				h.op.Abort(rd) // the job failed
				continue
			}
			h.checkpoint(rng.IntN(6) == 0)
		}
		h.checkpoint(true)
		if diff := diffCounts(h.emitted, expectedCounts(recs, opts)); diff != "" {
			t.Fatalf("seed %d: %s", seed, diff)
		}
	}
}

func TestSkewAgainstRecordTimestamp(t *testing.T) {
	op := newOp(t, OperatorOptions{Windows: []time.Duration{time.Minute}, MaxFutureSkew: time.Hour, MaxPastSkew: 24 * time.Hour})
	rec := t0 + 10*minute // the Kafka record timestamp
	cases := []struct {
		ts   int64
		want Reason
	}{
		{rec, ReasonNone},
		{rec + 60*minute, ReasonNone}, // exactly the allowed skew
		{rec + 60*minute + 1, ReasonTimestampAhead},
		{rec + 5*365*24*60*minute, ReasonTimestampAhead}, // a clock years ahead
		{rec - 24*60*minute, ReasonNone},
		{rec - 24*60*minute - 1, ReasonTimestampBehind},
	}
	for i, c := range cases {
		out := op.proc(Record{Offset: int64(i), TimestampMs: rec, Value: click("/a", c.ts)})
		if out.Reason != c.want {
			t.Errorf("ts %+d ms from the record: reason %v, want %v", c.ts-rec, out.Reason, c.want)
		}
	}
	// The far-future record did not move the watermark.
	if wm := op.Watermark(); wm != rec+60*minute {
		t.Fatalf("watermark %d, want %d (from the last accepted event)", wm-t0, rec+60*minute-t0)
	}
	// Without a ts the record timestamp is the event time: never skewed.
	if out := op.proc(Record{Offset: 10, TimestampMs: rec, Value: []byte(`{"url":"/b"}`)}); out.Reason != ReasonNone {
		t.Fatalf("no ts: %v", out.Reason)
	}
}

// TestCountsAgainstMap checks Counts against a plain map through growth,
// repeated keys, empty and long keys, and the bytes/string entry points.
func TestCountsAgainstMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	c, want := NewCounts(), map[string]int64{}
	for i := range 200_000 {
		var url string
		switch r := rng.IntN(100); {
		case r < 60:
			url = fmt.Sprintf("https://example.com/p/%d", rng.IntN(5000))
		case r < 99:
			url = fmt.Sprintf("u%d", i)
		default:
			url = strings.Repeat("x", rng.IntN(3000))
		}
		n := int64(rng.IntN(5) - 1)
		if i%2 == 0 {
			c.Add([]byte(url), n)
		} else {
			c.AddString(url, n)
		}
		want[url] += n
	}
	if c.Len() != len(want) {
		t.Fatalf("Len %d, want %d", c.Len(), len(want))
	}
	got := maps.Collect(c.All())
	if !maps.Equal(got, want) {
		t.Fatalf("All differs from the map (%d vs %d entries)", len(got), len(want))
	}
	for url, n := range want {
		if c.Get(url) != n {
			t.Fatalf("Get(%q) = %d, want %d", url, c.Get(url), n)
		}
	}
	var prev string
	n := 0
	for url, v := range c.Sorted() {
		if n > 0 && url <= prev {
			t.Fatalf("Sorted: %q after %q", url, prev)
		}
		if v != want[url] {
			t.Fatalf("Sorted: %q = %d, want %d", url, v, want[url])
		}
		prev, n = url, n+1
	}
	if n != len(want) {
		t.Fatalf("Sorted yielded %d URLs, want %d", n, len(want))
	}
	if c.Get("absent") != 0 || (*Counts)(nil).Get("x") != 0 || (*Counts)(nil).Len() != 0 {
		t.Fatal("absent keys must count 0")
	}
}

// TestResumeHeldWindows: a local resume replays from the lowest offset a
// held window kept in memory only, ignores held offsets at or past the
// checkpoint, and EndReplay gives up a replay whose records are gone.
func TestResumeHeldWindows(t *testing.T) {
	opts := OperatorOptions{Windows: []time.Duration{time.Minute}, HoldWindows: time.Minute}
	w1, w2 := base.Window{Size: minute, Start: t0}, base.Window{Size: minute, Start: t0 + minute}
	op := newOp(t, opts)
	op.Resume(100, t0, map[base.Window]base.OpenWindow{w1: {First: 40, MemFrom: 60}, w2: {First: 70, MemFrom: 100}})
	if !op.Replaying() || op.NextOffset() != 60 || op.ReplayUntil() != 100 {
		t.Fatalf("replaying %v from %d until %d, want from 60 until 100", op.Replaying(), op.NextOffset(), op.ReplayUntil())
	}
	if !stored(op.memFrom, w2, op.open[w2]) {
		t.Fatal("a held offset at the checkpoint must leave the window stored")
	}
	op.EndReplay()
	if op.Replaying() || op.NextOffset() != 100 {
		t.Fatalf("after EndReplay: replaying %v, next %d; want live at 100", op.Replaying(), op.NextOffset())
	}
	op.Resume(100, t0, map[base.Window]base.OpenWindow{w2: {First: 70, MemFrom: 100}})
	if op.Replaying() || op.NextOffset() != 100 {
		t.Fatalf("nothing held below the checkpoint: replaying %v, next %d; want live at 100", op.Replaying(), op.NextOffset())
	}
}

// TestCountsSortedSharedPrefix: Sorted orders URLs that share a long prefix,
// are prefixes of each other or differ only past eight bytes after it.
func TestCountsSortedSharedPrefix(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	c := NewCounts()
	var want []string
	add := func(u string) {
		if c.Get(u) == 0 {
			want = append(want, u)
		}
		c.AddString(u, 1)
	}
	const p = "https://example.com/p/"
	for _, u := range []string{p, p + "1", p + "1\x00", p + "10", p + "12345678", p + "123456789", p + "12345678\xff", p + "\xff"} {
		add(u)
	}
	for range 20_000 {
		add(p + strconv.Itoa(rng.IntN(1_000_000)) + strings.Repeat("z", rng.IntN(12)))
	}
	slices.Sort(want)
	got := slices.Collect(func(yield func(string) bool) {
		for u := range c.Sorted() {
			if !yield(u) {
				return
			}
		}
	})
	if !slices.Equal(got, want) {
		t.Fatalf("Sorted differs from sort.Strings (%d vs %d URLs)", len(got), len(want))
	}
}

// BenchmarkCountsSorted: the order a checkpoint writes a day window's
// pending counts in (300 K URLs sharing a prefix).
func BenchmarkCountsSorted(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	c := NewCounts()
	for range 300_000 {
		c.AddString("https://example.com/p/"+strconv.Itoa(rng.IntN(10_000_000)), 1)
	}
	b.ResetTimer()
	for range b.N {
		n := 0
		for range c.Sorted() {
			n++
		}
	}
}

// proc is Process for tests whose operators have no store to fail.
func (o *Operator) proc(r Record) Outcome {
	out, err := o.Process(r)
	if err != nil {
		panic(err)
	}
	return out
}
