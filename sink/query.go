package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// WindowCount is one url_clicks row.
type WindowCount struct {
	URL         string    `json:"url"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	Clicks      int64     `json:"clicks"`
	LateClicks  int64     `json:"late_clicks"`
	Final       bool      `json:"final"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Reader answers the read queries of `clickagg query` and the demo.
type Reader struct {
	pool   *pgxpool.Pool
	schema string
}

// NewReader returns a Reader over the tables in schema.
func NewReader(pool *pgxpool.Pool, schema string) (*Reader, error) {
	if schema == "" {
		schema = DefaultSchema
	}
	if err := ValidateSchemaName(schema); err != nil {
		return nil, err
	}
	return &Reader{pool: pool, schema: schema}, nil
}

func (r *Reader) table(name string) string { return pgx.Identifier{r.schema, name}.Sanitize() }

// LatestWindow returns the start of the newest window of the given size
// that has rows; ok is false when there is none.
func (r *Reader) LatestWindow(ctx context.Context, size time.Duration) (start time.Time, ok bool, err error) {
	t, err := windowBound(ctx, r.pool, r.schema, size, newestWindow)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("find latest %s window: %w", size, err)
	}
	if t == nil {
		return time.Time{}, false, nil
	}
	return *t, true, nil
}

// Top returns the limit URLs with the most clicks in the window of the
// given size starting at start.
func (r *Reader) Top(ctx context.Context, size time.Duration, start time.Time, limit int) ([]WindowCount, error) {
	rows, err := r.pool.Query(ctx, `SELECT url, window_start, window_end, clicks, late_clicks, final, updated_at
FROM `+r.table("url_clicks")+`
WHERE window_size = $1 AND window_start = $2
ORDER BY clicks DESC, url LIMIT $3`, size, start, limit)
	if err != nil {
		return nil, fmt.Errorf("query top urls: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[WindowCount])
}

// URLCount is one URL's clicks summed over several windows.
type URLCount struct {
	URL        string `json:"url"`
	Clicks     int64  `json:"clicks"`
	LateClicks int64  `json:"late_clicks"`
	Windows    int64  `json:"windows"` // windows with rows that the sum covers
}

// TopRange returns the limit URLs with the most clicks summed over the
// windows of the given size that start in [from, to).
func (r *Reader) TopRange(ctx context.Context, size time.Duration, from, to time.Time, limit int) ([]URLCount, error) {
	rows, err := r.pool.Query(ctx, `SELECT url, sum(clicks)::bigint, sum(late_clicks)::bigint, count(*)
FROM `+r.table("url_clicks")+`
WHERE window_size = $1 AND window_start >= $2 AND window_start < $3
GROUP BY url ORDER BY 2 DESC, url LIMIT $4`, size, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("query top urls: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[URLCount])
}

// URL returns a URL's most recent windows of every size (newest first, at
// most limit), those starting in [from, to) when the bounds are not zero,
// and its all-time total (0 when unknown).
func (r *Reader) URL(ctx context.Context, url string, from, to time.Time, limit int) ([]WindowCount, int64, error) {
	windows, err := r.URLWindows(ctx, url, 0, from, to, limit)
	if err != nil {
		return nil, 0, err
	}
	total, err := r.URLTotal(ctx, url)
	if err != nil {
		return nil, 0, err
	}
	return windows, total, nil
}

// URLWindows returns a URL's most recent windows of the given size (0:
// every size), newest first, at most limit, those starting in [from, to)
// when the bounds are not zero.
func (r *Reader) URLWindows(ctx context.Context, url string, size time.Duration, from, to time.Time, limit int) ([]WindowCount, error) {
	var lo, hi, sz any // NB: NULL: unbounded, every size
	if !from.IsZero() {
		lo = from
	}
	if !to.IsZero() {
		hi = to
	}
	if size > 0 {
		sz = size
	}
	rows, err := r.pool.Query(ctx, `SELECT url, window_start, window_end, clicks, late_clicks, final, updated_at
FROM `+r.table("url_clicks")+`
WHERE url = $1 AND ($3::timestamptz IS NULL OR window_start >= $3) AND ($4::timestamptz IS NULL OR window_start < $4)
  AND ($5::interval IS NULL OR window_size = $5)
ORDER BY window_start DESC, window_end LIMIT $2`, url, limit, lo, hi, sz)
	if err != nil {
		return nil, fmt.Errorf("query url windows: %w", err)
	}
	windows, err := pgx.CollectRows(rows, pgx.RowToStructByPos[WindowCount])
	if err != nil {
		return nil, fmt.Errorf("query url windows: %w", err)
	}
	return windows, nil
}

// URLTotal returns a URL's all-time total (0 when unknown).
func (r *Reader) URLTotal(ctx context.Context, url string) (int64, error) {
	var total int64
	err := r.pool.QueryRow(ctx, `SELECT coalesce(sum(clicks), 0) FROM `+r.table("url_totals")+` WHERE url = $1`, url).Scan(&total)
	if err != nil {
		return 0, fmt.Errorf("query url total: %w", err)
	}
	return total, nil
}

// Totals returns the sum of url_totals and the number of URLs.
func (r *Reader) Totals(ctx context.Context) (clicks, urls int64, err error) {
	err = r.pool.QueryRow(ctx, `SELECT coalesce(sum(clicks), 0), count(*) FROM `+r.table("url_totals")).Scan(&clicks, &urls)
	if err != nil {
		err = fmt.Errorf("query totals: %w", err)
	}
	return clicks, urls, err
}

// ScanWindows calls fn for each url_clicks row of the given window size
// whose window starts in [from, to) (a zero time: unbounded), in no
// particular order. Read-only (the audit's view of the table).
func (r *Reader) ScanWindows(ctx context.Context, size time.Duration, from, to time.Time,
	fn func(url string, start int64, clicks, late int64)) error {
	rows, err := r.pool.Query(ctx, `SELECT url, window_start, clicks, late_clicks FROM `+r.table("url_clicks")+`
WHERE window_end - window_start = $1
  AND ($2::timestamptz IS NULL OR window_start >= $2) AND ($3::timestamptz IS NULL OR window_start < $3)`,
		size, optTime(from), optTime(to))
	if err != nil {
		return fmt.Errorf("read %s windows: %w", size, err)
	}
	defer rows.Close()
	var (
		url          string
		start        time.Time
		clicks, late int64
	)
	for rows.Next() {
		if err := rows.Scan(&url, &start, &clicks, &late); err != nil {
			return fmt.Errorf("read %s windows: %w", size, err)
		}
		fn(url, start.UnixMilli(), clicks, late)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s windows: %w", size, err)
	}
	return nil
}

// ScanTotals calls fn for each url_totals row. Read-only.
func (r *Reader) ScanTotals(ctx context.Context, fn func(url string, clicks int64)) error {
	rows, err := r.pool.Query(ctx, `SELECT url, clicks FROM `+r.table("url_totals"))
	if err != nil {
		return fmt.Errorf("read url_totals: %w", err)
	}
	defer rows.Close()
	var (
		url    string
		clicks int64
	)
	for rows.Next() {
		if err := rows.Scan(&url, &clicks); err != nil {
			return fmt.Errorf("read url_totals: %w", err)
		}
		fn(url, clicks)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read url_totals: %w", err)
	}
	return nil
}

func optTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// NewReadPool opens a connection pool for reading only: every transaction
// is read-only (default_transaction_read_only), so a reader can never
// write, and it works against a hot standby. The caller closes it.
func NewReadPool(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse postgres DSN: %w", redactErr(err))
	}
	cfg.MaxConns = 2
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	cfg.ConnConfig.RuntimeParams["application_name"] = "clickagg-audit"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", redactErr(err))
	}
	return pool, nil
}
