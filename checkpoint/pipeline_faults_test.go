package checkpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/oracle"
	testhelp "github.com/clickagg/clickagg/internal/testutil"
	"github.com/clickagg/clickagg/internal/testutil/pgtest"
	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/stream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Pipeline tests of faults and hostile input: PostgreSQL outages,
// retention deleting records, hostile and over-long URLs, a missing
// dead-letter topic, a stalled checkpoint; and watermark alignment.

// TestPostgresOutageMidRun: PostgreSQL goes away for a few seconds while
// records arrive; checkpoints retry, readiness reflects it, nothing is lost
// or counted twice.
func TestPostgresOutageMidRun(t *testing.T) {
	srv := pgtest.NewServer(t)
	ctx := context.Background()
	pool, err := sink.NewPool(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	conn, _ := pool.Acquire(ctx)
	if _, err := sink.Migrate(ctx, conn.Conn(), sink.DefaultSchema); err != nil {
		t.Fatal(err)
	}
	conn.Release()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e := &env{t: t, broker: c, brokers: c.ListenAddrs(), dsn: srv.DSN(), pool: pool}
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		e.produce(ctx, gen.Options{Count: 12_000, Rate: 2000, URLs: 100, Seed: 17, OutOfOrderFraction: 0.1, LateFraction: 0.02})
	}()
	pl, _, done := e.start(ctx, pipelineConfig{opts: func(o *Options) { o.ExitWhenIdle = 2 * time.Second }})
	testhelp.WaitFor(t, time.Minute, "first checkpoint", func() bool { return pl.Status().CheckpointsTotal > 0 })
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	testhelp.WaitFor(t, time.Minute, "readiness to notice", func() bool { return !pl.Status().PostgresOK })
	stalled := pl.Status().CheckpointsTotal
	time.Sleep(3 * time.Second) // the outage; not a wait for a result
	if got := pl.Status().CheckpointsTotal; got != stalled {
		t.Fatalf("%d checkpoints committed while PostgreSQL was down", got-stalled)
	}
	if err := srv.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	testhelp.WaitFor(t, time.Minute, "recovery", func() bool { return pl.Status().PostgresOK && pl.Status().CheckpointsTotal > stalled })
	<-produced
	e.wait(done, 2*time.Minute)
	e.expectExact(ctx, []time.Duration{time.Minute, time.Hour})
}

