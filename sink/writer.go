package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clickagg/clickagg/base"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// NoWatermark is base.NoWatermark, stored as SQL NULL.
const NoWatermark = base.NoWatermark

// Row is one partition's checkpoints row: how far its results go, and
// where its dead letters land.
type Row struct {
	base.Position
	// DeadLetterPartition and DeadLetterOffset are where in the
	// dead-letter topic this partition's records past NextOffset can be:
	// at or after that offset of that partition. -1: nowhere (no
	// dead-letter topic).
	DeadLetterPartition int32
	DeadLetterOffset    int64
}

// PartitionUpdate moves one partition's row from Expect to Next.
type PartitionUpdate struct {
	Partition int32
	Expect    Row
	Next      Row
}

// ClickDelta adds to one url_clicks row.
type ClickDelta struct {
	URL         string
	WindowStart int64 // Unix ms
	WindowEnd   int64 // Unix ms
	Clicks      int64
	LateClicks  int64
}

// Checkpoint is one checkpoint's transaction. Its deltas are in Deltas;
// Clicks is a convenience for small checkpoints (tests): Commit moves them
// into Deltas. Several deltas for the same row are summed.
type Checkpoint struct {
	Partitions []PartitionUpdate
	Deltas     *Deltas // nil: Commit creates one
	Clicks     []ClickDelta
	// TotalsWindow is the window size (ms) whose click deltas also add to
	// url_totals: the smallest one, so that each click counts once. Zero:
	// url_totals is not written.
	TotalsWindow int64
	// TopicPartitions is the topic's partition count: windows are marked
	// final only when that many partitions have a checkpoints row.
	TopicPartitions int
}

// Result describes a committed checkpoint.
type Result struct {
	ClickRows int64 // url_clicks rows written
	TotalRows int64 // url_totals_base rows written (windows before the fold point)
	Finalized int64 // url_clicks rows marked final by the finalizer
	Attempts  int   // transactions tried (more than 1 after deadlocks)
	Recovered bool  // an earlier attempt had committed; nothing was rewritten
	// UpsertedAll is true when every url_clicks delta went through the
	// upsert: the insert of new rows found one that existed (or was
	// skipped after such a find; see writeClicks).
	UpsertedAll bool
	Duration    time.Duration
	FinalUntil  int64 // windows ending at or before this (Unix ms) are final; NoWatermark if none
	// Expired holds, per window size (ms), the clicks not written to
	// url_clicks because their window's span had expired (see Maintain).
	Expired map[int64]int64
}

// ErrFenced is matched (errors.Is) by *FencedError.
var ErrFenced = errors.New("sink: fenced")

// FencedError reports partitions whose checkpoints row no longer holds the
// expected position: another writer moved it (fencing). The
// transaction was rolled back; the caller must re-sync those partitions.
type FencedError struct {
	Partitions []int32
	// Expected and Found are the rows' positions as the writer expected
	// them and as they were, for the logs.
	Expected, Found map[int32]Row
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("sink: fenced: checkpoint rows of partitions %v were moved by another writer", e.Partitions)
}

// Is makes errors.Is(err, ErrFenced) true.
func (e *FencedError) Is(target error) bool { return target == ErrFenced }

// Options configure a Writer.
type Options struct {
	Schema string // default DefaultSchema
	Group  string // consumer group
	Topic  string
	// FinalizeBatch bounds how many rows one checkpoint marks final; zero
	// means 50,000.
	FinalizeBatch int
	// AttemptTimeout bounds one checkpoint transaction (a dead connection
	// must not block the pipeline until TCP keepalive notices); zero means
	// 5 minutes.
	AttemptTimeout time.Duration
}

// errAttemptTimeout marks a transaction attempt that ran out of time; it is
// retryable.
var errAttemptTimeout = errors.New("sink: attempt timed out")

