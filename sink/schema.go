package sink

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// DefaultSchema is the PostgreSQL schema the tables live in by default.
const DefaultSchema = "clickagg"

var schemaNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidateSchemaName checks a schema name: lower-case letters, digits and
// underscores, starting with a letter or underscore, at most 63 bytes.
func ValidateSchemaName(s string) error {
	if !schemaNameRE.MatchString(s) {
		return fmt.Errorf("postgres schema %q: must match %s", s, schemaNameRE)
	}
	return nil
}

// MaxURLBytes is the longest URL, in bytes, the schema holds for certain.
//
// A btree index entry must fit in a third of an 8 KiB page: at most 2704
// bytes (PostgreSQL's BTMaxItemSize, btree version 4). url_clicks' primary
// key entry is an 8-byte tuple header, the URL (4-byte length word, padded
// to 8), an 8-byte timestamp and a 16-byte interval (window_size, part of
// the key because url_clicks is partitioned by it), so a URL of n bytes
// needs 8 + roundup8(4+n) + 24 bytes: 2668 is the longest that fits even
// when it does not compress (url_totals' key holds more).
// A longer URL in a checkpoint would fail the whole transaction on every
// retry (SQLSTATE 54000), so the decoder must reject it before it is
// counted; TestMaxURLBytesFitsIndex checks the bound against the server.
//
// NB: the other way, a fixed-size hash of the URL as the key, would take any
// length but costs a hash per row in every checkpoint and turns every query
// by URL into a query by hash; URLs over 2.6 KB are rare enough to reject
// (and dead-letter) instead.
const MaxURLBytes = 2668

// migrations are applied in order, each once, recorded in schema_migrations.
// Never edit a released one; append.
var migrations = []migration{
	// 1: url_clicks, url_totals, checkpoints.
	{sql: `
CREATE TABLE {{s}}.url_clicks (
	url          text        NOT NULL,
	window_start timestamptz NOT NULL,
	window_end   timestamptz NOT NULL,
	clicks       bigint      NOT NULL DEFAULT 0,
	late_clicks  bigint      NOT NULL DEFAULT 0,
	final        boolean     NOT NULL DEFAULT false,
	updated_at   timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (url, window_start, window_end)
) WITH (fillfactor = 80);
-- Rows are updated in place by every checkpoint that touches them; the
-- indexes below never cover a column a delta changes, so those updates stay
-- HOT (heap-only) and the fillfactor leaves room for them.
CREATE INDEX url_clicks_size_start_idx ON {{s}}.url_clicks ((window_end - window_start), window_start);
CREATE INDEX url_clicks_open_idx ON {{s}}.url_clicks (window_end) WHERE NOT final;

CREATE TABLE {{s}}.url_totals (
	url        text        PRIMARY KEY,
	clicks     bigint      NOT NULL DEFAULT 0,
	updated_at timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);

CREATE TABLE {{s}}.checkpoints (
	consumer_group text        NOT NULL,
	topic          text        NOT NULL,
	partition      int         NOT NULL,
	next_offset    bigint      NOT NULL,
	watermark      timestamptz,
	restart_offset bigint      NOT NULL,
	updated_at     timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (consumer_group, topic, partition)
);
`},
	// 2: where a replay must start to rebuild dedup sightings, and the
	// dedup clock there (NULL: as restart_offset, no clock).
	{sql: `
ALTER TABLE {{s}}.checkpoints
	ADD COLUMN dedup_offset bigint,
	ADD COLUMN dedup_clock  timestamptz;
`},
	// 3: where in the dead-letter topic a restore looks for the records a
	// crashed run dead-lettered past the checkpoint (NULL: nowhere).
	{sql: `
ALTER TABLE {{s}}.checkpoints
	ADD COLUMN dead_letter_partition int,
	ADD COLUMN dead_letter_offset    bigint;
`},
	// 4: url_clicks partitioned by window size and window_start span, so
	// that retention drops tables instead of deleting rows; the sizes
	// table records each size's span, retention and expiry.
	{fn: migratePartitioned},
	// 5: which pipeline (consumer group, topic, settings that change what
	// the counts mean) owns the schema's counts (identity.go).
	{sql: pipelineTable},
	// 6: url_totals becomes a view: url_totals_base plus the url_clicks
	// rows not folded into it yet (totals_state; see totals.go).
	{fn: migrateTotalsView},
	// 7: url_clicks' btree on (window_size, window_start) becomes a BRIN
	// index on window_start: a checkpoint's rows no longer each add an
	// entry to a btree whose keys a whole window shares (window_size is
	// the partition key; the rows lie in window_start order). max and min
	// of window_start read by windowBound (bounds.go).
	{sql: brinSchema},
}

