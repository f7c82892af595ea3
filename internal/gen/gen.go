// Package gen generates click events for load tests, demos and the
// end-to-end tests: a seeded, reproducible stream of JSON clicks over a
// Zipf or uniform URL population, with chosen fractions of out-of-order,
// late and invalid records, in clickagg's own format (shape clicks) or as
// an analytics tracker sends them (shape tracker, tracker.go). Product feature: `clickagg gen`, `clickagg
// demo` and `clickagg bench` use it; the tests use it for their input.
package gen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Options describe the stream.
type Options struct {
	Count     int64     // records to produce; 0: until the context ends
	Rate      float64   // records per second of wall time; 0: as fast as possible
	URLs      int       // distinct URLs; default 1000
	Zipf      float64   // Zipf exponent s (> 1); 0: uniform
	Seed      uint64    // same seed, same records
	StartTime time.Time // event time of the first record; zero: now
	// EventRate is how many records share one second of event time;
	// zero: Rate, or 1000 when Rate is 0.
	EventRate float64
	// Jitter bounds how far an out-of-order record goes back; default 2s
	// (less than the default out-of-orderness, so these are on time).
	Jitter time.Duration
	// LateBy is how far a late record goes back; default 10m.
	LateBy             time.Duration
	LateFraction       float64
	OutOfOrderFraction float64
	InvalidFraction    float64
	// DuplicateFraction of the records repeat an earlier valid record byte
	// for byte (same key, value, id and timestamp), as a retrying client
	// does: one of a 1000-record sample that keeps the first 1000 valid
	// records and then replaces a random one with each new valid record.
	DuplicateFraction float64
	// Unkeyed produces records without a key, so one URL's clicks spread
	// over all partitions; by default records are keyed by URL.
	Unkeyed bool
	// URLPrefix prefixes every URL; default https://example.com/page/.
	URLPrefix string
	// Shape is the records' JSON: "" or "clicks" for {"url","ts","id"},
	// "tracker" for Segment-style events of about 600 bytes (tracker.go),
	// TrackerNonClickFraction of them not clicks (Kind "filtered").
	Shape string
}

// Shapes are the values of Options.Shape.
var Shapes = []string{"clicks", "tracker"}

// InvalidKinds are the kinds of invalid records Generator makes, named
// after the rejection reason each should get.
var InvalidKinds = []string{
	"invalid_json", "missing_url", "empty_url", "url_too_long",
	"invalid_timestamp", "timestamp_out_of_range", "invalid_utf8",
}

// Stats count what was produced.
type Stats struct {
	Produced   int64
	Valid      int64
	Invalid    map[string]int64
	Late       int64
	OutOfOrder int64
	Duplicates int64 // repeats of earlier valid records (counted in Valid too)
	Filtered   int64 // not click events (shape tracker): input.filter drops them
	Failed     int64 // produce errors (not acknowledged by the broker)
	Elapsed    time.Duration
	FirstEvent time.Time
	LastEvent  time.Time
}

// Event is one generated record.
type Event struct {
	Key, Value []byte
	URL        string    // the URL the record is about (also for invalid ones)
	Time       time.Time // event time (also the Kafka record timestamp)
	Kind       string    // "valid", "late", "out_of_order", "duplicate", "filtered" (not a click), or an InvalidKinds entry
}

// Valid reports whether the record is a valid click (late and out-of-order
// ones included): the aggregator must count it under URL at Time.
func (e Event) Valid() bool {
	return e.Kind == "valid" || e.Kind == "late" || e.Kind == "out_of_order" || e.Kind == "duplicate"
}

// Shape returns the generator's shape: clicks or tracker.
func (g *Generator) Shape() string {
	if g.tracker {
		return "tracker"
	}
	return "clicks"
}

// Generator makes events deterministically from Options.Seed.
type Generator struct {
	o    Options
	rng  *rand.Rand
	zipf *rand.Zipf
	i    int64
	urls []string
	t0   time.Time
	// recent is a sample of the valid events so far, for duplicates.
	recent  []Event
	tracker bool
}

