// Package audit recounts what the aggregator should have written, from the
// records Kafka still holds, and compares it with PostgreSQL: `clickagg
// audit`.
//
// The recount is the pipeline's own: every partition's records, from where
// the log starts to the next_offset of its checkpoints row, go through a
// stream.Operator built from the run's settings (decoding, input mapping,
// URL rules, dedup, windows, watermarks, lateness), so it applies exactly
// the rules `clickagg run` applies. Only the positions come from
// PostgreSQL; the counts it expects are computed from Kafka alone. It joins
// no consumer group (it reads partitions directly) and writes nothing.
//
// Where it cannot be exact (README, "Batch, backfill and audit"):
//
//   - Retention. A window can hold a record of any age (a late record
//     counts in its window under policy count), so an unbounded range needs
//     every partition from offset 0. A range from F needs the records that
//     can fall into a window starting at or after F: with max_future_skew
//     S (an event time is at most S ahead of its Kafka record timestamp)
//     and a dedup window D, records with a Kafka timestamp from F - S - 2D
//     on. A partition whose log starts later than that is not fully
//     retained: the audit says which and compares nothing (exit 2). Deciding
//     this from timestamps assumes Kafka record timestamps do not go back
//     along a partition (LogAppendTime, or producers stamping at send).
//   - Open windows. A checkpoints row covers a window completely only once
//     its watermark passed the window's end, or when nothing is open
//     (restart_offset = next_offset, as after a final checkpoint). Windows
//     not yet covered on every partition are skipped and counted as open.
//   - Watermarks. The recount's watermarks come from the records alone.
//     The pipeline's also moved by idle advances (idle_timeout, wall clock)
//     and were held back by alignment (align_watermarks), both recorded
//     only as the watermark of the latest row. So which records were late
//     can differ: under policy count that changes late_clicks only (clicks
//     are compared exactly; late_clicks differences are reported, not
//     failed); under drop and dead-letter it changes clicks, and a window
//     whose clicks lie between the recount's on-time count and its on-time
//     plus late count is reported as late-sensitive, not as differing.
package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/clickagg/clickagg/base"
	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Options configure an audit.
type Options struct {
	// Client are the Kafka connection options (stream.KafkaOptions).
	Client []kgo.Opt
	Topic  string
	Group  string // the consumer group: the key of the checkpoints rows
	Schema string // PostgreSQL schema; "" is sink.DefaultSchema
	// Operator are the run's settings: the recount applies them.
	Operator stream.OperatorOptions
	// From and To bound the windows compared by start: [From, To); a zero
	// time is unbounded. url_totals is compared only when both are zero.
	From, To time.Time
	// ExcludeBefore leaves out windows of a size that start before the
	// given time, on both sides (url_clicks retention drops them); the
	// retention check needs records only from there on.
	ExcludeBefore map[time.Duration]time.Time
	// MaxDiffs is how many differing rows the report lists; zero means 20.
	MaxDiffs int
	// Progress, when set, is called now and then while records are read.
	Progress func(Progress)
}

// Progress is how far the recount is.
type Progress struct {
	Read, Total int64 // records read, and to read
	Partitions  int   // partitions read to their checkpoint
	Of          int
}

