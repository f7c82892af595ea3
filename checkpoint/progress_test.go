package checkpoint

import (
	"fmt"
	"testing"
	"time"

	"github.com/clickagg/clickagg/stream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestProgressLineShowsLag: the periodic progress line says how far behind
// the process is: records left to read over its partitions, and the wall
// clock minus the slowest partition's watermark.
func TestProgressLineShowsLag(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	now := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	pl := &Pipeline{log: zap.New(core), opts: Options{StatsInterval: time.Second}, c: &Coordinator{tasks: map[int32]*task{}}}
	for p, c := range []struct {
		event time.Duration // before now
		end   int64
	}{{90 * time.Second, 1000}, {30 * time.Second, 41}} {
		op, err := stream.NewOperator(stream.OperatorOptions{Windows: []time.Duration{time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		op.StartReplay(0, 0, stream.NoWatermark)
		if _, err := op.Process(stream.Record{Offset: 0, Value: fmt.Appendf(nil, `{"url":"/a","ts":%d}`, now.Add(-c.event).UnixMilli())}); err != nil {
			t.Fatal(err)
		}
		pl.c.tasks[int32(p)] = &task{p: int32(p), op: op, end: c.end}
	}
	pl.logProgress(now, true)
	got := logs.FilterMessage("progress").All()
	if len(got) != 1 {
		t.Fatalf("%d progress lines", len(got))
	}
	f := got[0].ContextMap()
	// NB: 999 + 40 records left; the slowest watermark is 90s behind (no
	// out-of-orderness).
	if f["lag_records"] != int64(1039) || f["event_time_lag"] != 90*time.Second {
		t.Errorf("lag_records %v event_time_lag %v, want 1039 and 1m30s", f["lag_records"], f["event_time_lag"])
	}
}
