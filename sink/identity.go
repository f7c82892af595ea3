package sink

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pipelineTable is migration 5: the one row naming the pipeline whose
// counts the schema holds.
const pipelineTable = `
CREATE TABLE {{s}}.pipeline (
	singleton      boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
	consumer_group text        NOT NULL,
	topic          text        NOT NULL,
	windows        interval[]  NOT NULL,
	settings       jsonb       NOT NULL,
	created_at     timestamptz NOT NULL DEFAULT now(),
	updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE {{s}}.pipeline IS 'The pipeline whose counts url_clicks and url_totals hold: its consumer group, topic, window sizes and the settings that change what a count means. clickagg run refuses another group, topic or such setting (see README, Pipeline identity).';
`

// Identity is what a schema's pipeline row records.
type Identity struct {
	Group   string
	Topic   string
	Windows []time.Duration
	// Settings are the settings that change what a stored count means,
	// by setting name (url.normalize, dedup.window, ...), as text.
	Settings map[string]string
	// Since is when the row was written first (read only).
	Since time.Time
}

// Change is one setting whose recorded value differs from the new one.
type Change struct{ Key, Old, New string }

func (c Change) String() string { return fmt.Sprintf("%s %s → %s", c.Key, c.Old, c.New) }

// Claim is what ClaimPipeline did.
type Claim struct {
	Created  bool      // the schema had no owner: the row was written now
	Previous *Identity // the owner before a takeover (nil: none, or the same group and topic)
	Changes  []Change  // settings that changed (only with a takeover)
	Added    []time.Duration
	Removed  []time.Duration
}

// ErrNotOwner is matched (errors.Is) by *OwnerError.
var ErrNotOwner = errors.New("sink: schema owned by another pipeline")

// OwnerError refuses a pipeline whose counts would mix with the owner's:
// another group or topic (Changes empty), or settings that change what a
// count means (Changes).
type OwnerError struct {
	Schema  string
	Owner   Identity
	Changes []Change
	// FromCheckpoints: no pipeline row yet (a schema migrated from
	// version 4); the owner is the group the checkpoints rows name.
	FromCheckpoints bool
}

func (e *OwnerError) Error() string {
	if len(e.Changes) > 0 {
		return fmt.Sprintf("schema %s was counted with other settings: %s", e.Schema, JoinChanges(e.Changes))
	}
	return fmt.Sprintf("schema %s is owned by group %q on topic %q", e.Schema, e.Owner.Group, e.Owner.Topic)
}

// Is makes errors.Is(err, ErrNotOwner) true.
func (e *OwnerError) Is(target error) bool { return target == ErrNotOwner }

// JoinChanges lists changes as "key old → new", comma-separated.
func JoinChanges(cs []Change) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String()
	}
	return strings.Join(parts, ", ")
}

// ClaimPipeline compares id with the schema's pipeline row, under an
// advisory lock (replicas start together), and:
//   - without a row, claims the schema (writes id), unless the checkpoints
//     table already holds another group's or topic's rows (a schema from
//     before the row existed): then that group owns it;
//   - with the same group and topic and the same settings, records the
//     window sizes (Claim says which were added or removed);
//   - otherwise returns an *OwnerError, unless takeover: then id replaces
//     the row (Claim.Previous, Claim.Changes say what it replaced).
func ClaimPipeline(ctx context.Context, pool *pgxpool.Pool, schema string, id Identity, takeover bool) (Claim, error) {
	if err := ValidateSchemaName(schema); err != nil {
		return Claim{}, err
	}
	s := pgx.Identifier{schema}.Sanitize()
	var claim Claim
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('clickagg.pipeline.' || $1))`, schema); err != nil {
			return fmt.Errorf("lock the pipeline row: %w", err)
		}
		old, found, err := readPipeline(ctx, tx, s)
		if err != nil {
			return err
		}
		if !found {
			var g, t string
			err := tx.QueryRow(ctx, `SELECT consumer_group, topic FROM `+s+`.checkpoints
