package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/state"
	"github.com/clickagg/clickagg/stream"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// Pipeline is the aggregator of one process reading the Kafka topic: the
// Kafka runner. It owns the consumer group client, the poll loop, the
// rebalance callbacks, watermark alignment, idle advance, exit-when-idle,
// out-of-range recovery, dead letters, status and metrics; the checkpoint
// protocol itself is its Coordinator's. Create with New, run with Run.
type Pipeline struct {
	c     *Coordinator
	board *board
	dl    *deadLetters // nil: no dead-letter topic
	opts  Options
	log   *zap.Logger
	m     *Metrics
	store *state.Store

	cl  *kgo.Client
	adm *kadm.Client

	// Owned by the loop and the group callbacks (see the package doc).
	lastMetadata time.Time
	polls        uint64 // the loop's polls so far
	closing      bool
	stats        progress
}

// New returns a pipeline over an open state store and sink writer; Run
// creates the Kafka client.
func New(opts Options, store *state.Store, w *sink.Writer) (*Pipeline, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	pl := &Pipeline{opts: opts, log: opts.Logger, m: opts.Metrics, store: store}
	pl.board = newBoard(&pl.opts)
	pl.c = newCoordinator(&pl.opts, store, w, pl, pl.board)
	return pl, nil
}

// publishTasks refreshes the task part of Status and the gauges.
func (pl *Pipeline) publishTasks() {
	var parts, restoring []int32
	var lag int64
	open, pending := 0, 0
	for _, p := range slices.Sorted(maps.Keys(pl.c.tasks)) {
		t := pl.c.tasks[p]
		parts = append(parts, p)
		if !t.live() {
			restoring = append(restoring, p)
		}
		if t.end >= 0 {
			l := max(0, t.end-t.op.NextOffset())
			lag += l
			pl.m.Lag.WithLabelValues(strconv.Itoa(int(p))).Set(float64(l))
		}
		if wm := t.op.Watermark(); wm != stream.NoWatermark {
			pl.m.Watermark.WithLabelValues(strconv.Itoa(int(p))).Set(float64(wm) / 1000)
			pl.m.WatermarkLag.WithLabelValues(strconv.Itoa(int(p))).Set(float64(time.Now().UnixMilli()-wm) / 1000)
		}
		open += t.op.OpenWindows()
		pending += t.op.PendingKeys() + t.op.HeldKeys()
	}
	pl.m.Partitions.Set(float64(len(parts)))
	pl.m.OpenWindows.Set(float64(open))
	pl.m.PendingKeys.Set(float64(pending))
	if pl.store != nil {
		pl.m.StateBytes.Set(float64(pl.store.DiskUsage()))
	}
	pl.board.setPartitions(parts, restoring, lag, time.Now())
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

// errIdle ends the loop when ExitWhenIdle holds.
var errIdle = errors.New("checkpoint: idle")

// Run consumes until ctx is cancelled or, with ExitWhenIdle, until the input
// is consumed; then it takes a final checkpoint, leaves the group and
// returns nil. It returns an error when the pipeline cannot go on (for
// example a PostgreSQL error that retrying cannot fix) or when the final
// checkpoint fails.
func (pl *Pipeline) Run(ctx context.Context) error {
	base, err := pl.opts.Kafka.ClientOpts()
	if err != nil {
		return err
	}
	kopts := append(slices.Clone(base), pl.opts.Consumer.ConsumerOpts()...)
	kopts = append(kopts,
		kgo.OnPartitionsAssigned(pl.onAssigned),
		kgo.OnPartitionsRevoked(pl.onRevoked),
		kgo.OnPartitionsLost(pl.onLost),
		kgo.AdjustFetchOffsetsFn(pl.adjustOffsets),
		kgo.WithHooks(groupHook{pl}),
	)
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return fmt.Errorf("create kafka client: %w", err)
	}
	pl.cl, pl.adm = cl, kadm.NewClient(cl)
	if topic := pl.opts.DeadLetterTopic; topic != "" {
		if pl.dl, err = newDeadLetters(ctx, pl.adm, base, topic, pl.opts.Consumer.Group, pl.opts.Consumer.Topic, pl.m, pl.log); err != nil {
			cl.Close()
			return err
		}
		// NB: closed when Run returns: the final checkpoint, and a job
		// still in flight, wait for its dead letters first.
		defer pl.dl.close()
		pl.c.dl = pl.dl
	}
	now := time.Now()
	pl.c.lastCheckpoint, pl.c.lastFlush = now, now
	pl.stats.reset(now)
	// NB: start consuming only now: from here on the group callbacks may
	// run, and they use the fields set above.
	cl.AddConsumeTopics(pl.opts.Consumer.Topic)

	stopWatch, watching := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watching)
		pl.board.watch(stopWatch, readinessPeriod)
	}()
	defer func() {
		close(stopWatch)
		<-watching
	}()
	loopErr := pl.loop(ctx)
	idle := errors.Is(loopErr, errIdle)
	if idle {
		loopErr = nil
	}

	// NB: the last poll blocks rebalances until AllowRebalance, so the
	// final checkpoint runs while this process still owns its partitions.
	var finalErr error
	if loopErr == nil {
		// NB: after SIGTERM the final checkpoint must fit the grace period
		// (ShutdownTimeout); a batch run exiting when idle may take as long
		// as its last flush needs, and a signal still interrupts it.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pl.opts.ShutdownTimeout)
		if idle {
			fctx, cancel = context.WithCancel(ctx)
		}
		finalErr = pl.c.Checkpoint(fctx, true /* flush */, "final")
		if finalErr == nil {
			pl.commitKafka(fctx, true /* sync */)
		}
		cancel()
	}
	if pl.c.job != nil {
		// NB: never leave a job writing to a store the caller closes next.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pl.opts.ShutdownTimeout)
		if err := pl.c.finishJob(cctx); err != nil && finalErr == nil && loopErr == nil {
			finalErr = err
		}
		cancel()
	}
	pl.closing = true
	cl.AllowRebalance()
	cl.Close() // leaves the group; revoke callbacks only drop tasks now
	pl.logProgress(time.Now(), true)
	st := pl.Status()
	pl.log.Info("pipeline stopped", zap.Int64("records_consumed", pl.board.consumed.Load()),
		zap.Int64("records_replayed", pl.board.replayed.Load()), zap.Int64("checkpoints", st.CheckpointsTotal),
		zap.Int64("rows_written", st.RowsWritten), zap.Int64("peak_rss_bytes", peakRSS()),
		zap.Bool("exit_when_idle", idle), zap.NamedError("loop_error", loopErr),
		zap.NamedError("final_checkpoint_error", finalErr))
	switch {
	case loopErr != nil:
		return loopErr
	case finalErr != nil:
		return fmt.Errorf("final checkpoint: %w", finalErr)
	}
	return nil
}

