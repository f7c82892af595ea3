package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/state"
	"github.com/clickagg/clickagg/stream"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// restoreTimeout bounds one assignment's restore decisions (PostgreSQL and
// Kafka round trips, not the replay itself, which happens in the loop).
const restoreTimeout = 30 * time.Second

// onAssigned creates a task for each newly assigned partition and decides
// where its consumption starts. Runs gated by
// BlockRebalanceOnPoll.
func (pl *Pipeline) onAssigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	pl.awaitJob(ctx)
	pl.status.Lock()
	pl.status.s.Joined = true
	pl.status.s.Fenced = false // NB: the group took us back
	pl.status.Unlock()
	parts := assigned[pl.opts.Consumer.Topic]
	if len(parts) == 0 {
		pl.publishTasks()
		return
	}
	slices.Sort(parts)
	rctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	if err := pl.restore(rctx, parts, time.Now()); err != nil {
		// NB: AdjustFetchOffsetsFn fails for these partitions, which makes
		// the client leave this group session and rejoin; the partitions
		// are restored then.
		pl.log.Error("restore assigned partitions", zap.Int32s("partitions", parts), zap.Error(err))
	}
	pl.publishTasks()
}

// adjustOffsets points the consumer at each partition's restore start. Runs
// outside the rebalance gate, after onAssigned.
func (pl *Pipeline) adjustOffsets(_ context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	pl.startMu.Lock()
	defer pl.startMu.Unlock()
	for topic, parts := range offsets {
		if topic != pl.opts.Consumer.Topic {
			continue
		}
		for p := range parts {
			start, ok := pl.starts[p]
			if !ok {
				return nil, fmt.Errorf("partition %d: not restored (see the earlier restore error)", p)
			}
			parts[p] = kgo.NewOffset().At(start).WithEpoch(-1)
		}
	}
	return offsets, nil
}

// onRevoked checkpoints before giving partitions up, so their new owner
// starts from fresh positions, then drops their tasks.
func (pl *Pipeline) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	parts := revoked[pl.opts.Consumer.Topic]
	if len(parts) == 0 {
		return
	}
	if !pl.closing {
		cctx, cancel := context.WithTimeout(ctx, pl.opts.ShutdownTimeout)
		if err := pl.checkpoint(cctx, false, "revoke"); err != nil {
			// Safe: the new owner rebuilds from PostgreSQL.
			pl.log.Warn("checkpoint before revoke", zap.Error(err))
		} else {
			pl.commitKafka(cctx, true /* sync */)
		}
		cancel()
	}
	pl.dropTasks(parts, "revoked")
}

// awaitJob lets the checkpoint in flight finish (bounded: a callback must
// not outlast the rebalance timeout) before a callback changes the tasks.
// A failure is logged: the job's counts went back to the operators, or its
// partitions re-synced.
func (pl *Pipeline) awaitJob(ctx context.Context) {
	if pl.job == nil {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, pl.opts.ShutdownTimeout)
	defer cancel()
	if err := pl.finishJob(wctx); err != nil {
		pl.log.Warn("checkpoint in flight at rebalance", zap.Error(err))
	}
}

// onLost drops the tasks without writing: another member may own the
// partitions already, and fencing would refuse the write anyway.
func (pl *Pipeline) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	pl.awaitJob(ctx)
	if parts := lost[pl.opts.Consumer.Topic]; len(parts) > 0 {
		pl.dropTasks(parts, "lost")
	}
}

func (pl *Pipeline) dropTasks(parts []int32, why string) {
	pl.startMu.Lock()
	for _, p := range parts {
		delete(pl.tasks, p)
		delete(pl.starts, p)
	}
	pl.startMu.Unlock()
	pl.forgetPartitionSeries(parts)
	pl.log.Info("partitions "+why, zap.Int32s("partitions", parts))
	pl.publishTasks()
}

