// Package sink owns the PostgreSQL side: the schema and its migrations, the
// checkpoint transaction, and the read queries.
//
// The checkpoint transaction is the commit point of the whole pipeline:
// in one transaction it compare-and-sets the checkpoints row of every
// partition it covers (fencing), adds the count deltas to
// url_clicks and url_totals_base, and marks windows final. If any partition's
// compare-and-set fails, nothing is written and Commit returns a
// *FencedError naming those partitions.
//
// Deadlocks between replicas are avoided by writing rows in one global order
// (url, window_start, window_end, byte order) and by taking the finalizer's
// row locks with SKIP LOCKED; Commit still retries the whole transaction on
// SQLSTATE 40P01 and 40001, which is safe because of the compare-and-set.
// Connection failures are returned to the caller (see Retryable), which
// retries the same Checkpoint: a commit whose acknowledgement was lost is
// recognised because every row already holds the target position.
//
// url_clicks is partitioned by window size and, within a size, by spans of
// window_start (partition.go, layout.go), so that retention drops whole
// tables (Writer.Maintain, maintain.go). Partitions are created before the
// transaction that needs them, never in it; a checkpoint skips (and counts
// in Result.Expired) the deltas of windows whose span has expired, under a
// shared advisory lock that Maintain takes exclusively to move the expiry.
//
// url_totals is a view: url_totals_base plus the url_clicks rows of the
// totals window size not folded into it yet (totals.go). A checkpoint adds
// to url_totals_base only the deltas of windows before the fold point;
// FoldTotals (first thing in Maintain) moves it, under the same lock.
//
// A url_clicks row is final when every partition of the topic known to the
// checkpoints table has a watermark at or past the row's window_end: no
// on-time record can still change it (late records under policy "count"
// still add to clicks and late_clicks).
package sink
