package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/stream"
)

// TestInputMappingTrackerEvents: Segment-style events (gen shape tracker:
// the URL at context.page.url, the time at timestamp, the id at
// messageId, 5% page views and identify calls) read through the input
// mapping flags. PostgreSQL holds exactly the counts the oracle computes
// under the same mapping, and the page and identify events are counted as
// filtered (the progress log's filtered field), never as rejections.
func TestInputMappingTrackerEvents(t *testing.T) {
	e := newEnv(t, 4)
	ctx := context.Background()
	st := e.produce(ctx, gen.Options{Shape: "tracker", Count: 20_000, URLs: 500, Zipf: 1.1, Seed: 21,
		LateFraction: 0.02, OutOfOrderFraction: 0.1, InvalidFraction: 0.03, DuplicateFraction: 0.01})
	p := e.run(append([]string{"--state-dir", t.TempDir(), "--exit-when-idle", "3s"}, gen.TrackerInputFlags...)...)
	if code := p.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	in := stream.InputOptions{URL: "context.page.url", TS: "timestamp", ID: "messageId", Filter: []string{"type==track"}}
	recs := e.records(ctx)
	exp, err := oracle.ComputeWith(recs, oracle.Options{Windows: windows, MaxURLBytes: 2048, Input: in})
	if err != nil {
		t.Fatal(err)
	}
	if exp.Valid == 0 || exp.Filtered != st.Filtered || exp.Filtered == 0 {
		t.Fatalf("oracle: %d valid, %d filtered, %d invalid; generated %d not clicks", exp.Valid, exp.Filtered, exp.Invalid, st.Filtered)
	}
	if err := oracle.Compare(ctx, e.pool, sink.DefaultSchema, exp); err != nil {
		t.Fatal(err)
	}

	// NB: the progress counters reset at each line: sum them.
	var records, filtered, rejected int64
	for _, l := range p.logEntries("progress") {
		records += int64(num(l["records"]))
		filtered += int64(num(l["filtered"]))
		if r, ok := l["rejected"].(map[string]any); ok {
			for _, n := range r {
				rejected += int64(num(n))
			}
		}
	}
	if records != int64(len(recs)) || filtered != exp.Filtered || rejected != exp.Invalid {
		t.Fatalf("progress lines: %d records, %d filtered, %d rejected; want %d, %d, %d", records, filtered, rejected,
			len(recs), exp.Filtered, exp.Invalid)
	}
	t.Logf("%d records: %d valid, %d filtered, %d invalid; %d url_clicks rows exact", len(recs), exp.Valid, exp.Filtered, exp.Invalid, len(exp.Clicks))
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}