// New returns a generator.
func New(o Options) (*Generator, error) {
	if o.URLs == 0 {
		o.URLs = 1000
	}
	switch o.Shape {
	case "", "clicks", "tracker":
	default:
		return nil, fmt.Errorf("shape %q: must be clicks or tracker", o.Shape)
	}
	if o.URLs < 0 {
		return nil, fmt.Errorf("urls %d: must be positive", o.URLs)
	}
	if o.Zipf != 0 && o.Zipf <= 1 {
		return nil, fmt.Errorf("zipf %g: must be greater than 1 (or 0 for uniform)", o.Zipf)
	}
	for name, f := range map[string]float64{"late": o.LateFraction, "out-of-order": o.OutOfOrderFraction, "invalid": o.InvalidFraction, "duplicate": o.DuplicateFraction} {
		if f < 0 || f > 1 {
			return nil, fmt.Errorf("%s fraction %g: must be between 0 and 1", name, f)
		}
	}
	if o.LateFraction+o.OutOfOrderFraction+o.InvalidFraction+o.DuplicateFraction > 1 {
		return nil, errors.New("late + out-of-order + invalid + duplicate fractions: must not exceed 1")
	}
	if o.Rate < 0 || o.EventRate < 0 || o.Count < 0 {
		return nil, errors.New("count, rate and event rate: must not be negative")
	}
	if o.EventRate == 0 {
		o.EventRate = o.Rate
		if o.EventRate == 0 {
			o.EventRate = 1000
		}
	}
	if o.Jitter == 0 {
		o.Jitter = 2 * time.Second
	}
	if o.LateBy == 0 {
		o.LateBy = 10 * time.Minute
	}
	if o.URLPrefix == "" {
		o.URLPrefix = "https://example.com/page/"
	}
	if o.StartTime.IsZero() {
		o.StartTime = time.Now()
	}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	g := &Generator{o: o, rng: rng, urls: make([]string, o.URLs), t0: o.StartTime.Truncate(time.Millisecond), tracker: o.Shape == "tracker"}
	for i := range g.urls {
		g.urls[i] = o.URLPrefix + strconv.Itoa(i)
	}
	if o.Zipf > 1 {
		g.zipf = rand.NewZipf(rng, o.Zipf, 1, uint64(o.URLs-1))
	}
	return g, nil
}

func (g *Generator) url() string {
	if g.zipf != nil {
		return g.urls[g.zipf.Uint64()]
	}
	return g.urls[g.rng.IntN(len(g.urls))]
}

// Next returns the next event.
func (g *Generator) Next() Event {
	i := g.i
	g.i++
	now := g.t0.Add(time.Duration(float64(i) / g.o.EventRate * float64(time.Second))).Truncate(time.Millisecond)
	u := g.url()
	ev := Event{Time: now, Kind: "valid", URL: u}
	x := g.rng.Float64()
	if d := g.o.DuplicateFraction; d > 0 {
		if y := g.rng.Float64(); y < d && len(g.recent) > 0 {
			dup := g.recent[g.rng.IntN(len(g.recent))]
			dup.Kind = "duplicate"
			return dup
		}
	}
	switch {
	case g.tracker && g.rng.Float64() < TrackerNonClickFraction:
		// NB: a draw of its own, so the clicks shape's stream is unchanged.
		ev.Kind = "filtered"
		ev.Value = g.trackerNonClick(u, now, i)
	case x < g.o.InvalidFraction:
		ev.Kind = InvalidKinds[g.rng.IntN(len(InvalidKinds))]
		if g.tracker {
			ev.Value = g.trackerInvalid(ev.Kind, u, now, i)
		} else {
			ev.Value = invalidValue(ev.Kind, u, now)
		}
	case x < g.o.InvalidFraction+g.o.LateFraction:
		ev.Kind = "late"
		ev.Time = now.Add(-g.o.LateBy - time.Duration(g.rng.Int64N(int64(time.Minute))))
	case x < g.o.InvalidFraction+g.o.LateFraction+g.o.OutOfOrderFraction:
		ev.Kind = "out_of_order"
		ev.Time = now.Add(-time.Duration(g.rng.Int64N(int64(g.o.Jitter)))).Truncate(time.Millisecond)
	}
	switch {
	case ev.Value != nil:
	case g.tracker:
		ev.Value = g.trackerValid(u, ev.Time, i)
	default:
		ev.Value = g.validValue(u, ev.Time, i)
	}
	if !g.o.Unkeyed {
		ev.Key = []byte(u)
	}
	if g.o.DuplicateFraction > 0 && ev.Valid() {
		if len(g.recent) < 1000 {
			g.recent = append(g.recent, ev)
		} else {
			g.recent[g.rng.IntN(len(g.recent))] = ev
		}
	}
	return ev
}

