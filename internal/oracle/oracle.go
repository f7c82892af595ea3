// Package oracle is clickagg's independent count oracle, a product feature:
// it computes the exact counts a correct aggregator must produce from the
// input records (as generated, or read back from the topic) and compares
// them with the PostgreSQL tables. `clickagg bench` verifies every run with
// it, and the integration and end-to-end tests use it the same way; it is
// product code, so it must not import "testing" (test-only helpers live in
// internal/testutil).
//
// The oracle deliberately shares no code with package stream: it decodes
// with encoding/json and applies the README's event-format and input
// mapping rules on its own (input.go; it takes stream.InputOptions only as
// the type of the settings), so a bug in the product's decoder or window
// code cannot hide itself.
package oracle

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/clickagg/clickagg/stream"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Key identifies one url_clicks row.
type Key struct {
	URL        string
	Start, End int64 // Unix ms
}

func (k Key) String() string {
	return fmt.Sprintf("%s [%s, %s)", k.URL, time.UnixMilli(k.Start).UTC().Format(time.RFC3339), time.UnixMilli(k.End).UTC().Format(time.RFC3339))
}

// Expected are the exact counts the tables must hold.
type Expected struct {
	Clicks     map[Key]int64
	Totals     map[string]int64
	Valid      int64
	Invalid    int64
	Duplicates int64
	Filtered   int64 // failed input.filter: neither valid nor invalid
	// Since, when not zero, limits the comparison of url_clicks to the
	// windows starting at or after it (Unix ms), both ways: rows before it
	// were loaded by other means (a benchmark's history), which the clicks
	// of those windows add to.
	Since int64
}

// Options are the aggregator's settings the counts depend on; late policy
// count and the default max_future_skew (1h) are assumed.
type Options struct {
	Windows     []time.Duration
	MaxURLBytes int           // 0: 2048
	DedupWindow time.Duration // 0: off
	Input       stream.InputOptions
	// NormalizeURLs counts each URL as url.normalize does: the #fragment
	// dropped, the scheme and host lowercased (normalize.go, written apart
	// from the pipeline's).
	NormalizeURLs bool
	// Lines: the records are lines of files (`clickagg backfill`;
	// ComputeFiles), read with Mapping.DecodeLine.
	Lines bool
}

// ReadTopic returns every committed record of topic, reading each partition
// to its end as it is when called.
func ReadTopic(ctx context.Context, brokers []string, topic string) ([]*kgo.Record, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	offsets := map[int32]kgo.Offset{}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if s, ok := starts.Lookup(topic, o.Partition); ok && o.Offset > s.Offset {
			offsets[o.Partition] = kgo.NewOffset().At(s.Offset)
			want[o.Partition] = o.Offset
		}
	})
	if len(offsets) == 0 {
		return nil, nil
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var out []*kgo.Record
	for len(want) > 0 {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read topic %s: %w (%d partitions unfinished)", topic, err, len(want))
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok {
				if r.Offset+1 >= end {
					delete(want, r.Partition)
				}
				if !r.Attrs.IsControl() && r.Offset < end {
					out = append(out, r)
				}
			}
		})
	}
	return out, nil
}

// Compute returns the counts a correct aggregator produces from records
// with the given window sizes and URL limit, under late policy "count"
// (every valid record is counted in its windows and in url_totals).
func Compute(records []*kgo.Record, windows []time.Duration, maxURLBytes int) Expected {
	return ComputeDedup(records, windows, maxURLBytes, 0)
}

// ComputeDedup is Compute with dedup.window set to dedupWindow (0: off).
// It applies the README's rule record by record, each partition in offset
// order: a record is a duplicate when an earlier record of its partition
// with the same id has an event time above the partition's highest earlier
// event time minus the window. Duplicates count as neither valid nor
// invalid.
func ComputeDedup(records []*kgo.Record, windows []time.Duration, maxURLBytes int, dedupWindow time.Duration) Expected {
	return compute(records, Options{Windows: windows, MaxURLBytes: maxURLBytes, DedupWindow: dedupWindow}, DefaultMapping)
}

