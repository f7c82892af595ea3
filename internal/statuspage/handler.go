package statuspage

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clickagg/clickagg/checkpoint"
	"github.com/clickagg/clickagg/sink"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

//go:embed web
var web embed.FS

// Limits of the query parameters.
const (
	DefaultTopLimit = 10
	MaxTopLimit     = 100
	DefaultURLLimit = 60 // an hour of 1m windows
	MaxURLLimit     = 1440
	// DefaultQueryTimeout bounds each PostgreSQL query of /api/*.
	DefaultQueryTimeout = 3 * time.Second
)

// Source is what the handlers read. The functions are called per request:
// the pipeline and the reader appear once start-up has reached them.
type Source struct {
	Process Process
	Windows []time.Duration // the configured sizes; the first is the default
	// Phase says what start-up waits for.
	Phase func() string
	// Status returns the pipeline's status; ok is false before it runs.
	Status func() (checkpoint.Status, bool)
	// Reader returns the PostgreSQL reader; nil until PostgreSQL answered.
	Reader       func() *sink.Reader
	Metrics      prometheus.Gatherer
	Log          *zap.Logger
	QueryTimeout time.Duration // 0: DefaultQueryTimeout
}

// Handler serves the page and its JSON.
type Handler struct {
	src   Source
	meter Meter
}

// New returns the handler of src.
func New(src Source) *Handler {
	if src.QueryTimeout <= 0 {
		src.QueryTimeout = DefaultQueryTimeout
	}
	if src.Log == nil {
		src.Log = zap.NewNop()
	}
	return &Handler{src: src}
}

// Register adds the page (/ and /assets/), /status, /api/top and /api/url
// to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	assets, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // NB: the embedded folder is part of the build
	}
	files := http.FileServerFS(assets)
	mux.HandleFunc("GET /{$}", func(rw http.ResponseWriter, r *http.Request) {
		pageHeaders(rw)
		http.ServeFileFS(rw, r, assets, "index.html")
	})
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") || r.URL.Path == "index.html" {
			http.NotFound(rw, r) // NB: no directory listings
			return
		}
		pageHeaders(rw)
		files.ServeHTTP(rw, r)
	})))
	mux.HandleFunc("GET /status", h.status)
	mux.HandleFunc("GET /api/top", h.top)
	mux.HandleFunc("GET /api/url", h.url)
}

// pageHeaders keep the page to its own assets: no inline scripts, nothing
// from elsewhere.
func pageHeaders(rw http.ResponseWriter) {
	rw.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	rw.Header().Set("X-Content-Type-Options", "nosniff")
	rw.Header().Set("Cache-Control", "no-cache")
}

// Snapshot builds the current /status document.
func (h *Handler) Snapshot(now time.Time) Document {
	in := Input{Now: now, Process: h.src.Process, Windows: h.src.Windows, Phase: h.src.Phase()}
	if st, ok := h.src.Status(); ok {
		in.Status = &st
	}
	fams, err := h.src.Metrics.Gather()
	if err != nil {
		h.src.Log.Debug("status page: gather metrics", zap.Error(err))
	}
	in.Metrics = fams
	rate, over, ok := h.meter.Observe(now, metricValues(fams).sum(consumedTotal))
	if ok {
		r := math.Round(rate*10) / 10
		in.Rate = &r
	}
	in.RateOver = over.Round(time.Millisecond)
	return Build(in)
}

func (h *Handler) status(rw http.ResponseWriter, _ *http.Request) {
	writeJSON(rw, http.StatusOK, h.Snapshot(time.Now()))
}

// TopAnswer is the /api/top answer: the top URLs of the newest window of
// the size (Start is null, URLs empty, while there is none).
type TopAnswer struct {
	Window string             `json:"window"`
	Start  *time.Time         `json:"start"`
	End    *time.Time         `json:"end"`
	URLs   []sink.WindowCount `json:"urls"`
}

func (h *Handler) top(rw http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	size, err := h.window(q.Get("window"))
	if err != nil {
		badRequest(rw, err)
		return
	}
	limit, err := intParam(q.Get("limit"), "limit", DefaultTopLimit, MaxTopLimit)
	if err != nil {
		badRequest(rw, err)
		return
	}
	rd, ctx, cancel, ok := h.reader(rw, r)
	if !ok {
		return
	}
	defer cancel()
	ans := TopAnswer{Window: SizeString(size), URLs: []sink.WindowCount{}}
	start, found, err := rd.LatestWindow(ctx, size)
	if err == nil && found {
		end := start.Add(size).UTC()
		start = start.UTC()
		ans.Start, ans.End = &start, &end
		ans.URLs, err = rd.Top(ctx, size, start, limit)
	}
	if err != nil {
		h.queryFailed(rw, ctx, err)
		return
	}
	writeJSON(rw, http.StatusOK, ans)
}

