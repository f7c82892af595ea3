package checkpoint

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"go.uber.org/zap"
)

// Exit when idle (Options.ExitWhenIdle) covers the whole topic, not just
// the partitions this process owns: a batch run restarted after a crash
// may own only the partitions the dead member's lingering session does not
// hold, and exiting once those are consumed would leave the others
// uncounted. So Run lists every partition's end offset when it starts (the
// targets), and the loop exits only once
//
//   - the partitions it owns are restored, caught up with their current
//     ends and without records for ExitWhenIdle (or, owning none, the run
//     has lasted that long), and
//   - every other partition's checkpoints row in PostgreSQL has a
//     next_offset at or past its target: counted by another member, a
//     crashed one's last checkpoint, or an earlier run.
//
// Counted means checkpointed, exactly once: this process's partitions
// reach url_clicks with its final checkpoint (which flushes open windows),
// another member's when it emits their windows (they close, or it stops).
// Waiting for those too would deadlock two batch runs sharing the group,
// each waiting for the other's final flush; the exit says which partitions
// still have windows open elsewhere.
//
// Otherwise it keeps running (saying which partitions it waits for, and how
// far their rows are): the group rebalances when the dead member's session
// times out, and this process gets those partitions and counts them.

// exitCheckPeriod bounds how often the exit check reads PostgreSQL's rows.
const exitCheckPeriod = 500 * time.Millisecond

// exitWaitLogPeriod bounds how often the exit check says what it waits for
// (it says so at once when that changes).
const exitWaitLogPeriod = 5 * time.Second

// exitState is what the exit check keeps between loop iterations.
type exitState struct {
	// targets are the end offsets of every partition when the run started
	// (nil until listed); partitions without records (start == end) are
	// left out: there is nothing to count.
	targets   map[int32]int64
	runStart  time.Time
	lastCheck time.Time
	lastLog   time.Time
	lastWait  string
}

