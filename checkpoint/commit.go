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

// planned is one task's part of a checkpoint.
type planned struct {
	t    *task
	live bool // false: the task is replaying and takes no part in the transaction
	plan stream.Plan
	next sink.Position
	// snap is what the plan took from the operator (live tasks), given
	// back if the checkpoint fails.
	snap *stream.Snapshot
	// meta is set when the state store's tag must be written.
	meta bool
}

// job is one checkpoint in flight: its PostgreSQL transaction and state
// batch run on their own goroutine while the loop keeps processing records
// into fresh buffers. At most one job is in flight; the next plan waits for
// it, so it reads the state store as the job left it.
type job struct {
	plans  []planned
	cp     *sink.Checkpoint
	dl     *dlEpoch // dead-letter records to be acknowledged first
	flush  bool
	reason string
	start  time.Time
	cancel context.CancelFunc
	done   chan struct{}
	// Results, set before done is closed.
	res    sink.Result
	err    error
	pgErr  bool // err came from PostgreSQL
	fenced *sink.FencedError
}

// checkpoint takes one checkpoint and waits for it (rebalances, the final
// checkpoint). flush emits the partial counts of open windows too.
func (pl *Pipeline) checkpoint(ctx context.Context, flush bool, reason string) error {
	if err := pl.finishJob(ctx); err != nil {
		return err
	}
	// NB: a fenced checkpoint re-syncs the fenced partitions and leaves the
	// others' counts in place: take it again for them.
	for attempt := 0; ; attempt++ {
		if err := pl.startJob(flush, reason); err != nil {
			return err
		}
		j := pl.job
		if err := pl.finishJob(ctx); err != nil {
			return err
		}
		if j.fenced == nil || attempt == 10 {
			return nil
		}
	}
}

