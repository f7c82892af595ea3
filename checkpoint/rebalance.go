package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"github.com/clickagg/clickagg/internal/backoff"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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
	pl.board.setJoined()
	parts := assigned[pl.opts.Consumer.Topic]
	if len(parts) == 0 {
		pl.publishTasks()
		return
	}
	slices.Sort(parts)
	rctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	if err := pl.c.Open(rctx, parts, time.Now()); err != nil {
		// NB: AdjustFetchOffsetsFn fails for these partitions, which makes
		// the client leave this group session and rejoin; the partitions
		// are restored then.
		pl.log.Error("restore assigned partitions", zap.Int32s("partitions", parts), zap.Error(err))
	}
	for _, p := range parts {
		if t := pl.c.task(p); t != nil {
			t.deliveredAt = pl.polls
		}
	}
	pl.publishTasks()
}

// adjustOffsets points the consumer at each partition's restore start. Runs
// outside the rebalance gate, after onAssigned.
func (pl *Pipeline) adjustOffsets(_ context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for topic, parts := range offsets {
		if topic != pl.opts.Consumer.Topic {
			continue
		}
		for p := range parts {
			start, ok := pl.c.start(p)
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
		if err := pl.c.Checkpoint(cctx, false, "revoke"); err != nil {
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
	if pl.c.job == nil {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, pl.opts.ShutdownTimeout)
	defer cancel()
	if err := pl.c.finishJob(wctx); err != nil {
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
	pl.c.drop(parts)
	pl.forgetPartitionSeries(parts)
	pl.log.Info("partitions "+why, zap.Int32s("partitions", parts))
	pl.publishTasks()
}

// Bounds returns where the logs of parts start and end (the last stable
// offset: where a read-committed consumer is caught up). It implements
// Source.
func (pl *Pipeline) Bounds(ctx context.Context, parts []int32) (starts, ends map[int32]int64, err error) {
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
	bo := backoff.Backoff{}
	for {
		out, n, err := pl.listOffsetsOnce(ctx, parts, list)
		if err == nil {
			pl.c.topicPartitions = max(pl.c.topicPartitions, n)
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("list %s offsets of %s: %w", what, pl.opts.Consumer.Topic, err)
		}
		pl.log.Warn("list offsets; retrying", zap.String("which", what), zap.Int("attempt", bo.Attempts()+1), zap.Error(err))
		if werr := bo.Wait(ctx); werr != nil {
			return nil, fmt.Errorf("list %s offsets of %s: %w", what, pl.opts.Consumer.Topic, errors.Join(err, werr))
		}
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

// Seek moves partitions' consumption (after a re-sync). It implements
// Source.
func (pl *Pipeline) Seek(offsets map[int32]int64) {
	seek := make(map[int32]kgo.EpochOffset, len(offsets))
	for p, off := range offsets {
		seek[p] = kgo.EpochOffset{Epoch: -1, Offset: off}
		if t := pl.c.task(p); t != nil {
			t.deliveredAt = pl.polls // NB: a fresh task is not stalled
		}
	}
	pl.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{pl.opts.Consumer.Topic: seek})
}

// Checkpointed counts a checkpoint that wrote in the progress line and
// follows it with an advisory offset commit (but the final and revoke
// checkpoints, which commit synchronously themselves), and refreshes the
// status. It implements Source.
func (pl *Pipeline) Checkpointed(ctx context.Context, reason string, rows int64) {
	if rows >= 0 {
		pl.stats.checkpoints++
		pl.stats.rows += rows
		if reason != "final" && reason != "revoke" {
			pl.commitKafka(ctx, false)
		}
	}
	pl.publishTasks()
}

// commitKafka commits each live partition's next offset to the group, for
// lag tools only (never the source of truth): restore never reads it.
func (pl *Pipeline) commitKafka(ctx context.Context, sync bool) {
	offsets := make(map[int32]kgo.EpochOffset, len(pl.c.tasks))
	for p, t := range pl.c.tasks {
		if t.live() {
			offsets[p] = kgo.EpochOffset{Epoch: -1, Offset: t.committed.NextOffset}
		}
	}
	if len(offsets) == 0 {
		return
	}
	req := map[string]map[int32]kgo.EpochOffset{pl.opts.Consumer.Topic: offsets}
	onDone := func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			pl.log.Debug("commit offsets to kafka", zap.Error(err))
		}
	}
	if sync {
		pl.cl.CommitOffsetsSync(ctx, req, onDone)
	} else {
		pl.cl.CommitOffsets(ctx, req, onDone)
	}
}