// restore creates tasks for parts from their PostgreSQL rows and the local
// state store, and records where each starts consuming. It is all or
// nothing: the tasks and start offsets are installed only when every
// partition is ready, so a failure leaves the previous tasks in place.
func (pl *Pipeline) restore(ctx context.Context, parts []int32, now time.Time) error {
	rows, err := retryPG(ctx, pl, func() (map[int32]sink.Position, error) { return pl.sink.ReadPositions(ctx, parts) })
	if err != nil {
		return err
	}
	var missing []int32
	for _, p := range parts {
		if _, ok := rows[p]; !ok {
			missing = append(missing, p)
		}
	}
	logStarts, ends, err := pl.logBounds(ctx, parts)
	if err != nil {
		return err
	}
	for _, p := range missing {
		off := logStarts[p]
		if pl.opts.StartOffset == "latest" {
			off = ends[p]
		}
		init := sink.Position{NextOffset: off, Watermark: sink.NoWatermark, RestartOffset: off,
			DedupOffset: off, DedupClock: sink.NoWatermark, DeadLetterPartition: -1, DeadLetterOffset: -1}
		if pl.dl != nil {
			init.DeadLetterPartition, init.DeadLetterOffset = pl.dl.position(p)
		}
		pos, err := retryPG(ctx, pl, func() (sink.Position, error) { return pl.sink.InitPosition(ctx, p, init) })
		if err != nil {
			return err
		}
		rows[p] = pos
		pl.log.Info("new partition", zap.Int32("partition", p), zap.String("start_offset", pl.opts.StartOffset), zap.Int64("offset", pos.NextOffset))
	}
	var sent map[int32]map[int64]bool
	if pl.dl != nil {
		if sent, err = pl.dl.scan(ctx, rows); err != nil {
			return err
		}
	}
	tasks := make(map[int32]*task, len(parts))
	starts := make(map[int32]int64, len(parts))
	for _, p := range parts {
		t, start, err := pl.restoreOne(p, rows[p], logStarts[p], ends[p], now)
		if err != nil {
			return err
		}
		if len(sent[p]) > 0 {
			t.deadLettered = sent[p]
			pl.log.Info("dead-letter records of an earlier run found past the checkpoint; not sending them again",
				zap.Int32("partition", p), zap.Int("records", len(sent[p])))
		}
		tasks[p], starts[p] = t, start
	}
	pl.startMu.Lock()
	for p, t := range tasks {
		pl.tasks[p] = t
		pl.starts[p] = starts[p]
	}
	pl.startMu.Unlock()
	return nil
}

// logBounds returns where the logs of parts start and end (the last
// stable offset: where a read-committed consumer is caught up).
func (pl *Pipeline) logBounds(ctx context.Context, parts []int32) (starts, ends map[int32]int64, err error) {
	if starts, err = pl.listOffsets(ctx, parts, "start", pl.adm.ListStartOffsets); err != nil {
		return nil, nil, err
	}
	if ends, err = pl.listOffsets(ctx, parts, "end", pl.adm.ListCommittedOffsets); err != nil {
		return nil, nil, err
	}
	return starts, ends, nil
}

// listOffsets lists the start or end offsets of parts, retrying transient
// broker errors until ctx ends. Errors of partitions not in parts (say, a
// leader moving elsewhere in the topic) do not matter. It also refreshes
// the topic's partition count.
func (pl *Pipeline) listOffsets(ctx context.Context, parts []int32, what string, list func(context.Context, ...string) (kadm.ListedOffsets, error)) (map[int32]int64, error) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		out, n, err := pl.listOffsetsOnce(ctx, parts, list)
		if err == nil {
			pl.topicPartitions = max(pl.topicPartitions, n)
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("list %s offsets of %s: %w", what, pl.opts.Consumer.Topic, err)
		}
		pl.log.Warn("list offsets; retrying", zap.String("which", what), zap.Int("attempt", attempt), zap.Error(err))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list %s offsets of %s: %w", what, pl.opts.Consumer.Topic, errors.Join(err, ctx.Err()))
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (pl *Pipeline) listOffsetsOnce(ctx context.Context, parts []int32, list func(context.Context, ...string) (kadm.ListedOffsets, error)) (map[int32]int64, int, error) {
	listed, err := list(ctx, pl.opts.Consumer.Topic)
	if err != nil && len(listed) == 0 {
		return nil, 0, err
	}
	all := make(map[int32]kadm.ListedOffset)
	listed.Each(func(o kadm.ListedOffset) {
		if o.Partition >= 0 {
			all[o.Partition] = o
		}
	})
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		o, ok := all[p]
		switch {
		case !ok:
			return nil, 0, fmt.Errorf("partition %d not listed", p)
		case o.Err != nil:
			return nil, 0, fmt.Errorf("partition %d: %w", p, o.Err)
		}
		out[p] = o.Offset
	}
	return out, len(all), nil
}

