package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/oracle"
	testhelp "github.com/clickagg/clickagg/internal/testutil"
	"github.com/clickagg/clickagg/internal/testutil/pgtest"
	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/state"
	"github.com/clickagg/clickagg/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const topic = "clicks"

// env is one test's broker, database and helpers.
type env struct {
	t       *testing.T
	broker  *kfake.Cluster
	brokers []string
	dsn     string
	pool    *pgxpool.Pool
}

func newEnv(t *testing.T, partitions int32) *env {
	t.Helper()
	// Registered first, so it runs after every other cleanup: no pipeline,
	// client, pool or broker goroutine may outlive the test.
	t.Cleanup(func() { goleak.VerifyNone(t, goleak.IgnoreCurrent()) })
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	pool, err := sink.NewPool(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Migrate(ctx, conn.Conn(), sink.DefaultSchema); err != nil {
		t.Fatal(err)
	}
	conn.Release()
	return &env{t: t, broker: c, brokers: c.ListenAddrs(), dsn: dsn, pool: pool}
}

// produce generates records into the topic and returns when all are acknowledged.
func (e *env) produce(ctx context.Context, o gen.Options) gen.Stats {
	e.t.Helper()
	g, err := gen.New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	st, err := gen.Produce(ctx, cl, topic, g, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// deleteRecords deletes partition p's records below offset at, as
// retention would.
func (e *env) deleteRecords(ctx context.Context, p int32, at int64) {
	e.t.Helper()
	if err := testhelp.DeleteRecords(ctx, kadm.NewClient(mustClient(e.t, e.brokers)), topic, p, at); err != nil {
		e.t.Fatal(err)
	}
}

// runAfterLoss runs a pipeline on the state in dir until it exits when
// idle, checks that it counted lost records as lost, and returns what the
// topic holds now.
func (e *env) runAfterLoss(ctx context.Context, dir string, lost float64) []*kgo.Record {
	e.t.Helper()
	_, m, done := e.start(ctx, pipelineConfig{stateDir: dir})
	e.wait(done, time.Minute)
	if got := testutil.ToFloat64(m.RecordsLost.WithLabelValues("retention")); got != lost {
		e.t.Fatalf("records lost = %v, want %v", got, lost)
	}
	recs, err := oracle.ReadTopic(ctx, e.brokers, topic)
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

type pipelineConfig struct {
	kafkaGroup string
	sinkGroup  string
	stateDir   string
	opts       func(*Options)
}

// start runs a pipeline until ctx ends or it exits by itself; the result
// arrives on the returned channel.
func (e *env) start(ctx context.Context, pc pipelineConfig) (*Pipeline, *Metrics, <-chan error) {
	e.t.Helper()
	if pc.kafkaGroup == "" {
		pc.kafkaGroup = "clickagg"
	}
	if pc.sinkGroup == "" {
		pc.sinkGroup = pc.kafkaGroup
	}
	if pc.stateDir == "" {
		pc.stateDir = e.t.TempDir()
	}
	w, err := sink.NewWriter(e.pool, sink.Options{Group: pc.sinkGroup, Topic: topic})
	if err != nil {
		e.t.Fatal(err)
	}
	m := NewMetrics(nil)
	opts := Options{
		Kafka:              stream.KafkaOptions{Brokers: e.brokers},
		Consumer:           stream.ConsumerOptions{Topic: topic, Group: pc.kafkaGroup, SessionTimeout: 6 * time.Second},
		Operator:           stream.OperatorOptions{Windows: []time.Duration{time.Minute, time.Hour}, OutOfOrder: 5 * time.Second},
		CheckpointInterval: 50 * time.Millisecond,
		AlignWatermarks:    true, // as clickagg run
		ExitWhenIdle:       time.Second,
		Logger:             zaptest.NewLogger(e.t).Named(pc.kafkaGroup),
		Metrics:            m,
		StatsInterval:      -1,
	}
	if pc.opts != nil {
		pc.opts(&opts)
	}
	store, err := state.Open(state.Options{Dir: pc.stateDir}, StateIdentity(opts))
	if err != nil {
		e.t.Fatal(err)
	}
	pl, err := New(opts, store, w)
	if err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		err := pl.Run(ctx)
		store.Close()
		done <- err
	}()
	return pl, m, done
}

func (e *env) wait(done <-chan error, within time.Duration) {
	e.t.Helper()
	select {
	case err := <-done:
		if err != nil {
			e.t.Fatalf("pipeline: %v", err)
		}
	case <-time.After(within):
		e.t.Fatalf("pipeline did not exit within %s", within)
	}
}

func (e *env) expectExact(ctx context.Context, windows []time.Duration) oracle.Expected {
	e.t.Helper()
	recs, err := oracle.ReadTopic(ctx, e.brokers, topic)
	if err != nil {
		e.t.Fatal(err)
	}
	exp := oracle.Compute(recs, windows, stream.DefaultMaxURLBytes)
	if err := oracle.Compare(ctx, e.pool, sink.DefaultSchema, exp); err != nil {
		e.t.Fatal(err)
	}
	return exp
}

func TestExitWhenIdleCountsExactly(t *testing.T) {
	e := newEnv(t, 4)
	ctx := context.Background()
	st := e.produce(ctx, gen.Options{Count: 20_000, URLs: 300, Zipf: 1.2, Seed: 7,
		LateFraction: 0.02, OutOfOrderFraction: 0.1, InvalidFraction: 0.03, Unkeyed: true})
	_, m, done := e.start(ctx, pipelineConfig{})
	e.wait(done, time.Minute)
	exp := e.expectExact(ctx, []time.Duration{time.Minute, time.Hour})
	if exp.Valid != st.Valid || exp.Invalid != st.Produced-st.Valid {
		t.Fatalf("oracle saw %d valid / %d invalid, generator made %d / %d", exp.Valid, exp.Invalid, st.Valid, st.Produced-st.Valid)
	}
	var rejected float64
	for _, r := range stream.Reasons() {
		rejected += testutil.ToFloat64(m.Rejected.WithLabelValues(r.String()))
	}
	if got := testutil.ToFloat64(m.Accepted); int64(got) != exp.Valid || int64(rejected) != exp.Invalid {
		t.Fatalf("metrics: accepted %v rejected %v, want %d and %d", got, rejected, exp.Valid, exp.Invalid)
	}
}

func TestRestartResumesFromLocalStateOrRebuilds(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	dir := t.TempDir()
	e.produce(ctx, gen.Options{Count: 5000, URLs: 100, Seed: 1, OutOfOrderFraction: 0.2})
	_, _, done := e.start(ctx, pipelineConfig{stateDir: dir})
	e.wait(done, time.Minute)
	e.expectExact(ctx, []time.Duration{time.Minute, time.Hour})

	// Second run, same state: every partition resumes locally and nothing
	// is re-read.
	e.produce(ctx, gen.Options{Count: 3000, URLs: 100, Seed: 2, StartTime: time.Now().Add(time.Minute)})
	_, m, done := e.start(ctx, pipelineConfig{stateDir: dir})
	e.wait(done, time.Minute)
	e.expectExact(ctx, []time.Duration{time.Minute, time.Hour})
	if got := testutil.ToFloat64(m.Restores.WithLabelValues("local")); got != 3 {
		t.Fatalf("local restores = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.Replayed); got != 0 {
		t.Fatalf("replayed %v records, want 0", got)
	}
	if got := testutil.ToFloat64(m.Consumed); got != 3000 {
		t.Fatalf("consumed %v records, want the 3000 new ones", got)
	}

	// Third run with the state folder gone: partitions restore from
	// PostgreSQL (nothing is open after the final flush, so nothing to replay).
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	e.produce(ctx, gen.Options{Count: 1000, URLs: 100, Seed: 3, StartTime: time.Now().Add(2 * time.Minute)})
	_, m, done = e.start(ctx, pipelineConfig{stateDir: dir})
	e.wait(done, time.Minute)
	e.expectExact(ctx, []time.Duration{time.Minute, time.Hour})
	if got := testutil.ToFloat64(m.Restores.WithLabelValues("local")); got != 0 {
		t.Fatalf("local restores = %v after deleting the state, want 0", got)
	}
	if got := testutil.ToFloat64(m.Consumed); got != 1000 {
		t.Fatalf("consumed %v records, want the 1000 new ones", got)
	}
}

// Two pipelines in different Kafka groups both believe they own every
// partition and write the same checkpoints rows: the compare-and-set must
// let exactly one of them through each time, and the counts stay exact.
func TestConcurrentWritersAreFenced(t *testing.T) {
	e := newEnv(t, 4)
	ctx := context.Background()
	prodDone := make(chan gen.Stats)
	go func() {
		prodDone <- e.produce(ctx, gen.Options{Count: 30_000, Rate: 6000, URLs: 200, Seed: 11,
			LateFraction: 0.02, OutOfOrderFraction: 0.1, InvalidFraction: 0.02, Unkeyed: true})
	}()
	slow := func(o *Options) { o.CheckpointInterval = 30 * time.Millisecond; o.ExitWhenIdle = 2 * time.Second }
	_, ma, doneA := e.start(ctx, pipelineConfig{kafkaGroup: "ga", sinkGroup: "shared", opts: slow})
	_, mb, doneB := e.start(ctx, pipelineConfig{kafkaGroup: "gb", sinkGroup: "shared", opts: slow})
	<-prodDone
	e.wait(doneA, 2*time.Minute)
	e.wait(doneB, 2*time.Minute)
	e.expectExact(ctx, []time.Duration{time.Minute, time.Hour})
	fa, fb := testutil.ToFloat64(ma.Fenced), testutil.ToFloat64(mb.Fenced)
	t.Logf("fenced: a=%v b=%v", fa, fb)
	if fa+fb == 0 {
		t.Fatal("two writers raced for the same rows but neither was ever fenced")
	}
}

func TestLateRecordsCountedAndDropped(t *testing.T) {
	for _, policy := range []stream.LatePolicy{stream.LateCount, stream.LateDrop} {
		t.Run(policy.String(), func(t *testing.T) {
			e := newEnv(t, 1)
			ctx := context.Background()
			base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(topic))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			var recs []*kgo.Record
			add := func(url string, at time.Time) {
				recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, `{"url":%q,"ts":%d}`, url, at.UnixMilli())})
			}
			for i := range 10 { // on time: 12:00:00 .. 12:04:30
				add("/a", base.Add(time.Duration(i)*30*time.Second))
			}
			add("/a", base.Add(10*time.Second))               // late: watermark is 12:04:25
			add("/a", base.Add(70*time.Second))               // late
			add("/b", base.Add(20*time.Second))               // late
			add("/a", base.Add(4*time.Minute+22*time.Second)) // out of order but on time
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			_, m, done := e.start(ctx, pipelineConfig{opts: func(o *Options) {
				o.Operator.Windows = []time.Duration{time.Minute}
				o.Operator.Late = policy
			}})
			e.wait(done, time.Minute)
			type row struct{ clicks, late int64 }
			got := map[string]row{}
			rows, err := e.pool.Query(ctx, `SELECT url || '@' || to_char(window_start AT TIME ZONE 'UTC', 'HH24:MI'), clicks, late_clicks FROM clickagg.url_clicks`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var k string
				var r row
				if err := rows.Scan(&k, &r.clicks, &r.late); err != nil {
					t.Fatal(err)
				}
				got[k] = r
			}
			want := map[string]row{
				"/a@12:00": {2, 0}, "/a@12:01": {2, 0}, "/a@12:02": {2, 0}, "/a@12:03": {2, 0}, "/a@12:04": {3, 0},
			}
			if policy == stream.LateCount {
				want["/a@12:00"] = row{3, 1}
				want["/a@12:01"] = row{3, 1}
				want["/b@12:00"] = row{1, 1}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("policy %s:\n got %v\nwant %v", policy, got, want)
			}
			if n := testutil.ToFloat64(m.Late.WithLabelValues("1m0s", policy.String())); n != 3 {
				t.Fatalf("late metric = %v, want 3", n)
			}
		})
	}
}