// Report is the audit's result.
type Report struct {
	Topic   string     `json:"topic"`
	Group   string     `json:"group"`
	From    *time.Time `json:"from,omitempty"`
	To      *time.Time `json:"to,omitempty"`
	Windows []string   `json:"window_sizes"`
	Policy  string     `json:"late_policy"`

	// NotRetained lists the partitions whose log starts past what the
	// recount needs; when not empty nothing was compared.
	NotRetained []Retention     `json:"not_retained,omitempty"`
	Partitions  []PartitionRead `json:"partitions"`
	RecordsRead int64           `json:"records_read"`

	Compared      int64 `json:"windows_compared"` // (url, window) rows
	Equal         int64 `json:"equal"`
	Differing     int64 `json:"differing"`
	Missing       int64 `json:"missing"`        // expected, no row
	Extra         int64 `json:"extra"`          // a row, nothing expected
	LateSensitive int64 `json:"late_sensitive"` // drop/dead-letter: clicks within the lateness tolerance
	// LateDiffers counts compared rows whose clicks are equal but whose
	// late_clicks differ: expected where idle advances or alignment moved
	// the pipeline's watermarks (informational).
	LateDiffers int64 `json:"late_clicks_differ"`
	// Open counts (url, window) rows skipped because the window is still
	// open on some partition (expected or present).
	Open int64 `json:"open_skipped"`
	// Excluded counts rows left out by ExcludeBefore or by the schema's
	// retention (Expired).
	Excluded int64 `json:"excluded"`
	// Expired is, per window size, where url_clicks retention has dropped
	// the windows before (window_sizes.expired_before): those are left out
	// on both sides; url_totals, never expired, is still compared.
	Expired map[string]time.Time `json:"expired_before,omitempty"`

	Totals Totals `json:"totals"`
	Diffs  []Diff `json:"diffs"`
}

// Matches reports whether the range was retained and everything compared
// matched (late-sensitive rows and late_clicks differences aside).
func (r *Report) Matches() bool {
	return len(r.NotRetained) == 0 && r.Differing == 0 && r.Missing == 0 && r.Extra == 0 &&
		r.Totals.Differing == 0 && r.Totals.Missing == 0 && r.Totals.Extra == 0
}

// Retention is a partition not fully retained.
type Retention struct {
	Partition int32 `json:"partition"`
	LogStart  int64 `json:"log_start_offset"`
	// NeedFrom says what the recount needs: "offset 0", or the records
	// with Kafka timestamps from a time.
	NeedFrom string `json:"needs"`
}

// PartitionRead is what the recount read of one partition.
type PartitionRead struct {
	Partition  int32 `json:"partition"`
	From       int64 `json:"from_offset"`
	Until      int64 `json:"until_offset"` // the row's next_offset; -1: no row
	Watermark  int64 `json:"watermark_ms"` // the row's
	OpenWindow bool  `json:"has_open_windows"`
}

// Totals is the url_totals comparison.
type Totals struct {
	Compared  bool   `json:"compared"`
	Reason    string `json:"reason,omitempty"` // why not
	URLs      int64  `json:"urls"`
	Equal     int64  `json:"equal"`
	Differing int64  `json:"differing"`
	Missing   int64  `json:"missing"`
	Extra     int64  `json:"extra"`
}

// Diff is one row that differs.
type Diff struct {
	Table       string     `json:"table"` // url_clicks or url_totals
	Kind        string     `json:"kind"`  // differing, missing, extra, late_sensitive
	URL         string     `json:"url"`
	WindowStart *time.Time `json:"window_start,omitempty"`
	WindowSize  string     `json:"window_size,omitempty"`
	Expected    int64      `json:"expected_clicks"`
	Found       int64      `json:"found_clicks"`
	// ExpectedLate is the recount's late count (records late by its own
	// watermarks); FoundLate is late_clicks.
	ExpectedLate int64 `json:"expected_late"`
	FoundLate    int64 `json:"found_late"`
}

func (d Diff) String() string {
	if d.Table == "url_totals" {
		return fmt.Sprintf("url_totals %s %q: expected %d, found %d", d.Kind, d.URL, d.Expected, d.Found)
	}
	return fmt.Sprintf("url_clicks %s %q %s window %s: expected %d (late %d), found %d (late %d)", d.Kind, d.URL,
		d.WindowSize, d.WindowStart.UTC().Format(time.RFC3339), d.Expected, d.ExpectedLate, d.Found, d.FoundLate)
}

// key is one url_clicks row.
type key struct {
	url   string
	start int64 // ms
	size  int64 // ms
}

