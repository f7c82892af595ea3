package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/stream"
	"github.com/jackc/pgx/v5/pgconn"
)

// memSource is the second, trivial source: each partition's log is an
// in-memory slice of records (offset = index, from start[p] on). It drives
// the same Coordinator as the Kafka runner, without a broker: the runner's
// part here is feeding records, seeking and saying where logs end.
type memSource struct {
	logs  map[int32][]stream.Record
	start map[int32]int64 // log start offsets (records below were deleted)
	pos   map[int32]int64 // next offset to deliver
	seeks []string        // Seek calls, for the script
}

func newMemSource() *memSource {
	return &memSource{logs: map[int32][]stream.Record{}, start: map[int32]int64{}, pos: map[int32]int64{}}
}

func (s *memSource) produce(p int32, value string, tsMs int64) {
	s.logs[p] = append(s.logs[p], stream.Record{Offset: int64(len(s.logs[p])), TimestampMs: tsMs, Value: []byte(value)})
}

// Bounds implements Source.
func (s *memSource) Bounds(_ context.Context, parts []int32) (starts, ends map[int32]int64, err error) {
	starts, ends = map[int32]int64{}, map[int32]int64{}
	for _, p := range parts {
		starts[p], ends[p] = s.start[p], int64(len(s.logs[p]))
	}
	return starts, ends, nil
}

// Seek implements Source.
func (s *memSource) Seek(offsets map[int32]int64) {
	for _, p := range slices.Sorted(maps.Keys(offsets)) {
		s.pos[p] = offsets[p]
		s.seeks = append(s.seeks, fmt.Sprintf("p%d@%d", p, offsets[p]))
	}
}

// Checkpointed implements Source.
func (*memSource) Checkpointed(context.Context, string, int64) {}

// open opens parts in c and points consumption where c says.
func (s *memSource) open(ctx context.Context, c *Coordinator, parts []int32) error {
	if err := c.Open(ctx, parts, time.Now()); err != nil {
		return err
	}
	for _, p := range parts {
		s.pos[p], _ = c.start(p)
	}
	return nil
}

// feed delivers up to n records (n < 0: all) of partition p to its task,
// as a poll does, and reports what happened.
func (s *memSource) feed(c *Coordinator, p int32, n int) (string, error) {
	t := c.task(p)
	if t == nil {
		return "", fmt.Errorf("partition %d not owned", p)
	}
	var live, replayed, rejected, late int
	wasReplaying := t.op.Replaying()
	for off := max(s.pos[p], s.start[p]); off < int64(len(s.logs[p])) && n != 0; off, n = off+1, n-1 {
		out, err := t.op.Process(s.logs[p][off])
		if err != nil {
			return "", err
		}
		s.pos[p] = off + 1
		switch {
		case out.Replayed:
			replayed++
		case out.Reason != stream.ReasonNone:
			rejected++
		default:
			live++
			if out.Late != 0 {
				late++
			}
		}
	}
	if wasReplaying && t.live() {
		c.caughtUp(t, time.Now())
	}
	return fmt.Sprintf("p%d: live %d, replayed %d, rejected %d, late %d; next %d%s", p, live, replayed, rejected, late,
		t.op.NextOffset(), map[bool]string{true: " (replaying)"}[t.op.Replaying()]), nil
}

// errCrash is the faultyCommitter's "the process died here".
var errCrash = errors.New("crash")

// faultyCommitter is the real Committer with one fault armed at a time:
//   - "before": the process dies before the transaction: nothing commits;
//   - "after": the transaction commits, then the process dies before the
//     state store is written;
//   - "lost-ack": the transaction commits but its acknowledgement is lost
//     (a connection error): the coordinator retries the same checkpoint.
type faultyCommitter struct {
	Committer
	fault string
}

func (f *faultyCommitter) Commit(ctx context.Context, cp *sink.Checkpoint) (sink.Result, error) {
	fault := f.fault
	f.fault = ""
	switch fault {
	case "before":
		return sink.Result{}, errCrash
	case "after":
		if _, err := f.Committer.Commit(ctx, cp); err != nil {
			return sink.Result{}, err
		}
		return sink.Result{}, errCrash
	case "lost-ack":
		if _, err := f.Committer.Commit(ctx, cp); err != nil {
			return sink.Result{}, err
		}
		return sink.Result{}, fmt.Errorf("commit: %w", pgconn.ErrConnClosed)
	}
	return f.Committer.Commit(ctx, cp)
}

// describeRows formats checkpoints rows for the script.
func describeRows(rows map[int32]sink.Row) string {
	var b strings.Builder
	for _, p := range slices.Sorted(maps.Keys(rows)) {
		r := rows[p]
		fmt.Fprintf(&b, "p%d: next %d, restart %d, watermark %s\n", p, r.NextOffset, r.RestartOffset, fmtTime(r.Watermark))
	}
	return b.String()
}
