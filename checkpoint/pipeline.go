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
	"sync"
	"sync/atomic"
	"time"

	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/state"
	"github.com/clickagg/clickagg/stream"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// Options configure a Pipeline. Zero values are documented per field.
type Options struct {
	Kafka    stream.KafkaOptions
	Consumer stream.ConsumerOptions
	Operator stream.OperatorOptions

	// CheckpointInterval is the time between checkpoints; zero means 1s.
	CheckpointInterval time.Duration
	// EarlyInterval, when positive, flushes the partial counts of open
	// windows at that interval (early results, final = false).
	EarlyInterval time.Duration
	// IdleTimeout, when positive, advances the watermark of a caught-up
	// partition that has had no record for that long to the wall clock
	// minus the out-of-orderness, so its windows close.
	IdleTimeout time.Duration
	// ExitWhenIdle, when positive, makes Run take a final checkpoint and
	// return once the process owns partitions, all are restored and caught
	// up, and no record arrived for that long.
	ExitWhenIdle time.Duration
	// DeadLetterTopic, when set, receives every invalid record and (late
	// policy dead-letter) every late one, unchanged plus headers. It must
	// exist.
	DeadLetterTopic string
	// StartOffset is where a partition PostgreSQL has never seen starts:
	// "earliest" (default) or "latest".
	StartOffset string
	// MaxPendingKeys triggers a checkpoint before the interval when this
	// many (window, URL) counters are buffered; zero means 250,000 (a checkpoint in flight holds as many again).
	MaxPendingKeys int
	// SpillDir holds temporary files of checkpoints too large for memory;
	// "" keeps them in memory.
	SpillDir string
	// MaxPollRecords bounds the records processed per poll; zero means 10,000.
	MaxPollRecords int
	// AlignWatermarks caps the watermark of each partition at the lowest
	// own watermark among this process's other partitions that are
	// catching up (records left to read), like a Flink source that reads
	// several partitions. A window then closes on every partition at
	// about the same time, once its records are all in, so its rows are
	// written once and final instead of once per partition and once more
	// by the finalizer, and fewer records are late. A caught-up partition
	// is held back by the others but never holds them back, nor does one
	// that stopped delivering records (10 polls and 10s). Ignored with late
	// policy dead-letter: which records are late then depends on other
	// partitions' progress, so a run after a crash could count a record
	// the crashed run had dead-lettered past its checkpoint.
	AlignWatermarks bool
	// StallTimeout is how long a process that owns partitions may go
	// without a successful checkpoint before it is not ready
	// (NotReadyStalled); zero means 10 checkpoint intervals, at least 30s.
	StallTimeout time.Duration
	// ShutdownTimeout bounds the final checkpoint; zero means 30s.
	ShutdownTimeout time.Duration
	// StatsInterval is the period of the progress log line; zero means 10s,
	// negative disables it.
	StatsInterval time.Duration

	Logger  *zap.Logger // nil: no logs
	Metrics *Metrics    // nil: unregistered series
}