// Writer writes checkpoints and reads checkpoint rows for one consumer group
// and topic. Safe for concurrent use.
type Writer struct {
	pool *pgxpool.Pool
	opts Options

	sqlCAS, sqlRead, sqlInit, sqlGlobalMin     string
	sqlUpsertClicks, sqlUpsertTotals, sqlFinal string
	sqlCopyClicks, sqlExpiry, sqlTotalsState   string
	sqlCopyDirect                              string

	partMu sync.Mutex
	known  map[spanKey]bool // url_clicks partitions known to exist (or to be expired)

	insertMu   sync.Mutex
	skipInsert int // checkpoints left that upsert without trying the insert first
	backoff    int // skipInsert after the next failed insert, doubled each time
}

// upsertClicks is the statement that adds the staged deltas to url_clicks
// (table), skipping the rows that where matches.
func upsertClicks(table, where string) string {
	return clicksStatement(table, where, "", true)
}

// clicksStatement is the statement that writes the staged deltas matching
// only (all when "") to url_clicks (table), skipping those where matches:
// with upsert, added to existing rows (ON CONFLICT); without, as new rows,
// failing with unique_violation if any exists (see writeClicks).
func clicksStatement(table, where, only string, upsert bool) string {
	// NB: ORDER BY gives every replica the same row-lock order (no
	// deadlocks on hot rows) and inserts in index order; the staging url
	// column is COLLATE "C" (byte order, cheap), so grouping and ordering
	// share one sort. GROUP BY sums the deltas several partitions sent for
	// one row.
	var conds []string
	if only != "" {
		conds = append(conds, only)
	}
	if where != "" {
		conds = append(conds, "NOT ("+where+")")
	}
	filter := ""
	if len(conds) > 0 {
		filter = "WHERE " + strings.Join(conds, " AND ") + "\n"
	}
	sql := `INSERT INTO ` + table + ` AS t
	(url, window_start, window_end, window_size, clicks, late_clicks, final, updated_at)
SELECT url, window_start, window_end, window_end - window_start, sum(clicks)::bigint, sum(late_clicks)::bigint,
	coalesce(window_end <= $1, false), now()
FROM pg_temp.` + stageClicksTable + `
` + filter + `GROUP BY url, window_start, window_end
ORDER BY url, window_start, window_end`
	if upsert {
		sql += `
ON CONFLICT (url, window_start, window_size) DO UPDATE SET
	clicks = t.clicks + excluded.clicks,
	late_clicks = t.late_clicks + excluded.late_clicks,
	final = t.final OR excluded.final,
	updated_at = excluded.updated_at`
	}
	return sql
}

const stageClicksTable = "clickagg_stage_clicks"

// createStaging runs once per connection: the COPY target for the deltas.
const createStaging = `
CREATE TEMP TABLE IF NOT EXISTS ` + stageClicksTable + ` (
	url text COLLATE "C", window_start timestamptz, window_end timestamptz,
	clicks bigint, late_clicks bigint) ON COMMIT DELETE ROWS`

// NewPool opens a connection pool whose connections carry the staging
// tables Writer needs. The caller closes it.
func NewPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse postgres DSN: %w", redactErr(err))
	}
	cfg.MaxConns = 4
	// NB: a backend whose client vanished mid-transaction (half-open TCP
	// after a failover or partition) would hold its row locks on hot
	// url_totals rows until the server's keepalive notices, stalling every
	// replica; the server ends such sessions after a minute. lock_timeout
	// turns a stuck wait into a retryable error.
	cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "60000"
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = "60000"
	cfg.ConnConfig.RuntimeParams["application_name"] = "clickagg"
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, createStaging)
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", redactErr(err))
	}
	return pool, nil
}

// redactErr drops a DSN parse error's text, which can hold the password.
func redactErr(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("invalid connection string (details withheld: it may contain a password)")
	}
	return err
}