// TestRetentionLossIsCountedNotSilent: records deleted by the broker before
// they were processed are logged and counted in clickagg_records_lost_total,
// and consumption goes on from the log start.
func TestRetentionLossIsCountedNotSilent(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	dir := t.TempDir()
	windows := []time.Duration{time.Minute, time.Hour}
	e.produce(ctx, gen.Options{Count: 1000, URLs: 20, Seed: 1})
	_, _, done := e.start(ctx, pipelineConfig{stateDir: dir})
	e.wait(done, time.Minute)
	first, err := oracle.ReadTopic(ctx, e.brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	e.produce(ctx, gen.Options{Count: 1000, URLs: 20, Seed: 2, StartTime: time.Now().Add(2 * time.Minute)})
	e.deleteRecords(ctx, 0, 1500)
	rest := e.runAfterLoss(ctx, dir, 500)
	exp := oracle.Compute(append(first, rest...), windows, stream.DefaultMaxURLBytes)
	if err := oracle.Compare(ctx, e.pool, sink.DefaultSchema, exp); err != nil {
		t.Fatal(err)
	}
}

// TestQuietPartitionAfterRetentionLoss: retention deleted every record a
// quiet partition had past its checkpoint. It must not seem to lag forever:
// the run exits when idle, and the busy partition's watermark is not held
// at the quiet one's.
func TestQuietPartitionAfterRetentionLoss(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	dir := t.TempDir()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	produce := func(p int32, n int, from time.Time) {
		var recs []*kgo.Record
		for i := range n {
			recs = append(recs, &kgo.Record{Partition: p, Value: fmt.Appendf(nil, `{"url":"/p%d","ts":%d}`, p, from.Add(time.Duration(i)*time.Second).UnixMilli())})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, 120, base)
	produce(1, 120, base)
	_, _, done := e.start(ctx, pipelineConfig{stateDir: dir})
	e.wait(done, time.Minute)
	first, err := oracle.ReadTopic(ctx, e.brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	produce(1, 300, base.Add(2*time.Minute))
	e.deleteRecords(ctx, 1, 420)
	produce(0, 1800, base.Add(2*time.Minute))
	rest := e.runAfterLoss(ctx, dir, 300)
	// NB: rest holds all of partition 0 and nothing of partition 1.
	first = slices.DeleteFunc(first, func(r *kgo.Record) bool { return r.Partition == 0 })
	exp := oracle.Compute(append(first, rest...), []time.Duration{time.Minute, time.Hour}, stream.DefaultMaxURLBytes)
	if err := oracle.Compare(ctx, e.pool, sink.DefaultSchema, exp); err != nil {
		t.Fatal(err)
	}
	var wm time.Time
	if err := e.pool.QueryRow(ctx, `SELECT watermark FROM clickagg.checkpoints WHERE partition = 0`).Scan(&wm); err != nil {
		t.Fatal(err)
	}
	if want := base.Add(2*time.Minute + 1799*time.Second - 5*time.Second); !wm.Equal(want) {
		t.Fatalf("busy partition's watermark %s, want its own %s", wm.UTC(), want)
	}
}

// TestHostileURLsStoredByteExact: SQL-looking, unicode, control-character
// and maximum-length URLs are stored exactly as received; NUL and
// over-long ones are rejected with their reason.
func TestHostileURLsStoredByteExact(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	long := "https://x/" + strings.Repeat("a", stream.DefaultMaxURLBytes-len("https://x/"))
	stored := []string{
		`'); DROP TABLE clickagg.url_clicks; --`,
		`https://example.com/?q=1' OR '1'='1`,
		"https://例え.テスト/パス?😀=✓",
		"https://x/tab\there/newline\nhere/bell\x07/del\x7f",
		`https://x/quote"backslash\slash/`,
		"  leading and trailing spaces  ",
		"HTTPS://Example.COM/Path#Fragment", // not normalized
		long,
	}
	var recs []*kgo.Record
	ts := time.Now().UnixMilli()
	for _, u := range stored {
		v, _ := json.Marshal(map[string]any{"url": u, "ts": ts})
		recs = append(recs, &kgo.Record{Value: v})
	}
	recs = append(recs,
		&kgo.Record{Value: []byte(`{"url":"https://x/nul\u0000byte"}`)},
		&kgo.Record{Value: []byte(`{"url":"` + long + `b"}`)},
	)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	_, m, done := e.start(ctx, pipelineConfig{})
	e.wait(done, time.Minute)
	rows, err := e.pool.Query(ctx, `SELECT url, clicks FROM clickagg.url_totals`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for rows.Next() {
		var u string
		var n int64
		if err := rows.Scan(&u, &n); err != nil {
			t.Fatal(err)
		}
		got[u] = n
	}
	if len(got) != len(stored) {
		t.Errorf("%d url_totals rows, want %d", len(got), len(stored))
	}
	for _, u := range stored {
		if got[u] != 1 {
			t.Errorf("url %q: clicks %d, want 1 (stored byte-exact)", u, got[u])
		}
	}
	if n := testutil.ToFloat64(m.Rejected.WithLabelValues("invalid_url")); n != 1 {
		t.Errorf("invalid_url rejections = %v, want 1 (NUL)", n)
	}
	if n := testutil.ToFloat64(m.Rejected.WithLabelValues("url_too_long")); n != 1 {
		t.Errorf("url_too_long rejections = %v, want 1", n)
	}
	var tables int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'clickagg'
	AND table_name IN ('url_clicks', 'url_totals', 'checkpoints', 'schema_migrations', 'window_sizes')`).Scan(&tables); err != nil || tables != 5 {
		t.Fatalf("clickagg has %d of its 5 tables (%v)", tables, err)
	}
}

// TestLongURLsNeverStopCounting: with max URL bytes at the schema's limit, a
// URL of that length (incompressible) is counted, and 3,000-byte and
// 100 KB ones are rejected as url_too_long; the clicks around them in the
// same checkpoints are all committed. Before the limit existed such a URL
// failed every checkpoint that carried it, for good.
func TestLongURLsNeverStopCounting(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	url := func(n int) string {
		b := []byte("https://x/")
		for len(b) < n {
			b = append(b, 'a'+byte(rng.IntN(26)))
		}
		return string(b)
	}
	ts := time.Now().UnixMilli()
	var recs []*kgo.Record
	add := func(u string) {
		v, _ := json.Marshal(map[string]any{"url": u, "ts": ts})
		recs = append(recs, &kgo.Record{Topic: topic, Value: v})
	}
	for i := range 50 {
		add(fmt.Sprintf("https://example.com/%d", i%7))
	}
	longest := url(sink.MaxURLBytes)
	add(longest)
	add(url(3000))
	add(url(100_000))
	for i := range 50 {
		add(fmt.Sprintf("https://example.com/%d", i%5))
	}
	cl := mustClient(t, e.brokers)
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	_, m, done := e.start(ctx, pipelineConfig{opts: func(o *Options) { o.Operator.MaxURLBytes = sink.MaxURLBytes }})
	e.wait(done, time.Minute)
	got, err := oracle.ReadTopic(ctx, e.brokers, topic)
	if err != nil {
		t.Fatal(err)
	}
	exp := oracle.Compute(got, []time.Duration{time.Minute, time.Hour}, sink.MaxURLBytes)
	if err := oracle.Compare(ctx, e.pool, sink.DefaultSchema, exp); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(m.Rejected.WithLabelValues("url_too_long")); n != 2 {
		t.Errorf("url_too_long rejections = %v, want 2", n)
	}
	if exp.Totals[longest] != 1 {
		t.Errorf("the %d-byte URL is not expected once: the test input is wrong", sink.MaxURLBytes)
	}
}

// New refuses a URL limit the schema cannot hold.
func TestMaxURLBytesAboveSchemaRefused(t *testing.T) {
	_, err := New(Options{Consumer: stream.ConsumerOptions{Topic: topic, Group: "g"},
		Operator: stream.OperatorOptions{Windows: []time.Duration{time.Minute}, MaxURLBytes: sink.MaxURLBytes + 1}}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "max URL bytes") {
		t.Fatalf("New with max URL bytes %d: %v, want an error naming it", sink.MaxURLBytes+1, err)
	}
}

// A dead-letter topic that does not exist stops the pipeline at start with
// an error naming it; one that vanishes while running stops it at the next
// checkpoint (restarting resumes from the last checkpoint, so nothing is
// lost).
func TestDeadLetterTopicMissingOrDeleted(t *testing.T) {
	e := newEnv(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.produce(ctx, gen.Options{Count: 200, InvalidFraction: 0.5, Seed: 1})
	withDLQ := func(o *Options) { o.DeadLetterTopic = "dead"; o.ExitWhenIdle = 0 }
	_, _, done := e.start(ctx, pipelineConfig{opts: withDLQ})
	expectRunError(ctx, t, done, "dead-letter topic dead does not exist")

	adm := kadm.NewClient(mustClient(t, e.brokers))
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "dead"); err != nil {
		t.Fatal(err)
	}
	_, m, done := e.start(ctx, pipelineConfig{kafkaGroup: "g2", opts: withDLQ})
	testhelp.WaitFor(t, 30*time.Second, "dead letters", func() bool {
		return testutil.ToFloat64(m.DeadLetters.WithLabelValues("invalid_json"))+testutil.ToFloat64(m.DeadLetters.WithLabelValues("missing_url")) > 0
	})
	if _, err := adm.DeleteTopic(ctx, "dead"); err != nil {
		t.Fatal(err)
	}
	e.produce(ctx, gen.Options{Count: 200, InvalidFraction: 1, Seed: 2})
	expectRunError(ctx, t, done, "produce to dead-letter topic dead")
}

// expectRunError waits for the pipeline to stop with an error containing want.
func expectRunError(ctx context.Context, t *testing.T, done <-chan error, want string) {
	t.Helper()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Run = %v; want an error containing %q", err, want)
		}
	case <-ctx.Done():
		t.Fatalf("Run did not stop; want an error containing %q", want)
	}
}

func mustClient(t *testing.T, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestAlignWatermarksWritesRowsOnce: a sparse and a dense partition over
// the same hour of event time, each with URLs of its own. Consumed side by
// side, the sparse one runs ahead in event time; unaligned, it closes
// windows the dense one has not passed yet, so their rows are written
// non-final and the finalizer writes them again.
// Aligned, every closed window's rows are final when first written, and
// the counts are exact either way.
func TestAlignWatermarksWritesRowsOnce(t *testing.T) {
	for _, align := range []bool{false, true} {
		t.Run(fmt.Sprintf("align=%v", align), func(t *testing.T) {
			e := newEnv(t, 2)
			ctx := context.Background()
			cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(topic),
				kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			var recs []*kgo.Record
			for p, n := range []int{600, 300_000} {
				step := time.Hour / time.Duration(n)
				for i := range n {
					recs = append(recs, &kgo.Record{Partition: int32(p),
						Value: fmt.Appendf(nil, `{"url":"/p%d/%d","ts":%d}`, p, i%7, base.Add(time.Duration(i)*step).UnixMilli())})
				}
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			_, m, done := e.start(ctx, pipelineConfig{opts: func(o *Options) {
				o.Operator.Windows = []time.Duration{time.Minute}
				o.MaxPollRecords = 500
				o.AlignWatermarks = align
			}})
			e.wait(done, time.Minute)
			e.expectExact(ctx, []time.Duration{time.Minute})
			finalized := testutil.ToFloat64(m.Finalized)
			var nonFinal int
			if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM clickagg.url_clicks WHERE NOT final`).Scan(&nonFinal); err != nil {
				t.Fatal(err)
			}
			t.Logf("rows finalized after their first write: %v; left non-final: %d", finalized, nonFinal)
			switch {
			case align && finalized != 0:
				t.Errorf("aligned: %v rows were written before every partition passed their window", finalized)
			case !align && finalized == 0:
				t.Errorf("unaligned: no row was finalized late; the test does not exercise alignment")
			}
		})
	}
}