func (o *Options) setDefaults() error {
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = time.Second
	}
	if o.CheckpointInterval < 10*time.Millisecond {
		return fmt.Errorf("checkpoint interval %s: must be at least 10ms", o.CheckpointInterval)
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = max(stallIntervals*o.CheckpointInterval, minStallTimeout)
	}
	if o.StallTimeout < 0 {
		return fmt.Errorf("stall timeout %s: must not be negative", o.StallTimeout)
	}
	switch o.StartOffset {
	case "":
		o.StartOffset = "earliest"
	case "earliest", "latest":
	default:
		return fmt.Errorf("start offset %q: must be earliest or latest", o.StartOffset)
	}
	if o.MaxPendingKeys == 0 {
		o.MaxPendingKeys = 250_000
	}
	if o.MaxPollRecords == 0 {
		o.MaxPollRecords = 10_000
	}
	if o.Operator.Late == stream.LateDeadLetter {
		o.AlignWatermarks = false
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	if o.StatsInterval == 0 {
		o.StatsInterval = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Operator.MaxURLBytes > sink.MaxURLBytes {
		// NB: a longer URL would fail every checkpoint that carries it.
		return fmt.Errorf("max URL bytes %d: must be at most %d (the longest URL the schema holds)", o.Operator.MaxURLBytes, sink.MaxURLBytes)
	}
	if o.Consumer.Topic == "" {
		return errors.New("topic: must not be empty")
	}
	if o.Consumer.Group == "" {
		return errors.New("group: must not be empty")
	}
	return nil
}

// ValidateOptions returns the error New would return for opts.
func ValidateOptions(opts Options) error { return opts.validate() }

// validate fills in opts' defaults and checks them.
func (o *Options) validate() error {
	if err := o.setDefaults(); err != nil {
		return err
	}
	_, err := stream.NewOperator(o.Operator)
	return err
}

// task is one owned partition.
type task struct {
	p  int32
	op *stream.Operator
	// committed is the partition's checkpoints row as this task last read
	// or wrote it: the compare-and-set expectation of the next checkpoint.
	committed sink.Position
	// metaDirty is set when the state store's tag must be rewritten even
	// if the position does not move (after a rebuild).
	metaDirty bool
	// end is the partition's last known end offset (last stable offset);
	// -1 when unknown.
	end          int64
	lastRecord   time.Time // processing time of the last live record, or of the restore
	assignedAt   time.Time
	restoredOnce bool
	// seenKey is scratch space for dedup lookups in the state store.
	seenKey []byte
	// deadLettered are offsets past the checkpoint that an earlier run
	// dead-lettered already (found at restore): not sent again.
	deadLettered map[int64]bool
	// deliveredAt is the loop's poll at which records of the partition
	// last arrived (or it was restored).
	deliveredAt uint64
}

func (t *task) live() bool { return !t.op.Replaying() }

// Pipeline is the aggregator of one process. Create with New, run with Run.
type Pipeline struct {
	// storeErr is the first state-store error a dedup lookup met: the
	// loop stops on it.
	storeErr error
	dl       *deadLetters // nil: no dead-letter topic
	opts     Options
	log      *zap.Logger
	m        *Metrics
	store    *state.Store
	sink     *sink.Writer

	cl  *kgo.Client
	adm *kadm.Client

	// Owned by the loop and the group callbacks (see the package doc).
	tasks           map[int32]*task
	topicPartitions int
	lastCheckpoint  time.Time
	lastFlush       time.Time
	lastMetadata    time.Time
	polls           uint64 // the loop's polls so far
	closing         bool
	stats           progress

	// deltas is reused by every checkpoint (its memory, and a spill file
	// in the state folder for very large ones); the job in flight owns it.
	deltas sink.Deltas
	// job is the checkpoint in flight, if any (see commit.go).
	job *job

	startMu sync.Mutex
	starts  map[int32]int64

	status struct {
		sync.Mutex
		s Status
	}
	consumed atomic.Int64
	replayed atomic.Int64
}

// New returns a pipeline over an open state store and sink writer; Run
// creates the Kafka client.
func New(opts Options, store *state.Store, w *sink.Writer) (*Pipeline, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	pl := &Pipeline{
		opts:   opts,
		log:    opts.Logger,
		m:      opts.Metrics,
		store:  store,
		sink:   w,
		tasks:  make(map[int32]*task),
		starts: make(map[int32]int64),
	}
	pl.deltas.SpillDir = opts.SpillDir
	pl.status.s.PostgresOK = true
	return pl, nil
}

// publishTasks refreshes the task part of Status and the gauges.
func (pl *Pipeline) publishTasks() {
	var parts, restoring []int32
	var lag int64
	open, pending := 0, 0
	for _, p := range slices.Sorted(maps.Keys(pl.tasks)) {
		t := pl.tasks[p]
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
		t.op.OpenWindows(func(stream.Window, int64, int64) { open++ })
		pending += t.op.PendingKeys() + t.op.HeldKeys()
	}
	pl.m.Partitions.Set(float64(len(parts)))
	pl.m.OpenWindows.Set(float64(open))
	pl.m.PendingKeys.Set(float64(pending))
	if pl.store != nil {
		pl.m.StateBytes.Set(float64(pl.store.DiskUsage()))
	}
	now := time.Now()
	pl.status.Lock()
	defer pl.status.Unlock()
	if len(pl.status.s.Partitions) == 0 && len(parts) > 0 {
		pl.status.s.Progress = now // NB: a fresh owner is not stalled
	}
	pl.status.s.Partitions, pl.status.s.Restoring, pl.status.s.Lag = parts, restoring, lag
	pl.readinessLocked(now)
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
	}
	now := time.Now()
	pl.lastCheckpoint, pl.lastFlush = now, now
	pl.stats.reset(now)
	// NB: start consuming only now: from here on the group callbacks may
	// run, and they use the fields set above.
	cl.AddConsumeTopics(pl.opts.Consumer.Topic)

	stopWatch, watching := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watching)
		pl.watchReadiness(stopWatch, readinessPeriod)
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
		finalErr = pl.checkpoint(fctx, true /* flush */, "final")
		if finalErr == nil {
			pl.commitKafka(fctx, true /* sync */)
		}
		cancel()
	}
	if pl.job != nil {
		// NB: never leave a job writing to a store the caller closes next.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pl.opts.ShutdownTimeout)
		if err := pl.finishJob(cctx); err != nil && finalErr == nil && loopErr == nil {
			finalErr = err
		}
		cancel()
	}
	pl.closing = true
	cl.AllowRebalance()
	cl.Close() // leaves the group; revoke callbacks only drop tasks now
	pl.logProgress(time.Now(), true)
	st := pl.Status()
	pl.log.Info("pipeline stopped", zap.Int64("records_consumed", pl.consumed.Load()),
		zap.Int64("records_replayed", pl.replayed.Load()), zap.Int64("checkpoints", st.CheckpointsTotal),
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
		pl.process(fetches, now)
		pl.alignWatermarks(now)
		if err := pl.storeErr; err != nil {
			return fmt.Errorf("dedup lookup: %w", err)
		}
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
		wait = pl.lastCheckpoint.Add(pl.opts.CheckpointInterval).Sub(time.Now())
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
		case errors.Is(err, kerr.OffsetOutOfRange) && topic == pl.opts.Consumer.Topic && pl.tasks[p] != nil:
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
	starts, ends, err := pl.logBounds(ctx, parts)
	if err != nil {
		return err
	}
	seek := make(map[int32]kgo.EpochOffset, len(parts))
	now := time.Now()
	for _, p := range parts {
		t := pl.tasks[p]
		next := t.op.NextOffset()
		to := min(max(next, starts[p]), ends[p])
		if t.op.Replaying() && to >= t.op.ReplayUntil() {
			// NB: a replay only ends at a record at or past the
			// checkpoint; none of the records it still needs exists.
			pl.log.Error("records needed to finish restoring were deleted; open windows' counts will be short",
				zap.Int32("partition", p), zap.Int64("from_offset", next), zap.Int64("checkpoint_offset", t.op.ReplayUntil()),
				zap.Int64("log_start_offset", starts[p]), zap.Int64("end_offset", ends[p]))
			t.op.EndReplay()
			pl.restored(t, now)
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
func (pl *Pipeline) process(fetches kgo.Fetches, now time.Time) {
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		t := pl.tasks[fp.Partition]
		if t == nil || fp.Topic != pl.opts.Consumer.Topic {
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
			out := t.op.Process(stream.Record{
				Offset:      r.Offset,
				Key:         r.Key,
				TimestampMs: r.Timestamp.UnixMilli(),
				Value:       r.Value,
				Control:     r.Attrs.IsControl(),
			})
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
			pl.replayed.Add(replayed)
		}
		if live > 0 {
			t.lastRecord = now
			pl.m.Accepted.Add(float64(accepted))
			pl.m.Consumed.Add(float64(live))
			pl.consumed.Add(live)
			pl.stats.consumed += live
		}
		if wasReplaying && t.live() {
			pl.restored(t, now)
		}
	})
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
	for _, t := range pl.tasks {
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
	for _, t := range pl.tasks {
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

// restored records the end of a rebuild.
func (pl *Pipeline) restored(t *task, now time.Time) {
	t.metaDirty = true
	t.lastRecord = now
	pl.m.RestoreDuration.Observe(now.Sub(t.assignedAt).Seconds())
	pl.log.Info("partition restored", zap.Int32("partition", t.p),
		zap.Int64("next_offset", t.op.NextOffset()), zap.Duration("took", now.Sub(t.assignedAt)))
}

func (pl *Pipeline) maybeCheckpoint(ctx context.Context, now time.Time) error {
	pending := 0
	for _, t := range pl.tasks {
		pending += t.op.PendingKeys()
	}
	if j := pl.job; j != nil {
		select {
		case <-j.done:
		default:
			if pending < pl.opts.MaxPendingKeys {
				return nil // keep processing while the transaction runs
			}
			// NB: memory bound: wait for the job before buffering more.
		}
		if err := pl.finishJob(ctx); err != nil {
			return err
		}
	}
	due := now.Sub(pl.lastCheckpoint) >= pl.opts.CheckpointInterval
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
	flush := pl.opts.EarlyInterval > 0 && now.Sub(pl.lastFlush) >= pl.opts.EarlyInterval
	reason := "interval"
	if !due {
		reason = "pending"
	}
	return pl.startJob(flush, reason)
}

// advanceIdle moves the watermark of caught-up partitions without records
// for IdleTimeout to the wall clock minus the out-of-orderness. The result
// is recorded in the next checkpoint row, so replays see it.
func (pl *Pipeline) advanceIdle(ctx context.Context, now time.Time) {
	if pl.opts.IdleTimeout <= 0 {
		return
	}
	var idle []*task
	for _, t := range pl.tasks {
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
		pl.topicPartitions = max(pl.topicPartitions, len(td.Partitions))
	}
}

// StateIdentity is the identity of the local state store for these
// options: the consumer group, the topic, and every setting that changes
// what the stored counts mean. A store written under another identity is
// wiped and rebuilt from PostgreSQL.
func StateIdentity(o Options) string {
	sizes := make([]string, 0, len(o.Operator.Windows))
	for _, w := range o.Operator.Windows {
		sizes = append(sizes, w.String())
	}
	slices.Sort(sizes)
	return fmt.Sprintf("v2\x00%s\x00%s\x00windows=%v ooo=%s late=%s max_url=%d skew=%s/%s dedup=%s normalize=%v",
		o.Consumer.Group, o.Consumer.Topic, sizes, o.Operator.OutOfOrder, o.Operator.Late, o.Operator.MaxURLBytes,
		o.Operator.MaxFutureSkew, o.Operator.MaxPastSkew, o.Operator.DedupWindow, o.Operator.NormalizeURLs)
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
		if t := pl.tasks[o.Partition]; t != nil {
			t.end = o.Offset
		}
	})
	if n > 0 {
		pl.topicPartitions = max(pl.topicPartitions, n)
	}
	return true
}

// maybeExit implements ExitWhenIdle.
func (pl *Pipeline) maybeExit(ctx context.Context, now time.Time) error {
	d := pl.opts.ExitWhenIdle
	if d <= 0 || len(pl.tasks) == 0 {
		return nil
	}
	for _, t := range pl.tasks {
		if !t.live() || now.Sub(t.lastRecord) < d {
			return nil
		}
	}
	if !pl.refreshEnds(ctx) {
		return nil
	}
	for _, t := range pl.tasks {
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
		zap.Int("partitions", len(pl.tasks)),
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
