package checkpoint

import (
	"context"
	"sync"
	"time"

	"github.com/clickagg/clickagg/base"
	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/state"
	"github.com/clickagg/clickagg/stream"
	"go.uber.org/zap"
)

// Committer is where checkpoints commit: the checkpoints rows and the
// result tables (sink.Writer). Commit is one transaction that
// compare-and-sets every row it covers and adds the deltas, or fails with
// a *sink.FencedError and writes nothing.
type Committer interface {
	ReadRows(ctx context.Context, parts []int32) (map[int32]sink.Row, error)
	InitRow(ctx context.Context, p int32, row sink.Row) (sink.Row, error)
	Commit(ctx context.Context, cp *sink.Checkpoint) (sink.Result, error)
}

// StateStore is the local cache of committed state (state.Store): counts of
// open windows, the open-window registry, dedup sightings and each
// partition's tag. A Batch is written atomically by its Commit.
type StateStore interface {
	Meta(p int32) (base.Position, bool, error)
	Windows(p int32) (map[base.Window]base.OpenWindow, error)
	ScanWindow(p int32, w base.Window, fn func(url []byte, n int64) error) error
	Seen(p int32, slot int64, id, scratch []byte) (t int64, ok bool, key []byte, err error)
	ScanSeen(p int32, fromSlot int64, fn func(slot int64, id []byte, t int64)) error
	Dedup(p int32) (base.DedupState, bool, error)
	NewBatch() *state.Batch
}

// Source is what the coordinator asks of its runner: where partitions' logs
// start and end now (end: the next offset a reader can reach), moving a
// partition's consumption to an offset (after a re-sync), and hearing of
// each successful checkpoint (rows: the rows its transaction wrote, -1 when
// it had none), which a Kafka runner follows with an advisory offset
// commit.
type Source interface {
	Bounds(ctx context.Context, parts []int32) (starts, ends map[int32]int64, err error)
	Seek(offsets map[int32]int64)
	Checkpointed(ctx context.Context, reason string, rows int64)
}

// Coordinator runs the checkpoint protocol for the partitions a runner owns:
// it opens each partition's task (the restore decision), takes checkpoints
// (Ready → commit → persist → Advance, or Abort) and re-syncs fenced
// partitions. It does no polling: the runner feeds each task's operator
// and decides when to checkpoint.
//
// A Coordinator is used by one goroutine at a time (the runner's loop or
// its rebalance callbacks); the checkpoint in flight runs on its own
// goroutine and touches only its job.
type Coordinator struct {
	opts  *Options
	log   *zap.Logger
	m     *Metrics
	store StateStore
	sink  Committer
	src   Source
	board *board
	dl    *deadLetters // nil: no dead-letter topic

	tasks map[int32]*task
	// topicPartitions is the topic's partition count as last seen: rows
	// are final only once that many partitions passed them.
	topicPartitions int
	// job is the checkpoint in flight, if any (see commit.go).
	job *job
	// deltas is reused by every checkpoint (its memory, and a spill file
	// for very large ones); the job in flight owns it.
	deltas         sink.Deltas
	lastCheckpoint time.Time
	lastFlush      time.Time

	// startMu guards starts: where each partition's consumption begins,
	// read by the runner outside the loop (the Kafka client's
	// AdjustFetchOffsetsFn).
	startMu sync.Mutex
	starts  map[int32]int64
}

func newCoordinator(opts *Options, store StateStore, w Committer, src Source, b *board) *Coordinator {
	c := &Coordinator{opts: opts, log: opts.Logger, m: opts.Metrics, store: store, sink: w, src: src, board: b,
		tasks: make(map[int32]*task), starts: make(map[int32]int64)}
	c.deltas.SpillDir = opts.SpillDir
	return c
}

// task is one owned partition.
type task struct {
	p  int32
	op *stream.Operator
	// committed is the partition's checkpoints row as this task last read
	// or wrote it: the compare-and-set expectation of the next checkpoint.
	committed sink.Row
	// metaDirty is set when the state store's tag must be rewritten even
	// if the position does not move (after a rebuild).
	metaDirty  bool
	seenKey    []byte // scratch for dedup lookups
	assignedAt time.Time
	// deadLettered are offsets past the checkpoint that an earlier run
	// dead-lettered already (found when opening): not sent again.
	deadLettered map[int64]bool

	// The runner's view of the partition's log.
	end         int64     // last known end offset (last stable offset); -1 when unknown
	lastRecord  time.Time // processing time of the last live record, or of the opening
	deliveredAt uint64    // the runner's poll at which records last arrived
}