// listExitTargets records every partition's end offset (the last stable
// offset: where a read-committed consumer is caught up), once. It reports
// whether the targets are known.
func (pl *Pipeline) listExitTargets(ctx context.Context) bool {
	if pl.exit.targets != nil {
		return true
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	topic := pl.opts.Consumer.Topic
	ends, err := pl.adm.ListCommittedOffsets(lctx, topic)
	if err == nil {
		err = ends.Error()
	}
	var starts kadm.ListedOffsets
	if err == nil {
		starts, err = pl.adm.ListStartOffsets(lctx, topic)
		if err == nil {
			err = starts.Error()
		}
	}
	if err != nil || len(ends[topic]) == 0 {
		pl.log.Debug("exit when idle: list the topic's end offsets", zap.Error(err))
		return false
	}
	targets := make(map[int32]int64, len(ends[topic]))
	var records int64
	for p, o := range ends[topic] {
		s, ok := starts.Lookup(topic, p)
		if !ok {
			return false
		}
		if o.Offset > s.Offset {
			targets[p] = o.Offset
			records += o.Offset - s.Offset
		}
	}
	pl.exit.targets = targets
	pl.log.Info("exit when idle: will exit once every partition is counted up to its end offset as of now",
		zap.Int("partitions", len(ends[topic])), zap.Int("with_records", len(targets)), zap.Int64("records_retained", records),
		zap.String("end_offsets", formatOffsets(targets)))
	return true
}

// maybeExit implements ExitWhenIdle: it returns errIdle once the input the
// run saw at its start is counted, every partition of it, and this
// process's partitions are idle.
func (pl *Pipeline) maybeExit(ctx context.Context, now time.Time) error {
	d := pl.opts.ExitWhenIdle
	if d <= 0 {
		return nil
	}
	if len(pl.c.tasks) == 0 && now.Sub(pl.exit.runStart) < d {
		return nil
	}
	for _, t := range pl.c.tasks {
		if !t.live() || now.Sub(t.lastRecord) < d {
			return nil
		}
	}
	if now.Sub(pl.exit.lastCheck) < exitCheckPeriod {
		return nil
	}
	pl.exit.lastCheck = now
	if !pl.listExitTargets(ctx) || !pl.refreshEnds(ctx) {
		return nil
	}
	for _, t := range pl.c.tasks {
		if t.end < 0 || t.op.NextOffset() < t.end {
			return nil
		}
	}
	waiting, open, err := pl.uncounted(ctx)
	if err != nil {
		pl.log.Warn("exit when idle: read the checkpoints rows; retrying", zap.Error(err))
		return nil
	}
	if len(waiting) > 0 {
		pl.logExitWait(now, waiting)
		return nil
	}
	if len(open) > 0 {
		// NB: counted exactly once, but not all in url_clicks yet; waiting
		// for them could deadlock two batch runs that each wait for the
		// other's final flush.
		pl.log.Warn("exit when idle: other partitions are checkpointed past their end offsets, but some of their windows are still open on their owner; "+
			"their url_clicks rows appear when it emits them (a live replica: when they close or it stops; a member that crashed: the next run that restores them)",
			zap.Int32s("partitions", open))
	}
	pl.log.Info("input consumed and idle; exiting", zap.Duration("exit_when_idle", d),
		zap.Int("partitions_owned", len(pl.c.tasks)), zap.Int("partitions_checked", len(pl.exit.targets)))
	return errIdle
}

// behind is a partition not yet counted up to its exit target.
type behind struct {
	p      int32
	next   int64 // the row's next_offset; -1: no row
	target int64
}

// uncounted returns the partitions with records up to their exit target
// that neither this process has consumed (its final checkpoint commits
// them) nor a checkpoints row covers (next_offset); and, of those a row
// covers, the ones whose row still has windows open below the target
// (restart_offset): their counts are in the owner's state, not yet in
// url_clicks.
func (pl *Pipeline) uncounted(ctx context.Context) (waiting []behind, open []int32, err error) {
	var others []int32
	for p := range pl.exit.targets {
		if pl.c.tasks[p] == nil {
			others = append(others, p)
		}
	}
	if len(others) == 0 {
		return nil, nil, nil
	}
	slices.Sort(others)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := pl.c.sink.ReadRows(rctx, others)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range others {
		b := behind{p: p, next: -1, target: pl.exit.targets[p]}
		row, ok := rows[p]
		if ok {
			b.next = row.NextOffset
		}
		switch {
		case b.next < b.target:
			waiting = append(waiting, b)
		case row.RestartOffset < b.target:
			open = append(open, p)
		}
	}
	return waiting, open, nil
}

// logExitWait says which partitions the exit waits for and how far their
// rows are, when that changed or every exitWaitLogPeriod.
func (pl *Pipeline) logExitWait(now time.Time, waiting []behind) {
	parts := make([]int32, 0, len(waiting))
	var b strings.Builder
	var left int64
	for i, w := range waiting {
		parts = append(parts, w.p)
		if i > 0 {
			b.WriteString(", ")
		}
		if w.next < 0 {
			fmt.Fprintf(&b, "%d: no checkpoint, end %d", w.p, w.target)
		} else {
			fmt.Fprintf(&b, "%d: %d of %d", w.p, w.next, w.target)
			left += w.target - w.next
		}
	}
	msg := b.String()
	if msg == pl.exit.lastWait && now.Sub(pl.exit.lastLog) < exitWaitLogPeriod {
		return
	}
	pl.exit.lastWait, pl.exit.lastLog = msg, now
	pl.log.Info("exit when idle: owned partitions are done; waiting for other partitions to be counted (owned by another member, or by one that died and holds them until its session times out)",
		zap.Int32s("waiting_partitions", parts), zap.String("checkpointed_of_end", msg),
		zap.Int64("records_left_known", left), zap.Int("partitions_owned", len(pl.c.tasks)))
}

// formatOffsets prints offsets by partition, "0: 10, 1: 12".
func formatOffsets(m map[int32]int64) string {
	var b strings.Builder
	for i, p := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d: %d", p, m[p])
	}
	return b.String()
}
