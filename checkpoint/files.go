package checkpoint

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/clickagg/clickagg/stream"
	"go.uber.org/zap"
)

// The sequential runner: one input read front to back as one partition
// (a file of JSON lines for `clickagg backfill`), driving the same
// Coordinator as the Kafka runner. Offsets are the input's own (byte
// offsets of the lines, for files); the partition's checkpoints row moves
// with each checkpoint's deltas in one transaction, so a run killed
// anywhere resumes from the row: it reads again from the row's restart
// offset to rebuild open windows, exactly as a Kafka partition replays.

// RecordReader delivers an input's records in offset order.
type RecordReader interface {
	// Next returns the next record, or io.EOF after the last. The record
	// (its Value) is valid until the next call.
	Next() (stream.Record, error)
	Close() error
}

// SeqInput is one input of RunSeq.
type SeqInput struct {
	// Partition is the input's partition number: the key of its
	// checkpoints row (with Options.Consumer.Group and .Topic) and of its
	// part of the state store.
	Partition int32
	// Open returns a reader of the records at or after offset from.
	Open func(from int64) (RecordReader, error)
	// End is an offset past every record when known (a plain file's
	// size); -1 when unknown (a compressed file, stdin).
	End int64
	// Progress, when set, is called about once a second while records
	// are read, and once at the end.
	Progress func(SeqStats)
}

// SeqStats are what RunSeq did with an input's records.
type SeqStats struct {
	Start      int64 // the offset reading started at
	Next       int64 // the next offset to read
	Replayed   int64 // records read again to rebuild open windows (counted earlier)
	Records    int64 // records read past the checkpoint: every kind below
	Accepted   int64 // valid clicks (duplicates and late ones included)
	Late       int64
	Duplicates int64
	Filtered   int64
	Rejected   map[string]int64 // by reason
	// Checkpoints are the transactions that wrote (the final one included).
	Checkpoints int64
}

// seqSource is the Source of RunSeq: one partition, the input's bounds,
// and seeks (after a re-sync) applied by the loop.
type seqSource struct {
	in      SeqInput
	seek    int64 // -1: none pending
	written int64
}

// Bounds implements Source.
func (s *seqSource) Bounds(_ context.Context, parts []int32) (starts, ends map[int32]int64, err error) {
	starts, ends = map[int32]int64{}, map[int32]int64{}
	end := s.in.End
	if end < 0 {
		// NB: unknown: a checkpoint is never "beyond the end".
		end = math.MaxInt64
	}
	for _, p := range parts {
		starts[p], ends[p] = 0, end
	}
	return starts, ends, nil
}

// Seek implements Source.
func (s *seqSource) Seek(offsets map[int32]int64) {
	if off, ok := offsets[s.in.Partition]; ok {
		s.seek = off
	}
}

// Checkpointed implements Source.
func (s *seqSource) Checkpointed(_ context.Context, _ string, rows int64) {
	if rows >= 0 {
		s.written++
	}
}

// seqBatch is how many records the loop processes between looks at the
// clock.
const seqBatch = 4096