func (t *task) live() bool { return !t.op.Replaying() }

// lag returns the records left to read up to the partition's last known
// end; ok is false while the end is unknown.
func (t *task) lag() (n int64, ok bool) {
	if t.end < 0 {
		return 0, false
	}
	return max(0, t.end-t.op.NextOffset()), true
}

// task returns partition p's task, or nil when not owned.
func (c *Coordinator) task(p int32) *task { return c.tasks[p] }

// start returns where partition p's consumption begins, if it is open.
func (c *Coordinator) start(p int32) (int64, bool) {
	c.startMu.Lock()
	defer c.startMu.Unlock()
	off, ok := c.starts[p]
	return off, ok
}

// drop forgets partitions' tasks (revoked or lost).
func (c *Coordinator) drop(parts []int32) {
	c.startMu.Lock()
	defer c.startMu.Unlock()
	for _, p := range parts {
		delete(c.tasks, p)
		delete(c.starts, p)
	}
}

// caughtUp records the end of a partition's replay: it is live from here.
func (c *Coordinator) caughtUp(t *task, now time.Time) {
	t.metaDirty = true
	t.lastRecord = now
	c.m.RestoreDuration.Observe(now.Sub(t.assignedAt).Seconds())
	c.log.Info("partition restored", zap.Int32("partition", t.p),
		zap.Int64("next_offset", t.op.NextOffset()), zap.Duration("took", now.Sub(t.assignedAt)))
}

// pendingKeys returns the counters buffered by every task.
func (c *Coordinator) pendingKeys() int {
	n := 0
	for _, t := range c.tasks {
		n += t.op.PendingKeys()
	}
	return n
}

// maybeCheckpoint starts a checkpoint when one is due: the interval has
// passed (onDue, when set, runs first) or MaxPendingKeys counters are
// buffered. A checkpoint still in flight is let finish first; until then
// the caller keeps processing, unless the buffer is full (the memory
// bound). With EarlyInterval, open windows are flushed that often.
func (c *Coordinator) maybeCheckpoint(ctx context.Context, now time.Time, onDue func()) error {
	pending := c.pendingKeys()
	if !c.jobDone() && pending < c.opts.MaxPendingKeys {
		return nil // keep processing while the transaction runs
	}
	if err := c.finishJob(ctx); err != nil {
		return err
	}
	due := now.Sub(c.lastCheckpoint) >= c.opts.CheckpointInterval
	if !due && pending < c.opts.MaxPendingKeys {
		return nil
	}
	reason := "pending"
	if due {
		reason = "interval"
		if onDue != nil {
			onDue()
		}
	}
	flush := c.opts.EarlyInterval > 0 && now.Sub(c.lastFlush) >= c.opts.EarlyInterval
	return c.startJob(flush, reason)
}

// finalContext bounds a run's final checkpoint: after a stop (SIGTERM) it
// must fit the grace period, ShutdownTimeout; when the input ran out (a
// batch run) it may take as long as its last flush needs, and only ctx (a
// signal) interrupts it.
func (c *Coordinator) finalContext(ctx context.Context, inputDone bool) (context.Context, context.CancelFunc) {
	if inputDone {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(context.WithoutCancel(ctx), c.opts.ShutdownTimeout)
}

// drain waits, within ShutdownTimeout, for a checkpoint still in flight:
// a run never leaves a job writing to a store its caller closes next.
func (c *Coordinator) drain(ctx context.Context) error {
	if c.job == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.ShutdownTimeout)
	defer cancel()
	return c.finishJob(cctx)
}

// jobDone reports whether no checkpoint is in flight, or it has finished.
func (c *Coordinator) jobDone() bool {
	if c.job == nil {
		return true
	}
	select {
	case <-c.job.done:
		return true
	default:
		return false
	}
}