// restoreOne builds partition p's task from its checkpoints row and returns
// it with the offset consumption starts at.
func (pl *Pipeline) restoreOne(p int32, pos sink.Position, logStart, end int64, now time.Time) (*task, int64, error) {
	op, err := stream.NewOperator(pl.opts.Operator)
	if err != nil {
		return nil, 0, err
	}
	t := &task{p: p, op: op, committed: pos, end: end, assignedAt: now, lastRecord: now, deliveredAt: pl.polls}
	if op.Deduplicating() {
		op.SetLookup(func(slot int64, id []byte) (int64, bool) {
			ts, ok, key, err := pl.store.Seen(p, slot, id, t.seenKey)
			t.seenKey = key
			if err != nil && pl.storeErr == nil {
				pl.storeErr = err
			}
			return ts, ok
		})
	}
	meta, ok, err := pl.store.Meta(p)
	if err != nil {
		return nil, 0, err
	}
	local := ok && meta == metaOf(pos)
	var reg map[state.Window]state.OpenWindow
	if local {
		if reg, err = pl.store.Windows(p); err != nil {
			return nil, 0, err
		}
		// NB: a replay of held windows counts only the sizes configured
		// now, cannot tell duplicates from the sightings it stored, and
		// needs its records, from this log: rebuild instead (which says
		// what retention deleted).
		noReplay := op.Deduplicating() || end < pos.NextOffset
		for w, e := range reg {
			if e.MemFrom >= 0 && (noReplay || !slices.Contains(op.Sizes(), w.Size) || e.MemFrom < logStart) {
				local = false
				pl.log.Info("local state holds windows in memory only that this run cannot replay; rebuilding",
					zap.Int32("partition", p), zap.Int64("held_from", e.MemFrom), zap.Int64("log_start_offset", logStart))
				break
			}
		}
	}
	if end < pos.NextOffset {
		pl.log.Error("the checkpoint is beyond the partition's end: was the topic deleted and recreated? records below the checkpoint are skipped",
			zap.Int32("partition", p), zap.Int64("next_offset", pos.NextOffset), zap.Int64("end_offset", end))
	}
	var start int64
	if local {
		// The local state is this very checkpoint's: resume at once, after
		// replaying what held windows kept in memory only.
		open := make(map[stream.Window]int64, len(reg))
		memFrom := make(map[stream.Window]int64)
		for w, e := range reg {
			open[stream.Window(w)] = e.First
			if e.MemFrom >= 0 {
				memFrom[stream.Window(w)] = e.MemFrom
			}
		}
		op.Resume(pos.NextOffset, pos.Watermark, open, memFrom)
		if op.Deduplicating() {
			clock, hist, ok, err := pl.store.Dedup(p)
			if err != nil {
				return nil, 0, err
			}
			if ok {
				ms := make([]stream.ClockMark, len(hist))
				for i, m := range hist {
					ms[i] = stream.ClockMark{Slot: m[0], Offset: m[1], Before: m[2]}
				}
				op.ResumeDedup(stream.DedupState{Clock: clock, Hist: ms})
				if err := pl.store.ScanSeen(p, op.DedupLiveSlot(), op.LoadSighting); err != nil {
					return nil, 0, err
				}
				op.FinishLoad()
			}
		}
		start = op.NextOffset()
		pl.m.Restores.WithLabelValues("local").Inc()
		if !op.Replaying() {
			pl.m.RestoreDuration.Observe(time.Since(now).Seconds())
		}
	} else {
		// No local state, a stale one, a crash between the two writes, or a
		// zombie's leftovers: rebuild from PostgreSQL's restart offset.
		b := pl.store.NewBatch()
		b.DropPartition(p)
		if err := b.Commit(); err != nil {
			return nil, 0, err
		}
		from := pos.RestartOffset
		if op.Deduplicating() {
			from = min(pos.DedupOffset, from)
		}
		if logStart > from && from < pos.NextOffset && logStart <= pos.RestartOffset {
			pl.log.Warn("records needed to rebuild dedup sightings were deleted by retention; duplicates of them will be counted",
				zap.Int32("partition", p), zap.Int64("dedup_offset", pos.DedupOffset), zap.Int64("log_start_offset", logStart))
			from = logStart
		}
		if logStart > from && from < pos.NextOffset {
			pl.log.Error("records needed to rebuild open windows were deleted by retention; their counts will be short",
				zap.Int32("partition", p), zap.Int64("restart_offset", pos.RestartOffset),
				zap.Int64("log_start_offset", logStart), zap.Int64("next_offset", pos.NextOffset))
			// NB: never wait for records that no longer exist: a replay
			// only ends when it reaches the checkpoint.
			from = min(logStart, pos.NextOffset)
		}
		op.StartReplayDedup(from, max(from, pos.RestartOffset), pos.NextOffset, pos.Watermark, pos.DedupClock)
		start = from
		kind := "fresh"
		if op.Replaying() {
			kind = "rebuild"
		} else {
			pl.m.RestoreDuration.Observe(time.Since(now).Seconds())
		}
		t.metaDirty = true
		pl.m.Restores.WithLabelValues(kind).Inc()
	}
	pl.log.Info("partition assigned",
		zap.Int32("partition", p), zap.Bool("local_state", local),
		zap.Int64("next_offset", pos.NextOffset), zap.Int64("restart_offset", pos.RestartOffset),
		zap.Int64("dedup_offset", pos.DedupOffset), zap.Int64("start", start))
	return t, start, nil
}

