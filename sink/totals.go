package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Totals and folding.
//
// url_totals is a view: for each URL, url_totals_base plus the clicks of
// the url_clicks rows of the totals window size S whose window_start is
// at or after F, (S, F) being totals_state's one row. A checkpoint adds to
// url_totals_base only the deltas of size S with window_start < F (late
// clicks, expired windows, and everything while F is infinity); the rest
// are in url_clicks already, and the view counts them there. FoldTotals
// moves F forward (to the global watermark), adding the url_clicks rows it
// passes to url_totals_base, so that the view reads few url_clicks rows.
//
// Checkpoints read (S, F) under the expiry lock held shared; FoldTotals and
// switchTotals change them under it held exclusively, so a fold sees every
// checkpoint that read the old F committed, and no checkpoint reads F in
// the middle of a fold. Retention never expires a span of S at or after F
// (expire clamps the cut), so every expired delta goes to url_totals_base
// and a dropped partition holds no row the view still counts.

// migrateTotalsView is migration 6: url_totals becomes a view over
// url_totals_base and url_clicks. Renames and a view: instant.
func migrateTotalsView(ctx context.Context, tx pgx.Tx, s string) error {
	if _, err := tx.Exec(ctx, strings.ReplaceAll(`
ALTER TABLE {{s}}.url_totals RENAME TO url_totals_base;
ALTER TABLE {{s}}.url_totals_base RENAME CONSTRAINT url_totals_pkey TO url_totals_base_pkey;
CREATE TABLE {{s}}.totals_state (
	window_size   interval,
	folded_before timestamptz NOT NULL,
	updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX totals_state_one_row ON {{s}}.totals_state ((true));
INSERT INTO {{s}}.totals_state (window_size, folded_before) VALUES (NULL, 'infinity');
CREATE VIEW {{s}}.url_totals AS
SELECT url, sum(clicks)::bigint AS clicks, max(updated_at) AS updated_at
FROM (
	SELECT url, clicks, updated_at FROM {{s}}.url_totals_base
	UNION ALL
	SELECT c.url, c.clicks, c.updated_at
	FROM {{s}}.url_clicks c
	JOIN {{s}}.totals_state f ON c.window_size = f.window_size AND c.window_start >= f.folded_before
) t
GROUP BY url;
COMMENT ON VIEW {{s}}.url_totals IS 'All-time clicks per URL, written by clickagg; never expired. Exact at every moment: url_totals_base plus the url_clicks rows not folded into it yet (see totals_state).';
COMMENT ON COLUMN {{s}}.url_totals.updated_at IS 'Last time a checkpoint or a fold changed the URL''s count.';
COMMENT ON TABLE {{s}}.url_totals_base IS 'Folded all-time clicks per URL: url_totals is this plus the url_clicks rows of totals_state.window_size starting at or after totals_state.folded_before. Written by clickagg; read url_totals instead.';
COMMENT ON TABLE {{s}}.totals_state IS 'One row: url_totals counts the url_clicks rows of window_size whose window_start is at or after folded_before on top of url_totals_base (none while folded_before is infinity). Moved forward by clickagg''s storage maintenance.';
COMMENT ON COLUMN {{s}}.totals_state.window_size IS 'The window size whose clicks count in url_totals (the smallest configured); NULL before the first checkpoint.';
COMMENT ON COLUMN {{s}}.totals_state.folded_before IS 'Clicks of windows starting before this are in url_totals_base; later ones only in url_clicks.';
`, "{{s}}", s)); err != nil {
		return err
	}
	// NB: a view that read url_totals now reads url_totals_base (views
	// follow a renamed table), which lacks the unfolded clicks: re-point
	// clickagg's live views (SwitchLive), refuse any other.
	rows, err := tx.Query(ctx, `SELECT DISTINCT n.nspname, v.relname
FROM pg_depend d
JOIN pg_rewrite r ON r.oid = d.objid
JOIN pg_class v ON v.oid = r.ev_class
JOIN pg_namespace n ON n.oid = v.relnamespace
WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
  AND d.refobjid = $1::regclass AND v.oid <> $2::regclass
ORDER BY 1, 2`, s+".url_totals_base", s+".url_totals")
	if err != nil {
		return err
	}
	type view struct{ Schema, Name string }
	deps, err := pgx.CollectRows(rows, pgx.RowToStructByPos[view])
	if err != nil {
		return err
	}
	var others []string
	for _, v := range deps {
		q := pgx.Identifier{v.Schema, v.Name}.Sanitize()
		var live bool
		if err := tx.QueryRow(ctx, `SELECT $1 = 'url_totals' AND to_regclass($2) IS NOT NULL`,
			v.Name, pgx.Identifier{v.Schema, "switches"}.Sanitize()).Scan(&live); err != nil {
			return err
		}
		if !live {
			others = append(others, q)
			continue
		}
		if _, err := tx.Exec(ctx, `CREATE OR REPLACE VIEW `+q+` AS SELECT * FROM `+s+`.url_totals`); err != nil {
			return fmt.Errorf("re-point %s at %s.url_totals: %w", q, s, err)
		}
	}
	if len(others) > 0 {
		return fmt.Errorf("views %s read %s.url_totals, which becomes a view over url_totals_base and url_clicks: drop them, upgrade, and create them again",
			strings.Join(others, ", "), s)
	}
	return nil
}