func TestIdleTimeoutFinalizesWindows(t *testing.T) {
	e := newEnv(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Records a few seconds old, on partition 0 only: partition 1 never
	// sees a record and must still let the windows become final.
	now := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 20 {
		r := &kgo.Record{Partition: 0, Value: fmt.Appendf(nil, `{"url":"/p%d","ts":%d}`, i%3, now.Add(-time.Duration(i)*200*time.Millisecond).UnixMilli())}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	_, _, done := e.start(ctx, pipelineConfig{opts: func(o *Options) {
		o.Operator.Windows = []time.Duration{2 * time.Second}
		o.Operator.OutOfOrder = 0
		o.IdleTimeout = 500 * time.Millisecond
		o.ExitWhenIdle = 0
	}})
	deadline := time.Now().Add(30 * time.Second)
	for {
		var total, final, clicks int64
		if err := e.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE final), coalesce(sum(clicks), 0) FROM clickagg.url_clicks`).Scan(&total, &final, &clicks); err != nil {
			t.Fatal(err)
		}
		if total > 0 && total == final && clicks == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %d rows, %d final, %d clicks; want all final, 20 clicks", total, final, clicks)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not a wait for a result
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCancelTakesFinalCheckpoint(t *testing.T) {
	e := newEnv(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	pl, _, done := e.start(ctx, pipelineConfig{opts: func(o *Options) { o.ExitWhenIdle = 0; o.CheckpointInterval = time.Hour }})
	e.produce(context.Background(), gen.Options{Count: 2000, URLs: 50, Seed: 5})
	testhelp.WaitFor(t, 30*time.Second, "2000 records consumed", func() bool { return pl.Status().Consumed >= 2000 })
	// No interval checkpoint has run (1h): everything in PostgreSQL comes
	// from the final one, open windows included.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.expectExact(context.Background(), []time.Duration{time.Minute, time.Hour})
}

// TestStatusListsOwnedPartitions: the status the status page shows has
// one entry per owned partition, with its lag and watermark, and the last
// checkpoint's duration.
func TestStatusListsOwnedPartitions(t *testing.T) {
	e := newEnv(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pl, _, done := e.start(ctx, pipelineConfig{opts: func(o *Options) { o.ExitWhenIdle = 0 }})
	e.produce(context.Background(), gen.Options{Count: 1000, URLs: 20, Seed: 9})
	var st Status
	testhelp.WaitFor(t, 30*time.Second, "both partitions caught up with a watermark", func() bool {
		st = pl.Status()
		if st.Consumed < 1000 || len(st.Owned) != 2 || st.CheckpointTook <= 0 {
			return false
		}
		for i, ps := range st.Owned {
			if ps.Partition != int32(i) || ps.Restoring || ps.Lag != 0 || ps.Watermark.IsZero() {
				return false
			}
		}
		return true
	})
	if !slices.Equal(st.Partitions, []int32{0, 1}) {
		t.Errorf("partitions %v, owned %+v", st.Partitions, st.Owned)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestBadStartOffsetRejected(t *testing.T) {
	_, err := New(Options{Consumer: stream.ConsumerOptions{Topic: "t", Group: "g"}, StartOffset: "middle",
		Operator: stream.OperatorOptions{Windows: []time.Duration{time.Minute}}}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "start offset") {
		t.Fatalf("err = %v", err)
	}
	_ = errors.New
	_ = filepath.Join
}

// TestAlignWatermarksOffWithDeadLetters: alignment would make lateness
// depend on other partitions' progress, which a dead letter sent past a
// checkpoint cannot survive.
func TestAlignWatermarksOffWithDeadLetters(t *testing.T) {
	for _, late := range []stream.LatePolicy{stream.LateCount, stream.LateDeadLetter} {
		pl, err := New(Options{Consumer: stream.ConsumerOptions{Topic: "t", Group: "g"}, AlignWatermarks: true,
			Operator: stream.OperatorOptions{Windows: []time.Duration{time.Minute}, Late: late}}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := late != stream.LateDeadLetter; pl.opts.AlignWatermarks != want {
			t.Errorf("late policy %s: aligned %v, want %v", late, pl.opts.AlignWatermarks, want)
		}
	}
}