// count is the recount of one row: records counted on time, and late.
type count struct{ onTime, late int64 }

// Run audits: reads the positions and the topic, recounts, compares.
func Run(ctx context.Context, pool *pgxpool.Pool, opts Options) (*Report, error) {
	if opts.MaxDiffs == 0 {
		opts.MaxDiffs = 20
	}
	if opts.Schema == "" {
		opts.Schema = sink.DefaultSchema
	}
	if _, err := stream.NewOperator(opts.Operator); err != nil {
		return nil, err
	}
	rep := &Report{Topic: opts.Topic, Group: opts.Group, Policy: opts.Operator.Late.String(), Diffs: []Diff{}}
	if !opts.From.IsZero() {
		rep.From = &opts.From
	}
	if !opts.To.IsZero() {
		rep.To = &opts.To
	}
	for _, w := range opts.Operator.Windows {
		rep.Windows = append(rep.Windows, w.String())
	}
	cl, err := kgo.NewClient(opts.Client...)
	if err != nil {
		return nil, fmt.Errorf("create kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	parts, starts, err := bounds(ctx, adm, opts.Topic)
	if err != nil {
		return nil, err
	}
	w, err := sink.NewWriter(pool, sink.Options{Schema: opts.Schema, Group: opts.Group, Topic: opts.Topic})
	if err != nil {
		return nil, err
	}
	rows, err := w.ReadRows(ctx, parts)
	if err != nil {
		return nil, err
	}
	if rep.NotRetained, err = retention(ctx, adm, opts, parts, starts, rows); err != nil {
		return nil, err
	}
	for _, p := range parts {
		pr := PartitionRead{Partition: p, From: starts[p], Until: -1, Watermark: base.NoWatermark}
		if row, ok := rows[p]; ok {
			pr.Until, pr.Watermark, pr.OpenWindow = row.NextOffset, row.Watermark, row.RestartOffset < row.NextOffset
		}
		rep.Partitions = append(rep.Partitions, pr)
	}
	if len(rep.NotRetained) > 0 {
		rep.Totals.Reason = "the range is not fully retained"
		return rep, nil
	}
	exp, err := recount(ctx, opts, rep)
	if err != nil {
		return nil, err
	}
	if err := compare(ctx, pool, opts, rep, exp); err != nil {
		return nil, err
	}
	return rep, nil
}

// bounds lists the topic's partitions and where their logs start.
func bounds(ctx context.Context, adm *kadm.Client, topic string) ([]int32, map[int32]int64, error) {
	listed, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	starts := make(map[int32]int64)
	for p, o := range listed[topic] {
		starts[p] = o.Offset
	}
	if len(starts) == 0 {
		return nil, nil, fmt.Errorf("topic %s: no partitions (does it exist?)", topic)
	}
	return slices.Sorted(maps.Keys(starts)), starts, nil
}

// needFrom returns the earliest Kafka record timestamp (ms) a record can
// have and still count in a compared window, or ok false when any can
// (the range is unbounded, or max_future_skew is off).
func needFrom(opts Options) (ms int64, ok bool) {
	from := opts.From
	if len(opts.ExcludeBefore) > 0 {
		// NB: the earliest start compared over the sizes.
		var earliest time.Time
		for i, w := range opts.Operator.Windows {
			f := from
			if ex, ok := opts.ExcludeBefore[w]; ok && ex.After(f) {
				f = ex
			}
			if i == 0 || f.Before(earliest) {
				earliest = f
			}
		}
		from = earliest
	}
	if from.IsZero() {
		return 0, false
	}
	ms = from.UnixMilli()
	if opts.Operator.Input.TSSource != "record" {
		if opts.Operator.MaxFutureSkew <= 0 {
			return 0, false
		}
		ms -= opts.Operator.MaxFutureSkew.Milliseconds()
	}
	return ms - 2*opts.Operator.DedupWindow.Milliseconds(), true
}

// retention returns the partitions whose log starts past what the
// recount needs.
func retention(ctx context.Context, adm *kadm.Client, opts Options, parts []int32, starts map[int32]int64, rows map[int32]sink.Row) ([]Retention, error) {
	need, bounded := needFrom(opts)
	var after kadm.ListedOffsets
	var out []Retention
	for _, p := range parts {
		row, ok := rows[p]
		if !ok || row.NextOffset == 0 || starts[p] == 0 {
			continue // nothing counted, or nothing deleted
		}
		if bounded {
			if after == nil {
				var err error
				if after, err = adm.ListOffsetsAfterMilli(ctx, need, opts.Topic); err == nil {
					err = after.Error()
				}
				if err != nil {
					return nil, fmt.Errorf("list offsets by time of %s: %w", opts.Topic, err)
				}
			}
			// NB: the first retained record is older than needed: so were
			// the deleted ones (timestamps do not go back).
			if o, ok := after.Lookup(opts.Topic, p); ok && o.Offset > starts[p] {
				continue
			}
			out = append(out, Retention{Partition: p, LogStart: starts[p],
				NeedFrom: "records with Kafka timestamps from " + time.UnixMilli(need).UTC().Format(time.RFC3339)})
			continue
		}
		out = append(out, Retention{Partition: p, LogStart: starts[p], NeedFrom: "offset 0"})
	}
	return out, nil
}

// recount reads every partition from its log start to its row's
// next_offset through the pipeline's operator and returns the counts of
// the rows compared, plus (unbounded range) the smallest windows of every
// URL for url_totals under key size 0.
func recount(ctx context.Context, opts Options, rep *Report) (map[key]count, error) {
	offsets := make(map[int32]kgo.Offset)
	until := make(map[int32]int64)
	ops := make(map[int32]*stream.Operator)
	var total int64
	for _, pr := range rep.Partitions {
		if pr.Until <= pr.From {
			continue
		}
		op, err := stream.NewOperator(opts.Operator)
		if err != nil {
			return nil, err
		}
		op.Resume(pr.From, stream.NoWatermark, nil)
		offsets[pr.Partition] = kgo.NewOffset().At(pr.From)
		until[pr.Partition] = pr.Until
		ops[pr.Partition] = op
		total += pr.Until - pr.From
	}
	exp := make(map[key]count)
	if len(offsets) == 0 {
		return exp, nil
	}
	sizes := ops[slices.Min(slices.Collect(maps.Keys(ops)))].Sizes()
	unbounded := opts.From.IsZero() && opts.To.IsZero()
	keep := func(w base.Window) bool {
		if !opts.From.IsZero() && w.Start < opts.From.UnixMilli() || !opts.To.IsZero() && w.Start >= opts.To.UnixMilli() {
			return false
		}
		return true
	}
	add := func(w base.Window, c *stream.Counts, late bool) {
		if c == nil {
			return
		}
		in, totals := keep(w), unbounded && w.Size == sizes[0]
		if !in && !totals {
			return
		}
		bump := func(k key, n int64) {
			e := exp[k]
			if late {
				e.late += n
			} else {
				e.onTime += n
			}
			exp[k] = e
		}
		for url, n := range c.All() {
			if in {
				bump(key{url: url, start: w.Start, size: w.Size}, n)
			}
			if totals {
				bump(key{url: url}, n) // NB: size 0: the URL's total
			}
		}
	}
	take := func(op *stream.Operator, flush bool) {
		r := op.Ready(flush, stream.HoldNone)
		for _, e := range r.Emit {
			add(e.Window, e.Counts, false)
		}
		for w, c := range r.Keep {
			add(w, c, false)
		}
		for w, c := range r.Late {
			add(w, c, true)
		}
		op.Advance(r)
	}

	rd, err := kgo.NewClient(append(slices.Clone(opts.Client),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{opts.Topic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.ConsumeResetOffset(kgo.NoResetOffset()))...)
	if err != nil {
		return nil, fmt.Errorf("create kafka client: %w", err)
	}
	defer rd.Close()
	// NB: without dedup the operator's counts are taken every so often (as
	// checkpoints do) to bound its memory; with dedup never before the end:
	// the sightings taken would be forgotten (there is no state store).
	const takeEvery = 200_000
	dedup := opts.Operator.DedupWindow > 0
	since := make(map[int32]int64)
	left := maps.Clone(until)
	var read int64
	lastProgress := time.Now()
	report := func(force bool) {
		if opts.Progress != nil && (force || time.Since(lastProgress) >= 500*time.Millisecond) {
			lastProgress = time.Now()
			opts.Progress(Progress{Read: read, Total: total, Partitions: len(until) - len(left), Of: len(until)})
		}
	}
	report(true)
	for len(left) > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && ferr == nil {
				ferr = fmt.Errorf("read partition %d: %w", p, err)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := left[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			op := ops[r.Partition]
			if _, err := op.Process(stream.Record{Offset: r.Offset, Key: r.Key, TimestampMs: r.Timestamp.UnixMilli(),
				Value: r.Value, Control: r.Attrs.IsControl()}); err != nil && ferr == nil {
				ferr = err
			}
			read++
			if since[r.Partition]++; !dedup && since[r.Partition] >= takeEvery {
				since[r.Partition] = 0
				take(op, false)
			}
			if r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		report(false)
	}
	for _, op := range ops {
		take(op, true)
	}
	rep.RecordsRead = read
	report(true)
	return exp, nil
}

// expiredBefore reads where url_clicks retention has dropped each window
// size's windows before (ms), and notes it in rep.
func expiredBefore(ctx context.Context, pool *pgxpool.Pool, schema string, rep *Report) (map[int64]int64, error) {
	sizes, err := sink.ReadStorage(ctx, pool, schema)
	if err != nil {
		return nil, err
	}
	out := map[int64]int64{}
	for _, st := range sizes {
		if !st.ExpiredBefore.IsZero() {
			out[st.Size.Milliseconds()] = st.ExpiredBefore.UnixMilli()
			if rep.Expired == nil {
				rep.Expired = map[string]time.Time{}
			}
			rep.Expired[st.Size.String()] = st.ExpiredBefore
		}
	}
	return out, nil
}

// compare reads url_clicks (and url_totals) and compares them with exp.
func compare(ctx context.Context, pool *pgxpool.Pool, opts Options, rep *Report, exp map[key]count) error {
	r, err := sink.NewReader(pool, opts.Schema)
	if err != nil {
		return err
	}
	lateCounts := opts.Operator.Late == stream.LateCount
	// complete reports whether every partition's row covers window w.
	complete := func(w base.Window) bool {
		for _, pr := range rep.Partitions {
			if pr.Until > 0 && pr.OpenWindow && !w.ClosedBy(pr.Watermark) {
				return false
			}
		}
		return true
	}
	expired, err := expiredBefore(ctx, pool, opts.Schema, rep)
	if err != nil {
		return err
	}
	excluded := func(k key) bool {
		ex, ok := opts.ExcludeBefore[time.Duration(k.size)*time.Millisecond]
		return (ok && k.start < ex.UnixMilli()) || k.start < expired[k.size]
	}
	var diffs []Diff
	note := func(d Diff) {
		if len(diffs) < opts.MaxDiffs {
			diffs = append(diffs, d)
		}
	}
	check := func(k key, e count, found, foundLate int64, present bool) {
		w := base.Window{Start: k.start, Size: k.size}
		if excluded(k) {
			rep.Excluded++
			return
		}
		if !complete(w) {
			rep.Open++
			return
		}
		want := e.onTime
		if lateCounts {
			want += e.late
		}
		if !present && want == 0 {
			return // late records dropped: no row expected
		}
		rep.Compared++
		start := time.UnixMilli(k.start).UTC()
		d := Diff{Table: "url_clicks", URL: k.url, WindowStart: &start, WindowSize: (time.Duration(k.size) * time.Millisecond).String(),
			Expected: want, Found: found, ExpectedLate: e.late, FoundLate: foundLate}
		switch {
		case !present:
			rep.Missing++
			d.Kind = "missing"
			note(d)
		case found == want:
			rep.Equal++
			if lateCounts && foundLate != e.late {
				rep.LateDiffers++
			}
		case !lateCounts && found > want && found <= want+e.late:
			// NB: records the recount found late, on time in the pipeline
			// (alignment held its watermark back).
			rep.LateSensitive++
			d.Kind = "late_sensitive"
			note(d)
		case want == 0:
			rep.Extra++
			d.Kind = "extra"
			note(d)
		default:
			rep.Differing++
			d.Kind = "differing"
			note(d)
		}
	}
	seen := make(map[key]bool)
	for _, size := range opts.Operator.Windows {
		ms := size.Milliseconds()
		err := r.ScanWindows(ctx, size, opts.From, opts.To, func(url string, start, clicks, late int64) {
			k := key{url: url, start: start, size: ms}
			seen[k] = true
			check(k, exp[k], clicks, late, true)
		})
		if err != nil {
			return err
		}
	}
	for k, e := range exp {
		if k.size != 0 && !seen[k] {
			check(k, e, 0, 0, false)
		}
	}
	if err := compareTotals(ctx, r, opts, rep, exp, note); err != nil {
		return err
	}
	slices.SortFunc(diffs, func(a, b Diff) int {
		return cmp.Or(cmp.Compare(a.Table, b.Table), cmp.Compare(a.URL, b.URL), cmp.Compare(a.WindowSize, b.WindowSize))
	})
	rep.Diffs = diffs
	return nil
}

// compareTotals compares url_totals when the range is unbounded, nothing
// is excluded and no window is open anywhere: only then is each URL's
// total the sum of every record's smallest window.
func compareTotals(ctx context.Context, r *sink.Reader, opts Options, rep *Report, exp map[key]count, note func(Diff)) error {
	switch {
	case !opts.From.IsZero() || !opts.To.IsZero():
		rep.Totals.Reason = "the range is bounded (--from/--to)"
		return nil
	case len(opts.ExcludeBefore) > 0:
		rep.Totals.Reason = "old windows are excluded"
		return nil
	}
	for _, pr := range rep.Partitions {
		if pr.OpenWindow {
			rep.Totals.Reason = fmt.Sprintf("partition %d has windows still open (their clicks are not all in url_totals yet)", pr.Partition)
			return nil
		}
	}
	rep.Totals.Compared = true
	lateCounts := opts.Operator.Late == stream.LateCount
	found := make(map[string]bool)
	err := r.ScanTotals(ctx, func(url string, clicks int64) {
		found[url] = true
		e := exp[key{url: url}]
		want := e.onTime
		if lateCounts {
			want += e.late
		}
		rep.Totals.URLs++
		d := Diff{Table: "url_totals", URL: url, Expected: want, Found: clicks}
		switch {
		case want == clicks:
			rep.Totals.Equal++
		case !lateCounts && clicks > want && clicks <= want+e.late:
			rep.Totals.Equal++ // NB: late-sensitive, as for url_clicks
		case want == 0:
			rep.Totals.Extra++
			d.Kind = "extra"
			note(d)
		default:
			rep.Totals.Differing++
			d.Kind = "differing"
			note(d)
		}
	})
	if err != nil {
		return err
	}
	for k, e := range exp {
		want := e.onTime
		if lateCounts {
			want += e.late
		}
		if k.size == 0 && !found[k.url] && want > 0 {
			rep.Totals.URLs++
			rep.Totals.Missing++
			note(Diff{Table: "url_totals", Kind: "missing", URL: k.url, Expected: want})
		}
	}
	return nil
}
