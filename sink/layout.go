package sink

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// partitionedSchema is url_clicks as migration 4 creates it, and the
// window_sizes table that governs its partitions.
const partitionedSchema = `
CREATE TABLE {{s}}.url_clicks (
	url          text        NOT NULL,
	window_start timestamptz NOT NULL,
	window_end   timestamptz NOT NULL,
	window_size  interval    NOT NULL,
	clicks       bigint      NOT NULL DEFAULT 0,
	late_clicks  bigint      NOT NULL DEFAULT 0,
	final        boolean     NOT NULL DEFAULT false,
	updated_at   timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (url, window_start, window_size)
) PARTITION BY LIST (window_size);
-- Rows are updated in place by every checkpoint that touches them; the
-- indexes below never cover a column a delta changes, so those updates stay
-- HOT (heap-only) and each partition's fillfactor leaves room for them.
CREATE INDEX url_clicks_size_start_idx ON {{s}}.url_clicks (window_size, window_start);
CREATE INDEX url_clicks_open_idx ON {{s}}.url_clicks (window_end) WHERE NOT final;

CREATE TABLE {{s}}.window_sizes (
	window_size    interval    PRIMARY KEY,
	span           interval    NOT NULL,
	retention      interval,
	expired_before timestamptz,
	updated_at     timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE {{s}}.url_clicks IS 'Clicks per URL per tumbling event-time window, written by clickagg. Partitioned by window_size, then by window_start into spans (see window_sizes).';
COMMENT ON COLUMN {{s}}.url_clicks.window_start IS 'Start of the window, inclusive; windows are aligned to the Unix epoch in UTC.';
COMMENT ON COLUMN {{s}}.url_clicks.window_end IS 'End of the window, exclusive.';
COMMENT ON COLUMN {{s}}.url_clicks.window_size IS 'window_end - window_start; filter on it to read one window size (and prune the other sizes'' partitions).';
COMMENT ON COLUMN {{s}}.url_clicks.clicks IS 'Clicks in the window, late ones included.';
COMMENT ON COLUMN {{s}}.url_clicks.late_clicks IS 'Clicks that arrived after the window was emitted (late.policy count).';
COMMENT ON COLUMN {{s}}.url_clicks.final IS 'True once every partition of the topic has passed window_end: no on-time click can change the row.';
COMMENT ON TABLE {{s}}.url_totals IS 'All-time clicks per URL, written by clickagg; never expired.';
COMMENT ON TABLE {{s}}.checkpoints IS 'Per consumer group, topic and partition: how far the results go (written in the same transaction as the counts).';
COMMENT ON TABLE {{s}}.window_sizes IS 'One row per window size clickagg writes: its partition span, retention, and expired_before: rows of windows starting before it were dropped and are never written again.';
`

// brinSchema is migration 7. On the partitioned parent, so that every
// partition gets the index, those attached later too (ATTACH PARTITION
// creates the parent's indexes a table lacks). autosummarize: a block
// range is summarized (by autovacuum) as soon as the rows move past it;
// until then every scan of the index reads it.
const brinSchema = `
DROP INDEX {{s}}.url_clicks_size_start_idx;
CREATE INDEX url_clicks_start_brin ON {{s}}.url_clicks USING brin (window_start) WITH (autosummarize = on);
`

