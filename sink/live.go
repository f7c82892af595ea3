package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultLiveSchema holds the readers' views (url_clicks, url_totals) of
// the active schema.
const DefaultLiveSchema = "clickagg_live"

// liveViews are the views SwitchLive replaces, in the order it locks them.
var liveViews = []string{"url_totals", "url_clicks"}

// SwitchLive points the views url_clicks and url_totals of schema live at
// schema target's tables, creating live and the views when missing, and
// records the switch in live.switches; it returns the schema the views
// read before ("" the first time). It is one transaction that first locks
// both views (in a fixed order), so a reader's statement, or transaction,
// sees both views on the old schema or both on the new one, never one of
// each.
func SwitchLive(ctx context.Context, pool *pgxpool.Pool, live, target string) (previous string, err error) {
	for _, s := range []string{live, target} {
		if err := ValidateSchemaName(s); err != nil {
			return "", err
		}
	}
	if live == target {
		return "", fmt.Errorf("live schema %s: must not be the schema it points at", live)
	}
	l, t := pgx.Identifier{live}.Sanitize(), pgx.Identifier{target}.Sanitize()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('clickagg.live.' || $1))`, live); err != nil {
			return fmt.Errorf("lock live schema %s: %w", live, err)
		}
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL AND to_regclass($3) IS NOT NULL`,
			t+".url_clicks", t+".url_totals", t+".pipeline").Scan(&ok); err != nil {
			return fmt.Errorf("look up schema %s: %w", target, err)
		}
		if !ok {
			return fmt.Errorf("schema %s has no clickagg tables (url_clicks, url_totals, pipeline): migrate and count it first", target)
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+l+`;
CREATE TABLE IF NOT EXISTS `+l+`.switches (
	schema      text        NOT NULL,
	switched_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE `+l+`.switches IS 'Each time clickagg re-pointed this schema''s views at another schema; the newest row is the active one.'`); err != nil {
			return fmt.Errorf("create live schema %s: %w", live, err)
		}
		err := tx.QueryRow(ctx, `SELECT schema FROM `+l+`.switches ORDER BY switched_at DESC LIMIT 1`).Scan(&previous)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read %s.switches: %w", live, err)
		}
		var existing []string
		for _, v := range liveViews {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, l+"."+v).Scan(&exists); err != nil {
				return err
			}
			if exists {
				existing = append(existing, l+"."+v)
			}
		}
		if len(existing) > 0 {
			// NB: both locks before either view changes: a reader holding
			// one view waits for the switch or makes it wait; it cannot
			// read one old view and one new view.
			if _, err := tx.Exec(ctx, `LOCK TABLE `+strings.Join(existing, ", ")+` IN ACCESS EXCLUSIVE MODE`); err != nil {
				return fmt.Errorf("lock the views of %s: %w", live, err)
			}
		}
		for _, v := range liveViews {
			if _, err := tx.Exec(ctx, `CREATE OR REPLACE VIEW `+l+`.`+v+` AS SELECT * FROM `+t+`.`+v); err != nil {
				return fmt.Errorf("point %s.%s at %s: %w", live, v, target, err)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+l+`.switches (schema) VALUES ($1)`, target); err != nil {
			return fmt.Errorf("record the switch: %w", err)
		}
		return nil
	})
	return previous, err
}