// NewWriter returns a Writer using pool (from NewPool).
func NewWriter(pool *pgxpool.Pool, opts Options) (*Writer, error) {
	if opts.Schema == "" {
		opts.Schema = DefaultSchema
	}
	if err := ValidateSchemaName(opts.Schema); err != nil {
		return nil, err
	}
	if opts.FinalizeBatch == 0 {
		opts.FinalizeBatch = 50_000
	}
	if opts.AttemptTimeout == 0 {
		opts.AttemptTimeout = 5 * time.Minute
	}
	t := func(name string) string { return pgx.Identifier{opts.Schema, name}.Sanitize() }
	w := &Writer{pool: pool, opts: opts, known: map[spanKey]bool{}}
	w.sqlCAS = `UPDATE ` + t("checkpoints") + `
SET next_offset = $4, watermark = $5, restart_offset = $6, dedup_offset = $10, dedup_clock = $11,
	dead_letter_partition = nullif($14::int, -1), dead_letter_offset = nullif($15::bigint, -1), updated_at = now()
WHERE consumer_group = $1 AND topic = $2 AND partition = $3
  AND next_offset = $7 AND restart_offset = $8 AND watermark IS NOT DISTINCT FROM $9
  AND coalesce(dedup_offset, restart_offset) = $12 AND dedup_clock IS NOT DISTINCT FROM $13`
	w.sqlRead = `SELECT partition, next_offset, watermark, restart_offset, coalesce(dedup_offset, restart_offset), dedup_clock,
	coalesce(dead_letter_partition, -1), coalesce(dead_letter_offset, -1) FROM ` + t("checkpoints") + `
WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3)`
	w.sqlInit = `INSERT INTO ` + t("checkpoints") + ` (consumer_group, topic, partition, next_offset, watermark, restart_offset, dedup_offset, dedup_clock,
	dead_letter_partition, dead_letter_offset)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, nullif($9::int, -1), nullif($10::bigint, -1)) ON CONFLICT DO NOTHING`
	w.sqlGlobalMin = `SELECT count(*), count(watermark), min(watermark) FROM ` + t("checkpoints") + `
WHERE consumer_group = $1 AND topic = $2`
	w.sqlUpsertClicks = upsertClicks(t("url_clicks"), "")
	// NB: url_totals follow the smallest window size; its staged click
	// deltas are the totals' deltas, so they are not sent twice. Only
	// those of windows before folded_before ($2, NULL: infinity) go to
	// url_totals_base: the view counts the later ones in url_clicks
	// (totals.go).
	w.sqlUpsertTotals = `INSERT INTO ` + t("url_totals_base") + ` AS t (url, clicks, updated_at)
SELECT url, sum(clicks)::bigint, now() FROM pg_temp.` + stageClicksTable + `
WHERE window_end - window_start = $1::bigint * interval '1 millisecond'
  AND window_start < coalesce($2::timestamptz, 'infinity')
GROUP BY url
ORDER BY url
ON CONFLICT (url) DO UPDATE SET clicks = t.clicks + excluded.clicks, updated_at = excluded.updated_at`
	w.sqlCopyDirect = `COPY ` + t("url_clicks") + ` (url, window_start, window_end, window_size, clicks, late_clicks, final) FROM STDIN WITH (FORMAT binary)`
	w.sqlCopyClicks = `COPY pg_temp.` + stageClicksTable + ` (url, window_start, window_end, clicks, late_clicks) FROM STDIN WITH (FORMAT binary)`
	// NB: SKIP LOCKED: the finalizer never waits for a row another
	// replica's checkpoint holds, so it cannot take part in a deadlock; a
	// skipped row is finalized by a later checkpoint.
	// NB: window_start < $1 prunes the partitions of windows not yet
	// ended; the rows are matched back by key (a ctid alone does not name
	// a row of a partitioned table).
	w.sqlFinal = `UPDATE ` + t("url_clicks") + ` AS t SET final = true, updated_at = now()
FROM (SELECT url, window_start, window_size FROM ` + t("url_clicks") + `
	WHERE NOT final AND window_end <= $1 AND window_start < $1
	LIMIT $2 FOR UPDATE SKIP LOCKED) AS f
WHERE t.url = f.url AND t.window_start = f.window_start AND t.window_size = f.window_size`
	w.sqlExpiry = `SELECT (extract(epoch FROM window_size) * 1000)::bigint, expired_before FROM ` + t("window_sizes") + `
WHERE expired_before IS NOT NULL`
	w.sqlTotalsState = sqlTotalsState + t("totals_state")
	return w, nil
}

