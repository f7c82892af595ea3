package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/clickagg/clickagg/base"
	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/state"
	"github.com/clickagg/clickagg/stream"
	"go.uber.org/zap"
)

// taken is one task's part of a checkpoint: the Ready its operator handed
// over and, for a live task, the row the transaction moves it to.
type taken struct {
	t    *task
	rd   *stream.Ready
	next sink.Row
	tag  bool // the state store's tag must be written
}

// job is one checkpoint in flight: its PostgreSQL transaction and state
// batch run on their own goroutine while the runner keeps processing
// records into fresh buffers. At most one job is in flight; the next one
// waits for it, so it reads the state store as the job left it.
type job struct {
	parts  []taken
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

// Checkpoint takes one checkpoint and waits for it (rebalances, the final
// checkpoint, the memory source). flush emits the partial counts of open
// windows too. A fenced checkpoint re-syncs the fenced partitions and is
// taken again for the others.
func (c *Coordinator) Checkpoint(ctx context.Context, flush bool, reason string) error {
	if err := c.finishJob(ctx); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		if err := c.startJob(flush, reason); err != nil {
			return err
		}
		j := c.job
		if err := c.finishJob(ctx); err != nil {
			return err
		}
		if j.fenced == nil || attempt == 10 {
			return nil
		}
	}
}

