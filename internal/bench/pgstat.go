package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/clickagg/clickagg/internal/pglocal"
	"github.com/jackc/pgx/v5"
)

// Statement is one pg_stat_statements entry over a run: where
// PostgreSQL's time went, per statement (the profile of its CPU).
type Statement struct {
	Query       string  `json:"query"` // normalized, whitespace folded, cut at 160 characters
	Calls       int64   `json:"calls"`
	Rows        int64   `json:"rows"`
	TotalMillis float64 `json:"total_ms"` // execution time (pg_stat_statements.total_exec_time)
	Share       float64 `json:"share"`    // of all statements' execution time
	WALBytes    int64   `json:"wal_bytes"`
}

// StatementsLibrary is the server setting that loads pg_stat_statements
// (Env.Statements needs it).
const StatementsLibrary = "shared_preload_libraries=pg_stat_statements"

// resetStatements creates the pg_stat_statements extension when missing
// and clears its counters, so that the next read covers one run.
func resetStatements(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		return fmt.Errorf("pg_stat_statements (start PostgreSQL with %s): %w", StatementsLibrary, err)
	}
	_, err = conn.Exec(ctx, `SELECT pg_stat_statements_reset()`)
	return err
}

// topStatements returns the n statements that took the most execution
// time since resetStatements, across all databases and users.
func topStatements(ctx context.Context, dsn string, n int) ([]Statement, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT query, calls, rows, total_exec_time, wal_bytes::bigint,
	total_exec_time / nullif(sum(total_exec_time) OVER (), 0)
FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'
ORDER BY total_exec_time DESC LIMIT $1`, n)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Statement, error) {
		var s Statement
		var share *float64
		err := r.Scan(&s.Query, &s.Calls, &s.Rows, &s.TotalMillis, &s.WALBytes, &share)
		s.Query = strings.Join(strings.Fields(s.Query), " ")
		if len(s.Query) > 160 {
			s.Query = s.Query[:157] + "..."
		}
		if share != nil {
			s.Share = *share
		}
		return s, err
	})
}

// PrintStatements writes a run's statement profile.
func PrintStatements(w io.Writer, name string, st []Statement) {
	if len(st) == 0 {
		return
	}
	fmt.Fprintf(w, "%s: PostgreSQL statements by execution time (pg_stat_statements)\n", name)
	fmt.Fprintf(w, "  %9s %6s %9s %11s %10s  %s\n", "ms", "share", "calls", "rows", "WAL MiB", "statement")
	for _, s := range st {
		fmt.Fprintf(w, "  %9.0f %5.1f%% %9d %11d %10.1f  %s\n", s.TotalMillis, 100*s.Share, s.Calls, s.Rows,
			float64(s.WALBytes)/(1<<20), s.Query)
	}
}

// PostgresProfiles are the server settings `clickagg bench
// --postgres-settings` starts PostgreSQL with (besides its port, listen
// address and socket folder; the rest are PostgreSQL's defaults).
var PostgresProfiles = map[string][]string{
	// test: the test suite's throwaway server, speed over durability
	// (fsync off, minimal WAL, 16 MB shared buffers, no parallel query).
	"test": pglocal.Settings(),
	// defaults: a durable server as installed (fsync, full-page writes,
	// replica WAL, synchronous commit, 128 MB shared buffers).
	"defaults": durable,
	// recommended: defaults plus what README's PostgreSQL settings
	// section recommends for clickagg (durable still: only a crash's last
	// fraction of a second of checkpoints is recounted from Kafka).
	"recommended": append(slices.Clone(durable), Recommended...),
}

// durable are the "defaults" profile's settings: the harness's own needs.
var durable = []string{"max_connections=200", "logging_collector=off", "ssl=off", "huge_pages=off"}

// Recommended are the server settings README recommends for a PostgreSQL
// that clickagg writes to, as the benchmark applies them (shared_buffers
// sized for this 24 GiB machine).
var Recommended = []string{
	"shared_buffers=2GB",       // the working set of url_clicks' open spans and url_totals stays in PostgreSQL's cache
	"max_wal_size=8GB",         // fewer checkpoints: fewer full-page images in the WAL
	"wal_compression=lz4",      // the full-page images that remain, compressed
	"synchronous_commit=off",   // for clickagg's role: a crash loses at most the last ~0.6 s of commits, recounted
	"checkpoint_timeout=15min", // fewer checkpoints, as max_wal_size
}