func (pl *Pipeline) loop(ctx context.Context) error {
	wait := pl.opts.CheckpointInterval
	for {
		pctx, cancel := context.WithTimeout(ctx, max(wait, time.Millisecond))
		fetches := pl.cl.PollRecords(pctx, pl.opts.MaxPollRecords)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err := pl.handleFetchErrors(ctx, fetches); err != nil {
			return err
		}
		now := time.Now()
		pl.polls++
		pl.alignWatermarks(now)
		if err := pl.process(fetches, now); err != nil {
			return err
		}
		pl.alignWatermarks(now)
		if err := pl.store.Err(); err != nil {
			// NB: a flush or compaction the volume refused; the next
			// write would fail or stall.
			pl.SetStoreUnusable(err.Error())
			return fmt.Errorf("state store: %w", err)
		}
		if err := pl.maybeCheckpoint(ctx, now); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := pl.maybeExit(ctx, now); err != nil {
			return err
		}
		pl.logProgress(now, false)
		// NB: computed before AllowRebalance: from there until the next
		// poll returns, group callbacks may run and checkpoint.
		wait = pl.c.lastCheckpoint.Add(pl.opts.CheckpointInterval).Sub(time.Now())
		pl.cl.AllowRebalance()
	}
}

func (pl *Pipeline) handleFetchErrors(ctx context.Context, fetches kgo.Fetches) error {
	var fatal error
	var outOfRange []int32
	fetches.EachError(func(topic string, p int32, err error) {
		switch {
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			// The poll's own timeout: time to checkpoint.
		case errors.Is(err, kgo.ErrClientClosed):
			fatal = err
		case errors.Is(err, kerr.FencedInstanceID):
			// Reported once by groupHook; the client retries the join.
		case errors.Is(err, kerr.OffsetOutOfRange) && topic == pl.opts.Consumer.Topic && pl.c.tasks[p] != nil:
			outOfRange = append(outOfRange, p)
		default:
			pl.log.Warn("fetch error", zap.String("topic", topic), zap.Int32("partition", p), zap.Error(err))
		}
	})
	if fatal == nil && len(outOfRange) > 0 {
		fatal = pl.recoverOutOfRange(ctx, outOfRange)
	}
	return fatal
}