// Schema returns the PostgreSQL schema name.
func (w *Writer) Schema() string { return w.opts.Schema }

func tsArg(ms int64) any {
	if ms == NoWatermark {
		return nil
	}
	return time.UnixMilli(ms).UTC()
}

func tsScan(t *time.Time) int64 {
	if t == nil {
		return NoWatermark
	}
	return t.UnixMilli()
}

// ReadRows returns the checkpoints rows of the given partitions; a
// partition without a row is absent from the map.
func (w *Writer) ReadRows(ctx context.Context, partitions []int32) (map[int32]Row, error) {
	rows, err := w.pool.Query(ctx, w.sqlRead, w.opts.Group, w.opts.Topic, partitions)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	out := make(map[int32]Row, len(partitions))
	for rows.Next() {
		var (
			p       int32
			pos     Row
			wm, clk *time.Time
		)
		if err := rows.Scan(&p, &pos.NextOffset, &wm, &pos.RestartOffset, &pos.DedupOffset, &clk,
			&pos.DeadLetterPartition, &pos.DeadLetterOffset); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read checkpoints: %w", err)
		}
		pos.Watermark, pos.DedupClock = tsScan(wm), tsScan(clk)
		out[p] = pos
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	return out, nil
}

// InitRow creates partition p's checkpoints row at pos unless a row
// exists, and returns the row as it now is (a partition
// Postgres has never seen starts where start_offset says, recorded here so
// that every later decision is replayable).
func (w *Writer) InitRow(ctx context.Context, p int32, pos Row) (Row, error) {
	if _, err := w.pool.Exec(ctx, w.sqlInit, w.opts.Group, w.opts.Topic, p,
		pos.NextOffset, tsArg(pos.Watermark), pos.RestartOffset, pos.DedupOffset, tsArg(pos.DedupClock),
		pos.DeadLetterPartition, pos.DeadLetterOffset); err != nil {
		return Row{}, fmt.Errorf("create checkpoint row for partition %d: %w", p, err)
	}
	got, err := w.ReadRows(ctx, []int32{p})
	if err != nil {
		return Row{}, err
	}
	cur, ok := got[p]
	if !ok {
		return Row{}, fmt.Errorf("checkpoint row for partition %d vanished", p)
	}
	return cur, nil
}

// Ping checks that PostgreSQL answers.
func (w *Writer) Ping(ctx context.Context) error { return w.pool.Ping(ctx) }

// Retryable reports whether a Commit error is worth retrying with the same
// Checkpoint: lost connections, server restarts, resource exhaustion,
// timeouts. Fencing and schema errors are not.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, ErrFenced) || errors.Is(err, context.Canceled) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", // connection exception
			"40", // transaction rollback (deadlock, serialization)
			"53", // insufficient resources
			"57", // operator intervention (shutdown, cannot connect now, query canceled)
			"58": // system error
			return true
		}
		return pe.Code == "55P03" // lock_not_available: lock_timeout
	}
	// Not a server error: retry only what looks like a lost or unusable
	// connection, so that a bug (say, a value pgx cannot encode) fails
	// loudly instead of retrying forever.
	var (
		ne net.Error
		ce *pgconn.ConnectError
	)
	return errors.Is(err, errAttemptTimeout) ||
		errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ne) || errors.As(err, &ce) ||
		pgconn.SafeToRetry(err) || pgconn.Timeout(err)
}

// isNoPartition reports an insert into url_clicks that found no partition
// for a row (SQLSTATE 23514 with that message).
func isNoPartition(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23514" && strings.Contains(pe.Message, "no partition of relation")
}

func isConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// maxConflictRetries bounds Commit's own retries after deadlocks and
// serialization failures.
const maxConflictRetries = 20