WHERE (consumer_group, topic) <> ($1, $2) ORDER BY updated_at DESC LIMIT 1`, id.Group, id.Topic).Scan(&g, &t)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
			case err != nil:
				return fmt.Errorf("read checkpoints: %w", err)
			case !takeover:
				return &OwnerError{Schema: schema, Owner: Identity{Group: g, Topic: t}, FromCheckpoints: true}
			default:
				claim.Previous = &Identity{Group: g, Topic: t}
			}
			claim.Created = true
			claim.Added = slices.Clone(id.Windows)
			return writePipeline(ctx, tx, s, id, true)
		}
		claim.Changes = compareSettings(old.Settings, id.Settings)
		if old.Group != id.Group || old.Topic != id.Topic {
			if !takeover {
				return &OwnerError{Schema: schema, Owner: old}
			}
			claim.Previous = &old
		} else if len(claim.Changes) > 0 && !takeover {
			return &OwnerError{Schema: schema, Owner: old, Changes: claim.Changes}
		}
		for _, w := range id.Windows {
			if !slices.Contains(old.Windows, w) {
				claim.Added = append(claim.Added, w)
			}
		}
		for _, w := range old.Windows {
			if !slices.Contains(id.Windows, w) {
				claim.Removed = append(claim.Removed, w)
			}
		}
		if claim.Previous == nil && len(claim.Changes) == 0 && len(claim.Added)+len(claim.Removed) == 0 {
			return nil
		}
		return writePipeline(ctx, tx, s, id, false)
	})
	if err != nil {
		return Claim{}, err
	}
	return claim, nil
}

// ReadPipeline returns the schema's pipeline row; found is false when the
// schema has none.
func ReadPipeline(ctx context.Context, pool *pgxpool.Pool, schema string) (id Identity, found bool, err error) {
	if err := ValidateSchemaName(schema); err != nil {
		return Identity{}, false, err
	}
	return readPipeline(ctx, pool, pgx.Identifier{schema}.Sanitize())
}

// rowQuerier is a pool, a connection or a transaction.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func readPipeline(ctx context.Context, q rowQuerier, s string) (Identity, bool, error) {
	var id Identity
	var ms []int64
	err := q.QueryRow(ctx, `SELECT consumer_group, topic,
	array(SELECT (extract(epoch FROM w) * 1000)::bigint FROM unnest(windows) AS w), settings, created_at
FROM `+s+`.pipeline`).Scan(&id.Group, &id.Topic, &ms, &id.Settings, &id.Since)
	if errors.Is(err, pgx.ErrNoRows) {
		return Identity{}, false, nil
	}
	if err != nil {
		return Identity{}, false, fmt.Errorf("read the pipeline row: %w", err)
	}
	for _, m := range ms {
		id.Windows = append(id.Windows, time.Duration(m)*time.Millisecond)
	}
	return id, true, nil
}

func writePipeline(ctx context.Context, tx pgx.Tx, s string, id Identity, insert bool) error {
	ms := make([]int64, len(id.Windows))
	for i, w := range id.Windows {
		ms[i] = w.Milliseconds()
	}
	slices.Sort(ms)
	windows := `array(SELECT x * interval '1 millisecond' FROM unnest($3::bigint[]) AS x)`
	sql := `UPDATE ` + s + `.pipeline SET consumer_group = $1, topic = $2, windows = ` + windows + `,
	settings = $4, updated_at = now()`
	if insert {
		sql = `INSERT INTO ` + s + `.pipeline (consumer_group, topic, windows, settings) VALUES ($1, $2, ` + windows + `, $4)`
	}
	if _, err := tx.Exec(ctx, sql, id.Group, id.Topic, ms, id.Settings); err != nil {
		return fmt.Errorf("write the pipeline row: %w", err)
	}
	return nil
}

// compareSettings lists the keys whose values differ, in key order; a
// key missing on one side is "(unset)" there.
func compareSettings(old, cur map[string]string) []Change {
	keys := slices.Sorted(maps.Keys(old))
	for k := range cur {
		if _, ok := old[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []Change
	for _, k := range keys {
		o, ok1 := old[k]
		n, ok2 := cur[k]
		if !ok1 {
			o = "(unset)"
		}
		if !ok2 {
			n = "(unset)"
		}
		if o != n {
			out = append(out, Change{Key: k, Old: o, New: n})
		}
	}
	return out
}

// Reset empties the schema's data: url_clicks (its span tables are
// dropped, attached or left detached by an interrupted retention),
// url_totals (url_totals_base, and totals_state back to nothing folded),
// checkpoints and the pipeline row; window sizes keep their
// retention but forget what expired. The schema, its migrations and the
// privileges granted on it stay. No pipeline may run on the schema
// meanwhile: the next one counts from its start offsets.
func Reset(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	if err := ValidateSchemaName(schema); err != nil {
		return err
	}
	s := pgx.Identifier{schema}.Sanitize()
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		// NB: the lock maintenance takes to move expiry, and migrate's.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('clickagg.migrate.' || $1)),
	pg_advisory_xact_lock(hashtext('clickagg.pipeline.' || $1))`, schema); err != nil {
			return fmt.Errorf("lock schema %s: %w", schema, err)
		}
		rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_class c
WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r' AND c.relname LIKE 'url\_clicks\_%\_p%'`, s)
		if err != nil {
			return fmt.Errorf("list url_clicks partitions: %w", err)
		}
		leaves, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("list url_clicks partitions: %w", err)
		}
		for _, leaf := range leaves {
			if _, err := tx.Exec(ctx, `DROP TABLE `+s+`.`+pgx.Identifier{leaf}.Sanitize()); err != nil {
				return fmt.Errorf("drop %s: %w", leaf, err)
			}
		}
		_, err = tx.Exec(ctx, `TRUNCATE `+s+`.url_clicks, `+s+`.url_totals_base, `+s+`.checkpoints, `+s+`.pipeline;
UPDATE `+s+`.window_sizes SET expired_before = NULL, updated_at = now();
UPDATE `+s+`.totals_state SET window_size = NULL, folded_before = 'infinity', updated_at = now()`)
		if err != nil {
			return fmt.Errorf("empty schema %s: %w", schema, err)
		}
		return nil
	})
}