// migratePartitioned is migration 4: url_clicks becomes partitioned, every
// existing row kept. It runs in the migration's transaction, so writers
// wait for it (the old table is locked for the copy).
func migratePartitioned(ctx context.Context, tx pgx.Tx, s string) error {
	if _, err := tx.Exec(ctx, strings.ReplaceAll(`
ALTER TABLE {{s}}.url_clicks RENAME TO url_clicks_v3;
ALTER TABLE {{s}}.url_clicks_v3 RENAME CONSTRAINT url_clicks_pkey TO url_clicks_v3_pkey;
DROP INDEX {{s}}.url_clicks_size_start_idx;
DROP INDEX {{s}}.url_clicks_open_idx;
`+partitionedSchema, "{{s}}", s)); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT (extract(epoch FROM window_end - window_start) * 1000)::bigint,
	(extract(epoch FROM date_trunc('day', window_start, 'UTC')) * 1000)::bigint
FROM `+s+`.url_clicks_v3`)
	if err != nil {
		return err
	}
	var spans []spanKey
	for rows.Next() {
		var size, day int64
		if err := rows.Scan(&size, &day); err != nil {
			rows.Close()
			return err
		}
		if size <= 0 {
			rows.Close()
			return fmt.Errorf("url_clicks holds a row whose window_end is not after its window_start (size %d ms)", size)
		}
		if k := spanOf(size, day); !slices.Contains(spans, k) {
			spans = append(spans, k)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if err := addSpans(ctx, tx, s, spans); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, strings.ReplaceAll(`
INSERT INTO {{s}}.url_clicks (url, window_start, window_end, window_size, clicks, late_clicks, final, updated_at)
SELECT url, window_start, window_end, window_end - window_start, clicks, late_clicks, final, updated_at
FROM {{s}}.url_clicks_v3;
DROP TABLE {{s}}.url_clicks_v3;
`, "{{s}}", s))
	return err
}

// addSpans creates (and attaches) the partitions of spans that do not
// exist yet, and each window size's own partitioned table and window_sizes
// row. Tables are created apart and then attached: ATTACH PARTITION locks
// the parent in SHARE UPDATE EXCLUSIVE mode, which does not wait for (or
// block) checkpoints writing other partitions, where CREATE TABLE ...
// PARTITION OF would lock it exclusively.
func addSpans(ctx context.Context, tx pgx.Tx, s string, spans []spanKey) error {
	var sizes []int64
	for _, k := range spans {
		if !slices.Contains(sizes, k.size) {
			sizes = append(sizes, k.size)
		}
	}
	for _, size := range sizes {
		if err := addSize(ctx, tx, s, size); err != nil {
			return err
		}
	}
	for _, k := range spans {
		leaf, _, _ := spanDDL(s, k)
		var attached, exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL,
	EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1) AND NOT inhdetachpending)`, leaf).Scan(&exists, &attached); err != nil {
			return fmt.Errorf("look up partition %s: %w", leaf, err)
		}
		if attached {
			continue
		}
		_, create, sql := spanDDL(s, k)
		if !exists {
			sql = create + ";" + sql
		}
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("create partition %s: %w", leaf, err)
		}
	}
	return nil
}

// spanDDL returns span k's table (qualified by the sanitized schema s),
// the statement that creates it empty and detached, and the one that
// attaches it to its size's table.
func spanDDL(s string, k spanKey) (leaf, create, attach string) {
	leaf = s + "." + pgx.Identifier{spanTable(k.size, k.start)}.Sanitize()
	create = `CREATE TABLE ` + leaf + ` (LIKE ` + s + `.url_clicks INCLUDING DEFAULTS) WITH (fillfactor = 80)`
	attach = `ALTER TABLE ` + s + `.` + pgx.Identifier{sizeTable(k.size)}.Sanitize() + ` ATTACH PARTITION ` + leaf +
		` FOR VALUES FROM (` + sqlTime(k.start) + `) TO (` + sqlTime(k.start+SpanFor(k.size)) + `)`
	return leaf, create, attach
}

// addSize registers a window size and creates its partitioned table.
func addSize(ctx context.Context, tx pgx.Tx, s string, size int64) error {
	table := s + "." + pgx.Identifier{sizeTable(size)}.Sanitize()
	_, err := tx.Exec(ctx, `INSERT INTO `+s+`.window_sizes (window_size, span)
VALUES (`+sqlInterval(size)+`, `+sqlInterval(SpanFor(size))+`) ON CONFLICT DO NOTHING`)
	if err != nil {
		return fmt.Errorf("register window size %s: %w", SizeLabel(size), err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil {
		return fmt.Errorf("look up %s: %w", table, err)
	}
	if exists {
		return nil
	}
	_, err = tx.Exec(ctx, `CREATE TABLE `+table+` (LIKE `+s+`.url_clicks INCLUDING DEFAULTS) PARTITION BY RANGE (window_start);
ALTER TABLE `+s+`.url_clicks ATTACH PARTITION `+table+` FOR VALUES IN (`+sqlInterval(size)+`);
COMMENT ON TABLE `+table+` IS 'url_clicks rows of `+SizeLabel(size)+` windows, one partition per span of window_start.'`)
	if err != nil {
		return fmt.Errorf("create table for %s windows: %w", SizeLabel(size), err)
	}
	return nil
}
