package e2e

import (
	"context"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/clickagg/clickagg/sink"
)

// TestDedupExactUnderSIGKILL: 20% of the records are retries of earlier
// ones (same id); `clickagg run --dedup-window 15m` is SIGKILLed while it
// consumes, sometimes losing its state folder (a rebuild replays from the
// dedup restart offset), and in the end every url_clicks and url_totals
// row equals the number of distinct event ids, as the independent oracle
// computes it.
func TestDedupExactUnderSIGKILL(t *testing.T) {
	e := newEnv(t, 4)
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	var st gen.Stats
	isProducing := doneFunc(func() {
		// NB: keyed by URL, so every copy of a click lands on one
		// partition; late records go back 10-11m, inside the 15m window.
		st = e.produce(ctx, gen.Options{Count: 30_000, Rate: 1500, EventRate: 100,
			StartTime: time.Now().Add(-20 * time.Minute), URLs: 300, Zipf: 1.1, Seed: seed,
			DuplicateFraction: 0.2, LateFraction: 0.02, OutOfOrderFraction: 0.1, InvalidFraction: 0.01})
	})
	dir := filepath.Join(t.TempDir(), "state")
	// NB: 1m windows only: the window restart offset stays recent, so a
	// rebuild must reach further back, to the dedup restart offset.
	args := []string{"--state-dir", dir, "--dedup-window", "15m", "--windows", "1m"}
	sizes := []time.Duration{time.Minute}
	kills, _ := e.killWhileConsuming(args, dir, 4, 2, time.Second, isProducing, rng)
	p := e.run(append(args, "--exit-when-idle", "3s")...)
	if code := p.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("final run: exit code %d", code)
	}
	recs := e.records(ctx)
	exp := oracle.ComputeDedup(recs, sizes, 2048, 15*time.Minute)
	distinct := oracle.DistinctIDs(recs, sizes, 2048)
	if !maps.Equal(exp.Clicks, distinct.Clicks) || !maps.Equal(exp.Totals, distinct.Totals) || exp.Duplicates != distinct.Duplicates {
		t.Fatalf("the oracle's dedup (%d duplicates) disagrees with distinct ids (%d duplicates): the input does not exercise what this test means to", exp.Duplicates, distinct.Duplicates)
	}
	if exp.Duplicates < int64(len(recs))/8 {
		t.Fatalf("only %d duplicates in %d records", exp.Duplicates, len(recs))
	}
	if err := oracle.Compare(ctx, e.pool, sink.DefaultSchema, exp); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d kills; %d records produced (%d duplicates by the generator); %d counted, %d duplicates, %d invalid: exact",
		kills, st.Produced, st.Duplicates, exp.Valid, exp.Duplicates, exp.Invalid)
}
