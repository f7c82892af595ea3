// Package state is the local Pebble store behind the window operator.
//
// It holds, per Kafka partition: the counts of open windows carried over
// from earlier checkpoints (but those held in memory: see
// stream.OperatorOptions.HoldWindows), the open-window registry
// (base.OpenWindow: the lowest offset of a record not yet emitted, and from
// which offset counts were held in memory only), the partition's checkpoint
// tag (a base.Position) and, with dedup on, the event ids seen and the dedup
// clock's history (base.DedupState). It imports neither stream nor sink.
//
// The store is a cache of PostgreSQL: it is written after the
// Postgres commit, one atomic, synced batch per checkpoint (one fsync per
// checkpoint, none per record). A crash between the two writes, or a lost
// volume, never leaves half a batch; the caller then sees a tag that does
// not match Postgres and rebuilds the partition by replay. Counts are added
// with a merge operator, so a checkpoint writes only the deltas it saw,
// never reads before writing.
//
// Key layout (all integers big-endian; window starts sign-flipped so that
// keys sort by time):
//
//	0x00 "identity"                          consumer group and topic
//	0x01 partition                           checkpoint tag
//	0x02 partition size start                registry: lowest pending offset
//	                                         [, offset from which counts are in memory only]
//	0x03 partition size start url            count (merge: int64 add)
//	0x04 partition slot id                   dedup: latest event time of id
//	0x06 partition                           dedup clock and its history
//
// Dedup sightings are keyed by slot of event time (1/8 of the dedup
// window), so that a slot expires with one range deletion.
//
// Failures (health.go): because the store is a cache, a damaged one is
// thrown away, never repaired. Open, Batch.Commit and Store.Err report
// ErrCorrupt (checksums, a bad MANIFEST or WAL: Discard the folder, keeping
// one quarantined copy, and open a fresh store) or ErrUnusable (the volume
// is full, read-only or refused a write Pebble cannot survive). Pebble's
// corruption and background-error events and its Fatalf are routed to the
// store's failure instead of exiting the process or logging every retry,
// and a commit or open that Pebble blocks for good returns at once; such a
// folder can only be opened again by a new process (ErrRestart).
//
// A Store is safe for concurrent use; a Batch is not.
package state
