package sink

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// sampleBlocks is how many heap blocks at a partition's newest (or oldest)
// end windowBound reads first: one BRIN block range at the default
// pages_per_range.
const sampleBlocks = 128

// windowEdge is the newest (max) or oldest (min) end of url_clicks.
type windowEdge bool

const (
	newestWindow windowEdge = true
	oldestWindow windowEdge = false
)

func (e windowEdge) String() string {
	if e == newestWindow {
		return "newest"
	}
	return "oldest"
}

// windowBound returns max(window_start) (newest) or min(window_start)
// (oldest) of the url_clicks rows of one window size in schema, nil when
// the size has none: the same answer as the aggregate, without reading
// every partition of the size. url_clicks has no btree on window_start
// (only a BRIN index, which cannot serve max or min), so:
//
//   - the size's leaf partitions are listed from the catalog with their
//     bounds and sizes, and probed newest (oldest) span first; the first
//     one holding a row of the size has the answer. Empty partitions
//     (those created ahead of the watermark) cost nothing. A leaf whose
//     bounds are not a range of window_start (a DEFAULT partition, one of
//     url_clicks or of the size's table) is always probed.
//   - within a leaf, the last (first) sampleBlocks heap blocks are read by
//     a TID range scan: rows are written in event-time order, so they hold
//     the newest (oldest) windows, and their max (min) m0 is a bound the
//     answer is at or past. `window_start >= m0` (`<= m0`) then reads, by
//     the BRIN index, only the block ranges that can hold such rows: the
//     exact answer, at the cost of the rows near it. When the sample holds
//     no row of the size (dead rows only), it grows eightfold up to the
//     whole leaf.
//
// A leaf dropped between the listing and its probe (expiry) is skipped.
func windowBound(ctx context.Context, q querier, schema string, size time.Duration, edge windowEdge) (*time.Time, error) {
	leaves, err := sizeLeaves(ctx, q, schema, size)
	if err != nil {
		return nil, err
	}
	// Unbounded leaves first (always probed), then the others edge first.
	slices.SortStableFunc(leaves, func(a, b leafInfo) int {
		switch {
		case a.bounded != b.bounded && !a.bounded:
			return -1
		case a.bounded != b.bounded:
			return 1
		case edge == newestWindow:
			return b.hi.Compare(a.hi)
		default:
			return a.lo.Compare(b.lo)
		}
	})
	// past reports whether a lies further toward the edge than b.
	past := func(a, b time.Time) bool {
		return (edge == newestWindow && a.After(b)) || (edge == oldestWindow && a.Before(b))
	}
	var best *time.Time
	for _, l := range leaves {
		// NB: every row of a leaf lies in [lo, hi).
		if best != nil && l.bounded && ((edge == newestWindow && !l.hi.After(*best)) || (edge == oldestWindow && !l.lo.Before(*best))) {
			break // nor any row of the leaves after it
		}
		t, err := leafBound(ctx, q, l, size, edge)
		if err != nil {
			return nil, fmt.Errorf("read the %s window of %s: %w", edge, l.name, err)
		}
		if t != nil && (best == nil || past(*t, *best)) {
			best = t
		}
		if t != nil && l.bounded {
			break // the other bounded leaves lie before (after) it
		}
	}
	return best, nil
}

// leafInfo is one leaf partition of url_clicks that may hold rows of a size.
type leafInfo struct {
	name    string // qualified, sanitized
	bounded bool   // lo and hi are its window_start range
	lo, hi  time.Time
	blocks  int64
}

// sizeLeaves lists the leaf partitions that may hold url_clicks rows of
// size: those of the size's table, and those of a DEFAULT partition of
// url_clicks if there is one. A size without a table has none.
func sizeLeaves(ctx context.Context, q querier, schema string, size time.Duration) ([]leafInfo, error) {
	rows, err := q.Query(ctx, `WITH tops AS (
	SELECT t.relid FROM pg_partition_tree($1::regclass) t JOIN pg_class c ON c.oid = t.relid
	WHERE t.level = 1 AND (c.relname = $2 OR pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'))
SELECT n.nspname, c.relname, p.parentrelid = tops.relid, b[1]::timestamptz, b[2]::timestamptz,
	pg_relation_size(c.oid) / current_setting('block_size')::bigint
FROM tops, pg_partition_tree(tops.relid) p
JOIN pg_class c ON c.oid = p.relid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid), '^FOR VALUES FROM \(''([^'']*)''\) TO \(''([^'']*)''\)$') b ON true
WHERE p.isleaf`, pgx.Identifier{schema, "url_clicks"}.Sanitize(), sizeTable(size.Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("list %s partitions: %w", SizeLabel(size.Milliseconds()), err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (leafInfo, error) {
		var l leafInfo
		var nsp, rel string
		var lo, hi *time.Time
		err := r.Scan(&nsp, &rel, &l.bounded, &lo, &hi, &l.blocks)
		l.name = pgx.Identifier{nsp, rel}.Sanitize()
		if l.bounded = l.bounded && lo != nil && hi != nil; l.bounded {
			l.lo, l.hi = *lo, *hi
		}
		return l, err
	})
}

// leafBound is windowBound within one leaf (nil: no row of the size).
func leafBound(ctx context.Context, q querier, l leafInfo, size time.Duration, edge windowEdge) (*time.Time, error) {
	if l.blocks == 0 {
		return nil, nil // NB: an empty table has no block
	}
	agg, sample, past := "max", `ctid >= $2`, `window_start >= $2`
	if edge == oldestWindow {
		agg, sample, past = "min", `ctid < $2`, `window_start <= $2`
	}
	probe := `SELECT ` + agg + `(window_start) FROM ` + l.name + ` WHERE window_size = $1`
	for n := int64(sampleBlocks); ; n *= 8 {
		if n >= l.blocks {
			return scanLeafTime(q.Query(ctx, probe, size)) // the whole leaf
		}
		tid := pgtype.TID{BlockNumber: uint32(l.blocks - n), Valid: true}
		if edge == oldestWindow {
			tid.BlockNumber = uint32(n)
		}
		m0, err := scanLeafTime(q.Query(ctx, probe+` AND `+sample, size, tid))
		if err != nil {
			return nil, err
		}
		if m0 == nil {
			continue // no live row of the size in the sample
		}
		t, err := scanLeafTime(q.Query(ctx, probe+` AND `+past, size, *m0))
		if t == nil && err == nil {
			continue // m0's row was deleted meanwhile: sample more
		}
		return t, err
	}
}

// scanLeafTime reads a one-row, one-column timestamptz result (nil for
// NULL); a table dropped meanwhile (undefined_table) has no rows.
func scanLeafTime(rows pgx.Rows, err error) (*time.Time, error) {
	if err == nil {
		var t *time.Time
		t, err = pgx.CollectExactlyOneRow(rows, pgx.RowTo[*time.Time])
		if err == nil {
			return t, nil
		}
	}
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "42P01" {
		return nil, nil
	}
	return nil, err
}
