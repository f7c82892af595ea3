package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clickagg/clickagg/stream"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// The Kafka runner's record path: fetch errors and out-of-range recovery,
// feeding records to the operators (metrics, dead letters), and watermark
// alignment across the partitions of this process.

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
			if out.Filtered {
				// NB: not a rejection: no reason, no dead letter, not
				// accepted; still consumed.
				pl.m.Filtered.Inc()
				pl.stats.filtered++
				continue
			}
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
				policy := pl.opts.Operator.Late
				missed := pl.m.countLate(out.Late, t.op.Sizes(), policy)
				if policy == stream.LateDeadLetter {
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
