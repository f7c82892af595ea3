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
// where its consumption starts (DESIGN.md I4, I5). Runs gated by
// BlockRebalanceOnPoll.
func (pl *Pipeline) onAssigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	pl.status.Lock()
	pl.status.s.Joined = true
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
		for _, p := range parts {
			delete(pl.tasks, p)
		}
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

// onLost drops the tasks without writing: another member may own the
// partitions already, and fencing would refuse the write anyway.
func (pl *Pipeline) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
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
	pl.log.Info("partitions "+why, zap.Int32s("partitions", parts))
	pl.publishTasks()
}

// restore creates tasks for parts from their PostgreSQL rows and the local
// state store, and records where each starts consuming.
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
	logStarts, err := pl.listOffsets(ctx, pl.adm.ListStartOffsets)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		starts := logStarts
		if pl.opts.StartOffset == "latest" {
			if starts, err = pl.listOffsets(ctx, pl.adm.ListCommittedOffsets); err != nil {
				return err
			}
		}
		for _, p := range missing {
			off, ok := starts[p]
			if !ok {
				return fmt.Errorf("partition %d: no %s offset listed", p, pl.opts.StartOffset)
			}
			pos, err := retryPG(ctx, pl, func() (sink.Position, error) {
				return pl.sink.InitPosition(ctx, p, sink.Position{NextOffset: off, Watermark: sink.NoWatermark, RestartOffset: off})
			})
			if err != nil {
				return err
			}
			rows[p] = pos
			pl.log.Info("new partition", zap.Int32("partition", p), zap.String("start_offset", pl.opts.StartOffset), zap.Int64("offset", pos.NextOffset))
		}
	}
	for _, p := range parts {
		if err := pl.restoreOne(p, rows[p], logStarts[p], now); err != nil {
			return err
		}
	}
	return nil
}

// listOffsets lists per-partition offsets of the topic and refreshes the
// topic's partition count.
func (pl *Pipeline) listOffsets(ctx context.Context, list func(context.Context, ...string) (kadm.ListedOffsets, error)) (map[int32]int64, error) {
	listed, err := list(ctx, pl.opts.Consumer.Topic)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", pl.opts.Consumer.Topic, err)
	}
	out := make(map[int32]int64)
	var lerr error
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			lerr = fmt.Errorf("list offsets of %s partition %d: %w", o.Topic, o.Partition, o.Err)
			return
		}
		out[o.Partition] = o.Offset
	})
	if lerr != nil {
		return nil, lerr
	}
	pl.topicPartitions = max(pl.topicPartitions, len(out))
	return out, nil
}

// restoreOne creates partition p's task from its checkpoints row.
func (pl *Pipeline) restoreOne(p int32, pos sink.Position, logStart int64, now time.Time) error {
	op, err := stream.NewOperator(pl.opts.Operator)
	if err != nil {
		return err
	}
	t := &task{p: p, op: op, committed: pos, end: -1, assignedAt: now, lastRecord: now}
	meta, ok, err := pl.store.Meta(p)
	if err != nil {
		return err
	}
	var start int64
	switch {
	case ok && meta == state.PartitionMeta(pos):
		// The local state is this very checkpoint's: resume at once.
		reg, err := pl.store.Windows(p)
		if err != nil {
			return err
		}
		open := make(map[stream.Window]int64, len(reg))
		for w, first := range reg {
			open[stream.Window(w)] = first
		}
		op.Resume(pos.NextOffset, pos.Watermark, open)
		start = pos.NextOffset
		pl.m.Restores.WithLabelValues("local").Inc()
		pl.m.RestoreDuration.Observe(time.Since(now).Seconds())
	default:
		// No local state, a stale one, a crash between the two writes, or a
		// zombie's leftovers: rebuild from PostgreSQL's restart offset.
		b := pl.store.NewBatch()
		b.DropPartition(p)
		if err := b.Commit(); err != nil {
			return err
		}
		op.StartReplay(pos.RestartOffset, pos.NextOffset, pos.Watermark)
		start = pos.RestartOffset
		kind := "fresh"
		if op.Replaying() {
			kind = "rebuild"
			if logStart > pos.RestartOffset {
				pl.log.Error("records needed to rebuild open windows were deleted by retention; their counts will be short",
					zap.Int32("partition", p), zap.Int64("restart_offset", pos.RestartOffset), zap.Int64("log_start_offset", logStart))
			}
		} else {
			pl.m.RestoreDuration.Observe(time.Since(now).Seconds())
		}
		t.metaDirty = true
		pl.m.Restores.WithLabelValues(kind).Inc()
	}
	pl.log.Info("partition assigned",
		zap.Int32("partition", p), zap.Bool("local_state", ok && meta == state.PartitionMeta(pos)),
		zap.Int64("next_offset", pos.NextOffset), zap.Int64("restart_offset", pos.RestartOffset),
		zap.Int64("start", start))
	pl.tasks[p] = t
	pl.startMu.Lock()
	pl.starts[p] = start
	pl.startMu.Unlock()
	return nil
}

// resync re-restores partitions whose checkpoint was fenced while this
// process still believes it owns them, and seeks their consumption.
func (pl *Pipeline) resync(ctx context.Context, parts []int32) error {
	if err := pl.restore(ctx, parts, time.Now()); err != nil {
		return err
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