// TestReadinessDuringCheckpointStall: the checkpoints table locked by
// another session makes the checkpoint in flight wait on the lock (no error, PostgreSQL
// answers): readiness must turn false, for that reason alone, once no
// checkpoint succeeded for the stall timeout, and true again once the lock
// is gone; the counts stay exact.
func TestReadinessDuringCheckpointStall(t *testing.T) {
	e := newEnv(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pl, m, done := e.start(ctx, pipelineConfig{opts: func(o *Options) { o.ExitWhenIdle, o.StallTimeout = 0, 2*time.Second }})
	e.produce(context.Background(), gen.Options{Count: 2000, URLs: 50, Seed: 9})
	testhelp.WaitFor(t, 30*time.Second, "ready after a checkpoint", func() bool {
		st := pl.Status()
		return st.Ready() && st.CheckpointsTotal > 0 && st.Consumed >= 2000
	})

	lock, err := e.pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(context.Background()) //nolint:errcheck
	// NB: every checkpoint that moves a partition updates its row first;
	// url_totals is written only when a window closes.
	if _, err := lock.Exec(context.Background(), `LOCK TABLE `+sink.DefaultSchema+`.checkpoints IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	e.produce(context.Background(), gen.Options{Count: 1000, URLs: 50, Seed: 10})
	testhelp.WaitFor(t, 20*time.Second, "not ready while the checkpoint waits on the lock", func() bool {
		return !pl.Status().Ready()
	})
	if got, want := pl.Status().NotReady(), []NotReady{NotReadyStalled}; !slices.Equal(got, want) {
		t.Errorf("not ready for %v, want %v", got, want)
	}
	if testutil.ToFloat64(m.Ready) != 0 || testutil.ToFloat64(m.NotReady.WithLabelValues(string(NotReadyStalled))) != 1 {
		t.Error("the readiness gauges do not show the stall")
	}
	if err := lock.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	testhelp.WaitFor(t, 30*time.Second, "ready again after the lock is released", func() bool { return pl.Status().Ready() })
	if testutil.ToFloat64(m.Ready) != 1 || testutil.ToFloat64(m.NotReady.WithLabelValues(string(NotReadyStalled))) != 0 {
		t.Error("the readiness gauges still show the stall")
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.expectExact(context.Background(), []time.Duration{time.Minute, time.Hour})
}

// TestMissingTopicSaidOnceAndAwaited: a topic that does not exist is said
// (status, /readyz detail, clickagg_topic_missing) instead of a silent
// wait, and the process takes its partitions once it is created.
func TestMissingTopicSaidOnceAndAwaited(t *testing.T) {
	e := newEnv(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const late = "created-later"
	pl, m, done := e.start(ctx, pipelineConfig{opts: func(o *Options) {
		o.Consumer.Topic = late
		o.ExitWhenIdle = 0
	}})
	testhelp.WaitFor(t, 30*time.Second, "the missing topic reported", func() bool {
		st := pl.Status()
		return st.TopicMissing && testutil.ToFloat64(m.TopicMissing) == 1 &&
			strings.Contains(st.Explain(NotReadyUnassigned, time.Now()), "the topic does not exist")
	})
	cl := mustClient(t, e.brokers)
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, late); err != nil {
		t.Fatal(err)
	}
	testhelp.WaitFor(t, 30*time.Second, "the topic found and partitions assigned", func() bool {
		st := pl.Status()
		return !st.TopicMissing && testutil.ToFloat64(m.TopicMissing) == 0 && len(st.Partitions) == 2
	})
	cancel()
	e.wait(done, 30*time.Second)
}
