package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/clickagg/clickagg/internal/testutil/pgtest"
	"github.com/cockroachdb/datadriven"
)

// TestProtocolRandomCrashes runs the scripts' commands in random
// schedules: two partitions, late and out-of-order records, 1m and 1h
// windows held in memory, checkpoints with every fault, crashes that keep
// or lose the local state, between any two steps (mid-replay included).
// Whatever the schedule, once every record is fed and flushed PostgreSQL
// holds exactly the counts of the input.
func TestProtocolRandomCrashes(t *testing.T) {
	seeds := 12
	if testing.Short() {
		seeds = 3
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 3))
			h := &protocolHarness{t: t, dsn: pgtest.DSN(t)}
			defer h.close()
			do := func(cmd string, args ...string) string {
				t.Helper()
				d := &datadriven.TestData{Cmd: cmd}
				for _, a := range args {
					k, v, _ := strings.Cut(a, "=")
					d.CmdArgs = append(d.CmdArgs, datadriven.CmdArg{Key: k, Vals: []string{v}})
				}
				out, err := h.cmd(context.Background(), d)
				if err != nil && !errors.Is(err, errCrash) {
					t.Fatalf("%s %v: %v", cmd, args, err)
				}
				return out
			}
			args := []string{"windows=1m,1h", "ooo=3s", "partitions=2"}
			if rng.IntN(2) == 0 {
				args = append(args, "hold=1m")
			}
			do("new", args...)
			for p := range int32(2) {
				for i, ts := 0, 0; i < 400; i++ {
					ts += rng.IntN(4)
					at := ts - rng.IntN(8) // out of order, some late
					h.src.produce(p, fmt.Sprintf(`{"url":"/u%d","ts":%d}`, rng.IntN(7), t0+int64(max(at, 0))*1000), t0)
				}
			}
			do("open", "p=0", "p=1")
			var log []string
			for range 60 {
				switch r := rng.IntN(10); {
				case r < 5:
					p := fmt.Sprint(rng.IntN(2))
					log = append(log, "feed "+p)
					do("feed", "p="+p, fmt.Sprintf("n=%d", 1+rng.IntN(40)))
				case r < 8:
					fault := []string{"", "", "", "before", "after", "lost-ack"}[rng.IntN(6)]
					log = append(log, "checkpoint "+fault)
					args := []string{"fault=" + fault}
					if rng.IntN(5) == 0 {
						args = append(args, "flush=")
					}
					do("checkpoint", args...)
					if (fault == "before" || fault == "after") && rng.IntN(2) == 0 {
						// A checkpoint that fails for good stops the Kafka
						// runner: the process restarts. (Otherwise the next
						// checkpoint finds the row moved, or recognises its
						// own commit, and re-syncs or goes on.)
						log = append(log, "crash")
						do("crash")
						do("open", "p=0", "p=1")
					}
				default:
					lose := rng.IntN(3) == 0
					log = append(log, fmt.Sprint("crash lose-state=", lose))
					if lose {
						do("crash", "lose-state=")
					} else {
						do("crash")
					}
					do("open", "p=0", "p=1")
				}
			}
			// NB: a fenced final checkpoint re-syncs: its partitions replay
			// again before they can flush.
			for range 5 {
				do("feed", "p=0")
				do("feed", "p=1")
				if !strings.Contains(do("checkpoint", "flush="), "re-synced") {
					break
				}
			}
			if got := do("exact"); got != "exact\n" {
				t.Fatalf("after %v:\n%s", log, got)
			}
		})
	}
}