// Commit writes one checkpoint transaction (see the package doc). On a
// *FencedError nothing was written. Other errors leave the database as it
// was or, if the acknowledgement of COMMIT was lost, committed: calling
// Commit again with the same Checkpoint is always safe.
func (w *Writer) Commit(ctx context.Context, cp *Checkpoint) (Result, error) {
	start := time.Now()
	if cp.Deltas == nil {
		cp.Deltas = &Deltas{}
	}
	for _, c := range cp.Clicks {
		cp.Deltas.AddClick(c.URL, c.WindowStart, c.WindowEnd, c.Clicks, c.LateClicks)
	}
	cp.Clicks = nil
	var res Result
	for {
		res.Attempts++
		actx, cancel := context.WithTimeout(ctx, w.opts.AttemptTimeout)
		r, err := w.commitOnce(actx, cp)
		if err != nil && ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("checkpoint transaction took longer than %s: %w", w.opts.AttemptTimeout, errAttemptTimeout)
		}
		cancel()
		if err == nil {
			r.Attempts, r.Duration = res.Attempts, time.Since(start)
			return r, nil
		}
		var fe *FencedError
		if errors.As(err, &fe) && len(fe.Partitions) == len(cp.Partitions) {
			// Every row moved: maybe by our own earlier attempt whose
			// COMMIT acknowledgement was lost.
			if ok, rerr := w.alreadyCommitted(ctx, cp); rerr != nil {
				return res, rerr
			} else if ok {
				return Result{Recovered: true, Attempts: res.Attempts, Duration: time.Since(start), FinalUntil: NoWatermark}, nil
			}
		}
		if isConflict(err) && res.Attempts < maxConflictRetries && ctx.Err() == nil {
			continue
		}
		var sw *errSwitchTotals
		if errors.As(err, &sw) && res.Attempts < maxConflictRetries && ctx.Err() == nil {
			// url_totals follow another window size (the first checkpoint,
			// or the configured sizes changed): switch, then retry.
			if err := w.switchTotals(ctx, sw.size); err != nil {
				return res, err
			}
			continue
		}
		if isNoPartition(err) && res.Attempts < maxConflictRetries && ctx.Err() == nil {
			// A partition this writer believed in was dropped by hand:
			// look again, create what is missing, retry.
			w.forgetSpans()
			continue
		}
		return res, err
	}
}

// alreadyCommitted reports whether every partition's row holds the target
// position. Positions only move forward and every checkpoint that emits
// anything moves one (next offset, watermark, or restart offset), so a row
// at the target has had exactly this checkpoint's emissions applied.
func (w *Writer) alreadyCommitted(ctx context.Context, cp *Checkpoint) (bool, error) {
	parts := make([]int32, len(cp.Partitions))
	for i, u := range cp.Partitions {
		parts[i] = u.Partition
	}
	cur, err := w.ReadRows(ctx, parts)
	if err != nil {
		return false, err
	}
	for _, u := range cp.Partitions {
		if got, ok := cur[u.Partition]; !ok || got != u.Next {
			return false, nil
		}
	}
	return true, nil
}

// writeClicks writes the staged deltas to url_clicks, all but those where
// matches (expired spans). Most rows of a checkpoint are new: a window's
// one emission, final, once the watermarks pass it. Those are inserted
// without ON CONFLICT, which costs PostgreSQL about 40% less per row (no
// speculative insertion); the deltas of late clicks, whose rows usually
// exist, are upserted after them (adding to a row just inserted, too).
// If a row that looked new exists after all (emitted early, by another
// replica, or by a checkpoint whose watermarks were not aligned), the
// insert fails with unique_violation and leaves nothing (a savepoint):
// every delta is then upserted, and the next checkpoints upsert straight
// away for a while. The primary key makes a row written twice impossible
// on either path, and both run in the fenced transaction.
func (w *Writer) writeClicks(ctx context.Context, tx pgx.Tx, where string, finalUntil any) (rows int64, upsertedAll bool, err error) {
	table := pgx.Identifier{w.opts.Schema, "url_clicks"}.Sanitize()
	if w.tryInsert() {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return 0, false, fmt.Errorf("savepoint: %w", err)
		}
		n, err := insertThenUpsertLate(ctx, sp, table, where, finalUntil)
		if err == nil {
			w.insertDone(true)
			return n, false, nil
		}
		if err := w.insertFailed(ctx, sp, err); err != nil {
			return 0, false, fmt.Errorf("insert url_clicks: %w", err)
		}
	}
	tag, err := tx.Exec(ctx, w.upsertFor(where), finalUntil)
	if err != nil {
		return 0, true, fmt.Errorf("upsert url_clicks: %w", err)
	}
	return tag.RowsAffected(), true, nil
}