// RunSeq counts one input into w: it opens the input's partition (resume
// or rebuild from its checkpoints row and store), reads from there to the
// end, checkpointing every Options.CheckpointInterval (or when
// MaxPendingKeys counters are buffered), and ends with a final checkpoint
// that flushes every open window. When ctx ends first it takes that final
// checkpoint too (within ShutdownTimeout) and returns ctx's error: the
// next run resumes from it.
//
// Options.Consumer.Group and .Topic name the checkpoints rows (w must
// write the same); the Kafka and dead-letter options are not used.
func RunSeq(ctx context.Context, opts Options, store StateStore, w Committer, in SeqInput) (SeqStats, error) {
	st := SeqStats{Rejected: map[string]int64{}}
	if err := opts.validate(); err != nil {
		return st, err
	}
	src := &seqSource{in: in, seek: -1}
	c := newCoordinator(&opts, store, w, src, newBoard(&opts))
	// NB: topicPartitions stays 0: a backfill never marks windows final
	// (another input may always add to them).
	p, log := in.Partition, opts.Logger
	now := time.Now()
	c.lastCheckpoint, c.lastFlush = now, now
	if err := c.Open(ctx, []int32{p}, now); err != nil {
		return st, err
	}
	loopErr := seqLoop(ctx, c, src, &st)
	stopped := loopErr == nil && ctx.Err() != nil
	var finalErr error
	if loopErr == nil || stopped {
		fctx, cancel := c.finalContext(ctx, !stopped)
		finalErr = c.Checkpoint(fctx, true /* flush */, "final")
		cancel()
	}
	if err := c.drain(ctx); err != nil && finalErr == nil {
		finalErr = err
	}
	if t := c.task(p); t != nil {
		st.Next = t.op.NextOffset()
	}
	st.Checkpoints = src.written
	if in.Progress != nil {
		in.Progress(st)
	}
	switch {
	case loopErr != nil:
		return st, loopErr
	case finalErr != nil:
		return st, fmt.Errorf("final checkpoint: %w", finalErr)
	case stopped:
		log.Info("stopped; the next run resumes from the final checkpoint", zap.Int64("next_offset", st.Next))
		return st, ctx.Err()
	}
	return st, nil
}

// seqLoop reads the input to its end (nil), or until ctx ends (nil too;
// the caller looks at ctx).
func seqLoop(ctx context.Context, c *Coordinator, src *seqSource, st *SeqStats) error {
	p, m := src.in.Partition, c.m
	t := c.task(p)
	from, _ := c.start(p)
	st.Start = from
	rd, err := src.in.Open(from)
	if err != nil {
		return err
	}
	defer func() { _ = rd.Close() }()
	lastProgress := time.Now()
	for eof := false; !eof; {
		if ctx.Err() != nil {
			return nil
		}
		wasReplaying := t.op.Replaying()
		var live, accepted, replayed int64
		for range seqBatch {
			r, err := rd.Next()
			if err == io.EOF {
				eof = true
				break
			}
			if err != nil {
				return err
			}
			out, err := t.op.Process(r)
			if err != nil {
				return fmt.Errorf("partition %d: %w", p, err)
			}
			if out.Replayed {
				replayed++
				continue
			}
			live++
			switch {
			case out.Filtered:
				st.Filtered++
				m.Filtered.Inc()
			case out.Reason != stream.ReasonNone:
				st.Rejected[out.Reason.String()]++
				m.Rejected.WithLabelValues(out.Reason.String()).Inc()
			default:
				accepted++
				if out.Duplicate {
					st.Duplicates++
					m.Duplicates.Inc()
				} else if out.Late != 0 {
					st.Late++
					m.countLate(out.Late, t.op.Sizes(), c.opts.Operator.Late)
				}
			}
		}
		now := time.Now()
		st.Records += live
		st.Accepted += accepted
		st.Replayed += replayed
		m.Consumed.Add(float64(live))
		m.Accepted.Add(float64(accepted))
		m.Replayed.Add(float64(replayed))
		if wasReplaying && t.live() {
			c.caughtUp(t, now)
		}
		if eof && t.op.Replaying() {
			return fmt.Errorf("the input ends at offset %d, before its checkpoint at offset %d: it changed since it was counted",
				t.op.NextOffset(), t.op.ReplayUntil())
		}
		if err := c.maybeCheckpoint(ctx, now, nil); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if src.seek >= 0 {
			// NB: fenced (another run counts this input now) and re-synced
			// from its row: read from where the row says.
			_ = rd.Close()
			from, src.seek = src.seek, -1
			if rd, err = src.in.Open(from); err != nil {
				return err
			}
			t, eof = c.task(p), false
		}
		if src.in.Progress != nil && (eof || now.Sub(lastProgress) >= time.Second) {
			lastProgress = now
			st.Next = t.op.NextOffset()
			src.in.Progress(*st)
		}
	}
	return nil
}