// URLAnswer is the /api/url answer: one URL's windows of one size, oldest
// first, and its all-time total.
type URLAnswer struct {
	URL     string         `json:"url"`
	Window  string         `json:"window"`
	Total   int64          `json:"total"`
	Windows []URLWindowRow `json:"windows"`
}

// URLWindowRow is one window of a URLAnswer.
type URLWindowRow struct {
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	Clicks     int64     `json:"clicks"`
	LateClicks int64     `json:"late_clicks"`
	Final      bool      `json:"final"`
}

func (h *Handler) url(rw http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	u := q.Get("url")
	switch {
	case u == "":
		badRequest(rw, errors.New("url: required"))
		return
	case len(u) > sink.MaxURLBytes:
		badRequest(rw, fmt.Errorf("url: %d bytes, at most %d", len(u), sink.MaxURLBytes))
		return
	}
	size, err := h.window(q.Get("window"))
	if err != nil {
		badRequest(rw, err)
		return
	}
	limit, err := intParam(q.Get("limit"), "limit", DefaultURLLimit, MaxURLLimit)
	if err != nil {
		badRequest(rw, err)
		return
	}
	from, err := timeParam(q.Get("from"), "from")
	if err != nil {
		badRequest(rw, err)
		return
	}
	to, err := timeParam(q.Get("to"), "to")
	if err != nil {
		badRequest(rw, err)
		return
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		badRequest(rw, errors.New("from: must be before to"))
		return
	}
	rd, ctx, cancel, ok := h.reader(rw, r)
	if !ok {
		return
	}
	defer cancel()
	rows, err := rd.URLWindows(ctx, u, size, from, to, limit)
	var total int64
	if err == nil {
		total, err = rd.URLTotal(ctx, u)
	}
	if err != nil {
		h.queryFailed(rw, ctx, err)
		return
	}
	ans := URLAnswer{URL: u, Window: SizeString(size), Total: total, Windows: make([]URLWindowRow, 0, len(rows))}
	for _, w := range slices.Backward(rows) {
		ans.Windows = append(ans.Windows, URLWindowRow{Start: w.WindowStart.UTC(), End: w.WindowEnd.UTC(),
			Clicks: w.Clicks, LateClicks: w.LateClicks, Final: w.Final})
	}
	writeJSON(rw, http.StatusOK, ans)
}

// window parses a window size parameter: one of the configured sizes, the
// first when empty.
func (h *Handler) window(v string) (time.Duration, error) {
	if len(h.src.Windows) == 0 {
		return 0, errors.New("window: no window sizes configured")
	}
	if v == "" {
		return h.src.Windows[0], nil
	}
	d, err := time.ParseDuration(v)
	if err == nil && slices.Contains(h.src.Windows, d) {
		return d, nil
	}
	var sizes []string
	for _, w := range h.src.Windows {
		sizes = append(sizes, SizeString(w))
	}
	return 0, fmt.Errorf("window %q: unknown window size; the configured sizes are %s", clip(v), strings.Join(sizes, ", "))
}

func intParam(v, name string, def, hi int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > hi {
		return 0, fmt.Errorf("%s %q: must be an integer from 1 to %d", name, clip(v), hi)
	}
	return n, nil
}

func timeParam(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q: must be an RFC 3339 time (2026-01-01T00:00:00Z)", name, clip(v))
	}
	return t, nil
}

// clip shortens a parameter echoed in an error.
func clip(v string) string {
	if len(v) > 64 {
		return v[:64] + "…"
	}
	return v
}

// reader returns the PostgreSQL reader and a context bounded by the query
// timeout, or answers 503 with the reason when PostgreSQL is not reached
// yet.
func (h *Handler) reader(rw http.ResponseWriter, r *http.Request) (*sink.Reader, context.Context, context.CancelFunc, bool) {
	rd := h.src.Reader()
	if rd == nil {
		writeJSON(rw, http.StatusServiceUnavailable, errorBody{"postgres not available yet: starting: " + h.src.Phase()})
		return nil, nil, nil, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.src.QueryTimeout)
	return rd, ctx, cancel, true
}

// queryFailed answers 503. NB: the error goes to the log only; the answer
// says what kind of failure it was, never connection details.
func (h *Handler) queryFailed(rw http.ResponseWriter, ctx context.Context, err error) {
	h.src.Log.Warn("status page: postgres query failed", zap.Error(err))
	msg := "postgres query failed (details in the log)"
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		msg = fmt.Sprintf("postgres query timed out after %s", h.src.QueryTimeout)
	}
	writeJSON(rw, http.StatusServiceUnavailable, errorBody{msg})
}

type errorBody struct {
	Error string `json:"error"`
}

func badRequest(rw http.ResponseWriter, err error) {
	writeJSON(rw, http.StatusBadRequest, errorBody{err.Error()})
}

func writeJSON(rw http.ResponseWriter, code int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Cache-Control", "no-store")
	rw.Header().Set("X-Content-Type-Options", "nosniff")
	rw.WriteHeader(code)
	enc := json.NewEncoder(rw)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
