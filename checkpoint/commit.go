package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/state"
	"github.com/clickagg/clickagg/stream"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// planned is one live task's part of a checkpoint.
type planned struct {
	t    *task
	live bool // false: the task is replaying and takes no part in the transaction
	plan stream.Plan
	next sink.Position
	emit map[stream.Window]bool
}

type clickKey struct {
	url        string
	start, end int64
}

// checkpoint runs the protocol of the package doc once. flush emits the
// partial counts of open windows too. Replaying tasks only move their
// buffered counts to the state store.
func (pl *Pipeline) checkpoint(ctx context.Context, flush bool, reason string) error {
	start := time.Now()
	for {
		plans, cp, err := pl.plan(flush)
		if err != nil {
			pl.m.CheckpointFailures.WithLabelValues("state").Inc()
			return err
		}
		var res sink.Result
		if len(cp.Partitions) > 0 {
			res, err = retryPG(ctx, pl, func() (sink.Result, error) { return pl.sink.Commit(ctx, cp) })
			var fe *sink.FencedError
			if errors.As(err, &fe) {
				pl.m.CheckpointFailures.WithLabelValues("fenced").Inc()
				pl.m.Fenced.Add(float64(len(fe.Partitions)))
				pl.log.Warn("checkpoint fenced: another writer moved these partitions; re-syncing from postgres",
					zap.Int32s("partitions", fe.Partitions), zap.Any("expected", fe.Expected), zap.Any("found", fe.Found))
				if err := pl.resync(ctx, fe.Partitions); err != nil {
					return fmt.Errorf("re-sync fenced partitions: %w", err)
				}
				continue // plan again without them: they are replaying now
			}
			if err != nil {
				pl.m.CheckpointFailures.WithLabelValues("postgres").Inc()
				pl.setPostgresOK(false, err)
				return fmt.Errorf("commit checkpoint to postgres: %w", err)
			}
		}
		// NB: PostgreSQL committed before the state store is written: it is
		// the commit point (DESIGN.md I1, I4).
		if err := pl.persist(plans); err != nil {
			pl.m.CheckpointFailures.WithLabelValues("state").Inc()
			return err
		}
		for _, pp := range plans {
			if !pp.live {
				continue // replaying: persist moved its counts to the store
			}
			pp.t.op.Commit(pp.plan)
			pp.t.committed = pp.next
			pp.t.metaDirty = false
		}
		now := time.Now()
		pl.lastCheckpoint = now
		if flush {
			pl.lastFlush = now
		}
		if len(cp.Partitions) > 0 {
			pl.m.Checkpoints.Inc()
			pl.m.CheckpointDuration.Observe(time.Since(start).Seconds())
			pl.m.CheckpointRows.Observe(float64(res.ClickRows + res.TotalRows))
			pl.m.TxDuration.Observe(res.Duration.Seconds())
			pl.m.RowsWritten.WithLabelValues("url_clicks").Add(float64(res.ClickRows))
			pl.m.RowsWritten.WithLabelValues("url_totals").Add(float64(res.TotalRows))
			pl.m.Finalized.Add(float64(res.Finalized))
			pl.m.LastCheckpoint.Set(float64(now.UnixNano()) / 1e9)
			pl.stats.checkpoints++
			pl.stats.rows += res.ClickRows + res.TotalRows
			pl.status.Lock()
			pl.status.s.LastCheckpoint = now
			pl.status.s.CheckpointsTotal++
			pl.status.s.RowsWritten += res.ClickRows + res.TotalRows
			pl.status.Unlock()
			pl.log.Debug("checkpoint", zap.String("reason", reason), zap.Bool("flush", flush),
				zap.Int("partitions", len(cp.Partitions)), zap.Int64("click_rows", res.ClickRows),
				zap.Int64("total_rows", res.TotalRows), zap.Int64("finalized", res.Finalized),
				zap.Int("attempts", res.Attempts), zap.Bool("recovered", res.Recovered),
				zap.Duration("took", time.Since(start)))
			if reason != "final" && reason != "revoke" {
				pl.commitKafka(ctx, false)
			}
		}
		pl.publishTasks()
		return nil
	}
}

