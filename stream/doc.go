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
// on-time counts per open window and late counts per closed window. Counts
// carried over from earlier checkpoints live in the state store (package
// state); the checkpoint coordinator (package checkpoint) merges both when a
// window closes. stream imports neither state nor sink.
//
// With a dedup window (OperatorOptions.DedupWindow) the operator also drops
// records whose event id was seen within that span of the partition's
// event-time clock; see dedup.go for the rule and how a replay reproduces
// its decisions.
//
// Units: event times, window starts and sizes, and watermarks are Unix
// milliseconds (int64). NoWatermark (math.MinInt64) means "no watermark yet".
package stream
