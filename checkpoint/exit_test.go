package checkpoint

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	testhelp "github.com/clickagg/clickagg/internal/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

// TestExitWhenIdleWaitsForEveryPartition: another member of the group
// holds some partitions and counts nothing (as a crashed member's session
// does until it times out). A run with exit when idle owns the others,
// consumes them and is idle, but must not exit: those partitions are not
// counted. It says which it waits for, and exits once it got them (the
// member left) and counted them; the counts are then exact over the whole
// topic.
func TestExitWhenIdleWaitsForEveryPartition(t *testing.T) {
	e := newEnv(t, 6)
	ctx := context.Background()
	e.produce(ctx, gen.Options{Count: 12_000, URLs: 200, Seed: 5, OutOfOrderFraction: 0.1, Unkeyed: true})

	var mu sync.Mutex
	var held []int32
	stuck, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ConsumerGroup("clickagg"), kgo.ConsumeTopics(topic),
		kgo.SessionTimeout(6*time.Second), kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			mu.Lock()
			defer mu.Unlock()
			held = append(held, m[topic]...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	stuckOpen := true
	defer func() {
		if stuckOpen {
			stuck.Close()
		}
	}()
	testhelp.WaitFor(t, 30*time.Second, "the stuck member to hold partitions", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(held) > 0
	})

	core, logs := observer.New(zap.InfoLevel)
	_, _, done := e.start(ctx, pipelineConfig{opts: func(o *Options) {
		o.ExitWhenIdle = 500 * time.Millisecond
		o.Logger = zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	}})
	waiting := func() []observer.LoggedEntry {
		return logs.FilterMessageSnippet("waiting for other partitions to be counted").All()
	}
	testhelp.WaitFor(t, time.Minute, "the run to say it waits for the stuck member's partitions", func() bool {
		select {
		case err := <-done:
			t.Fatalf("the run exited (%v) while the stuck member's partitions were not counted", err)
		default:
		}
		return len(waiting()) > 0
	})
	w := waiting()[0].ContextMap()
	t.Logf("waiting: %v (%v)", w["waiting_partitions"], w["checkpointed_of_end"])
	if s, _ := w["checkpointed_of_end"].(string); !strings.Contains(s, "no checkpoint") {
		t.Errorf("checkpointed_of_end %q: want the stuck member's partitions shown without a checkpoint", s)
	}
	select {
	case err := <-done:
		t.Fatalf("the run exited (%v) while partitions were not counted", err)
	default:
	}
	// The member goes away: the group rebalances, the run gets its
	// partitions, counts them and exits.
	stuck.Close()
	stuckOpen = false
	e.wait(done, time.Minute)
	exp := e.expectExact(ctx, []time.Duration{time.Minute, time.Hour})
	if exp.Valid != 12_000 {
		t.Fatalf("oracle saw %d valid records, want 12000", exp.Valid)
	}
	if n := len(logs.FilterMessage("input consumed and idle; exiting").All()); n != 1 {
		t.Fatalf("%d exit lines, want 1", n)
	}
}
