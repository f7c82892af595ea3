// Package stream turns Kafka records into per-window click counts.
//
// It owns decoding (Decoder), window assignment (Assign), watermarks and the
// per-partition window operator (Operator). The operator is a deterministic
// core in the style of raft's RawNode: it has no goroutines, reads no clock
// and does no I/O. Time enters only as record timestamps, as explicit
// watermark advances (AdvanceWatermark) and as caps from the other
// partitions' progress (SetWatermarkCap), so a replay of the same records
// from the same recorded watermark rebuilds exactly the same state, which is
// what deterministic emission and rebuilding state by replay rely on.
//
// The operator keeps only what changed since the last checkpoint: pending
// on-time counts per open window and late counts per closed window (plus,
// for short windows, counts held in memory across checkpoints). A
// checkpoint takes them in one step, Operator.Ready, which returns a
// self-contained Ready: the new position, the windows emitted with their
// counts (and whether the state store holds earlier ones to add), the late
// counts, and what the store must hold afterwards. The coordinator (package
// checkpoint) only translates it into a PostgreSQL transaction and a state
// batch, then calls Advance, or Abort to give it back if the checkpoint
// failed. stream imports neither state nor sink: the types they share are
// package base's.
//
// A partition starts in one of two ways: Resume from local state that is
// its checkpoint's (replaying only what held windows kept in memory), or
// StartReplay/StartReplayDedup to rebuild from the checkpoint's restart
// offset with its recorded watermark, emitting nothing until it reaches the
// checkpointed offset (Replaying). The one call into the outside while
// processing is dedup's Lookup of sightings in the state store; its error
// is returned by Process.
//
// Files: operator.go (the state machine, Process, watermarks), ready.go
// (checkpoints: Ready, Advance, Abort, holding), options.go, dedup.go and
// bloom.go (dedup), counts.go, window.go, decode*.go (the JSON decoder),
// input.go (InputOptions: where in a record's JSON the click's fields are,
// and which records are clicks at all), normalize.go (URL normalization),
// source.go (Kafka client options).
//
// With a dedup window (OperatorOptions.DedupWindow) the operator also drops
// records whose event id was seen within that span of the partition's
// event-time clock; see dedup.go for the rule and how a replay reproduces
// its decisions.
//
// Units: event times, window starts and sizes, and watermarks are Unix
// milliseconds (int64). NoWatermark (base.NoWatermark) means "no watermark
// yet".
package stream
