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
	URL         string
	WindowStart time.Time
	WindowEnd   time.Time
	Clicks      int64
	LateClicks  int64
	Final       bool
	UpdatedAt   time.Time
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
	var t *time.Time
	err = r.pool.QueryRow(ctx, `SELECT max(window_start) FROM `+r.table("url_clicks")+`
WHERE window_end - window_start = $1`, size).Scan(&t)
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
WHERE window_end - window_start = $1 AND window_start = $2
ORDER BY clicks DESC, url LIMIT $3`, size, start, limit)
	if err != nil {
		return nil, fmt.Errorf("query top urls: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[WindowCount])
}

// URL returns a URL's most recent windows (newest first, at most limit)
// and its all-time total (0 when unknown).
func (r *Reader) URL(ctx context.Context, url string, limit int) ([]WindowCount, int64, error) {
	rows, err := r.pool.Query(ctx, `SELECT url, window_start, window_end, clicks, late_clicks, final, updated_at
FROM `+r.table("url_clicks")+`
WHERE url = $1 ORDER BY window_start DESC, window_end LIMIT $2`, url, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("query url windows: %w", err)
	}
	windows, err := pgx.CollectRows(rows, pgx.RowToStructByPos[WindowCount])
	if err != nil {
		return nil, 0, fmt.Errorf("query url windows: %w", err)
	}
	var total int64
	err = r.pool.QueryRow(ctx, `SELECT coalesce(sum(clicks), 0) FROM `+r.table("url_totals")+` WHERE url = $1`, url).Scan(&total)
	if err != nil {
		return nil, 0, fmt.Errorf("query url total: %w", err)
	}
	return windows, total, nil
}

// Totals returns the sum of url_totals and the number of URLs.
func (r *Reader) Totals(ctx context.Context) (clicks, urls int64, err error) {
	err = r.pool.QueryRow(ctx, `SELECT coalesce(sum(clicks), 0), count(*) FROM `+r.table("url_totals")).Scan(&clicks, &urls)
	if err != nil {
		err = fmt.Errorf("query totals: %w", err)
	}
	return clicks, urls, err
}
