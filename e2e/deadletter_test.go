package e2e

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clickagg/clickagg/checkpoint"
	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/clickagg/clickagg/sink"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type source struct {
	p   int32
	off int64
}

// TestDeadLetterExactUnderSIGKILL: with a dead-letter topic and late
// policy dead-letter, SIGKILLed at random moments (sometimes losing its
// state folder), clickagg accounts for every record exactly once: each
// invalid record is in the dead-letter topic exactly once and unchanged;
// each valid record is counted in PostgreSQL or, for the window sizes it
// was late for, dead-lettered as late, never both and never twice.
func TestDeadLetterExactUnderSIGKILL(t *testing.T) {
	e := newEnv(t, 4)
	ctx := context.Background()
	dlq := e.topic + "-dead"
	e.createTopic(dlq, 3)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	isProducing := doneFunc(func() {
		e.produce(ctx, gen.Options{Count: 30_000, Rate: 1500, EventRate: 100,
			StartTime: time.Now().Add(-20 * time.Minute), URLs: 300, Zipf: 1.1, Seed: seed,
			LateFraction: 0.03, OutOfOrderFraction: 0.1, InvalidFraction: 0.05})
	})
	dir := filepath.Join(t.TempDir(), "state")
	args := []string{"--state-dir", dir, "--dead-letter-topic", dlq, "--late-policy", "dead-letter"}
	kills, _ := e.killWhileConsuming(args, dir, 4, 2, time.Second, isProducing, rng)
	p := e.run(append(args, "--exit-when-idle", "3s")...)
	if code := p.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("final run: exit code %d", code)
	}

	input := map[source]*kgo.Record{}
	for _, r := range e.records(ctx) {
		input[source{r.Partition, r.Offset}] = r
	}
	dead, err := oracle.ReadTopic(ctx, strings.Split(e.brokers, ","), dlq)
	if err != nil {
		t.Fatal(err)
	}
	// Every dead letter: once, unchanged, with its reason.
	got := map[source]map[string]string{}
	for _, d := range dead {
		src, h := deadLetterSource(d)
		if got[src] != nil {
			t.Errorf("%v dead-lettered twice", src)
		}
		got[src] = h
		in := input[src]
		switch {
		case in == nil:
			t.Errorf("dead letter %v: no such input record (headers %v)", src, h)
		case string(in.Value) != string(d.Value) || string(in.Key) != string(d.Key) || !in.Timestamp.Equal(d.Timestamp):
			t.Errorf("dead letter %v changed: %q, input %q", src, d.Value, in.Value)
		case h[checkpoint.HeaderTopic] != e.topic || h[checkpoint.HeaderGroup] != e.group:
			t.Errorf("dead letter %v: headers %v", src, h)
		}
	}
	// Each valid record counts in PostgreSQL for the sizes it was not late
	// for; each invalid one is dead-lettered with a rejection reason.
	exp := oracle.Expected{Clicks: map[oracle.Key]int64{}, Totals: map[string]int64{}}
	var invalid, late int
	for src, r := range input {
		url, ts, _, ok := oracle.Decode(r, 2048)
		h := got[src]
		if !ok {
			invalid++
			if h == nil || h[checkpoint.HeaderReason] == checkpoint.ReasonLate || h[checkpoint.HeaderReason] == "" {
				t.Errorf("invalid record %v %q: dead letter %v, want one with a rejection reason", src, r.Value, h)
			}
			continue
		}
		var missed []string
		if h != nil {
			if h[checkpoint.HeaderReason] != checkpoint.ReasonLate {
				t.Errorf("valid record %v %q dead-lettered as %v", src, r.Value, h)
				continue
			}
			late++
			missed = strings.Split(h[checkpoint.HeaderLateWindows], ",")
		}
		exp.Valid++
		for i, w := range windows {
			if slices.Contains(missed, shortWindow(w)) {
				continue
			}
			start := oracle.WindowStart(ts, w)
			exp.Clicks[oracle.Key{URL: url, Start: start, End: start + w.Milliseconds()}]++
			if i == 0 {
				exp.Totals[url]++
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if late < 100 || invalid < 500 {
		t.Fatalf("only %d late and %d invalid records: the test does not exercise the dead-letter topic", late, invalid)
	}
	if err := oracle.Compare(ctx, e.pool, sink.DefaultSchema, exp); err != nil {
		t.Fatal(err)
	}

	// clickagg dlq inspect agrees.
	if s := e.inspect(dlq); s.Records != int64(len(dead)) || s.Distinct != int64(len(got)) || s.Duplicates != 0 || s.ByReason[checkpoint.ReasonLate] != int64(late) {
		t.Errorf("dlq inspect: %+v; want %d records, %d late", s, len(dead), late)
	}
	t.Logf("%d kills; %d input records: %d invalid and %d late dead-lettered once each, the rest counted exactly", kills, len(input), invalid, late)
}

// shortWindow is the window label clickagg puts in HeaderLateWindows.
func shortWindow(w time.Duration) string { return w.String() }

// TestOversizedDeadLettersUnderSIGKILL: invalid records of 1.1 MB and 5 MB
// among generated ones, a dead-letter topic at the broker's default
// max.message.bytes, clickagg SIGKILLed and restarted: every valid record
// is counted exactly, every invalid one is dead-lettered once, the big
// ones as references (headers, the first bytes of the value, the original
// size), and dlq inspect says so.
func TestOversizedDeadLettersUnderSIGKILL(t *testing.T) {
	if !realKafka(t) {
		// kfake can hold a SIGKILLed member's partitions for its whole
		// rebalance timeout; checkpoint's kfake tests cover the rest.
		t.Skip("real Kafka broker only (see internal/testutil/kafkatest)")
	}
	e := newEnv(t, 2)
	ctx := context.Background()
	dlq := e.topic + "-dead"
	e.createTopic(dlq, 2)
	adm, done := e.admin()
	defer done()
	raise := []kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr(strconv.Itoa(8 << 20))}}
	if _, err := adm.AlterTopicConfigs(ctx, raise, e.topic); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.brokers, ",")...), kgo.DefaultProduceTopic(e.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerBatchMaxBytes(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sizes := [][2]int{{1_100_000, 5_000_000}, {5_000_000, 1_100_000}} // per round: partition 0's, partition 1's
	big := map[source][]byte{}
	for round, seed := range []uint64{1, 2, 3} {
		e.produce(ctx, gen.Options{Count: 3000, URLs: 200, Seed: seed, InvalidFraction: 0.02})
		if round == len(sizes) {
			break
		}
		for p, n := range sizes[round] {
			rng := rand.New(rand.NewPCG(seed, uint64(p)))
			v := make([]byte, n)
			for i := range v {
				v[i] = 'a' + byte(rng.IntN(26)) // random letters: not JSON, hardly compressible
			}
			r, err := cl.ProduceSync(ctx, &kgo.Record{Partition: int32(p), Value: v}).First()
			if err != nil {
				t.Fatal(err)
			}
			big[source{r.Partition, r.Offset}] = v
		}
	}

	dir := filepath.Join(t.TempDir(), "state")
	args := []string{"--state-dir", dir, "--dead-letter-topic", dlq}
	kills, _ := e.killWhileConsuming(args, dir, 3, 2, 500*time.Millisecond, func() bool { return false }, rand.New(rand.NewPCG(7, 7)))
	// NB: a run joining while the killed one's session lasts may own only
	// some partitions and, those consumed, exit when idle.
	waitFor(t, 30*time.Second, "the killed run to leave the group", func() bool {
		gs, err := adm.DescribeGroups(ctx, e.group)
		g, ok := gs[e.group]
		return err == nil && ok && g.Err == nil && len(g.Members) == 0
	})
	p := e.run(append(args, "--exit-when-idle", "3s")...)
	if code := p.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("final run: exit code %d", code)
	}
	recs := e.records(ctx)
	e.expectExact(ctx, recs)
	if pos := e.positions(ctx); sumNext(pos) != e.endOffsets(ctx) {
		t.Fatalf("checkpoints at %v: not at the topic's end", pos)
	}

	dead, err := oracle.ReadTopic(ctx, strings.Split(e.brokers, ","), dlq)
	if err != nil {
		t.Fatal(err)
	}
	got := map[source]*kgo.Record{}
	for _, d := range dead {
		src, h := deadLetterSource(d)
		if got[src] != nil {
			t.Errorf("%v dead-lettered twice", src)
		}
		got[src] = d
		v, isBig := big[src]
		switch {
		case !isBig && h[checkpoint.HeaderTruncated] != "":
			t.Errorf("dead letter %v: a reference, want the record whole (headers %v)", src, h)
		case isBig && (h[checkpoint.HeaderTruncated] != "true" || h[checkpoint.HeaderOriginalSize] != strconv.Itoa(len(v)) ||
			h[checkpoint.HeaderReason] != "invalid_json" || string(d.Value) != string(v[:checkpoint.ReferencePrefixBytes])):
			t.Errorf("dead letter %v: %d bytes, headers %v; want a reference to a %d-byte record", src, len(d.Value), h, len(v))
		}
	}
	var invalid int
	for _, r := range recs {
		if _, _, _, ok := oracle.Decode(r, 2048); ok {
			continue
		}
		invalid++
		if got[source{r.Partition, r.Offset}] == nil {
			t.Errorf("invalid record %d@%d not dead-lettered", r.Partition, r.Offset)
		}
	}
	if len(got) != invalid {
		t.Errorf("%d records dead-lettered, want the %d invalid ones", len(got), invalid)
	}

	if s := e.inspect(dlq); s.Distinct != int64(invalid) || s.Duplicates != 0 || s.Truncated != int64(len(big)) {
		t.Errorf("dlq inspect: %+v; want %d distinct, %d references", s, invalid, len(big))
	}
	out, err := exec.Command(binary, "dlq", "inspect", "--brokers", e.brokers, "--dead-letter-topic", dlq, "--show", "500").Output()
	if err != nil {
		t.Fatalf("dlq inspect --show: %v", err)
	}
	for _, want := range []string{"4 of the distinct records were too large for the topic", "(reference to a 5000000-byte record)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dlq inspect --show 500: no %q in\n%.2000s", want, out)
		}
	}
	t.Logf("%d kills; %d invalid records dead-lettered once each, %d of them as references", kills, invalid, len(big))
}

// deadLetterSource returns the source record of dead letter d, from its
// headers, and the headers.
func deadLetterSource(d *kgo.Record) (source, map[string]string) {
	h := map[string]string{}
	for _, x := range d.Headers {
		h[x.Key] = string(x.Value)
	}
	p, _ := strconv.ParseInt(h[checkpoint.HeaderPartition], 10, 32)
	off, _ := strconv.ParseInt(h[checkpoint.HeaderOffset], 10, 64)
	return source{int32(p), off}, h
}

// inspect runs clickagg dlq inspect --json on the dead-letter topic dlq.
func (e *env) inspect(dlq string) checkpoint.DeadLetterSummary {
	e.t.Helper()
	out, err := exec.Command(binary, "dlq", "inspect", "--brokers", e.brokers, "--dead-letter-topic", dlq, "--json").Output()
	if err != nil {
		e.t.Fatalf("dlq inspect: %v", err)
	}
	var s checkpoint.DeadLetterSummary
	if err := json.Unmarshal(out, &s); err != nil {
		e.t.Fatalf("dlq inspect --json: %v\n%s", err, out)
	}
	return s
}
