// Package checkpoint runs the pipeline: it owns the Kafka consumer loop, the
// partition tasks, the checkpoint protocol and the restore logic.
//
// # Checkpoint protocol
//
// Every checkpoint interval, for the partitions this process owns:
//
//  1. Each live task's operator plans what it emits: the windows its
//     watermark closed (or, when flushing, every open window) and its late
//     counts. Counts carried in the state store are merged in.
//  2. sink.Writer commits ONE PostgreSQL transaction: a compare-and-set of
//     each partition's checkpoints row from the position this task last
//     saw to the new one, then the deltas. If a row moved, nothing is
//     written and those tasks re-sync from PostgreSQL.
//  3. One state-store batch, tagged with each partition's new position,
//     records the counts of windows still open and forgets emitted ones.
//  4. The offsets are committed to the Kafka group, for lag tools only.
//
// A crash between any two steps is safe: PostgreSQL is the commit point,
// and on restore a state store whose tag differs from the checkpoints row is
// discarded and rebuilt by replaying from the row's restart offset (with
// dedup on, from its dedup offset: the records before the restart offset
// only reload the event ids seen).
//
// With a dead-letter topic, step 2 first waits until every dead letter sent
// before the plan is acknowledged, and the row records where the
// partition's later dead letters will land; a restore reads the topic from
// there so that nothing a crashed run sent past the checkpoint is sent
// twice (deadletter.go).
//
// # Concurrency
//
// A Pipeline runs on one goroutine (Run), plus the Kafka client's group
// callbacks. The client is built with BlockRebalanceOnPoll, so the
// OnPartitions{Assigned,Revoked,Lost} callbacks never run while the loop is
// processing a poll or checkpointing: tasks are owned by whichever of the
// two is running, without a lock. AdjustFetchOffsetsFn runs outside that
// gate and only reads startMu-guarded start offsets.
//
// Cancelling Run's context stops polling, takes a final checkpoint that
// also emits the partial counts of open windows, commits offsets, leaves the
// group and returns nil.
//
// # Readiness
//
// Status.NotReady lists why the process should take no traffic (the
// /readyz semantics): no assignment yet, fenced out of the group (its
// instance id taken by another process), partitions restoring, PostgreSQL
// failing, no successful checkpoint for Options.StallTimeout while owning
// partitions (counted from the later of the last success and the moment it
// came to own partitions), or a state store declared unusable
// (Pipeline.SetStoreUnusable). The gauges clickagg_ready and
// clickagg_not_ready{reason} follow every change, and a ticker refreshes
// them each second: a stall shows even while the loop waits for the very
// checkpoint that hangs.
package checkpoint