// totalsState is totals_state's row.
type totalsState struct {
	size   int64 // ms; 0: none yet
	folded int64 // folded_before, Unix ms; noFold: infinity
}

// noFold is folded_before = infinity: nothing folded, url_totals is
// url_totals_base.
const noFold = int64(1<<63 - 1)

const sqlTotalsState = `SELECT coalesce((extract(epoch FROM window_size) * 1000)::bigint, 0), nullif(folded_before, 'infinity') FROM `

func (w *Writer) readTotalsState(ctx context.Context, q pgx.Row) (totalsState, error) {
	var st totalsState
	var f *time.Time
	if err := q.Scan(&st.size, &f); err != nil {
		return st, fmt.Errorf("read totals_state: %w", err)
	}
	st.folded = noFold
	if f != nil {
		st.folded = f.UnixMilli()
	}
	return st, nil
}

func (st totalsState) foldedArg() any {
	if st.folded == noFold {
		return nil // coalesce($n, 'infinity')
	}
	return time.UnixMilli(st.folded).UTC()
}

// errSwitchTotals: the checkpoint found totals_state on another window size
// than its totals window; Commit switches it and retries.
type errSwitchTotals struct{ size int64 }

func (e *errSwitchTotals) Error() string {
	return fmt.Sprintf("sink: url_totals follow another window size than %s", SizeLabel(e.size))
}

// foldSQL adds the clicks of size $1's url_clicks rows with window_start in
// [$2, $3) to url_totals_base.
func (w *Writer) foldSQL() string {
	t := func(name string) string { return pgx.Identifier{w.opts.Schema, name}.Sanitize() }
	return `INSERT INTO ` + t("url_totals_base") + ` AS t (url, clicks, updated_at)
SELECT url, sum(clicks)::bigint, max(updated_at) FROM ` + t("url_clicks") + `
WHERE window_size = $1 AND window_start >= $2 AND window_start < coalesce($3::timestamptz, 'infinity')
GROUP BY url
ORDER BY url
ON CONFLICT (url) DO UPDATE SET clicks = t.clicks + excluded.clicks, updated_at = greatest(t.updated_at, excluded.updated_at)`
}