// startJob plans a checkpoint, takes the counts it covers from the
// operators, and starts its transaction.
func (pl *Pipeline) startJob(flush bool, reason string) error {
	if pl.job != nil {
		panic("checkpoint: a job is already in flight")
	}
	plans, cp, err := pl.plan(flush)
	if err != nil {
		pl.m.CheckpointFailures.WithLabelValues("state").Inc()
		return err
	}
	holdUntil := pl.holdUntil(plans)
	for i := range plans {
		pp := &plans[i]
		if pp.live {
			pp.meta = pp.next != pp.t.committed || pp.t.metaDirty
			pp.snap = pp.t.op.Take(pp.plan, holdUntil)
		}
	}
	// Replaying tasks move their counts to the store now: no transaction
	// covers them.
	if err := pl.spillReplaying(plans); err != nil {
		pl.restoreSnapshots(plans)
		pl.m.CheckpointFailures.WithLabelValues("state").Inc()
		return err
	}
	now := time.Now()
	pl.lastCheckpoint = now
	if flush {
		pl.lastFlush = now
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{plans: plans, cp: cp, flush: flush, reason: reason, start: now, cancel: cancel, done: make(chan struct{})}
	if pl.dl != nil {
		j.dl = pl.dl.cut()
	}
	pl.job = j
	go func() {
		defer close(j.done)
		j.res, j.err = pl.runJob(ctx, j)
	}()
	return nil
}

// runJob is the job's goroutine: the PostgreSQL transaction, then the state
// batch. It touches no task: only the job's own plans, snapshots and deltas,
// the store and the sink (both safe for concurrent use).
func (pl *Pipeline) runJob(ctx context.Context, j *job) (sink.Result, error) {
	var res sink.Result
	if j.dl != nil {
		// NB: before the commit point: no record below a committed offset
		// may be missing from the dead-letter topic.
		if err := pl.dl.wait(ctx, j.dl); err != nil {
			return res, err
		}
	}
	if len(j.cp.Partitions) > 0 {
		var err error
		res, err = retryPG(ctx, pl, func() (sink.Result, error) { return pl.sink.Commit(ctx, j.cp) })
		if errors.As(err, &j.fenced) {
			return res, err
		}
		if err != nil {
			j.pgErr = true
			return res, fmt.Errorf("commit checkpoint to postgres: %w", err)
		}
	}
	// NB: PostgreSQL committed before the state store is written: it is
	// the commit point, and the store only a cache of it.
	return res, pl.persist(j.plans)
}

// finishJob waits for the job in flight (if any) and applies its outcome.
// If ctx ends first the job is cancelled. On success the tasks' expected
// positions move on; on failure their snapshots are given back.
func (pl *Pipeline) finishJob(ctx context.Context) error {
	j := pl.job
	if j == nil {
		return nil
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		j.cancel()
		<-j.done
	}
	j.cancel()
	pl.job = nil
	switch {
	case j.fenced != nil:
		fe := j.fenced
		pl.m.CheckpointFailures.WithLabelValues("fenced").Inc()
		pl.m.Fenced.Add(float64(len(fe.Partitions)))
		pl.log.Warn("checkpoint fenced: another writer moved these partitions; re-syncing from postgres",
			zap.Int32s("partitions", fe.Partitions), zap.Any("expected", fe.Expected), zap.Any("found", fe.Found))
		pl.restoreSnapshots(j.plans)
		if err := pl.resync(ctx, fe.Partitions); err != nil {
			return fmt.Errorf("re-sync fenced partitions: %w", err)
		}
		return nil
	case j.err != nil:
		pl.restoreSnapshots(j.plans)
		if errors.Is(j.err, context.Canceled) {
			return fmt.Errorf("checkpoint interrupted: %w", j.err)
		}
		cause := "state"
		if j.pgErr {
			cause = "postgres"
			pl.setPostgresOK(false, j.err)
		}
		pl.m.CheckpointFailures.WithLabelValues(cause).Inc()
		return j.err
	}
	for _, pp := range j.plans {
		if pp.live {
			pp.t.committed = pp.next
			pp.t.metaDirty = false
			pp.t.op.Release(pp.snap)
		}
	}
	if len(j.cp.Partitions) > 0 {
		res, now := j.res, time.Now()
		pl.m.Checkpoints.Inc()
		pl.m.CheckpointDuration.Observe(now.Sub(j.start).Seconds())
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
		pl.log.Debug("checkpoint", zap.String("reason", j.reason), zap.Bool("flush", j.flush),
			zap.Int("partitions", len(j.cp.Partitions)), zap.Int64("click_rows", res.ClickRows),
			zap.Int64("total_rows", res.TotalRows), zap.Int64("finalized", res.Finalized),
			zap.Int("attempts", res.Attempts), zap.Bool("recovered", res.Recovered),
			zap.Duration("took", now.Sub(j.start)))
		if j.reason != "final" && j.reason != "revoke" {
			pl.commitKafka(ctx, false)
		}
	}
	pl.checkpointed(time.Now())
	pl.publishTasks()
	return nil
}

// holdUntil picks which windows a checkpoint keeps in memory (see
// stream.Operator.Take): they are bounded like pending counts, so the
// windows that close first are held, up to MaxPendingKeys counters in all,
// and the rest move to the store.
func (pl *Pipeline) holdUntil(plans []planned) int64 {
	keys := make(map[int64]int)
	for _, pp := range plans {
		if pp.live {
			pp.t.op.Holdable(pp.plan, func(end int64, n int) { keys[end] += n })
		}
	}
	budget := pl.opts.MaxPendingKeys
	for _, end := range slices.Sorted(maps.Keys(keys)) {
		if budget -= keys[end]; budget < 0 {
			return end - 1
		}
	}
	return stream.HoldAll
}

// restoreSnapshots gives the counts a failed checkpoint took back to the
// operators of tasks that still exist.
func (pl *Pipeline) restoreSnapshots(plans []planned) {
	for _, pp := range plans {
		if pp.snap != nil && pl.tasks[pp.t.p] == pp.t {
			pp.t.op.Restore(pp.snap)
		}
	}
}

// plan computes every live task's plan and the PostgreSQL transaction that
// emits it, into the reused delta buffer. It changes no task.
func (pl *Pipeline) plan(flush bool) ([]planned, *sink.Checkpoint, error) {
	pl.deltas.Reset()
	cp := &sink.Checkpoint{TopicPartitions: pl.topicPartitions, Deltas: &pl.deltas,
		TotalsWindow: slices.Min(pl.opts.Operator.Windows).Milliseconds()}
	d := cp.Deltas
	var plans []planned
	for _, p := range slices.Sorted(maps.Keys(pl.tasks)) {
		t := pl.tasks[p]
		if !t.live() {
			plans = append(plans, planned{t: t})
			continue
		}
		plan := t.op.Plan(flush)
		pp := planned{t: t, live: true, plan: plan,
			next: sink.Position{NextOffset: plan.NextOffset, Watermark: plan.Watermark, RestartOffset: plan.RestartOffset,
				DedupOffset: plan.DedupOffset, DedupClock: plan.DedupClock,
				DeadLetterPartition: t.committed.DeadLetterPartition, DeadLetterOffset: t.committed.DeadLetterOffset}}
		if pl.dl == nil {
			pp.next.DeadLetterPartition, pp.next.DeadLetterOffset = -1, -1
		} else if pp.next.NextOffset != t.committed.NextOffset || t.committed.DeadLetterOffset < 0 {
			pp.next.DeadLetterPartition, pp.next.DeadLetterOffset = pl.dl.position(p)
		}
		before := d.Clicks()
		// NB: the same URL may come from the store and from the pending
		// counts, and from other partitions: PostgreSQL sums them, and
		// derives the url_totals deltas from the smallest windows' ones.
		for _, w := range plan.Emit {
			start, end := w.Start, w.End()
			// NB: a window not Stored has all its counts pending.
			if t.op.Stored(w) {
				if err := pl.store.ScanWindow(p, state.Window(w), func(url []byte, n int64) error {
					d.AddClickBytes(url, start, end, n, 0)
					return nil
				}); err != nil {
					return nil, nil, fmt.Errorf("read window %s of partition %d: %w", w, p, err)
				}
			}
			for url, n := range t.op.Pending(w).All() {
				d.AddClick(url, start, end, n, 0)
			}
		}
		t.op.LateCounts(func(w stream.Window, c *stream.Counts) {
			for url, n := range c.All() {
				d.AddClick(url, w.Start, w.End(), n, n)
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

// spillReplaying moves the counts replaying tasks rebuilt since the last
// checkpoint to the state store (no tag: the partition is not restored yet).
func (pl *Pipeline) spillReplaying(plans []planned) error {
	b := pl.store.NewBatch()
	defer b.Close()
	for _, pp := range plans {
		if pp.live {
			continue
		}
		t, p := pp.t, pp.t.p
		pending := make(map[stream.Window]*stream.Counts)
		t.op.PendingWindows(func(w stream.Window, c *stream.Counts) { pending[w] = c })
		addCounts(b, p, pending, nil)
		t.op.OpenWindows(func(w stream.Window, first, memFrom int64) { b.SetWindow(p, state.Window(w), first, memFrom) })
		t.op.Sightings(func(slot int64, id string, ts int64) { b.SetSeen(p, slot, id, ts) })
	}
	if b.Empty() {
		return nil
	}
	if err := b.Commit(); err != nil {
		return err
	}
	for _, pp := range plans {
		if !pp.live {
			pp.t.op.DropPending()
		}
	}
	return nil
}

// persist writes the state-store batch of a committed checkpoint for its
// live tasks: counts of windows still open (but those held in memory), the
// registry, and each partition's new tag. It reads only the job's
// snapshots.
func (pl *Pipeline) persist(plans []planned) error {
	b := pl.store.NewBatch()
	defer b.Close()
	for _, pp := range plans {
		if !pp.live {
			continue
		}
		p := pp.t.p
		if s := pp.snap; s.Seen != nil {
			b.ExpireSeen(p, s.ExpireBefore)
			for id, ts := range s.Seen {
				if ts > s.Horizon {
					b.SetSeen(p, s.SlotOf(ts), id, ts)
				}
			}
			b.SetDedup(p, s.Dedup.Clock, marks(s.Dedup.Hist))
		}
		for w := range pp.snap.Emitted {
			b.DeleteWindow(p, state.Window(w), pp.snap.Stored(w))
		}
		addCounts(b, p, pp.snap.Pending, pp.snap.Emitted)
		for w, first := range pp.snap.Open {
			memFrom, held := pp.snap.Held[w]
			if !held {
				memFrom = -1
			}
			b.SetWindow(p, state.Window(w), first, memFrom)
		}
		if pp.meta {
			b.SetMeta(p, metaOf(pp.next))
		}
	}
	if b.Empty() {
		return nil
	}
	return b.Commit()
}

// addCounts adds partition p's counts, but those of windows in skip, to b
// in key order (state.CompareWindows, then URLs in byte order): Pebble
// sorts a batch too large for its memtable, and applies sorted keys faster
// either way.
func addCounts(b *state.Batch, p int32, counts map[stream.Window]*stream.Counts, skip map[stream.Window]int64) {
	byKey := func(a, b stream.Window) int { return state.CompareWindows(state.Window(a), state.Window(b)) }
	for _, w := range slices.SortedFunc(maps.Keys(counts), byKey) {
		if _, ok := skip[w]; ok {
			continue
		}
		for url, n := range counts[w].Sorted() {
			b.AddCount(p, state.Window(w), url, n)
		}
	}
}

// metaOf is the state-store tag of a checkpoint position: what local state
// must match to resume without a rebuild.
func metaOf(pos sink.Position) state.PartitionMeta {
	return state.PartitionMeta{NextOffset: pos.NextOffset, Watermark: pos.Watermark, RestartOffset: pos.RestartOffset,
		DedupOffset: pos.DedupOffset, DedupClock: pos.DedupClock}
}

func marks(h []stream.ClockMark) [][3]int64 {
	out := make([][3]int64, len(h))
	for i, m := range h {
		out[i] = [3]int64{m.Slot, m.Offset, m.Before}
	}
	return out
}

// commitKafka commits each live partition's next offset to the group, for
// lag tools only (never the source of truth): restore never reads it.
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