// validValue varies the encoding: mostly epoch milliseconds, some RFC 3339,
// some without ts (the record timestamp applies), some with an id.
func (g *Generator) validValue(u string, t time.Time, i int64) []byte {
	var b strings.Builder
	b.WriteString(`{"url":`)
	b.WriteString(strconv.Quote(u))
	switch r := g.rng.IntN(10); {
	case r < 6:
		b.WriteString(`,"ts":`)
		b.WriteString(strconv.FormatInt(t.UnixMilli(), 10))
	case r < 8:
		b.WriteString(`,"ts":"`)
		b.WriteString(t.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
		b.WriteString(`"`)
	case r < 9:
		// no ts: the Kafka record timestamp is the event time
	default:
		b.WriteString(`,"ts":`)
		b.WriteString(strconv.FormatInt(t.UnixMilli(), 10))
		b.WriteString(`,"ua":{"mobile":true,"tags":["a",1,null]}`)
	}
	b.WriteString(`,"id":"e`)
	b.WriteString(strconv.FormatInt(i, 10))
	b.WriteString(`"}`)
	return []byte(b.String())
}

func invalidValue(kind, u string, t time.Time) []byte {
	ms := strconv.FormatInt(t.UnixMilli(), 10)
	switch kind {
	case "invalid_json":
		return []byte(`{"url":` + strconv.Quote(u) + `,"ts":` + ms)
	case "missing_url":
		return []byte(`{"ts":` + ms + `}`)
	case "empty_url":
		return []byte(`{"url":"","ts":` + ms + `}`)
	case "url_too_long":
		return []byte(`{"url":"` + u + "/" + strings.Repeat("x", 5000) + `","ts":` + ms + `}`)
	case "invalid_timestamp":
		return []byte(`{"url":` + strconv.Quote(u) + `,"ts":"yesterday"}`)
	case "timestamp_out_of_range":
		return []byte(`{"url":` + strconv.Quote(u) + `,"ts":12345}`)
	case "invalid_utf8":
		return []byte(`{"url":"` + u + "\xff\xfe" + `","ts":` + ms + `}`)
	}
	panic("gen: unknown invalid kind " + kind)
}

// EnsureTopic creates topic with the given partition count when it does
// not exist (replication factor 1 when the cluster has one broker, else
// the broker default).
func EnsureTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int32) error {
	if partitions < 1 {
		return fmt.Errorf("partitions %d: must be at least 1", partitions)
	}
	resp, err := adm.CreateTopic(ctx, partitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

// Produce generates events and produces them to topic through cl until
// Count events are acknowledged or ctx ends. onEvent, when not nil, sees
// every event that the broker acknowledged (from producer goroutines,
// serialized by Produce).
func Produce(ctx context.Context, cl *kgo.Client, topic string, g *Generator, onEvent func(Event, *kgo.Record)) (Stats, error) {
	st := Stats{Invalid: make(map[string]int64)}
	start := time.Now()
	var (
		mu       sync.Mutex
		failed   atomic.Int64
		firstErr error
	)
	for n := int64(0); g.o.Count == 0 || n < g.o.Count; n++ {
		if ctx.Err() != nil {
			break
		}
		if g.o.Rate > 0 {
			due := start.Add(time.Duration(float64(n) / g.o.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
				case <-t.C:
				}
				if ctx.Err() != nil {
					break
				}
			}
		}
		ev := g.Next()
		if st.Produced == 0 {
			st.FirstEvent = ev.Time
		}
		st.LastEvent = ev.Time
		st.Produced++
		switch ev.Kind {
		case "valid":
			st.Valid++
		case "late":
			st.Valid++
			st.Late++
		case "out_of_order":
			st.Valid++
			st.OutOfOrder++
		case "duplicate":
			st.Valid++
			st.Duplicates++
		case "filtered":
			st.Filtered++
		default:
			st.Invalid[ev.Kind]++
		}
		rec := &kgo.Record{Topic: topic, Key: ev.Key, Value: ev.Value, Timestamp: ev.Time}
		cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			if onEvent != nil {
				mu.Lock()
				onEvent(ev, r)
				mu.Unlock()
			}
		})
	}
	ferr := cl.Flush(context.WithoutCancel(ctx))
	st.Elapsed = time.Since(start)
	st.Failed = failed.Load()
	if firstErr != nil {
		return st, fmt.Errorf("produce: %d records failed, first: %w", st.Failed, firstErr)
	}
	if ferr != nil {
		return st, fmt.Errorf("flush producer: %w", ferr)
	}
	return st, nil
}

// Rate returns records per second over the run.
func (s Stats) Rate() float64 {
	if s.Elapsed <= 0 {
		return math.Inf(1)
	}
	return float64(s.Produced) / s.Elapsed.Seconds()
}
