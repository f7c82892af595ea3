package checkpoint

import (
	"bytes"
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/oracle"
	testhelp "github.com/clickagg/clickagg/internal/testutil"
	"github.com/clickagg/clickagg/sink"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const deadTopic = "dead"

// bigInvalid returns an invalid record (not JSON) of n random letters,
// which no compression shrinks much.
func bigInvalid(n int) []byte {
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	v := make([]byte, n)
	for i := range v {
		v[i] = 'a' + byte(rng.IntN(26))
	}
	return v
}

// produceAround writes 200 valid records, then value, then 200 more valid
// records to the input topic's partition 0, and returns value's offset.
// The input topic takes records of up to 8 MB.
func (e *env) produceAround(ctx context.Context, value []byte) int64 {
	e.t.Helper()
	adm := kadm.NewClient(mustClient(e.t, e.brokers))
	raise := []kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr(strconv.Itoa(8 << 20))}}
	if _, err := adm.AlterTopicConfigs(ctx, raise, topic); err != nil {
		e.t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerBatchMaxBytes(8<<20),
		kgo.ProducerLinger(time.Millisecond), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	var off int64
	for _, seed := range []uint64{1, 2} {
		g, err := gen.New(gen.Options{Count: 200, URLs: 20, Seed: seed})
		if err != nil {
			e.t.Fatal(err)
		}
		if _, err := gen.Produce(ctx, cl, topic, g, nil); err != nil {
			e.t.Fatal(err)
		}
		if seed == 2 {
			break
		}
		r, err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: value}).First()
		if err != nil {
			e.t.Fatal(err)
		}
		off = r.Offset
	}
	return off
}

// newDeadLetterEnv returns a one-partition env with a dead-letter topic
// (one partition) whose max.message.bytes is limit, or the broker's
// default when limit is 0, and a context bounding the test.
func newDeadLetterEnv(t *testing.T, limit int) (*env, context.Context) {
	t.Helper()
	e := newEnv(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	var cfg map[string]*string
	if limit > 0 {
		cfg = map[string]*string{"max.message.bytes": kadm.StringPtr(strconv.Itoa(limit))}
	}
	if _, err := kadm.NewClient(mustClient(t, e.brokers)).CreateTopic(ctx, 1, 1, cfg, deadTopic); err != nil {
		t.Fatal(err)
	}
	return e, ctx
}

// expectProgress checks that the pipeline counted the 400 valid records
// exactly and that its checkpoint is at end, past every input record.
func (e *env) expectProgress(ctx context.Context, end int64) {
	e.t.Helper()
	exp := e.expectExact(ctx, []time.Duration{time.Minute, time.Hour})
	if exp.Valid != 400 {
		e.t.Fatalf("oracle: %d valid records, want 400", exp.Valid)
	}
	w, err := sink.NewWriter(e.pool, sink.Options{Group: "clickagg", Topic: topic})
	if err != nil {
		e.t.Fatal(err)
	}
	pos, err := w.ReadRows(ctx, []int32{0})
	if err != nil {
		e.t.Fatal(err)
	}
	if got := pos[0].NextOffset; got != end {
		e.t.Fatalf("checkpoint next_offset = %d, want %d (past every record)", got, end)
	}
}

// readDead returns the dead-letter topic's records, failing the test
// unless there are n.
func (e *env) readDead(ctx context.Context, n int) []*kgo.Record {
	e.t.Helper()
	recs, err := oracle.ReadTopic(ctx, e.brokers, deadTopic)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(recs) != n {
		e.t.Fatalf("dead-letter topic holds %d records, want %d", len(recs), n)
	}
	return recs
}

func headerMap(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// TestOversizedInvalidRecordDeadLettered: an invalid record larger than
// the dead-letter topic's max.message.bytes (the broker's default) is
// dead-lettered as a reference, and the pipeline moves past it; run again,
// nothing is sent twice.
func TestOversizedInvalidRecordDeadLettered(t *testing.T) {
	for _, size := range []int{1_100_000, 5_000_000} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			e, ctx := newDeadLetterEnv(t, 0)
			big := bigInvalid(size)
			off := e.produceAround(ctx, big)
			dir := t.TempDir()
			withDLQ := func(o *Options) { o.DeadLetterTopic = deadTopic }
			_, m, done := e.start(ctx, pipelineConfig{stateDir: dir, opts: withDLQ})
			e.wait(done, time.Minute)
			e.expectProgress(ctx, 401)
			if n := testutil.ToFloat64(m.DeadLetters.WithLabelValues("invalid_json")); n != 1 {
				t.Errorf("clickagg_dead_letters_total{reason=invalid_json} = %v, want 1", n)
			}

			dead := e.readDead(ctx, 1)
			d, h := dead[0], headerMap(dead[0])
			if n := testutil.ToFloat64(m.DeadLetterRefs.WithLabelValues("invalid_json")); n != 1 {
				t.Errorf("clickagg_dead_letters_truncated_total{reason=invalid_json} = %v, want 1", n)
			}
			want := map[string]string{
				HeaderReason: "invalid_json", HeaderGroup: "clickagg", HeaderTopic: topic,
				HeaderPartition: "0", HeaderOffset: strconv.FormatInt(off, 10),
				HeaderTruncated: "true", HeaderOriginalSize: strconv.Itoa(size),
			}
			for k, v := range want {
				if h[k] != v {
					t.Errorf("header %s = %q, want %q (headers %v)", k, h[k], v, h)
				}
			}
			if !bytes.Equal(d.Value, big[:ReferencePrefixBytes]) {
				t.Errorf("reference value: %d bytes %.40q..., want the record's first 1024 bytes", len(d.Value), d.Value)
			}

			// A restart resumes past the record: nothing is sent again.
			_, _, done = e.start(ctx, pipelineConfig{stateDir: dir, opts: withDLQ})
			e.wait(done, time.Minute)
			e.readDead(ctx, 1)
		})
	}
}