// ComputeWith returns the counts a correct aggregator produces from
// records under o, input mapping included; records that fail input.filter
// count in Filtered only. The error is a mapping the oracle cannot parse.
func ComputeWith(records []*kgo.Record, o Options) (Expected, error) {
	m, err := NewMapping(o.Input)
	if err != nil {
		return NewExpected(), err
	}
	return compute(records, o, m), nil
}

func compute(records []*kgo.Record, o Options, m *Mapping) Expected {
	windows, dedupWindow := o.Windows, o.DedupWindow
	e := NewExpected()
	if dedupWindow > 0 {
		// NB: dedup decides in offset order; counting alone needs no order.
		records = slices.Clone(records)
		slices.SortStableFunc(records, func(a, b *kgo.Record) int {
			if a.Partition != b.Partition {
				return int(a.Partition - b.Partition)
			}
			return int(a.Offset - b.Offset)
		})
	}
	type part struct {
		clock int64            // the highest event time so far
		last  map[string]int64 // id -> latest event time
	}
	parts := map[int32]*part{}
	for _, r := range records {
		url, ts, id, res := m.Decode(r.Value, r.Timestamp.UnixMilli(), o.MaxURLBytes)
		if o.Lines {
			url, ts, id, res = m.DecodeLine(r.Value, o.MaxURLBytes)
		}
		switch res {
		case Invalid:
			e.Invalid++
			continue
		case Filtered:
			e.Filtered++
			continue
		}
		if o.NormalizeURLs {
			url = NormalizeURL(url)
		}
		if dedupWindow > 0 {
			p := parts[r.Partition]
			if p == nil {
				p = &part{clock: math.MinInt64, last: map[string]int64{}}
				parts[r.Partition] = p
			}
			prev, seen := p.last[id]
			// NB: seen means an earlier record set the clock.
			dup := id != "" && seen && prev > p.clock-dedupWindow.Milliseconds()
			if id != "" && (!seen || ts > prev) {
				p.last[id] = ts
			}
			p.clock = max(p.clock, ts)
			if dup {
				e.Duplicates++
				continue
			}
		}
		e.Add(url, ts, windows)
	}
	return e
}

// ComputeFiles returns the counts a correct backfill produces from files
// given as their lines (each a record; blank lines are none), under o with
// policy count: every file is a partition of its own (dedup within it),
// lines have no record timestamp (Mapping.DecodeLine).
func ComputeFiles(files [][][]byte, o Options) (Expected, error) {
	m, err := NewMapping(o.Input)
	if err != nil {
		return NewExpected(), err
	}
	var recs []*kgo.Record
	for i, lines := range files {
		for j, l := range lines {
			recs = append(recs, &kgo.Record{Partition: int32(i), Offset: int64(j), Value: l})
		}
	}
	o.Lines = true
	return compute(recs, o, m), nil
}

// NewExpected returns empty expected counts.
func NewExpected() Expected {
	return Expected{Clicks: map[Key]int64{}, Totals: map[string]int64{}}
}

// Add counts one valid click of url at event time ts (Unix ms) in each
// window size and in url's total.
func (e *Expected) Add(url string, ts int64, windows []time.Duration) {
	e.Valid++
	e.Totals[url]++
	for _, w := range windows {
		start := WindowStart(ts, w)
		e.Clicks[Key{URL: url, Start: start, End: start + w.Milliseconds()}]++
	}
}

// Expire removes the windows of size w starting before before (Unix ms),
// as retention drops them from url_clicks; url_totals keeps them.
func (e *Expected) Expire(w time.Duration, before int64) {
	for k := range e.Clicks {
		if k.End-k.Start == w.Milliseconds() && k.Start < before {
			delete(e.Clicks, k)
		}
	}
}

var (
	minTS = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	maxTS = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
)

