package checkpoint

import (
	"context"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/stream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
)

// TestRetentionInABatchRun: a batch run (exit when idle) over five days of
// event time with 1m windows kept one day and 1h windows kept forever
// exits with the old 1m partitions dropped and the rest exact; a second run
// of late clicks into an expired day and a kept day adds the expired ones
// to url_totals and clickagg_expired_clicks_total only.
func TestRetentionInABatchRun(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	windows := []time.Duration{time.Minute, time.Hour}
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	e.produce(ctx, gen.Options{Count: 6000, URLs: 50, Seed: 3, StartTime: start,
		EventRate: 6000.0 / (5 * 24 * 3600), OutOfOrderFraction: 0.1}) // NB: keyed: every partition's records span the 5 days
	keep := func(o *Options) {
		o.Retention = map[time.Duration]time.Duration{time.Minute: 24 * time.Hour}
		o.Operator.Windows = windows
	}
	_, _, done := e.start(ctx, pipelineConfig{opts: keep})
	e.wait(done, time.Minute)

	sizes, err := sink.ReadStorage(ctx, e.pool, sink.DefaultSchema)
	if err != nil {
		t.Fatal(err)
	}
	var expiredBefore time.Time
	for _, s := range sizes {
		switch s.Size {
		case time.Minute:
			expiredBefore = s.ExpiredBefore
			if s.Retention != 24*time.Hour {
				t.Fatalf("1m: retention %s recorded, want 24h", s.Retention)
			}
			for _, p := range s.Partitions {
				if p.Start.Before(expiredBefore) {
					t.Fatalf("partition %s (from %s) left behind expired_before %s", p.Name, p.Start, expiredBefore)
				}
			}
		case time.Hour:
			if !s.ExpiredBefore.IsZero() {
				t.Fatalf("1h windows expired before %s: they have no retention", s.ExpiredBefore)
			}
		}
	}
	// The lowest partition's watermark, one day back, floored to a day.
	var global time.Time
	if err := e.pool.QueryRow(ctx, `SELECT min(watermark) FROM clickagg.checkpoints`).Scan(&global); err != nil {
		t.Fatal(err)
	}
	if want := global.Add(-24 * time.Hour).Truncate(24 * time.Hour); !expiredBefore.Equal(want) || want.Before(start.Add(24*time.Hour)) {
		t.Fatalf("1m expired before %s, want %s (global watermark %s)", expiredBefore, want, global)
	}
	recs, err := oracle.ReadTopic(ctx, e.brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	exp := oracle.Compute(recs, windows, stream.DefaultMaxURLBytes)
	exp.Expire(time.Minute, expiredBefore.UnixMilli())
	if err := oracle.Compare(ctx, e.pool, sink.DefaultSchema, exp); err != nil {
		t.Fatal(err)
	}

	// Late clicks: 40 into the day before expired_before (expired), 10 into
	// the last kept hour.
	var kept int64
	if err := e.pool.QueryRow(ctx, `SELECT (extract(epoch FROM max(window_start)) * 1000)::bigint FROM clickagg.url_clicks WHERE window_size = '1 minute'`).Scan(&kept); err != nil {
		t.Fatal(err)
	}
	e.produce(ctx, gen.Options{Count: 40, URLs: 5, Seed: 4, StartTime: expiredBefore.Add(-12 * time.Hour), EventRate: 1})
	e.produce(ctx, gen.Options{Count: 10, URLs: 5, Seed: 5, StartTime: time.UnixMilli(kept), EventRate: 1000})
	_, m, done := e.start(ctx, pipelineConfig{opts: keep})
	e.wait(done, time.Minute)
	if n := testutil.ToFloat64(m.ExpiredClicks.WithLabelValues("1m0s")); n != 40 {
		t.Fatalf("clickagg_expired_clicks_total{window=1m0s} = %v, want 40", n)
	}
	recs, err = oracle.ReadTopic(ctx, e.brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	exp = oracle.Compute(recs, windows, stream.DefaultMaxURLBytes)
	exp.Expire(time.Minute, expiredBefore.UnixMilli())
	if err := oracle.Compare(ctx, e.pool, sink.DefaultSchema, exp); err != nil {
		t.Fatalf("after late clicks into an expired day: %v", err)
	}
}

// TestRetentionLateDeadLetter: under late policy dead-letter a click for an
// expired window is late like any other (a window expires only after every
// partition passed its end): it goes to the dead-letter topic, and neither
// url_clicks, url_totals nor clickagg_expired_clicks_total changes.
func TestRetentionLateDeadLetter(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	if _, err := kadm.NewClient(mustClient(t, e.brokers)).CreateTopic(ctx, 1, 1, nil, deadTopic); err != nil {
		t.Fatal(err)
	}
	windows := []time.Duration{time.Minute}
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	e.produce(ctx, gen.Options{Count: 3000, URLs: 30, Seed: 6, StartTime: start,
		EventRate: 3000.0 / (4 * 24 * 3600)}) // NB: keyed: every partition's records span the 4 days
	opts := func(o *Options) {
		o.Retention = map[time.Duration]time.Duration{time.Minute: 24 * time.Hour}
		o.Operator.Windows = windows
		o.Operator.Late = stream.LateDeadLetter
		o.DeadLetterTopic = deadTopic
	}
	_, _, done := e.start(ctx, pipelineConfig{opts: opts})
	e.wait(done, time.Minute)
	recs, err := oracle.ReadTopic(ctx, e.brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	sizes, err := sink.ReadStorage(ctx, e.pool, sink.DefaultSchema)
	if err != nil || len(sizes) != 1 || sizes[0].ExpiredBefore.IsZero() {
		t.Fatalf("storage after the first run: %+v, %v; want 1m windows expired", sizes, err)
	}
	exp := oracle.Compute(recs, windows, stream.DefaultMaxURLBytes)
	exp.Expire(time.Minute, sizes[0].ExpiredBefore.UnixMilli())
	if err := oracle.Compare(ctx, e.pool, sink.DefaultSchema, exp); err != nil {
		t.Fatal(err)
	}

	e.produce(ctx, gen.Options{Count: 40, URLs: 5, Seed: 7, StartTime: sizes[0].ExpiredBefore.Add(-12 * time.Hour), EventRate: 1})
	_, m, done := e.start(ctx, pipelineConfig{opts: opts})
	e.wait(done, time.Minute)
	dead := e.readDead(ctx, 40)
	if h := headerMap(dead[0]); h["clickagg-reason"] != "late" {
		t.Fatalf("dead letter headers %v, want reason late", h)
	}
	if n := testutil.ToFloat64(m.ExpiredClicks.WithLabelValues("1m0s")); n != 0 {
		t.Fatalf("clickagg_expired_clicks_total = %v, want 0 (dead-lettered, not counted)", n)
	}
	if err := oracle.Compare(ctx, e.pool, sink.DefaultSchema, exp); err != nil {
		t.Fatalf("after late clicks for an expired day: %v", err)
	}
}