// resync re-restores partitions whose checkpoint was fenced while this
// process still believes it owns them, and seeks their consumption. It
// retries until it succeeds or ctx ends: until then the old tasks stay in
// place, and every checkpoint they attempt is fenced again.
func (pl *Pipeline) resync(ctx context.Context, parts []int32) error {
	backoff := 100 * time.Millisecond
	for {
		err := pl.restore(ctx, parts, time.Now())
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return err
		}
		pl.log.Warn("re-sync fenced partitions; retrying", zap.Int32s("partitions", parts), zap.Error(err))
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	seek := make(map[int32]kgo.EpochOffset, len(parts))
	pl.startMu.Lock()
	for _, p := range parts {
		seek[p] = kgo.EpochOffset{Epoch: -1, Offset: pl.starts[p]}
	}
	pl.startMu.Unlock()
	pl.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{pl.opts.Consumer.Topic: seek})
	return nil
}

// retryPG runs fn until it succeeds, fails for good, or ctx ends, backing
// off between attempts, and keeps the PostgreSQL health flag current.
func retryPG[T any](ctx context.Context, pl *Pipeline, fn func() (T, error)) (T, error) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := fn()
		if err == nil {
			pl.setPostgresOK(true, nil)
			return v, nil
		}
		if !sink.Retryable(err) || ctx.Err() != nil {
			return v, err
		}
		pl.setPostgresOK(false, err)
		pl.log.Warn("postgres unavailable; retrying", zap.Int("attempt", attempt), zap.Duration("backoff", backoff), zap.Error(err))
		select {
		case <-ctx.Done():
			return v, errors.Join(err, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
