package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/state"
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
	maint        maintainer
	exit         exitState // ExitWhenIdle (exit.go)
}

// New returns a pipeline over an open state store and sink writer; Run
// creates the Kafka client.
func New(opts Options, store *state.Store, w *sink.Writer) (*Pipeline, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	pl := &Pipeline{opts: opts, log: opts.Logger, m: opts.Metrics, store: store}
	pl.maint.w = w
	pl.board = newBoard(&pl.opts)
	pl.c = newCoordinator(&pl.opts, store, w, pl, pl.board)
	return pl, nil
}

// topicCheckPeriod is how often watchTopic looks for a missing topic.
const topicCheckPeriod = 2 * time.Second

// watchTopic says so, once, when the input topic does not exist (the
// consumer then waits without a word), keeps clickagg_topic_missing and the
// status current, and says so again when the topic appears. It returns once
// the topic exists, or when stop is closed.
func (pl *Pipeline) watchTopic(ctx context.Context, stop <-chan struct{}) {
	topic, warned := pl.opts.Consumer.Topic, false
	tick := time.NewTicker(topicCheckPeriod)
	defer tick.Stop()
	for {
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		md, err := pl.adm.Metadata(mctx, topic)
		cancel()
		if err == nil {
			td, ok := md.Topics[topic]
			switch {
			case ok && td.Err == nil && len(td.Partitions) > 0:
				if warned {
					pl.log.Info("input topic exists now", zap.String("topic", topic), zap.Int("partitions", len(td.Partitions)))
					pl.board.setTopicMissing(false)
				}
				return
			case !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
				if !warned {
					pl.log.Error("input topic does not exist; waiting for it (create it, or check --topic)", zap.String("topic", topic))
					pl.board.setTopicMissing(true)
					warned = true
				}
			}
		}
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
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
	pl.exit = exitState{runStart: now}
	if pl.opts.ExitWhenIdle > 0 {
		// NB: the input this run must count, all partitions of it; listed
		// again from the loop if the topic is not there yet.
		pl.listExitTargets(ctx)
	}
	// NB: start consuming only now: from here on the group callbacks may
	// run, and they use the fields set above.
	cl.AddConsumeTopics(pl.opts.Consumer.Topic)

	stopWatch, watching := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watching)
		pl.board.watch(stopWatch, readinessPeriod)
	}()
	topicWatch := make(chan struct{})
	go func() {
		defer close(topicWatch)
		pl.watchTopic(ctx, stopWatch)
	}()
	defer func() { <-topicWatch }()
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
		fctx, cancel := pl.c.finalContext(ctx, idle)
		finalErr = pl.c.Checkpoint(fctx, true /* flush */, "final")
		if finalErr == nil {
			pl.commitKafka(fctx, true /* sync */)
		}
		if finalErr == nil && idle {
			// NB: a batch run leaves the retention applied to what it
			// wrote.
			finalErr = pl.finalMaintain(fctx)
		}
		cancel()
	}
	pl.maint.wg.Wait()
	if err := pl.c.drain(ctx); err != nil && finalErr == nil && loopErr == nil {
		finalErr = err
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
		pl.maybeMaintain(ctx, now)
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

// maybeCheckpoint is the coordinator's cadence; before an interval
// checkpoint the partition count is refreshed now and then and idle
// partitions' watermarks advance.
func (pl *Pipeline) maybeCheckpoint(ctx context.Context, now time.Time) error {
	return pl.c.maybeCheckpoint(ctx, now, func() {
		if now.Sub(pl.lastMetadata) >= metadataInterval {
			pl.refreshPartitionCount(ctx)
			pl.lastMetadata = now
		}
		pl.advanceIdle(ctx, now)
	})
}
