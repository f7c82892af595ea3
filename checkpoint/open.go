package checkpoint

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/clickagg/clickagg/base"
	"github.com/clickagg/clickagg/internal/backoff"
	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/stream"
	"go.uber.org/zap"
)

// Open makes tasks for parts from their PostgreSQL rows and the local state
// store (the restore decision), and records where each starts consuming
// (start). It is all or nothing: the tasks are installed only when every
// partition is ready, so a failure leaves the previous tasks in place.
//
// A partition PostgreSQL has never seen gets a row at the start of its log
// (or its end, with StartOffset latest). A partition whose local state
// carries exactly its row's position resumes from it; any other is rebuilt
// by replaying from the row's restart offset.
func (c *Coordinator) Open(ctx context.Context, parts []int32, now time.Time) error {
	rows, err := retryPG(ctx, c, func() (map[int32]sink.Row, error) { return c.sink.ReadRows(ctx, parts) })
	if err != nil {
		return err
	}
	logStarts, ends, err := c.src.Bounds(ctx, parts)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if _, ok := rows[p]; ok {
			continue
		}
		off := logStarts[p]
		if c.opts.StartOffset == "latest" {
			off = ends[p]
		}
		init := sink.Row{Position: base.Start(off), DeadLetterPartition: -1, DeadLetterOffset: -1}
		if c.dl != nil {
			init.DeadLetterPartition, init.DeadLetterOffset = c.dl.position(p)
		}
		row, err := retryPG(ctx, c, func() (sink.Row, error) { return c.sink.InitRow(ctx, p, init) })
		if err != nil {
			return err
		}
		rows[p] = row
		c.log.Info("new partition", zap.Int32("partition", p), zap.String("start_offset", c.opts.StartOffset), zap.Int64("offset", row.NextOffset))
	}
	var sent map[int32]map[int64]bool
	if c.dl != nil {
		if sent, err = c.dl.scan(ctx, rows); err != nil {
			return err
		}
	}
	tasks := make(map[int32]*task, len(parts))
	starts := make(map[int32]int64, len(parts))
	for _, p := range parts {
		t, start, err := c.openTask(p, rows[p], logStarts[p], ends[p], now)
		if err != nil {
			return err
		}
		if len(sent[p]) > 0 {
			t.deadLettered = sent[p]
			c.log.Info("dead-letter records of an earlier run found past the checkpoint; not sending them again",
				zap.Int32("partition", p), zap.Int("records", len(sent[p])))
		}
		tasks[p], starts[p] = t, start
	}
	c.startMu.Lock()
	for p, t := range tasks {
		c.tasks[p] = t
		c.starts[p] = starts[p]
	}
	c.startMu.Unlock()
	return nil
}

// openTask builds partition p's task from its checkpoints row and returns
// it with the offset consumption starts at: the row's next offset when the
// local state is this very checkpoint's (resume), else the restart offset
// (rebuild), or earlier with dedup.
func (c *Coordinator) openTask(p int32, row sink.Row, logStart, end int64, now time.Time) (*task, int64, error) {
	op, err := stream.NewOperator(c.opts.Operator)
	if err != nil {
		return nil, 0, err
	}
	t := &task{p: p, op: op, committed: row, end: end, assignedAt: now, lastRecord: now}
	if op.Deduplicating() {
		op.SetLookup(func(slot int64, id []byte) (int64, bool, error) {
			ts, ok, key, err := c.store.Seen(p, slot, id, t.seenKey)
			t.seenKey = key
			return ts, ok, err
		})
	}
	pos := row.Position
	meta, ok, err := c.store.Meta(p)
	if err != nil {
		return nil, 0, err
	}
	local := ok && meta == pos
	var reg map[base.Window]base.OpenWindow
	if local {
		if reg, err = c.store.Windows(p); err != nil {
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
				c.log.Info("local state holds windows in memory only that this run cannot replay; rebuilding",
					zap.Int32("partition", p), zap.Int64("held_from", e.MemFrom), zap.Int64("log_start_offset", logStart))
				break
			}
		}
	}
	if end < pos.NextOffset {
		c.log.Error("the checkpoint is beyond the partition's end: was the topic deleted and recreated? records below the checkpoint are skipped",
			zap.Int32("partition", p), zap.Int64("next_offset", pos.NextOffset), zap.Int64("end_offset", end))
	}
	var start int64
	if local {
		start, err = c.resume(t, pos, reg, now)
	} else {
		start, err = c.rebuild(t, pos, logStart, now)
	}
	if err != nil {
		return nil, 0, err
	}
	c.log.Info("partition assigned",
		zap.Int32("partition", p), zap.Bool("local_state", local),
		zap.Int64("next_offset", pos.NextOffset), zap.Int64("restart_offset", pos.RestartOffset),
		zap.Int64("dedup_offset", pos.DedupOffset), zap.Int64("start", start))
	return t, start, nil
}