// insertFailed rolls back the savepoint sp of an insert of new rows that
// failed with err. A unique_violation (a row that looked new exists) is
// expected: it starts the backoff and returns nil, the caller upserts.
func (w *Writer) insertFailed(ctx context.Context, sp pgx.Tx, err error) error {
	if rerr := sp.Rollback(ctx); rerr != nil && !errors.Is(rerr, pgx.ErrTxClosed) {
		return fmt.Errorf("%w (roll back: %v)", err, rerr)
	}
	if !isUniqueViolation(err) {
		return err
	}
	w.insertDone(false)
	return nil
}

// writeSpilled writes deltas that spilled to a file: staged as they are,
// summed and written by writeClicks.
func (w *Writer) writeSpilled(ctx context.Context, tx pgx.Tx, d *Deltas, where string, finalUntil any, res *Result) error {
	r, err := d.clicks.reader()
	if err != nil {
		return err
	}
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, r, w.sqlCopyClicks); err != nil {
		return fmt.Errorf("stage click deltas: %w", err)
	}
	if where != "" {
		if res.Expired, err = countExpired(ctx, tx, where); err != nil {
			return err
		}
	}
	res.ClickRows, res.UpsertedAll, err = w.writeClicks(ctx, tx, where, finalUntil)
	return err
}

// writeMerged writes deltas held in memory, summed per row in Go. A row
// whose deltas are all on time, of a window not expired, and that
// url_totals reads from url_clicks (not before folded_before) is most
// likely new: those rows go straight into url_clicks by one binary COPY,
// in key order, in a savepoint. The rest (late clicks, expired windows,
// url_totals_base's windows) are staged and upserted, as are all of them
// when the COPY finds a row that exists after all (unique_violation: early
// results, another replica, unaligned watermarks) or while the backoff
// after such a find lasts. The primary key makes a row copied twice
// impossible: a replayed checkpoint's COPY fails and rolls back, and both
// paths run in the fenced transaction. staged reports whether anything
// was staged (and url_totals_base may need the staged deltas).
func (w *Writer) writeMerged(ctx context.Context, tx pgx.Tx, cp *Checkpoint, where string, expired map[int64]int64,
	totals totalsState, finalUntil any, res *Result) (staged bool, err error) {
	d := cp.Deltas
	rows := d.sorted()
	untilMs, hasFinal := int64(0), false
	if t, ok := finalUntil.(time.Time); ok {
		untilMs, hasFinal = t.UnixMilli(), true
	}
	stageOnly := func(r *delta) bool {
		size := r.end - r.start
		if before, ok := expired[size]; ok && r.start < before {
			return true
		}
		return r.late != 0 || (size == cp.TotalsWindow && r.start < totals.folded)
	}
	insert := w.tryInsert()
	direct := func(r *delta) bool { return insert && !stageOnly(r) }
	nDirect := 0
	for i := range rows {
		if direct(&rows[i]) {
			nDirect++
		}
	}
	nStage := len(rows) - nDirect
	toStage := func(r *delta) bool { return !direct(r) }
	res.UpsertedAll = nDirect == 0
	if nDirect > 0 {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return false, fmt.Errorf("savepoint: %w", err)
		}
		enc := func(dst []byte, r *delta) []byte { return appendDirect(dst, r, hasFinal && r.end <= untilMs) }
		st := d.stream(direct, enc)
		tag, err := sp.Conn().PgConn().CopyFrom(ctx, st, w.sqlCopyDirect)
		st.close()
		if err == nil {
			err = sp.Commit(ctx)
		}
		if err == nil {
			w.insertDone(true)
			res.ClickRows += tag.RowsAffected()
		} else {
			if err := w.insertFailed(ctx, sp, err); err != nil {
				return false, fmt.Errorf("copy new url_clicks rows: %w", err)
			}
			res.UpsertedAll = true
			toStage, nStage = func(*delta) bool { return true }, len(rows)
		}
	}
	if nStage == 0 {
		return false, nil
	}
	st := d.stream(toStage, appendStaged)
	_, err = tx.Conn().PgConn().CopyFrom(ctx, st, w.sqlCopyClicks)
	st.close()
	if err != nil {
		return false, fmt.Errorf("stage click deltas: %w", err)
	}
	if where != "" {
		if res.Expired, err = countExpired(ctx, tx, where); err != nil {
			return false, err
		}
	}
	tag, err := tx.Exec(ctx, w.upsertFor(where), finalUntil)
	if err != nil {
		return false, fmt.Errorf("upsert url_clicks: %w", err)
	}
	res.ClickRows += tag.RowsAffected()
	return true, nil
}

