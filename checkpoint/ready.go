package checkpoint

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// A NotReady is one reason the process is not ready: a line of the /readyz
// answer, and the reason label of the clickagg_not_ready gauge.
type NotReady string

// The reasons, in the order Status.NotReady lists them.
const (
	// NotReadyUnassigned: the process has not received an assignment yet.
	NotReadyUnassigned NotReady = "not_joined"
	// NotReadyFenced: the Kafka group refuses this process's instance id
	// (FENCED_INSTANCE_ID): another process runs with the same one, and
	// this one owns nothing until it is stopped or the other one leaves.
	NotReadyFenced NotReady = "fenced"
	// NotReadyRestoring: owned partitions are still being restored.
	NotReadyRestoring NotReady = "restoring"
	// NotReadyPostgres: the last PostgreSQL operation failed.
	NotReadyPostgres NotReady = "postgres_unreachable"
	// NotReadyStalled: the process owns partitions and no checkpoint
	// succeeded for Options.StallTimeout (a transaction waiting on a lock,
	// say): PostgreSQL falls behind although it answers.
	NotReadyStalled NotReady = "checkpoint_stalled"
	// NotReadyStore: the local state store cannot be used (see
	// Pipeline.SetStoreUnusable).
	NotReadyStore NotReady = "store_unusable"
)

// NotReadyReasons returns every reason, in the order Status.NotReady lists
// them.
func NotReadyReasons() []NotReady {
	return []NotReady{NotReadyUnassigned, NotReadyFenced, NotReadyRestoring, NotReadyPostgres, NotReadyStalled, NotReadyStore}
}

// Defaults of Options.StallTimeout: stallIntervals checkpoint intervals,
// at least minStallTimeout. A checkpoint of a large backlog can take many
// seconds without being stuck; minutes without one can.
const (
	stallIntervals  = 10
	minStallTimeout = 30 * time.Second
)

// Status is a snapshot for health checks and the demo view.
type Status struct {
	Joined     bool    // the process has received an assignment
	Fenced     bool    // the group refuses this process's instance id (NotReadyFenced)
	Partitions []int32 // owned partitions
	Restoring  []int32 // owned partitions not yet restored
	PostgresOK bool    // the last PostgreSQL operation succeeded
	// StoreUnusable, when set, says why the local state store cannot be
	// used (Pipeline.SetStoreUnusable).
	StoreUnusable string
	// TopicMissing is set while the input topic does not exist: the
	// process waits for it (no assignment comes meanwhile).
	TopicMissing   bool
	LastCheckpoint time.Time // zero before the first that wrote to PostgreSQL
	// CheckpointTook is how long the last checkpoint that wrote to
	// PostgreSQL took (plan, transaction, state batch).
	CheckpointTook time.Duration
	// Progress is when the last checkpoint succeeded (one with nothing to
	// write included) or, if later, when the process came to own
	// partitions: the stall clock starts there.
	Progress time.Time
	// Stalled is set when the process owns partitions and Progress is
	// older than Options.StallTimeout (NotReadyStalled).
	Stalled          bool
	Lag              int64 // records behind the partitions' ends (known ends only)
	Consumed         int64 // live records consumed since start
	Replayed         int64 // records re-read to rebuild state since start
	LastError        string
	CheckpointsTotal int64
	RowsWritten      int64 // url_clicks and url_totals rows written by checkpoints
	// Owned has one entry per owned partition, in partition order.
	Owned []PartitionStatus
}

// PartitionStatus is one owned partition in a Status.
type PartitionStatus struct {
	Partition int32
	Restoring bool
	// Lag is the records left to read up to the partition's end; -1
	// while the end is unknown.
	Lag int64
	// Watermark is the partition's watermark; zero before it has one.
	Watermark time.Time
}

// NotReady lists why the process is not ready (the /readyz semantics), in
// the order of NotReadyReasons; none when it is ready.
func (s Status) NotReady() []NotReady {
	var out []NotReady
	for _, r := range NotReadyReasons() {
		var not bool
		switch r {
		case NotReadyUnassigned:
			not = !s.Joined
		case NotReadyFenced:
			not = s.Fenced
		case NotReadyRestoring:
			not = len(s.Restoring) > 0
		case NotReadyPostgres:
			not = !s.PostgresOK
		case NotReadyStalled:
			not = s.Stalled
		case NotReadyStore:
			not = s.StoreUnusable != ""
		}
		if not {
			out = append(out, r)
		}
	}
	return out
}

// Ready reports whether NotReady lists no reason.
func (s Status) Ready() bool { return len(s.NotReady()) == 0 }

// Explain returns reason r with the snapshot's details, in one line.
func (s Status) Explain(r NotReady, now time.Time) string {
	switch r {
	case NotReadyUnassigned:
		if s.TopicMissing {
			return fmt.Sprintf("%s: no partition assignment yet: the topic does not exist", r)
		}
		return fmt.Sprintf("%s: no partition assignment yet", r)
	case NotReadyFenced:
		return fmt.Sprintf("%s: the Kafka group refuses this instance id: another process runs with the same one", r)
	case NotReadyRestoring:
		return fmt.Sprintf("%s: partitions %v", r, s.Restoring)
	case NotReadyPostgres:
		return fmt.Sprintf("%s: %s", r, s.LastError)
	case NotReadyStalled:
		return fmt.Sprintf("%s: no checkpoint succeeded for %s (partitions %v)", r, now.Sub(s.Progress).Round(time.Second), s.Partitions)
	case NotReadyStore:
		return fmt.Sprintf("%s: %s", r, s.StoreUnusable)
	}
	return string(r)
}