// recoverOutOfRange handles partitions whose next offset left the log:
// retention deleted records before they were processed (or the log was
// truncated). The loss is logged and counted, never silent; consumption
// goes on from the nearest offset that exists.
func (pl *Pipeline) recoverOutOfRange(ctx context.Context, parts []int32) error {
	starts, ends, err := pl.Bounds(ctx, parts)
	if err != nil {
		return err
	}
	seek := make(map[int32]kgo.EpochOffset, len(parts))
	now := time.Now()
	for _, p := range parts {
		t := pl.c.tasks[p]
		next := t.op.NextOffset()
		to := min(max(next, starts[p]), ends[p])
		if t.op.Replaying() && to >= t.op.ReplayUntil() {
			// NB: a replay only ends at a record at or past the
			// checkpoint; none of the records it still needs exists.
			pl.log.Error("records needed to finish restoring were deleted; open windows' counts will be short",
				zap.Int32("partition", p), zap.Int64("from_offset", next), zap.Int64("checkpoint_offset", t.op.ReplayUntil()),
				zap.Int64("log_start_offset", starts[p]), zap.Int64("end_offset", ends[p]))
			t.op.EndReplay()
			pl.c.caughtUp(t, now)
			next = t.op.NextOffset()
			to = min(max(next, starts[p]), ends[p])
		}
		switch {
		case next < starts[p]:
			lost := starts[p] - next
			pl.m.RecordsLost.WithLabelValues("retention").Add(float64(lost))
			pl.log.Error("records were deleted by retention before they were processed; they are not counted",
				zap.Int32("partition", p), zap.Int64("from_offset", next), zap.Int64("log_start_offset", starts[p]),
				zap.Int64("records_lost", lost))
		case next > ends[p]:
			pl.log.Error("the next offset is beyond the partition's end: was the topic deleted and recreated, or the log truncated?",
				zap.Int32("partition", p), zap.Int64("next_offset", next), zap.Int64("end_offset", ends[p]))
		}
		seek[p] = kgo.EpochOffset{Epoch: -1, Offset: to}
		t.op.SkipTo(to) // NB: else a quiet partition would seem to lag forever
		t.end = ends[p]
	}
	pl.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{pl.opts.Consumer.Topic: seek})
	return nil
}

// process feeds polled records to their partitions' operators.
func (pl *Pipeline) process(fetches kgo.Fetches, now time.Time) (perr error) {
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		t := pl.c.tasks[fp.Partition]
		if t == nil || fp.Topic != pl.opts.Consumer.Topic || perr != nil {
			return
		}
		end := fp.HighWatermark
		if fp.LastStableOffset >= 0 {
			end = fp.LastStableOffset
		}
		t.end = end
		if len(fp.Records) > 0 {
			t.deliveredAt = pl.polls
		}
		wasReplaying := t.op.Replaying()
		var live, replayed, accepted int64
		for _, r := range fp.Records {
			out, err := t.op.Process(stream.Record{
				Offset:      r.Offset,
				Key:         r.Key,
				TimestampMs: r.Timestamp.UnixMilli(),
				Value:       r.Value,
				Control:     r.Attrs.IsControl(),
			})
			if err != nil {
				// NB: the state store failed under a dedup lookup: the
				// run stops, and the partition is opened afresh.
				perr = fmt.Errorf("partition %d: %w", t.p, err)
				return
			}
			if out.Replayed {
				replayed++
				continue
			}
			if r.Attrs.IsControl() {
				continue
			}
			live++
			if out.Reason != stream.ReasonNone {
				pl.m.Rejected.WithLabelValues(out.Reason.String()).Inc()
				pl.stats.rejected[out.Reason]++
				pl.deadLetter(t, r, out.Reason.String(), "")
				continue
			}
			accepted++
			if out.Duplicate {
				pl.m.Duplicates.Inc()
				pl.stats.duplicates++
				continue
			}
			if out.Misrouted {
				pl.m.Misrouted.Inc()
			}
			if out.Late != 0 {
				pl.stats.late++
				deadLetter := pl.opts.Operator.Late == stream.LateDeadLetter
				var missed []string
				for i, size := range t.op.Sizes() {
					if out.Late&(1<<i) != 0 {
						label := windowLabel(size)
						pl.m.Late.WithLabelValues(label, pl.opts.Operator.Late.String()).Inc()
						if deadLetter {
							missed = append(missed, label)
						}
					}
				}
				if deadLetter {
					pl.deadLetter(t, r, ReasonLate, strings.Join(missed, ","))
				}
			}
		}
		if replayed > 0 {
			pl.m.Replayed.Add(float64(replayed))
			pl.board.replayed.Add(replayed)
		}
		if live > 0 {
			t.lastRecord = now
			pl.m.Accepted.Add(float64(accepted))
			pl.m.Consumed.Add(float64(live))
			pl.board.consumed.Add(live)
			pl.stats.consumed += live
		}
		if wasReplaying && t.live() {
			pl.c.caughtUp(t, now)
		}
	})
	return perr
}