// insertThenUpsertLate runs writeClicks' two statements in the savepoint
// sp and releases it: the new rows inserted, then the late deltas upserted.
func insertThenUpsertLate(ctx context.Context, sp pgx.Tx, table, where string, finalUntil any) (int64, error) {
	ins, err := sp.Exec(ctx, clicksStatement(table, where, "late_clicks = 0", false), finalUntil)
	if err != nil {
		return 0, err
	}
	late, err := sp.Exec(ctx, clicksStatement(table, where, "late_clicks <> 0", true), finalUntil)
	if err != nil {
		return 0, err
	}
	return ins.RowsAffected() + late.RowsAffected(), sp.Commit(ctx)
}

func (w *Writer) upsertFor(where string) string {
	if where == "" {
		return w.sqlUpsertClicks
	}
	return upsertClicks(pgx.Identifier{w.opts.Schema, "url_clicks"}.Sanitize(), where)
}

// tryInsert reports whether this checkpoint tries the insert of new rows
// first.
func (w *Writer) tryInsert() bool {
	w.insertMu.Lock()
	defer w.insertMu.Unlock()
	if w.skipInsert > 0 {
		w.skipInsert--
		return false
	}
	return true
}

// insertDone records how the insert of new rows went: after a failure
// the next 8 checkpoints upsert straight away, doubling to 256 while the
// inserts keep failing (several replicas emitting the same windows, early
// results).
func (w *Writer) insertDone(ok bool) {
	w.insertMu.Lock()
	defer w.insertMu.Unlock()
	if ok {
		w.backoff = 0
		return
	}
	w.backoff = min(max(2*w.backoff, 8), 256)
	w.skipInsert = w.backoff
}