// plan computes every live task's plan and the PostgreSQL transaction that
// emits it. It changes nothing.
func (pl *Pipeline) plan(flush bool) ([]planned, *sink.Checkpoint, error) {
	pl.deltas.Reset()
	cp := &sink.Checkpoint{TopicPartitions: pl.topicPartitions, Deltas: &pl.deltas}
	d := cp.Deltas
	var plans []planned
	for _, p := range slices.Sorted(maps.Keys(pl.tasks)) {
		t := pl.tasks[p]
		if !t.live() {
			plans = append(plans, planned{t: t})
			continue
		}
		smallest := t.op.Sizes()[0]
		plan := t.op.Plan(flush)
		pp := planned{t: t, live: true, plan: plan, emit: make(map[stream.Window]bool, len(plan.Emit)),
			next: sink.Position{NextOffset: plan.NextOffset, Watermark: plan.Watermark, RestartOffset: plan.RestartOffset}}
		before := d.Clicks()
		for _, w := range plan.Emit {
			pp.emit[w] = true
			start, end, isSmallest := w.Start, w.End(), w.Size == smallest
			// NB: the same URL may come from the store and from the pending
			// counts, and from other partitions: PostgreSQL sums them.
			if err := pl.store.ScanWindow(p, state.Window(w), func(url []byte, n int64) error {
				d.AddClickBytes(url, start, end, n, 0)
				if isSmallest {
					d.AddTotalBytes(url, n)
				}
				return nil
			}); err != nil {
				return nil, nil, fmt.Errorf("read window %s of partition %d: %w", w, p, err)
			}
			for url, n := range t.op.Pending(w).All() {
				d.AddClick(url, start, end, n, 0)
				if isSmallest {
					d.AddTotal(url, n)
				}
			}
		}
		t.op.LateCounts(func(w stream.Window, c *stream.Counts) {
			isSmallest := w.Size == smallest
			for url, n := range c.All() {
				d.AddClick(url, w.Start, w.End(), n, n)
				if isSmallest {
					d.AddTotal(url, n)
				}
			}
		})
		if d.Clicks() > before || pp.next != t.committed {
			cp.Partitions = append(cp.Partitions, sink.PartitionUpdate{Partition: p, Expect: t.committed, Next: pp.next})
		}
		plans = append(plans, pp)
	}
	if err := d.Err(); err != nil {
		return nil, nil, err
	}
	return plans, cp, nil
}

// persist writes the state-store batch of a committed checkpoint: counts of
// windows still open, the registry, and each partition's new tag.
func (pl *Pipeline) persist(plans []planned) error {
	b := pl.store.NewBatch()
	defer b.Close()
	for _, pp := range plans {
		t, p := pp.t, pp.t.p
		for w := range pp.emit {
			b.DeleteWindow(p, state.Window(w))
		}
		t.op.PendingWindows(func(w stream.Window, c *stream.Counts) {
			if pp.emit[w] {
				return
			}
			for url, n := range c.All() {
				b.AddCount(p, state.Window(w), url, n)
			}
		})
		t.op.OpenWindows(func(w stream.Window, first int64) {
			if !pp.emit[w] {
				b.SetWindow(p, state.Window(w), first)
			}
		})
		if pp.live && (pp.next != t.committed || t.metaDirty) {
			b.SetMeta(p, state.PartitionMeta(pp.next))
		}
		if !pp.live {
			t.op.DropPending() // replaying: moved to the store above
		}
	}
	if b.Empty() {
		return nil
	}
	return b.Commit()
}

// commitKafka commits each live partition's next offset to the group, for
// lag tools only (DESIGN.md I5): restore never reads it.
func (pl *Pipeline) commitKafka(ctx context.Context, sync bool) {
	offsets := make(map[int32]kgo.EpochOffset, len(pl.tasks))
	for p, t := range pl.tasks {
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