// startJob takes every task's Ready, writes the replaying tasks' at once,
// and starts the transaction of the live ones.
func (c *Coordinator) startJob(flush bool, reason string) error {
	if c.job != nil {
		panic("checkpoint: a job is already in flight")
	}
	parts := c.take(flush)
	cp, err := c.deltasOf(parts)
	if err == nil {
		// NB: replaying tasks' counts go to the store now: no
		// transaction covers them.
		err = c.spill(parts)
	}
	if err != nil {
		c.abort(parts, true)
		c.m.CheckpointFailures.WithLabelValues("state").Inc()
		return err
	}
	now := time.Now()
	c.lastCheckpoint = now
	if flush {
		c.lastFlush = now
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{parts: parts, cp: cp, flush: flush, reason: reason, start: now, cancel: cancel, done: make(chan struct{})}
	if c.dl != nil {
		j.dl = c.dl.cut()
	}
	c.job = j
	go func() {
		defer close(j.done)
		j.res, j.err = c.runJob(ctx, j)
	}()
	return nil
}

// take takes every task's Ready, in partition order. Windows are held in
// memory across the checkpoint within one budget for all tasks: those that
// close first are held, up to MaxPendingKeys counters in all.
func (c *Coordinator) take(flush bool) []taken {
	keys := make(map[int64]int)
	for _, t := range c.tasks {
		t.op.Holdable(flush, func(end int64, n int) { keys[end] += n })
	}
	holdUntil, budget := stream.HoldAll, c.opts.MaxPendingKeys
	for _, end := range slices.Sorted(maps.Keys(keys)) {
		if budget -= keys[end]; budget < 0 {
			holdUntil = end - 1
			break
		}
	}
	var parts []taken
	for _, p := range slices.Sorted(maps.Keys(c.tasks)) {
		t := c.tasks[p]
		tk := taken{t: t, rd: t.op.Ready(flush, holdUntil)}
		if !tk.rd.Replaying {
			tk.next = c.nextRow(t, tk.rd.Position)
			tk.tag = tk.next != t.committed || t.metaDirty
		}
		parts = append(parts, tk)
	}
	return parts
}

// nextRow is task t's checkpoints row at position pos: with a dead-letter
// topic, a row that moves records where the partition's later dead letters
// will land.
func (c *Coordinator) nextRow(t *task, pos base.Position) sink.Row {
	next := sink.Row{Position: pos, DeadLetterPartition: -1, DeadLetterOffset: -1}
	if c.dl != nil {
		next.DeadLetterPartition, next.DeadLetterOffset = t.committed.DeadLetterPartition, t.committed.DeadLetterOffset
		if pos.NextOffset != t.committed.NextOffset || t.committed.DeadLetterOffset < 0 {
			next.DeadLetterPartition, next.DeadLetterOffset = c.dl.position(t.p)
		}
	}
	return next
}

// deltasOf translates the live Readies into the transaction, in the reused
// delta buffer: every emitted window's counts (read back from the state
// store when Stored, plus those the Ready carries) and the late counts. A
// partition is in the transaction when it emits or its row moves.
func (c *Coordinator) deltasOf(parts []taken) (*sink.Checkpoint, error) {
	c.deltas.Reset()
	cp := &sink.Checkpoint{TopicPartitions: c.topicPartitions, Deltas: &c.deltas,
		TotalsWindow: slices.Min(c.opts.Operator.Windows).Milliseconds()}
	d := cp.Deltas
	for _, tk := range parts {
		if tk.rd.Replaying {
			continue
		}
		p, before := tk.t.p, d.Clicks()
		// NB: the same URL may come from the store and from the Ready, and
		// from other partitions: Deltas sums them per row, and the
		// url_totals deltas are the smallest windows' ones.
		for _, e := range tk.rd.Emit {
			start, end := e.Window.Start, e.Window.End()
			if e.Stored {
				if err := c.store.ScanWindow(p, e.Window, func(url []byte, n int64) error {
					d.AddClickBytes(url, start, end, n, 0)
					return nil
				}); err != nil {
					return nil, fmt.Errorf("read window %s of partition %d: %w", e.Window, p, err)
				}
			}
			for url, n := range e.Counts.All() {
				d.AddClick(url, start, end, n, 0)
			}
		}
		for w, counts := range tk.rd.Late {
			for url, n := range counts.All() {
				d.AddClick(url, w.Start, w.End(), n, n)
			}
		}
		if d.Clicks() > before || tk.next != tk.t.committed {
			cp.Partitions = append(cp.Partitions, sink.PartitionUpdate{Partition: p, Expect: tk.t.committed, Next: tk.next})
		}
	}
	return cp, d.Err()
}

// spill writes the replaying tasks' Readies to the state store (no tag:
// those partitions are not restored yet) and advances their operators.
func (c *Coordinator) spill(parts []taken) error {
	b := c.store.NewBatch()
	defer b.Close()
	for _, tk := range parts {
		if tk.rd.Replaying {
			writeReady(b, tk.t.p, tk.rd, false)
		}
	}
	if !b.Empty() {
		if err := b.Commit(); err != nil {
			return err
		}
	}
	for _, tk := range parts {
		if tk.rd.Replaying {
			tk.t.op.Advance(tk.rd)
		}
	}
	return nil
}

// runJob is the job's goroutine: the PostgreSQL transaction, then the state
// batch. It touches no task: only the job's own Readies and deltas, the
// store and the sink (both safe for concurrent use).
func (c *Coordinator) runJob(ctx context.Context, j *job) (sink.Result, error) {
	var res sink.Result
	if j.dl != nil {
		// NB: before the commit point: no record below a committed offset
		// may be missing from the dead-letter topic.
		if err := c.dl.wait(ctx, j.dl); err != nil {
			return res, err
		}
	}
	if len(j.cp.Partitions) > 0 {
		var err error
		res, err = retryPG(ctx, c, func() (sink.Result, error) { return c.sink.Commit(ctx, j.cp) })
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
	b := c.store.NewBatch()
	defer b.Close()
	for _, tk := range j.parts {
		if !tk.rd.Replaying {
			writeReady(b, tk.t.p, tk.rd, tk.tag)
		}
	}
	if b.Empty() {
		return res, nil
	}
	return res, b.Commit()
}

// writeReady adds partition p's Ready to state batch b: the emitted windows
// leave the store, the counts of windows left open that are not held go
// in, the registry and the dedup sightings and clock are written, and with
// tag the partition's new position.
func writeReady(b *state.Batch, p int32, rd *stream.Ready, tag bool) {
	if rd.Dedup != nil {
		b.ExpireSeen(p, rd.ExpireBefore)
	}
	rd.Sightings(func(slot int64, id string, t int64) { b.SetSeen(p, slot, id, t) })
	if rd.Dedup != nil {
		b.SetDedup(p, *rd.Dedup)
	}
	for _, e := range rd.Emit {
		b.DeleteWindow(p, e.Window, e.Stored)
	}
	// NB: in key order (by window, then URL): Pebble sorts a batch too
	// large for its memtable, and applies sorted keys faster either way.
	for _, w := range slices.SortedFunc(maps.Keys(rd.Keep), base.Compare) {
		for url, n := range rd.Keep[w].Sorted() {
			b.AddCount(p, w, url, n)
		}
	}
	for w, e := range rd.Open {
		b.SetWindow(p, w, e)
	}
	if tag {
		b.SetMeta(p, rd.Position)
	}
}

// finishJob waits for the job in flight (if any) and applies its outcome.
// If ctx ends first the job is cancelled. On success the tasks' rows move
// on and their operators advance; on failure the Readies are given back
// (Abort), and fenced partitions are re-synced.
func (c *Coordinator) finishJob(ctx context.Context) error {
	j := c.job
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
	c.job = nil
	switch {
	case j.fenced != nil:
		fe := j.fenced
		c.m.CheckpointFailures.WithLabelValues("fenced").Inc()
		c.m.Fenced.Add(float64(len(fe.Partitions)))
		c.log.Warn("checkpoint fenced: another writer moved these partitions; re-syncing from postgres",
			zap.Int32s("partitions", fe.Partitions), zap.Any("expected", fe.Expected), zap.Any("found", fe.Found))
		c.abort(j.parts, false)
		if err := c.resync(ctx, fe.Partitions); err != nil {
			return fmt.Errorf("re-sync fenced partitions: %w", err)
		}
		return nil
	case j.err != nil:
		c.abort(j.parts, false)
		if errors.Is(j.err, context.Canceled) {
			return fmt.Errorf("checkpoint interrupted: %w", j.err)
		}
		cause := "state"
		if j.pgErr {
			cause = "postgres"
			c.board.setPostgresOK(false, j.err)
		}
		c.m.CheckpointFailures.WithLabelValues(cause).Inc()
		return j.err
	}
	for _, tk := range j.parts {
		if !tk.rd.Replaying {
			tk.t.committed = tk.next
			tk.t.metaDirty = false
			tk.t.op.Advance(tk.rd)
		}
	}
	now, rows := time.Now(), int64(-1)
	took := now.Sub(j.start)
	if len(j.cp.Partitions) > 0 {
		res := j.res
		rows = res.ClickRows + res.TotalRows
		c.m.Checkpoints.Inc()
		c.m.CheckpointDuration.Observe(took.Seconds())
		c.m.CheckpointRows.Observe(float64(rows))
		c.m.TxDuration.Observe(res.Duration.Seconds())
		c.m.RowsWritten.WithLabelValues("url_clicks").Add(float64(res.ClickRows))
		c.m.RowsWritten.WithLabelValues("url_totals").Add(float64(res.TotalRows))
		c.m.Finalized.Add(float64(res.Finalized))
		c.m.countExpired(res)
		c.m.LastCheckpoint.Set(float64(now.UnixNano()) / 1e9)
		c.log.Debug("checkpoint", zap.String("reason", j.reason), zap.Bool("flush", j.flush),
			zap.Int("partitions", len(j.cp.Partitions)), zap.Int64("click_rows", res.ClickRows),
			zap.Int64("total_rows", res.TotalRows), zap.Int64("finalized", res.Finalized),
			zap.Int("attempts", res.Attempts), zap.Bool("recovered", res.Recovered),
			zap.Duration("took", took))
	}
	c.board.checkpointed(now, took, rows)
	c.src.Checkpointed(ctx, j.reason, rows)
	return nil
}

// abort gives a failed checkpoint's Readies back to the operators of tasks
// that still exist: the live ones' and, with spillFailed (the replaying
// ones' were not written), the replaying ones' too.
func (c *Coordinator) abort(parts []taken, spillFailed bool) {
	for _, tk := range parts {
		if c.tasks[tk.t.p] == tk.t && (spillFailed || !tk.rd.Replaying) {
			tk.t.op.Abort(tk.rd)
		}
	}
}
