package e2e

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
)

// TestExitWhenIdleAfterCrash: a run (no static membership) is SIGKILLed
// mid-way; its session lingers in the group until it times out. Then a
// replica that checkpoints only every 20 s starts, and a batch run with
// --exit-when-idle: the two share the partitions once the dead member is
// gone. The batch run must exit 0 only once every partition, the
// replica's too, is counted up to the end it saw at start (its own
// partitions are done long before): right when it exits, the checkpoints
// rows cover every record; once the replica stops (flushing its open
// windows), every row equals the oracle's count of the whole topic.
func TestExitWhenIdleAfterCrash(t *testing.T) {
	e := newEnv(t, 8)
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.produce(ctx, gen.Options{Count: 30_000, Rate: 3000, URLs: 300, Seed: 17, Unkeyed: true,
			OutOfOrderFraction: 0.1, LateFraction: 0.01, InvalidFraction: 0.01})
	}()
	producing := doneFunc(wg.Wait)
	// NB: a long session: the dead member stays in the group for a while.
	first := e.run("--state-dir", t.TempDir(), "--session-timeout", "15s")
	waitFor(t, time.Minute, "a first checkpoint", func() bool { return sumNext(e.positions(ctx)) > 0 })
	if !producing() {
		t.Fatal("the producer finished before the kill: not mid-way")
	}
	first.kill(syscall.SIGKILL)
	first.wait(t, 10*time.Second)
	wg.Wait()
	killedAt, total := sumNext(e.positions(ctx)), e.endOffsets(ctx)
	if killedAt >= total {
		t.Fatalf("the killed run had checkpointed %d of %d records: not mid-way", killedAt, total)
	}
	t.Logf("killed with %d of %d records checkpointed", killedAt, total)

	replica := e.run("--state-dir", t.TempDir(), "--checkpoint-interval", "20s")
	batch := e.run("--state-dir", t.TempDir(), "--exit-when-idle", "1s")
	if code := batch.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("batch run: exit code %d", code)
	}
	// NB: right away, while the replica still runs: the batch run's exit
	// must mean the whole topic is checkpointed.
	if got := sumNext(e.positions(ctx)); got != total {
		t.Fatalf("the batch run exited with checkpoints covering %d of %d records", got, total)
	}
	if exits := batch.logEntries("input consumed and idle; exiting"); len(exits) == 1 {
		t.Logf("the batch run owned %v partitions at its exit and logged %d waits for other partitions",
			exits[0]["partitions_owned"], len(batch.logEntries(waitingMsg)))
	}
	// The replica's windows still open reach url_clicks with its final
	// checkpoint.
	replica.kill(syscall.SIGTERM)
	if code := replica.wait(t, time.Minute); code != 0 {
		t.Fatalf("replica: exit code %d after SIGTERM", code)
	}
	exp := e.expectExact(ctx, e.records(ctx))
	t.Logf("%d valid records exact", exp.Valid)
}

const waitingMsg = "exit when idle: owned partitions are done; waiting for other partitions to be counted (owned by another member, or by one that died and holds them until its session times out)"
