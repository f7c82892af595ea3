package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Retention and partitions.
//
// Each window size's rows live in partitions of one span of window_start
// (SpanFor). window_sizes.expired_before is the start of the oldest span
// still kept; it only moves forward, to a span boundary. Three parties
// meet there, ordered by one advisory lock (expiryLockName):
//
//   - a checkpoint takes it shared and reads expired_before: rows of
//     windows before it are skipped (counted in Result.Expired), so no
//     checkpoint, replay or late click ever writes into an expired span;
//   - creating partitions takes it shared too, and never creates an
//     expired span;
//   - Maintain takes it exclusively, briefly, to move expired_before. Only
//     after that commits does it detach (CONCURRENTLY: it waits for older
//     transactions without blocking new ones) and drop the spans behind,
//     which no transaction can write any more.

func expiryLockName(schema string) string { return "clickagg.expiry." + schema }
func layoutLockName(schema string) string { return "clickagg.layout." + schema }
func dropLockName(schema string) string   { return "clickagg.drop." + schema }

// scanExpiry reads sqlExpiry's rows: window size → expired_before (ms).
func scanExpiry(rows pgx.Rows, err error) (map[int64]int64, error) {
	if err != nil {
		return nil, fmt.Errorf("read expired spans: %w", err)
	}
	defer rows.Close()
	expired := map[int64]int64{}
	for rows.Next() {
		var size int64
		var before time.Time
		if err := rows.Scan(&size, &before); err != nil {
			return nil, fmt.Errorf("read expired spans: %w", err)
		}
		expired[size] = before.UnixMilli()
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read expired spans: %w", err)
	}
	return expired, nil
}

// expiredWhere returns the SQL condition matching staged deltas of expired
// windows, or "" when none of spans is expired (the common case: then the
// upsert runs unfiltered).
func expiredWhere(spans []spanKey, expired map[int64]int64) string {
	var sizes []int64
	for _, k := range spans {
		if before, ok := expired[k.size]; ok && k.start < before && !slices.Contains(sizes, k.size) {
			sizes = append(sizes, k.size)
		}
	}
	if len(sizes) == 0 {
		return ""
	}
	terms := make([]string, len(sizes))
	for i, size := range sizes {
		terms[i] = "(window_end - window_start = " + sqlInterval(size) + " AND window_start < " + sqlTime(expired[size]) + ")"
	}
	return strings.Join(terms, " OR ")
}

// countExpired returns the staged clicks matching where, per window size.
func countExpired(ctx context.Context, tx pgx.Tx, where string) (map[int64]int64, error) {
	rows, err := tx.Query(ctx, `SELECT (extract(epoch FROM window_end - window_start) * 1000)::bigint, sum(clicks)::bigint
FROM pg_temp.`+stageClicksTable+` WHERE `+where+` GROUP BY 1`)
	if err != nil {
		return nil, fmt.Errorf("count expired deltas: %w", err)
	}
	out := map[int64]int64{}
	for rows.Next() {
		var size, n int64
		if err := rows.Scan(&size, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("count expired deltas: %w", err)
		}
		out[size] = n
	}
	return out, rows.Err()
}