// switchTotals makes url_totals follow window size size: whatever the view
// counts from url_clicks of the old size is folded into url_totals_base,
// and the view counts the new size's url_clicks rows from past the newest
// one on.
func (w *Writer) switchTotals(ctx context.Context, size int64) error {
	state := pgx.Identifier{w.opts.Schema, "totals_state"}.Sanitize()
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, expiryLockName(w.opts.Schema)); err != nil {
			return err
		}
		st, err := w.readTotalsState(ctx, tx.QueryRow(ctx, sqlTotalsState+state))
		if err != nil {
			return err
		}
		if st.size == size {
			return nil // another replica switched
		}
		if st.size != 0 && st.folded != noFold {
			if _, err := tx.Exec(ctx, w.foldSQL(), time.Duration(st.size)*time.Millisecond, time.UnixMilli(st.folded).UTC(), nil); err != nil {
				return fmt.Errorf("fold url_totals: %w", err)
			}
		}
		// NB: the view takes over at once, past every url_clicks row of
		// the size (all counted in url_totals_base: through the old size,
		// or before migration 6) and past expired_before (whose deltas
		// url_clicks never sees); on a fresh schema that is the start of
		// the event-time range, and no checkpoint upserts totals until
		// they are folded.
		newest, err := windowBound(ctx, tx, w.opts.Schema, time.Duration(size)*time.Millisecond, newestWindow)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE `+state+` SET window_size = $1, updated_at = now(),
	folded_before = greatest(timestamptz '2000-01-01 00:00:00+00',
		$2::timestamptz + $1,
		(SELECT expired_before FROM `+pgx.Identifier{w.opts.Schema, "window_sizes"}.Sanitize()+` WHERE window_size = $1))`,
			time.Duration(size)*time.Millisecond, newest)
		return err
	})
	if err != nil {
		return fmt.Errorf("switch url_totals to %s windows: %w", SizeLabel(size), err)
	}
	return nil
}

// FoldResult is what one FoldTotals did.
type FoldResult struct {
	URLs int64 // url_totals_base rows written
	// Before and After are folded_before before and after (Unix ms; noFold
	// as math.MaxInt64: infinity). Equal: nothing moved.
	Before, After int64
	Took          time.Duration // holding (or waiting for) the expiry lock
	Skipped       string        // why nothing was folded ("" when it ran)
}

// FoldTotals folds url_totals: the url_clicks rows of the totals window
// size whose windows the global watermark of the writer's group and topic
// has passed (every one of topicPartitions partitions has a watermark) are
// added to url_totals_base and no longer read by the view. url_totals
// does not change. Safe to run from several processes at once, and at any
// time; checkpoints wait for it.
func (w *Writer) FoldTotals(ctx context.Context, topicPartitions int) (FoldResult, error) {
	var rowsN, wmN int
	var minWM *time.Time
	if err := w.pool.QueryRow(ctx, w.sqlGlobalMin, w.opts.Group, w.opts.Topic).Scan(&rowsN, &wmN, &minWM); err != nil {
		return FoldResult{}, fmt.Errorf("read watermarks: %w", err)
	}
	if topicPartitions == 0 || rowsN < topicPartitions || wmN < rowsN || minWM == nil {
		return FoldResult{Skipped: "no global watermark"}, nil
	}
	return w.foldTotals(ctx, minWM.UnixMilli(), 0, nil)
}

// foldTotals folds up to the global watermark global (Unix ms). With a
// period (ms), only whole periods: folded_before moves to the last period
// boundary the watermark passed, so a URL's url_totals_base row is written
// once per period however many of its windows the period holds; but
// always at least to the retention cut of the totals size (retention,
// ms behind the watermark, per size), which expiry never passes.
func (w *Writer) foldTotals(ctx context.Context, global, period int64, retention map[int64]int64) (FoldResult, error) {
	var res FoldResult
	t := func(name string) string { return pgx.Identifier{w.opts.Schema, name}.Sanitize() }
	t0 := time.Now()
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		// NB: as expire: wait at most a second for the lock, so that the
		// checkpoints queued behind this wait no longer; next run else.
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '1s'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, expiryLockName(w.opts.Schema)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = DEFAULT`); err != nil {
			return err
		}
		st, err := w.readTotalsState(ctx, tx.QueryRow(ctx, sqlTotalsState+t("totals_state")))
		if err != nil {
			return err
		}
		res.Before, res.After = st.folded, st.folded
		if st.size == 0 {
			res.Skipped = "no totals window yet"
			return nil
		}
		size := time.Duration(st.size) * time.Millisecond
		next := floorTo(global, st.size)
		if period > 0 {
			next = floorTo(floorTo(global, period), st.size)
			if keep := retention[st.size]; keep > 0 {
				next = max(next, floorTo(global-keep, SpanFor(st.size)))
			}
		}
		if st.folded == noFold {
			// Start: every url_clicks row of the size is counted in
			// url_totals_base already, so F' lies past the newest; and
			// past expired_before, whose deltas url_clicks never sees.
			newest, err := windowBound(ctx, tx, w.opts.Schema, size, newestWindow)
			if err != nil {
				return fmt.Errorf("read newest window: %w", err)
			}
			var expired *time.Time
			if err := tx.QueryRow(ctx, `SELECT expired_before FROM `+t("window_sizes")+` WHERE window_size = $1`, size).Scan(&expired); err != nil {
				return fmt.Errorf("read expired_before: %w", err)
			}
			if newest != nil {
				next = max(next, newest.UnixMilli()+st.size)
			}
			if expired != nil {
				next = max(next, expired.UnixMilli())
			}
		} else {
			if next <= st.folded {
				res.Skipped = "nothing new to fold"
				return nil
			}
			tag, err := tx.Exec(ctx, w.foldSQL(), size, time.UnixMilli(st.folded).UTC(), time.UnixMilli(next).UTC())
			if err != nil {
				return fmt.Errorf("fold url_totals: %w", err)
			}
			res.URLs = tag.RowsAffected()
		}
		if _, err := tx.Exec(ctx, `UPDATE `+t("totals_state")+` SET folded_before = $1, updated_at = now()`, time.UnixMilli(next).UTC()); err != nil {
			return err
		}
		res.After = next
		return nil
	})
	res.Took = time.Since(t0)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "55P03" {
		return FoldResult{Before: res.Before, After: res.Before, Took: res.Took, Skipped: "checkpoints busy"}, nil
	}
	if err != nil {
		return FoldResult{Took: res.Took}, fmt.Errorf("fold url_totals: %w", err)
	}
	return res, nil
}
