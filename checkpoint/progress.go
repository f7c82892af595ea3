package checkpoint

import (
	"context"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clickagg/clickagg/stream"
	"github.com/twmb/franz-go/pkg/kadm"
	"go.uber.org/zap"
)

// The Kafka runner's view of time and progress: the status and gauges of
// owned partitions, idle-partition watermarks, the topic's partition count
// and end offsets, and the periodic progress log line.

// publishTasks refreshes the task part of Status and the gauges.
func (pl *Pipeline) publishTasks() {
	var parts, restoring []int32
	var owned []PartitionStatus
	var lag int64
	open, pending := 0, 0
	for _, p := range slices.Sorted(maps.Keys(pl.c.tasks)) {
		t := pl.c.tasks[p]
		parts = append(parts, p)
		ps := PartitionStatus{Partition: p, Restoring: !t.live(), Lag: -1}
		if ps.Restoring {
			restoring = append(restoring, p)
		}
		if l, ok := t.lag(); ok {
			lag += l
			ps.Lag = l
			pl.m.Lag.WithLabelValues(strconv.Itoa(int(p))).Set(float64(l))
		}
		if wm := t.op.Watermark(); wm != stream.NoWatermark {
			ps.Watermark = time.UnixMilli(wm)
			pl.m.Watermark.WithLabelValues(strconv.Itoa(int(p))).Set(float64(wm) / 1000)
			pl.m.WatermarkLag.WithLabelValues(strconv.Itoa(int(p))).Set(float64(time.Now().UnixMilli()-wm) / 1000)
		}
		owned = append(owned, ps)
		open += t.op.OpenWindows()
		pending += t.op.PendingKeys() + t.op.HeldKeys()
	}
	pl.m.Partitions.Set(float64(len(parts)))
	pl.m.OpenWindows.Set(float64(open))
	pl.m.PendingKeys.Set(float64(pending))
	if pl.store != nil {
		pl.m.StateBytes.Set(float64(pl.store.DiskUsage()))
	}
	pl.board.setPartitions(parts, restoring, lag, owned, time.Now())
}

// forgetPartitionSeries drops the per-partition series of partitions this
// process no longer owns, so dashboards do not show stale lag.
func (pl *Pipeline) forgetPartitionSeries(parts []int32) {
	for _, p := range parts {
		l := strconv.Itoa(int(p))
		pl.m.Lag.DeleteLabelValues(l)
		pl.m.Watermark.DeleteLabelValues(l)
		pl.m.WatermarkLag.DeleteLabelValues(l)
	}
}

// peakRSS returns the process's peak resident set size (Linux VmHWM), or
// -1. NB: not getrusage: a process started by fork+exec from a large parent
// can report the parent's peak there.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return -1
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// advanceIdle moves the watermark of caught-up partitions without records
// for IdleTimeout to the wall clock minus the out-of-orderness. The result
// is recorded in the next checkpoint row, so replays see it.
func (pl *Pipeline) advanceIdle(ctx context.Context, now time.Time) {
	if pl.opts.IdleTimeout <= 0 {
		return
	}
	var idle []*task
	for _, t := range pl.c.tasks {
		if t.live() && now.Sub(t.lastRecord) >= pl.opts.IdleTimeout {
			idle = append(idle, t)
		}
	}
	if len(idle) == 0 || !pl.refreshEnds(ctx) {
		return
	}
	wm := now.UnixMilli() - pl.opts.Operator.OutOfOrder.Milliseconds()
	for _, t := range idle {
		if t.end >= 0 && t.op.NextOffset() >= t.end && t.op.AdvanceWatermark(wm) {
			pl.log.Debug("idle partition watermark advanced", zap.Int32("partition", t.p), zap.Int64("watermark", t.op.Watermark()))
		}
	}
}

// metadataInterval is how often the topic's partition count is refreshed:
// windows are final only when every partition has passed them, so a topic
// that grew must be noticed.
const metadataInterval = 10 * time.Second

func (pl *Pipeline) refreshPartitionCount(ctx context.Context) {
	mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	md, err := pl.adm.Metadata(mctx, pl.opts.Consumer.Topic)
	if err != nil {
		pl.log.Debug("refresh topic metadata", zap.Error(err))
		return
	}
	if td, ok := md.Topics[pl.opts.Consumer.Topic]; ok && td.Err == nil && len(td.Partitions) > 0 {
		pl.c.topicPartitions = max(pl.c.topicPartitions, len(td.Partitions))
	}
}

// refreshEnds reads the partitions' last stable offsets (the end a
// read-committed consumer can reach) and the topic's partition count.
func (pl *Pipeline) refreshEnds(ctx context.Context) bool {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	listed, err := pl.adm.ListCommittedOffsets(lctx, pl.opts.Consumer.Topic)
	if err != nil {
		pl.log.Debug("list end offsets", zap.Error(err))
		return false
	}
	n := 0
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Partition < 0 {
			return
		}
		n++
		if t := pl.c.tasks[o.Partition]; t != nil {
			t.end = o.Offset
		}
	})
	if n > 0 {
		pl.c.topicPartitions = max(pl.c.topicPartitions, n)
	}
	return true
}

// progress accumulates the numbers of the periodic log line.
type progress struct {
	since       time.Time
	consumed    int64
	late        int64
	duplicates  int64
	filtered    int64
	rejected    [32]int64
	checkpoints int64
	rows        int64
}

func (s *progress) reset(now time.Time) { *s = progress{since: now} }

func (pl *Pipeline) logProgress(now time.Time, force bool) {
	if pl.opts.StatsInterval < 0 || (!force && now.Sub(pl.stats.since) < pl.opts.StatsInterval) {
		return
	}
	s := &pl.stats
	fields := []zap.Field{
		zap.Int64("records", s.consumed),
		zap.Float64("records_per_sec", float64(s.consumed)/max(now.Sub(s.since).Seconds(), 1e-9)),
		zap.Int64("late", s.late),
		zap.Int64("duplicates", s.duplicates),
		zap.Int64("filtered", s.filtered),
		zap.Int64("checkpoints", s.checkpoints),
		zap.Int64("rows_written", s.rows),
		zap.Int("partitions", len(pl.c.tasks)),
	}
	// NB: how far behind: records left to read (known ends only), and the
	// wall clock minus the slowest partition's watermark.
	lag, wm := int64(0), stream.NoCap
	for _, t := range pl.c.tasks {
		if l, ok := t.lag(); ok {
			lag += l
		}
		if w := t.op.Watermark(); w != stream.NoWatermark {
			wm = min(wm, w)
		}
	}
	fields = append(fields, zap.Int64("lag_records", lag))
	if wm != stream.NoCap {
		fields = append(fields, zap.Duration("event_time_lag", now.Sub(time.UnixMilli(wm)).Round(time.Millisecond)))
	}
	var rejected []zap.Field
	for _, r := range stream.Reasons() {
		if n := s.rejected[r]; n > 0 {
			rejected = append(rejected, zap.Int64(r.String(), n))
		}
	}
	if len(rejected) > 0 {
		fields = append(fields, zap.Dict("rejected", rejected...))
	}
	pl.log.Info("progress", fields...)
	s.reset(now)
}