// TestRaisedDeadLetterLimitTakesBigRecordWhole: the producer follows the
// dead-letter topic's max.message.bytes (32 MB here), not the client's
// 1 MB default, so a 5 MB record is dead-lettered whole.
func TestRaisedDeadLetterLimitTakesBigRecordWhole(t *testing.T) {
	e, ctx := newDeadLetterEnv(t, 32<<20)
	big := bigInvalid(5_000_000)
	e.produceAround(ctx, big)
	_, m, done := e.start(ctx, pipelineConfig{opts: func(o *Options) { o.DeadLetterTopic = deadTopic }})
	e.wait(done, time.Minute)
	e.expectProgress(ctx, 401)
	dead := e.readDead(ctx, 1)
	if h := headerMap(dead[0]); !bytes.Equal(dead[0].Value, big) || h[HeaderTruncated] != "" || h[HeaderReason] != "invalid_json" {
		t.Fatalf("dead letter: %d bytes, headers %v; want the 5 MB record whole", len(dead[0].Value), h)
	}
	if n := testutil.ToFloat64(m.DeadLetterRefs.WithLabelValues("invalid_json")); n != 0 {
		t.Fatalf("clickagg_dead_letters_truncated_total = %v, want 0", n)
	}
}

// TestDeadLetterLimitLoweredWhileRunning: the dead-letter topic's limit is
// lowered after the producer read it, so the broker refuses a big dead
// letter (MESSAGE_TOO_LARGE). It is sent once more as a reference, and the
// pipeline goes on.
func TestDeadLetterLimitLoweredWhileRunning(t *testing.T) {
	e, ctx := newDeadLetterEnv(t, 32<<20)
	small := []byte("not json")
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: small}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	_, m, done := e.start(runCtx, pipelineConfig{opts: func(o *Options) { o.DeadLetterTopic = deadTopic; o.ExitWhenIdle = 0 }})
	testhelp.WaitFor(t, 30*time.Second, "the first dead letter", func() bool {
		return testutil.ToFloat64(m.DeadLetters.WithLabelValues("invalid_json")) == 1
	})
	lower := []kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr("1048588")}}
	if _, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, lower, deadTopic); err != nil {
		t.Fatal(err)
	}
	big := bigInvalid(5_000_000)
	e.produceAround(ctx, big) // offsets 1..401 now
	testhelp.WaitFor(t, 30*time.Second, "the reference and every record", func() bool {
		return testutil.ToFloat64(m.DeadLetterRefs.WithLabelValues("invalid_json")) == 1 && testutil.ToFloat64(m.Consumed) == 402
	})
	stop()
	e.wait(done, time.Minute)
	e.expectProgress(ctx, 402)
	dead := e.readDead(ctx, 2)
	if h := headerMap(dead[0]); !bytes.Equal(dead[0].Value, small) || h[HeaderTruncated] != "" {
		t.Errorf("first dead letter: %q, headers %v; want the small record whole", dead[0].Value, h)
	}
	h := headerMap(dead[1])
	if h[HeaderTruncated] != "true" || h[HeaderOffset] != "201" || h[HeaderOriginalSize] != "5000000" ||
		!bytes.Equal(dead[1].Value, big[:ReferencePrefixBytes]) {
		t.Errorf("second dead letter: %d bytes, headers %v; want a reference to offset 201", len(dead[1].Value), h)
	}
}