// A partition with records left to read that delivered none for
// alignStallPolls polls and alignStall stops holding the others back
// (alignWatermarks): its leader may be offline, or its fetches failing.
// Counting polls too keeps a pause of the whole loop (a long checkpoint)
// from looking like a stall.
const (
	alignStall      = 10 * time.Second
	alignStallPolls = 10
)

// alignWatermarks applies Options.AlignWatermarks: each partition's
// watermark is capped at the lowest own watermark among the process's other
// live partitions with records left to read, leaving out stalled ones (see
// alignStall); a partition alone is never capped. It runs before and after
// each poll's records are processed; the watermark is recorded in every
// checkpoint, so a replay does not depend on when it ran.
func (pl *Pipeline) alignWatermarks(now time.Time) {
	if !pl.opts.AlignWatermarks {
		return
	}
	lo, next := stream.NoCap, stream.NoCap // the two lowest
	var slowest *task
	for _, t := range pl.c.tasks {
		stalled := pl.polls-t.deliveredAt >= alignStallPolls && now.Sub(t.lastRecord) >= alignStall
		if !t.live() || t.end <= t.op.NextOffset() || stalled {
			continue
		}
		// NB: one without a watermark yet (NoWatermark, the lowest value)
		// holds the others' where they are.
		switch own := t.op.OwnWatermark(); {
		case own < lo:
			lo, next, slowest = own, lo, t
		case own < next:
			next = own
		}
	}
	for _, t := range pl.c.tasks {
		if t == slowest {
			t.op.SetWatermarkCap(next)
		} else {
			t.op.SetWatermarkCap(lo)
		}
	}
}

// deadLetter sends r to the dead-letter topic, unless a run before this
// one did already.
func (pl *Pipeline) deadLetter(t *task, r *kgo.Record, reason, lateWindows string) {
	if pl.dl == nil {
		return
	}
	if t.deadLettered[r.Offset] {
		delete(t.deadLettered, r.Offset)
		return
	}
	pl.dl.send(r, reason, lateWindows)
	pl.m.DeadLetters.WithLabelValues(reason).Inc()
}

func (pl *Pipeline) maybeCheckpoint(ctx context.Context, now time.Time) error {
	pending := 0
	for _, t := range pl.c.tasks {
		pending += t.op.PendingKeys()
	}
	if j := pl.c.job; j != nil {
		select {
		case <-j.done:
		default:
			if pending < pl.opts.MaxPendingKeys {
				return nil // keep processing while the transaction runs
			}
			// NB: memory bound: wait for the job before buffering more.
		}
		if err := pl.c.finishJob(ctx); err != nil {
			return err
		}
	}
	due := now.Sub(pl.c.lastCheckpoint) >= pl.opts.CheckpointInterval
	if !due && pending < pl.opts.MaxPendingKeys {
		return nil
	}
	if due {
		if now.Sub(pl.lastMetadata) >= metadataInterval {
			pl.refreshPartitionCount(ctx)
			pl.lastMetadata = now
		}
		pl.advanceIdle(ctx, now)
	}
	flush := pl.opts.EarlyInterval > 0 && now.Sub(pl.c.lastFlush) >= pl.opts.EarlyInterval
	reason := "interval"
	if !due {
		reason = "pending"
	}
	return pl.c.startJob(flush, reason)
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

// maybeExit implements ExitWhenIdle.
func (pl *Pipeline) maybeExit(ctx context.Context, now time.Time) error {
	d := pl.opts.ExitWhenIdle
	if d <= 0 || len(pl.c.tasks) == 0 {
		return nil
	}
	for _, t := range pl.c.tasks {
		if !t.live() || now.Sub(t.lastRecord) < d {
			return nil
		}
	}
	if !pl.refreshEnds(ctx) {
		return nil
	}
	for _, t := range pl.c.tasks {
		if t.end < 0 || t.op.NextOffset() < t.end {
			return nil
		}
	}
	pl.log.Info("input consumed and idle; exiting", zap.Duration("exit_when_idle", d))
	return errIdle
}

// progress accumulates the numbers of the periodic log line.
type progress struct {
	since       time.Time
	consumed    int64
	late        int64
	duplicates  int64
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
		zap.Int64("checkpoints", s.checkpoints),
		zap.Int64("rows_written", s.rows),
		zap.Int("partitions", len(pl.c.tasks)),
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
