package checkpoint

import (
	"fmt"
	"testing"
	"time"

	"github.com/clickagg/clickagg/stream"
)

// TestAlignWatermarksCaps: each partition is capped at the lowest own
// watermark among the other live partitions with records left to read;
// caught-up and stalled partitions hold nobody back, and a pause of the
// whole loop is not a stall.
func TestAlignWatermarksCaps(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := base.Add(time.Hour)
	type part struct {
		own      time.Duration // event time of its one record, after base
		lagging  bool
		fetchAgo time.Duration // since a record last arrived
		pollsAgo uint64        // polls since records last arrived
	}
	newPipeline := func(parts []part) *Pipeline {
		pl := &Pipeline{opts: Options{AlignWatermarks: true}, c: &Coordinator{tasks: map[int32]*task{}}, polls: 100}
		for i, p := range parts {
			op, err := stream.NewOperator(stream.OperatorOptions{Windows: []time.Duration{time.Minute}})
			if err != nil {
				t.Fatal(err)
			}
			op.StartReplay(0, 0, stream.NoWatermark)
			op.SetWatermarkCap(stream.NoWatermark) // NB: held until aligned
			op.Process(stream.Record{Offset: 0, Value: fmt.Appendf(nil, `{"url":"/a","ts":%d}`, base.Add(p.own).UnixMilli())})
			end := int64(1)
			if p.lagging {
				end = 1000
			}
			pl.c.tasks[int32(i)] = &task{p: int32(i), op: op, end: end, lastRecord: now.Add(-p.fetchAgo), deliveredAt: pl.polls - p.pollsAgo}
		}
		return pl
	}
	m := time.Minute
	cases := []struct {
		name  string
		parts []part
		want  []time.Duration // watermarks after base
	}{
		{"alone", []part{{own: 5 * m, lagging: true}}, []time.Duration{5 * m}},
		{"slowest caps the others", []part{{own: 5 * m, lagging: true}, {own: 9 * m, lagging: true}, {own: 7 * m, lagging: true}},
			[]time.Duration{5 * m, 5 * m, 5 * m}},
		{"the slowest is capped by the next", []part{{own: 5 * m, lagging: true}, {own: 5 * m, lagging: true}, {own: 8 * m}},
			[]time.Duration{5 * m, 5 * m, 5 * m}},
		{"caught up holds nobody back", []part{{own: 2 * m}, {own: 9 * m, lagging: true}},
			[]time.Duration{2 * m, 9 * m}},
		{"stalled holds nobody back", []part{{own: 2 * m, lagging: true, fetchAgo: 11 * time.Second, pollsAgo: 10}, {own: 9 * m, lagging: true}},
			[]time.Duration{2 * m, 9 * m}},
		{"a paused loop is not a stall", []part{{own: 2 * m, lagging: true, fetchAgo: time.Minute, pollsAgo: 1}, {own: 9 * m, lagging: true}},
			[]time.Duration{2 * m, 2 * m}},
	}
	for _, c := range cases {
		pl := newPipeline(c.parts)
		pl.alignWatermarks(now)
		for i, w := range c.want {
			got := pl.c.tasks[int32(i)].op.Watermark()
			if want := base.Add(w).UnixMilli(); got != want {
				t.Errorf("%s: partition %d watermark %s, want %s", c.name, i, time.UnixMilli(got).UTC().Sub(base), w)
			}
		}
	}
}