// board is the process's Status, shared by the runner and the
// coordinator, and the readiness gauges that follow it.
type board struct {
	sync.Mutex
	s          Status
	stall      time.Duration // Options.StallTimeout
	instanceID string
	m          *Metrics
	log        *zap.Logger
	consumed   atomic.Int64
	replayed   atomic.Int64
}

func newBoard(opts *Options) *board {
	b := &board{stall: opts.StallTimeout, instanceID: opts.Consumer.InstanceID, m: opts.Metrics, log: opts.Logger}
	b.s.PostgresOK = true
	return b
}

// Status returns the pipeline's current status.
func (pl *Pipeline) Status() Status { return pl.board.snapshot() }

func (b *board) snapshot() Status {
	b.Lock()
	defer b.Unlock()
	s := b.readinessLocked(time.Now())
	s.Partitions = slices.Clone(s.Partitions)
	s.Restoring = slices.Clone(s.Restoring)
	s.Owned = slices.Clone(s.Owned)
	s.Consumed = b.consumed.Load()
	s.Replayed = b.replayed.Load()
	return s
}

// readinessLocked recomputes the stall flag and the readiness gauges; the
// caller holds the lock.
func (b *board) readinessLocked(now time.Time) Status {
	s := &b.s
	s.Stalled = len(s.Partitions) > 0 && now.Sub(s.Progress) > b.stall
	reasons := s.NotReady()
	b.m.Ready.Set(b2f(len(reasons) == 0))
	for _, r := range NotReadyReasons() {
		b.m.NotReady.WithLabelValues(string(r)).Set(b2f(slices.Contains(reasons, r)))
	}
	return *s
}

// setPostgresOK records whether the last PostgreSQL operation succeeded.
func (b *board) setPostgresOK(ok bool, err error) {
	b.Lock()
	defer b.Unlock()
	b.s.PostgresOK = ok
	b.m.PostgresUp.Set(b2f(ok))
	if err != nil {
		b.s.LastError = err.Error()
	}
	b.readinessLocked(time.Now())
}

// SetStoreUnusable marks the local state store unusable (why) or usable
// again (""): the process is not ready meanwhile.
func (pl *Pipeline) SetStoreUnusable(why string) { pl.board.setStoreUnusable(why) }

func (b *board) setStoreUnusable(why string) {
	b.Lock()
	defer b.Unlock()
	if why != "" && b.s.StoreUnusable == "" {
		b.log.Error("local state store unusable; not ready", zap.String("reason", why))
	}
	b.s.StoreUnusable = why
	b.readinessLocked(time.Now())
}

func (b *board) setFenced(fenced bool, err error) {
	b.Lock()
	defer b.Unlock()
	if fenced && !b.s.Fenced {
		b.log.Error("fenced out of the consumer group: another process runs with the same instance id; "+
			"this one owns no partitions until one of them stops", zap.String("instance_id", b.instanceID), zap.Error(err))
	}
	b.s.Fenced = fenced
	b.readinessLocked(time.Now())
}

// setTopicMissing records whether the input topic exists.
func (b *board) setTopicMissing(missing bool) {
	b.Lock()
	defer b.Unlock()
	b.s.TopicMissing = missing
	b.m.TopicMissing.Set(b2f(missing))
	b.readinessLocked(time.Now())
}

// setJoined records an assignment: the group took this process (back).
func (b *board) setJoined() {
	b.Lock()
	defer b.Unlock()
	b.s.Joined, b.s.Fenced = true, false
	b.readinessLocked(time.Now())
}

// checkpointed records a successful checkpoint at now, how long it took,
// and what it wrote (rows < 0: it wrote nothing to PostgreSQL): the stall
// clock starts again.
func (b *board) checkpointed(now time.Time, took time.Duration, rows int64) {
	b.Lock()
	defer b.Unlock()
	if rows >= 0 {
		b.s.LastCheckpoint, b.s.CheckpointTook = now, took
		b.s.CheckpointsTotal++
		b.s.RowsWritten += rows
	}
	b.s.Progress = now
	b.readinessLocked(now)
}

// setPartitions records the owned and restoring partitions, the lag and
// each partition's details.
func (b *board) setPartitions(parts, restoring []int32, lag int64, owned []PartitionStatus, now time.Time) {
	b.Lock()
	defer b.Unlock()
	if len(b.s.Partitions) == 0 && len(parts) > 0 {
		b.s.Progress = now // NB: a fresh owner is not stalled
	}
	b.s.Partitions, b.s.Restoring, b.s.Lag, b.s.Owned = parts, restoring, lag, owned
	b.readinessLocked(now)
}

// groupHook learns from the Kafka client when the group fences this
// process's instance id: the client then calls OnPartitionsLost and keeps
// rejoining, refused each time, and no other callback says so.
type groupHook struct{ pl *Pipeline }

var _ kgo.HookGroupManageError = groupHook{}

// OnGroupManageError implements kgo.HookGroupManageError. The next
// assignment clears the flag (onAssigned).
func (h groupHook) OnGroupManageError(err error) {
	if errors.Is(err, kerr.FencedInstanceID) {
		h.pl.board.setFenced(true, err)
	}
}

// watchReadiness refreshes the readiness gauges every period until stop is
// closed: the stall reason turns on with time alone, while the loop may be
// blocked waiting for the very checkpoint that hangs.
func (b *board) watch(stop <-chan struct{}, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			b.Lock()
			b.readinessLocked(now)
			b.Unlock()
		}
	}
}

// readinessPeriod is how often watchReadiness refreshes the gauges.
const readinessPeriod = time.Second