// migration is one schema version: SQL ({{s}} is the schema), or a
// function for steps SQL alone cannot express.
type migration struct {
	sql string
	fn  func(ctx context.Context, tx pgx.Tx, s string) error
}

// SchemaVersion is the version Migrate brings a database to.
var SchemaVersion = len(migrations)

// ErrSchemaTooNew is returned when the database was migrated by a newer
// clickagg than this one.
var ErrSchemaTooNew = errors.New("sink: database schema is newer than this binary")

// ErrEncoding is returned when the database's encoding cannot store every
// URL the decoder accepts.
var ErrEncoding = errors.New("sink: unsupported database encoding")

// Migrate creates the schema and applies every missing migration in one
// transaction, serialized between replicas by an advisory lock. It returns
// the number of migrations applied.
func Migrate(ctx context.Context, conn *pgx.Conn, schema string) (int, error) {
	return migrateTo(ctx, conn, schema, len(migrations))
}

// migrateTo is Migrate up to version target (tests of upgrades).
func migrateTo(ctx context.Context, conn *pgx.Conn, schema string, target int) (int, error) {
	if err := ValidateSchemaName(schema); err != nil {
		return 0, err
	}
	s := pgx.Identifier{schema}.Sanitize()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin migration: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('clickagg.migrate.' || $1))`, schema); err != nil {
		return 0, fmt.Errorf("lock for migration: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+s+`;
CREATE TABLE IF NOT EXISTS `+s+`.schema_migrations (
	version    int PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return 0, fmt.Errorf("create schema %s: %w", schema, err)
	}
	if err := checkEncoding(ctx, tx); err != nil {
		return 0, err
	}
	var have int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+s+`.schema_migrations`).Scan(&have); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if have > len(migrations) {
		return 0, fmt.Errorf("%w: database at version %d, binary knows %d", ErrSchemaTooNew, have, len(migrations))
	}
	for v := have + 1; v <= target; v++ {
		m := migrations[v-1]
		var err error
		if m.fn != nil {
			err = m.fn(ctx, tx, s)
		} else {
			_, err = tx.Exec(ctx, strings.ReplaceAll(m.sql, "{{s}}", s))
		}
		if err != nil {
			return 0, fmt.Errorf("apply migration %d: %w", v, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s+`.schema_migrations (version) VALUES ($1)`, v); err != nil {
			return 0, fmt.Errorf("record migration %d: %w", v, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit migration: %w", err)
	}
	return max(target-have, 0), nil
}

// checkEncoding refuses a database whose encoding cannot store every UTF-8
// URL: in LATIN1, say, one URL with a character LATIN1 lacks would fail
// every checkpoint that carries it. SQL_ASCII stores the bytes unchanged.
func checkEncoding(ctx context.Context, tx pgx.Tx) error {
	var enc string
	if err := tx.QueryRow(ctx, `SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()`).Scan(&enc); err != nil {
		return fmt.Errorf("read database encoding: %w", err)
	}
	if enc != "UTF8" && enc != "SQL_ASCII" {
		return fmt.Errorf("%w: database encoding %s cannot hold every UTF-8 URL; create the database with ENCODING 'UTF8'", ErrEncoding, enc)
	}
	return nil
}