// Querier is what Compare needs of a PostgreSQL connection or pool.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Compare checks every url_clicks and url_totals row against e, exactly,
// and returns a description of the first differences (nil when equal).
// LateClicks are not compared: which records are late depends on timing.
func Compare(ctx context.Context, q Querier, schema string, e Expected) error {
	s := pgx.Identifier{schema}.Sanitize()
	got := map[Key]int64{}
	rows, err := q.Query(ctx, `SELECT url, window_start, window_end, clicks FROM `+s+`.url_clicks WHERE window_start >= $1`,
		time.UnixMilli(max(e.Since, minTS)).UTC())
	if err != nil {
		return err
	}
	for rows.Next() {
		var k Key
		var a, b time.Time
		var n int64
		if err := rows.Scan(&k.URL, &a, &b, &n); err != nil {
			return err
		}
		k.Start, k.End = a.UnixMilli(), b.UnixMilli()
		got[k] = n
	}
	if err := rows.Err(); err != nil {
		return err
	}
	gotTotals := map[string]int64{}
	rows, err = q.Query(ctx, `SELECT url, clicks FROM `+s+`.url_totals`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var u string
		var n int64
		if err := rows.Scan(&u, &n); err != nil {
			return err
		}
		gotTotals[u] = n
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var diffs []string
	var sumGot, sumWant int64
	for k, want := range e.Clicks {
		if k.Start < e.Since {
			continue
		}
		sumWant += want
		if g := got[k]; g != want {
			diffs = append(diffs, fmt.Sprintf("url_clicks %s: got %d, want %d", k, g, want))
		}
	}
	for k, g := range got {
		sumGot += g
		if _, ok := e.Clicks[k]; !ok && g != 0 {
			diffs = append(diffs, fmt.Sprintf("url_clicks %s: got %d, want no row", k, g))
		}
	}
	for u, want := range e.Totals {
		if g := gotTotals[u]; g != want {
			diffs = append(diffs, fmt.Sprintf("url_totals %q: got %d, want %d", u, g, want))
		}
	}
	for u, g := range gotTotals {
		if _, ok := e.Totals[u]; !ok && g != 0 {
			diffs = append(diffs, fmt.Sprintf("url_totals %q: got %d, want no row", u, g))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	slices.Sort(diffs)
	n := len(diffs)
	if len(diffs) > 15 {
		diffs = diffs[:15]
	}
	return fmt.Errorf("%d rows differ (url_clicks sum got %d, want %d; %d valid records):\n  %s",
		n, sumGot, sumWant, e.Valid, strings.Join(diffs, "\n  "))
}

// DistinctIDs returns, for every URL and window and for every URL's total,
// the number of distinct event ids among the valid records: what dedup
// must count when every copy of a click shares its partition and comes
// within the dedup window. Records without an id each count once.
func DistinctIDs(records []*kgo.Record, windows []time.Duration, maxURLBytes int) Expected {
	e := NewExpected()
	type urlID struct{ url, id string }
	seen := map[urlID]bool{}
	for _, r := range records {
		url, ts, id, res := DefaultMapping.Decode(r.Value, r.Timestamp.UnixMilli(), maxURLBytes)
		if res != Valid {
			e.Invalid++
			continue
		}
		if id != "" {
			if seen[urlID{url, id}] {
				e.Duplicates++
				continue
			}
			seen[urlID{url, id}] = true
		}
		e.Add(url, ts, windows)
	}
	return e
}

// Decode applies the event format to one record as the oracle does; ok is
// false for a record clickagg must reject.
func Decode(r *kgo.Record, maxURLBytes int) (url string, ts int64, id string, ok bool) {
	url, ts, id, res := DefaultMapping.Decode(r.Value, r.Timestamp.UnixMilli(), maxURLBytes)
	return url, ts, id, res == Valid
}

// WindowStart returns the start of the window of size w holding ts (ms).
func WindowStart(ts int64, w time.Duration) int64 {
	size := w.Milliseconds()
	return ts - ((ts%size)+size)%size
}