// resume starts t's operator from local state that is this very
// checkpoint's: at once, after replaying what held windows kept in memory
// only.
func (c *Coordinator) resume(t *task, pos base.Position, reg map[base.Window]base.OpenWindow, now time.Time) (int64, error) {
	op := t.op
	op.Resume(pos.NextOffset, pos.Watermark, reg)
	if op.Deduplicating() {
		d, ok, err := c.store.Dedup(t.p)
		if err != nil {
			return 0, err
		}
		if ok {
			op.ResumeDedup(d)
			if err := c.store.ScanSeen(t.p, op.DedupLiveSlot(), op.LoadSighting); err != nil {
				return 0, err
			}
			op.FinishLoad()
		}
	}
	c.m.Restores.WithLabelValues("local").Inc()
	if !op.Replaying() {
		c.m.RestoreDuration.Observe(time.Since(now).Seconds())
	}
	return op.NextOffset(), nil
}

// rebuild drops t's local state (none, a stale one, a crash between the two
// writes, or a zombie's leftovers) and starts its operator replaying from
// the row's restart offset (with dedup, from its dedup offset).
func (c *Coordinator) rebuild(t *task, pos base.Position, logStart int64, now time.Time) (int64, error) {
	p, op := t.p, t.op
	b := c.store.NewBatch()
	b.DropPartition(p)
	if err := b.Commit(); err != nil {
		return 0, err
	}
	from := pos.RestartOffset
	if op.Deduplicating() {
		from = min(pos.DedupOffset, from)
	}
	if logStart > from && from < pos.NextOffset && logStart <= pos.RestartOffset {
		c.log.Warn("records needed to rebuild dedup sightings were deleted by retention; duplicates of them will be counted",
			zap.Int32("partition", p), zap.Int64("dedup_offset", pos.DedupOffset), zap.Int64("log_start_offset", logStart))
		from = logStart
	}
	if logStart > from && from < pos.NextOffset {
		c.log.Error("records needed to rebuild open windows were deleted by retention; their counts will be short",
			zap.Int32("partition", p), zap.Int64("restart_offset", pos.RestartOffset),
			zap.Int64("log_start_offset", logStart), zap.Int64("next_offset", pos.NextOffset))
		// NB: never wait for records that no longer exist: a replay
		// only ends when it reaches the checkpoint.
		from = min(logStart, pos.NextOffset)
	}
	op.StartReplayDedup(from, max(from, pos.RestartOffset), pos.NextOffset, pos.Watermark, pos.DedupClock)
	kind := "fresh"
	if op.Replaying() {
		kind = "rebuild"
	} else {
		c.m.RestoreDuration.Observe(time.Since(now).Seconds())
	}
	t.metaDirty = true
	c.m.Restores.WithLabelValues(kind).Inc()
	return from, nil
}

// resync opens again partitions whose checkpoint was fenced while this
// process still believes it owns them, and seeks their consumption. It
// retries until it succeeds or ctx ends: until then the old tasks stay in
// place, and every checkpoint they attempt is fenced again.
func (c *Coordinator) resync(ctx context.Context, parts []int32) error {
	bo := backoff.Backoff{}
	for {
		err := c.Open(ctx, parts, time.Now())
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return err
		}
		c.log.Warn("re-sync fenced partitions; retrying", zap.Int32s("partitions", parts), zap.Error(err))
		if werr := bo.Wait(ctx); werr != nil {
			return errors.Join(err, werr)
		}
	}
	seek := make(map[int32]int64, len(parts))
	for _, p := range parts {
		seek[p], _ = c.start(p)
	}
	c.src.Seek(seek)
	return nil
}

// retryPG runs fn until it succeeds, fails for good, or ctx ends, backing
// off between attempts, and keeps the PostgreSQL health flag current.
func retryPG[T any](ctx context.Context, c *Coordinator, fn func() (T, error)) (T, error) {
	bo := backoff.Backoff{}
	for {
		v, err := fn()
		if err == nil {
			c.board.setPostgresOK(true, nil)
			return v, nil
		}
		if !sink.Retryable(err) || ctx.Err() != nil {
			return v, err
		}
		c.board.setPostgresOK(false, err)
		d := bo.Next()
		c.log.Warn("postgres unavailable; retrying", zap.Int("attempt", bo.Attempts()), zap.Duration("backoff", d), zap.Error(err))
		if werr := backoff.Sleep(ctx, d); werr != nil {
			return v, errors.Join(err, werr)
		}
	}
}