// ensureSpans creates the partitions among spans not known to exist,
// except expired ones, in a short transaction of its own (before the
// checkpoint's: a missing partition must never fail a checkpoint).
func (w *Writer) ensureSpans(ctx context.Context, spans []spanKey) error {
	w.partMu.Lock()
	var missing []spanKey
	for _, k := range spans {
		if !w.known[k] {
			missing = append(missing, k)
		}
	}
	w.partMu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	s := pgx.Identifier{w.opts.Schema}.Sanitize()
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock_shared(hashtext($1)), pg_advisory_xact_lock(hashtext($2))`,
			expiryLockName(w.opts.Schema), layoutLockName(w.opts.Schema)); err != nil {
			return err
		}
		expired, err := scanExpiry(tx.Query(ctx, w.sqlExpiry))
		if err != nil {
			return err
		}
		live := missing[:0:0]
		for _, k := range missing {
			if before, ok := expired[k.size]; !ok || k.start >= before {
				live = append(live, k)
			}
		}
		return addSpans(ctx, tx, s, live)
	})
	if err != nil {
		return fmt.Errorf("create url_clicks partitions: %w", err)
	}
	w.partMu.Lock()
	for _, k := range missing {
		w.known[k] = true
	}
	w.partMu.Unlock()
	return nil
}

// EnsurePartitions creates the url_clicks partitions that hold the windows
// of the given size starting in [from, to], except expired ones: for
// loading rows by other means than Commit (which creates what it needs).
func (w *Writer) EnsurePartitions(ctx context.Context, size time.Duration, from, to time.Time) error {
	ms := size.Milliseconds()
	if ms <= 0 || to.Before(from) {
		return fmt.Errorf("ensure partitions: size %s, range [%s, %s]: want a positive size and from <= to", size, from, to)
	}
	var spans []spanKey
	for k := spanOf(ms, from.UnixMilli()); k.start <= to.UnixMilli(); k.start += SpanFor(ms) {
		spans = append(spans, k)
	}
	return w.ensureSpans(ctx, spans)
}

// LoadSpan bulk-loads one span of url_clicks: it creates the table of the
// span holding windows of the given size that start at start, empty and
// detached, lets load fill it (table is its qualified name), and then
// attaches it, which builds its indexes once: much faster than inserting
// through them. The size's own table is created when missing; the span's
// must not exist. For loading history (the benchmarks); the session's
// maintenance_work_mem sizes the index builds.
func (w *Writer) LoadSpan(ctx context.Context, size time.Duration, start time.Time, load func(ctx context.Context, table string) error) error {
	k := spanOf(size.Milliseconds(), start.UnixMilli())
	s := pgx.Identifier{w.opts.Schema}.Sanitize()
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, layoutLockName(w.opts.Schema)); err != nil {
			return err
		}
		return addSize(ctx, tx, s, k.size)
	})
	if err != nil {
		return err
	}
	leaf, create, attach := spanDDL(s, k)
	if _, err := w.pool.Exec(ctx, create); err != nil {
		return fmt.Errorf("create partition %s: %w", leaf, err)
	}
	if err := load(ctx, leaf); err != nil {
		return fmt.Errorf("load partition %s: %w", leaf, err)
	}
	if _, err := w.pool.Exec(ctx, attach); err != nil {
		return fmt.Errorf("attach partition %s: %w", leaf, err)
	}
	w.partMu.Lock()
	w.known[k] = true
	w.partMu.Unlock()
	return nil
}

// forgetSpans makes the writer look up every partition again.
func (w *Writer) forgetSpans() {
	w.partMu.Lock()
	clear(w.known)
	w.partMu.Unlock()
}

// MaintainOptions say what Maintain keeps.
type MaintainOptions struct {
	// Sizes are the configured window sizes (ms): their partitions are
	// created ahead of the watermark.
	Sizes []int64
	// Retention is how much of each size to keep behind the global
	// watermark (ms); a size without an entry is kept forever.
	Retention map[int64]int64
	// TopicPartitions is the topic's partition count: nothing expires
	// until every partition has a watermark in checkpoints.
	TopicPartitions int
	// Now is the wall clock (partitions for it exist too).
	Now time.Time
	// FoldPeriod (ms) makes the fold of url_totals move in whole periods
	// of event time (see foldTotals); zero folds up to the watermark.
	FoldPeriod int64
}

// MaintainResult is what one Maintain did.
type MaintainResult struct {
	Created int // partitions created ahead
	Dropped int // partitions dropped
	// Busy is true when another process held the drop lock: this one
	// dropped nothing (that one does).
	Busy bool
	// ExpireTook is how long moving expired_before held (or waited for)
	// the expiry lock: the longest a checkpoint can wait for this run
	// (detaching and dropping do not block checkpoints).
	ExpireTook time.Duration
	// Fold is what folding url_totals did (FoldTotals); checkpoints wait
	// for it too (Fold.Took).
	Fold FoldResult
}

// Maintain creates the partitions the coming windows need, moves each
// size's expired_before to the oldest span its retention keeps behind the
// global watermark (the lowest of the topic's partitions), and drops the
// partitions behind it. Safe to run from every replica at once, at any
// time: only one drops at a time, and a checkpoint never writes an expired
// span.
func (w *Writer) Maintain(ctx context.Context, o MaintainOptions) (MaintainResult, error) {
	var res MaintainResult
	var rowsN, wmN int
	var minWM, maxWM *time.Time
	err := w.pool.QueryRow(ctx, `SELECT count(*), count(watermark), min(watermark), max(watermark) FROM `+
		pgx.Identifier{w.opts.Schema, "checkpoints"}.Sanitize()+` WHERE consumer_group = $1 AND topic = $2`,
		w.opts.Group, w.opts.Topic).Scan(&rowsN, &wmN, &minWM, &maxWM)
	if err != nil {
		return res, fmt.Errorf("read watermarks: %w", err)
	}
	// Ahead: the span of the newest watermark (or now) and the next one.
	head := o.Now.UnixMilli()
	if maxWM != nil && maxWM.UnixMilli() > head {
		head = maxWM.UnixMilli()
	}
	var ahead []spanKey
	for _, size := range o.Sizes {
		k := spanOf(size, head)
		ahead = append(ahead, k, spanKey{size, k.start + SpanFor(size)})
	}
	before := w.knownCount()
	if err := w.ensureSpans(ctx, ahead); err != nil {
		return res, err
	}
	res.Created = w.knownCount() - before
	if err := w.recordRetention(ctx, o); err != nil {
		return res, err
	}
	if o.TopicPartitions == 0 || rowsN < o.TopicPartitions || wmN < rowsN || minWM == nil {
		return res, nil // no global watermark yet: nothing expires
	}
	global := minWM.UnixMilli()
	// NB: before expiry, so that the spans about to expire are folded
	// (expire never passes folded_before).
	if res.Fold, err = w.foldTotals(ctx, global, o.FoldPeriod, o.Retention); err != nil {
		return res, err
	}
	cut := map[int64]int64{}
	for size, keep := range o.Retention {
		if keep > 0 {
			cut[size] = floorTo(global-keep, SpanFor(size))
		}
	}
	if len(cut) > 0 {
		t0 := time.Now()
		if err := w.expire(ctx, cut); err != nil {
			return res, err
		}
		res.ExpireTook = time.Since(t0)
	}
	return w.dropExpired(ctx, res)
}

func (w *Writer) knownCount() int {
	w.partMu.Lock()
	defer w.partMu.Unlock()
	return len(w.known)
}

// recordRetention writes the configured retention into window_sizes, for
// people reading the table (and `clickagg storage status`).
func (w *Writer) recordRetention(ctx context.Context, o MaintainOptions) error {
	for _, size := range o.Sizes {
		var keep any
		if r := o.Retention[size]; r > 0 {
			keep = time.Duration(r) * time.Millisecond
		}
		_, err := w.pool.Exec(ctx, `UPDATE `+pgx.Identifier{w.opts.Schema, "window_sizes"}.Sanitize()+`
SET retention = $2, updated_at = now() WHERE window_size = $1 AND retention IS DISTINCT FROM $2`,
			time.Duration(size)*time.Millisecond, keep)
		if err != nil {
			return fmt.Errorf("record retention: %w", err)
		}
	}
	return nil
}

// expire moves expired_before forward to cut (per size), under the
// exclusive expiry lock, but never past the span of folded_before for the
// totals window size: the view counts url_clicks rows from there on, and
// expired deltas must go to url_totals_base (totals.go). It waits at most
// a second for the lock (so that checkpoints queued behind it wait no
// longer) and otherwise leaves it to the next run.
func (w *Writer) expire(ctx context.Context, cut map[int64]int64) error {
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '1s'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, expiryLockName(w.opts.Schema)); err != nil {
			return err
		}
		st, err := w.readTotalsState(ctx, tx.QueryRow(ctx, w.sqlTotalsState))
		if err != nil {
			return err
		}
		for size, before := range cut {
			if size == st.size && st.folded != noFold {
				before = min(before, floorTo(st.folded, SpanFor(size)))
			}
			_, err := tx.Exec(ctx, `UPDATE `+pgx.Identifier{w.opts.Schema, "window_sizes"}.Sanitize()+`
SET expired_before = $2, updated_at = now()
WHERE window_size = $1 AND (expired_before IS NULL OR expired_before < $2)`,
				time.Duration(size)*time.Millisecond, time.UnixMilli(before).UTC())
			if err != nil {
				return err
			}
		}
		return nil
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "55P03" {
		return nil // lock_timeout: checkpoints were busy; next run
	}
	if err != nil {
		return fmt.Errorf("expire windows: %w", err)
	}
	return nil
}

// dropExpired detaches and drops every partition wholly before its size's
// expired_before, finishing what an interrupted run left (a detach still
// pending, a detached table not yet dropped).
func (w *Writer) dropExpired(ctx context.Context, res MaintainResult) (MaintainResult, error) {
	conn, err := w.pool.Acquire(ctx)
	if err != nil {
		return res, fmt.Errorf("acquire postgres connection: %w", err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, dropLockName(w.opts.Schema)).Scan(&locked); err != nil {
		return res, fmt.Errorf("lock for dropping partitions: %w", err)
	}
	if !locked {
		res.Busy = true
		return res, nil
	}
	defer func() {
		// NB: a session lock outlives the checkout: a connection that
		// could not release it must not go back to the pool holding it.
		var released bool
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := conn.QueryRow(uctx, `SELECT pg_advisory_unlock(hashtext($1))`, dropLockName(w.opts.Schema)).Scan(&released); err != nil || !released {
			_ = conn.Conn().Close(uctx)
		}
	}()
	doomed, err := w.expiredTables(ctx, conn.Conn())
	if err != nil {
		return res, err
	}
	s := pgx.Identifier{w.opts.Schema}.Sanitize()
	for _, t := range doomed {
		leaf := s + "." + pgx.Identifier{t.name}.Sanitize()
		parent := s + "." + pgx.Identifier{sizeTable(t.size)}.Sanitize()
		var detach string
		switch {
		case t.pending:
			detach = `ALTER TABLE ` + parent + ` DETACH PARTITION ` + leaf + ` FINALIZE`
		case t.attached:
			// NB: CONCURRENTLY cannot run in a transaction block: the
			// simple protocol sends it alone.
			detach = `ALTER TABLE ` + parent + ` DETACH PARTITION ` + leaf + ` CONCURRENTLY`
		}
		if detach != "" {
			if _, err := conn.Exec(ctx, detach, pgx.QueryExecModeSimpleProtocol); err != nil {
				return res, fmt.Errorf("detach expired partition %s: %w", t.name, err)
			}
		}
		if _, err := conn.Exec(ctx, `DROP TABLE IF EXISTS `+leaf); err != nil {
			return res, fmt.Errorf("drop expired partition %s: %w", t.name, err)
		}
		res.Dropped++
	}
	return res, nil
}

type spanTableInfo struct {
	name              string
	size, start, span int64
	attached, pending bool
	rows, bytes       int64 // rows: the planner's estimate, -1 before the first ANALYZE
}

// querier is a pool or a connection.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// expiredTables lists the span tables (attached, pending detach, or
// detached) lying wholly before their size's expired_before.
func (w *Writer) expiredTables(ctx context.Context, conn *pgx.Conn) ([]spanTableInfo, error) {
	expired, err := scanExpiry(conn.Query(ctx, w.sqlExpiry))
	if err != nil {
		return nil, err
	}
	var out []spanTableInfo
	for size, before := range expired {
		tables, err := spanTables(ctx, conn, w.opts.Schema, size)
		if err != nil {
			return nil, err
		}
		for _, t := range tables {
			if t.start+t.span <= before {
				out = append(out, t)
			}
		}
	}
	slices.SortFunc(out, func(a, b spanTableInfo) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// spanTables lists the tables named as one size's spans (attached, being
// detached, or detached), oldest first.
func spanTables(ctx context.Context, q querier, schema string, size int64) ([]spanTableInfo, error) {
	rows, err := q.Query(ctx, `SELECT c.relname, i.inhrelid IS NOT NULL, coalesce(i.inhdetachpending, false),
	c.reltuples::bigint, pg_total_relation_size(c.oid)
FROM pg_class c
LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r' AND starts_with(c.relname, $2)
ORDER BY c.relname`,
		pgx.Identifier{schema}.Sanitize(), sizeTable(size)+"_p")
	if err != nil {
		return nil, fmt.Errorf("list partitions: %w", err)
	}
	defer rows.Close()
	var out []spanTableInfo
	for rows.Next() {
		t := spanTableInfo{size: size, span: SpanFor(size)}
		if err := rows.Scan(&t.name, &t.attached, &t.pending, &t.rows, &t.bytes); err != nil {
			return nil, fmt.Errorf("list partitions: %w", err)
		}
		var ok bool
		if t.start, ok = parseSpanTable(size, t.name); ok {
			out = append(out, t)
		}
	}
	return out, rows.Err()
}

// PartitionStorage is one url_clicks partition.
type PartitionStorage struct {
	Name      string    `json:"name"`
	Start     time.Time `json:"start"`         // window_start from
	End       time.Time `json:"end"`           // to (exclusive)
	Rows      int64     `json:"rows_estimate"` // the planner's estimate; -1 before the first ANALYZE
	Bytes     int64     `json:"bytes"`         // table, indexes and TOAST
	Detaching bool      `json:"detaching,omitempty"`
	Detached  bool      `json:"detached,omitempty"` // expired and detached, not dropped yet
}

// SizeStorage is one window size's part of url_clicks.
type SizeStorage struct {
	Size          time.Duration      `json:"-"`
	Label         string             `json:"window"`
	Span          time.Duration      `json:"-"`
	Retention     time.Duration      `json:"-"` // 0: kept forever
	ExpiredBefore time.Time          `json:"expired_before,omitzero"`
	Oldest        time.Time          `json:"oldest_window,omitzero"` // start of the oldest window kept
	Rows          int64              `json:"rows_estimate"`
	Bytes         int64              `json:"bytes"`
	Partitions    []PartitionStorage `json:"partitions"`
}

// ReadStorage describes url_clicks' partitions in schema, per window size.
func ReadStorage(ctx context.Context, q querier, schema string) ([]SizeStorage, error) {
	if err := ValidateSchemaName(schema); err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, `SELECT (extract(epoch FROM window_size) * 1000)::bigint, (extract(epoch FROM span) * 1000)::bigint,
	coalesce((extract(epoch FROM retention) * 1000)::bigint, 0), expired_before
FROM `+pgx.Identifier{schema, "window_sizes"}.Sanitize()+` ORDER BY window_size`)
	if err != nil {
		return nil, fmt.Errorf("read window sizes: %w", err)
	}
	var out []SizeStorage
	for rows.Next() {
		var size, span, keep int64
		var before *time.Time
		if err := rows.Scan(&size, &span, &keep, &before); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read window sizes: %w", err)
		}
		st := SizeStorage{Size: time.Duration(size) * time.Millisecond, Label: SizeLabel(size),
			Span: time.Duration(span) * time.Millisecond, Retention: time.Duration(keep) * time.Millisecond}
		if before != nil {
			st.ExpiredBefore = before.UTC()
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read window sizes: %w", err)
	}
	for i := range out {
		st := &out[i]
		size := st.Size.Milliseconds()
		tables, err := spanTables(ctx, q, schema, size)
		if err != nil {
			return nil, err
		}
		for _, t := range tables {
			st.Partitions = append(st.Partitions, PartitionStorage{Name: t.name,
				Start: time.UnixMilli(t.start).UTC(), End: time.UnixMilli(t.start + t.span).UTC(),
				Rows: t.rows, Bytes: t.bytes, Detaching: t.pending, Detached: !t.attached})
			st.Rows += max(t.rows, 0)
			st.Bytes += t.bytes
		}
		oldest, err := windowBound(ctx, q, schema, st.Size, oldestWindow)
		if err != nil {
			return nil, fmt.Errorf("read oldest %s window: %w", st.Label, err)
		}
		if oldest != nil {
			st.Oldest = oldest.UTC()
		}
	}
	return out, nil
}

// Storage is ReadStorage for the writer's schema.
func (w *Writer) Storage(ctx context.Context) ([]SizeStorage, error) {
	return ReadStorage(ctx, w.pool, w.opts.Schema)
}
