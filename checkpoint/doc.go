// Package checkpoint runs the pipeline: a runner per source feeds records
// to one window operator per partition, and a protocol coordinator turns
// the operators' checkpoints into one PostgreSQL transaction and one state
// batch each, and decides how every partition starts.
//
// # Shape
//
//	Pipeline (the Kafka runner)             memory source (tests), RunSeq (files)
//	  poll, rebalance callbacks, alignment,      │
//	  idle advance, exit-when-idle, dead         │ feeds stream.Operator.Process,
//	  letters, status, metrics                   │ asks for checkpoints
//	       │                                     │
//	       └──────────────► Coordinator ◄────────┘
//	                          │ Open: the restore decision per partition
//	                          │ Checkpoint: Ready → commit → persist → Advance
//	                          ▼
//	        Committer (sink.Writer)   StateStore (state.Store)   Source (the runner)
//
// Package direction: cmd → checkpoint → {stream, state, sink} → base.
// stream, state and sink do not import each other; the values they share
// (a window, a position, a registry entry, the dedup clock) live in base.
//
// # The protocol, step by step
//
// A checkpoint (Coordinator.Checkpoint, or startJob/finishJob when the
// runner overlaps it with processing) goes:
//
//  1. Ready. Each partition's operator hands over one stream.Ready: the
//     windows it emits with their counts, the late counts, the new position,
//     and what the state store must hold afterwards (counts of windows left
//     open, the registry, dedup sightings). Windows up to hold_windows may
//     keep their counts in memory across the checkpoint, within one budget
//     for all partitions (Holdable). A partition still replaying hands over
//     only what its replay rebuilt: written to the store at once, untagged.
//  2. Commit. The coordinator translates the Readies into one
//     sink.Checkpoint (reading back from the store the counts of emitted
//     windows that went there at earlier checkpoints) and the Committer
//     writes it in ONE transaction: a compare-and-set of each partition's
//     checkpoints row from the row this task last saw to the new one, then
//     the deltas. If any row moved (another process owns the partition
//     now), nothing is written: those partitions are re-synced (opened
//     again from their rows) and the runner seeks them.
//  3. Persist. One synced state batch applies the Readies and tags each
//     partition with its new position. PostgreSQL committed first: it is the
//     commit point, the store only a cache of it.
//  4. Advance or Abort. On success the operators forget what they handed
//     over; on any failure (the transaction, the batch, a cancelled
//     shutdown) Abort gives it back, so the next checkpoint carries it.
//  5. The runner hears of it (Source.Checkpointed): the Kafka runner commits
//     the offsets to the group, for lag tools only.
//
// A crash between any two steps is safe. Open decides how a partition
// starts from its checkpoints row and the local store: a store whose tag
// equals the row is that very checkpoint's, and the partition resumes from
// it (replaying only what held windows kept in memory); any other (none, a
// crash between steps 2 and 3, a lost volume, a zombie's leftovers) is
// dropped and rebuilt by replaying from the row's restart offset (with
// dedup, its dedup offset) to its next offset, with the row's watermark,
// emitting nothing. The scripts in testdata/protocol walk each of these
// cases against a real PostgreSQL and Pebble.
//
// With a dead-letter topic, step 2 first waits until every dead letter sent
// before the Ready is acknowledged, and the row records where the
// partition's later dead letters will land; Open reads the topic from there
// so that nothing a crashed run sent past the checkpoint is sent twice
// (deadletter.go, deadletter_read.go).
//
// # Words
//
// Open makes a partition's task: it resumes (local state matches) or
// rebuilds (replays). A rebuild has caught up when its replay reaches the
// row's offset. A failed checkpoint is aborted (its Readies given back). A
// fenced partition is re-synced: opened again from its row. ("Restore" in
// logs and metrics, clickagg_restores_total{kind="local|rebuild|fresh"},
// means an Open.)
//
// # Concurrency
//
// The coordinator is used by one goroutine at a time: the runner's loop or
// its rebalance callbacks. The Kafka client is built with
// BlockRebalanceOnPoll, so OnPartitions{Assigned,Revoked,Lost} never run
// while the loop processes a poll or checkpoints. The checkpoint in flight
// (at most one) runs on its own goroutine and touches only its job: its
// Readies, its deltas, the store and the sink, both safe for concurrent
// use. AdjustFetchOffsetsFn runs outside that gate and only reads the
// start offsets, under their own lock.
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
//
// # Files
//
// coordinator.go (the Coordinator, its interfaces, tasks), commit.go (a
// checkpoint: Ready → commit → persist), open.go (the restore decision,
// re-sync, PostgreSQL retries), pipeline.go (the Kafka runner: Run and its
// loop), rebalance.go (group callbacks, log bounds, offset commits),
// records.go (fetches, records, alignment), progress.go (status, idle
// advance, end offsets, the progress line), exit.go (exit when idle: every
// partition counted), ready.go (Status and readiness), files.go (RunSeq:
// one input read front to back as one partition, for backfill),
// deadletter*.go, metrics.go, options.go.
package checkpoint