func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func (w *Writer) commitOnce(ctx context.Context, cp *Checkpoint) (res Result, err error) {
	res.FinalUntil = NoWatermark
	if err := w.ensureSpans(ctx, cp.Deltas.spans); err != nil {
		return res, err
	}
	conn, err := w.pool.Acquire(ctx)
	if err != nil {
		return res, fmt.Errorf("acquire postgres connection: %w", err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("begin checkpoint: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()

	// 1. Fencing first: fail before writing anything (fencing).
	batch := &pgx.Batch{}
	for _, u := range cp.Partitions {
		batch.Queue(w.sqlCAS, w.opts.Group, w.opts.Topic, u.Partition,
			u.Next.NextOffset, tsArg(u.Next.Watermark), u.Next.RestartOffset,
			u.Expect.NextOffset, u.Expect.RestartOffset, tsArg(u.Expect.Watermark),
			u.Next.DedupOffset, tsArg(u.Next.DedupClock), u.Expect.DedupOffset, tsArg(u.Expect.DedupClock),
			u.Next.DeadLetterPartition, u.Next.DeadLetterOffset)
	}
	br := tx.SendBatch(ctx, batch)
	var fenced []int32
	for _, u := range cp.Partitions {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return res, fmt.Errorf("update checkpoint of partition %d: %w", u.Partition, err)
		}
		if tag.RowsAffected() != 1 {
			fenced = append(fenced, u.Partition)
		}
	}
	if err := br.Close(); err != nil {
		return res, fmt.Errorf("update checkpoints: %w", err)
	}
	if len(fenced) > 0 {
		fe := &FencedError{Partitions: fenced, Expected: map[int32]Row{}}
		for _, u := range cp.Partitions {
			if slices.Contains(fenced, u.Partition) {
				fe.Expected[u.Partition] = u.Expect
			}
		}
		_ = tx.Rollback(ctx)
		fe.Found, _ = w.ReadRows(ctx, fenced)
		return res, fe
	}

	// 2. The global watermark, after our own rows moved: windows ending at
	// or before it are final. And the expired spans, under the lock that
	// Maintain takes exclusively to move them: until this transaction ends
	// no partition it may write is expired and dropped.
	batch = &pgx.Batch{}
	batch.Queue(`SELECT pg_advisory_xact_lock_shared(hashtext($1))`, expiryLockName(w.opts.Schema))
	batch.Queue(w.sqlExpiry)
	batch.Queue(w.sqlGlobalMin, w.opts.Group, w.opts.Topic)
	batch.Queue(w.sqlTotalsState)
	br = tx.SendBatch(ctx, batch)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return res, fmt.Errorf("lock expiry: %w", err)
	}
	expired, err := scanExpiry(br.Query())
	if err != nil {
		_ = br.Close()
		return res, err
	}
	var rowsN, wmN int
	var minWM *time.Time
	if err := br.QueryRow().Scan(&rowsN, &wmN, &minWM); err != nil {
		_ = br.Close()
		return res, fmt.Errorf("read global watermark: %w", err)
	}
	totals, err := w.readTotalsState(ctx, br.QueryRow())
	if err != nil {
		_ = br.Close()
		return res, err
	}
	if err := br.Close(); err != nil {
		return res, fmt.Errorf("read global watermark: %w", err)
	}
	if cp.TotalsWindow > 0 && cp.Deltas.nClicks > 0 && totals.size != cp.TotalsWindow {
		return res, &errSwitchTotals{size: cp.TotalsWindow}
	}
	var finalUntil any // NULL: nothing is final
	if cp.TopicPartitions > 0 && rowsN >= cp.TopicPartitions && wmN == rowsN && minWM != nil {
		finalUntil = *minWM
		res.FinalUntil = minWM.UnixMilli()
	}

	// 3. The deltas. Deltas of windows whose span expired (late clicks, a
	// replay) are not written to url_clicks, only counted; they still add
	// to url_totals (to url_totals_base: expired_before never passes
	// folded_before).
	if cp.Deltas.nClicks > 0 {
		where := expiredWhere(cp.Deltas.spans, expired)
		staged := true
		if cp.Deltas.spilled {
			err = w.writeSpilled(ctx, tx, cp.Deltas, where, finalUntil, &res)
		} else {
			staged, err = w.writeMerged(ctx, tx, cp, where, expired, totals, finalUntil, &res)
		}
		if err != nil {
			return res, err
		}
		if cp.TotalsWindow > 0 && staged {
			tag, err := tx.Exec(ctx, w.sqlUpsertTotals, cp.TotalsWindow, totals.foldedArg())
			if err != nil {
				return res, fmt.Errorf("upsert url_totals: %w", err)
			}
			res.TotalRows = tag.RowsAffected()
		}
	}

	// 4. Rows written earlier (early results, other partitions) whose window
	// the global watermark has now passed.
	if finalUntil != nil {
		tag, err := tx.Exec(ctx, w.sqlFinal, finalUntil, w.opts.FinalizeBatch)
		if err != nil {
			return res, fmt.Errorf("finalize windows: %w", err)
		}
		res.Finalized = tag.RowsAffected()
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("commit checkpoint: %w", err)
	}
	return res, nil
}
