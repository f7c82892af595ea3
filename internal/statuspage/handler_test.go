package statuspage

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clickagg/clickagg/base"
	"github.com/clickagg/clickagg/checkpoint"
	"github.com/clickagg/clickagg/internal/testutil/pgtest"
	"github.com/clickagg/clickagg/sink"
	"github.com/prometheus/client_golang/prometheus"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// server serves a Handler whose reader appears when set.
type server struct {
	*httptest.Server
	reader atomic.Pointer[sink.Reader]
}

func newServer(t *testing.T, queryTimeout time.Duration) *server {
	t.Helper()
	s := &server{}
	reg := prometheus.NewRegistry()
	checkpoint.NewMetrics(reg)
	h := New(Source{Process: Process{Name: "host-a"}, Windows: []time.Duration{time.Minute, time.Hour},
		Phase:   func() string { return "connecting to postgres" },
		Status:  func() (checkpoint.Status, bool) { return checkpoint.Status{}, false },
		Reader:  s.reader.Load,
		Metrics: reg, QueryTimeout: queryTimeout})
	mux := http.NewServeMux()
	h.Register(mux)
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *server) get(t *testing.T, path string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(s.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// TestPageAndStartup: the page and its assets are served from the binary;
// before PostgreSQL answers /status still says what start-up waits for,
// /api/* answer 503 with that reason, and bad parameters are 400 either way.
func TestPageAndStartup(t *testing.T) {
	s := newServer(t, 0)
	code, hdr, body := s.get(t, "/")
	if code != http.StatusOK || !strings.Contains(body, "<title>clickagg status</title>") ||
		!strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("GET / = %d, CSP %q:\n%.200s", code, hdr.Get("Content-Security-Policy"), body)
	}
	for _, a := range []string{"/assets/app.js", "/assets/style.css"} {
		if code, _, body := s.get(t, a); code != http.StatusOK || len(body) < 100 {
			t.Errorf("GET %s = %d (%d bytes)", a, code, len(body))
		}
	}
	for _, p := range []string{"/assets/", "/assets/index.html", "/assets/nope.js", "/index.html", "/api/", "/api/nope"} {
		if code, _, _ := s.get(t, p); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, code)
		}
	}
	code, _, body = s.get(t, "/status")
	var d Document
	if err := json.Unmarshal([]byte(body), &d); err != nil || code != http.StatusOK {
		t.Fatalf("/status = %d %v: %s", code, err, body)
	}
	if d.Phase != "starting" || d.Starting != "connecting to postgres" || d.Process.Name != "host-a" {
		t.Errorf("/status while starting: %+v", d)
	}
	for _, p := range []string{"/api/top", "/api/top?window=1h&limit=5", "/api/url?url=%2Fa"} {
		code, _, body := s.get(t, p)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, `"error": "postgres not available yet: starting: connecting to postgres"`) {
			t.Errorf("GET %s while starting = %d %s, want 503 with the phase", p, code, body)
		}
	}
	for p, want := range map[string]string{
		"/api/top?window=5m":     `window \"5m\": unknown window size; the configured sizes are 1m, 1h`,
		"/api/top?window=banana": `window \"banana\": unknown window size`,
		"/api/top?limit=0":       `limit \"0\": must be an integer from 1 to 100`,
		"/api/top?limit=101":     `limit \"101\": must be an integer from 1 to 100`,
		"/api/top?limit=ten":     `limit \"ten\": must be an integer`,
		"/api/url":               `url: required`,
		"/api/url?url=" + strings.Repeat("a", sink.MaxURLBytes+1):           `url: 2669 bytes, at most 2668`,
		"/api/url?url=/a&limit=1441":                                        `limit \"1441\": must be an integer from 1 to 1440`,
		"/api/url?url=/a&window=2m":                                         `unknown window size`,
		"/api/url?url=/a&from=yesterday":                                    `from \"yesterday\": must be an RFC 3339 time`,
		"/api/url?url=/a&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z": `from: must be before to`,
	} {
		code, hdr, body := s.get(t, p)
		if code != http.StatusBadRequest || !strings.Contains(body, want) || hdr.Get("Content-Type") != "application/json" {
			t.Errorf("GET %.60s = %d %s %s, want 400 with %s", p, code, hdr.Get("Content-Type"), body, want)
		}
	}
}

const (
	m1 = int64(60_000)
	h1 = 60 * m1
)

// TestAPIReadsPostgres: /api/top and /api/url answer from url_clicks
// through sink.Reader.
func TestAPIReadsPostgres(t *testing.T) {
	ctx := context.Background()
	pool, err := sink.NewPool(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = sink.Migrate(ctx, conn.Conn(), sink.DefaultSchema)
	conn.Release()
	if err != nil {
		t.Fatal(err)
	}
	w, err := sink.NewWriter(pool, sink.Options{Group: "g", Topic: "clicks"})
	if err != nil {
		t.Fatal(err)
	}
	start := sink.Row{Position: base.Position{Watermark: sink.NoWatermark}}
	if _, err := w.InitRow(ctx, 0, start); err != nil {
		t.Fatal(err)
	}
	base0 := t0.UnixMilli()
	cp := &sink.Checkpoint{Partitions: []sink.PartitionUpdate{{Partition: 0, Expect: start,
		Next: sink.Row{Position: base.Position{NextOffset: 10, Watermark: base0}}}}, TotalsWindow: m1}
	for i := range int64(3) {
		cp.Clicks = append(cp.Clicks,
			sink.ClickDelta{URL: "/a", WindowStart: base0 + i*m1, WindowEnd: base0 + (i+1)*m1, Clicks: 10 + i},
			sink.ClickDelta{URL: `/b"<script>`, WindowStart: base0 + i*m1, WindowEnd: base0 + (i+1)*m1, Clicks: 20 + i, LateClicks: 1})
	}
	cp.Clicks = append(cp.Clicks, sink.ClickDelta{URL: "/a", WindowStart: base0, WindowEnd: base0 + h1, Clicks: 33})
	if _, err := w.Commit(ctx, cp); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, 500*time.Millisecond)
	rd, err := sink.NewReader(pool, sink.DefaultSchema)
	if err != nil {
		t.Fatal(err)
	}
	s.reader.Store(rd)

	var top TopAnswer
	getJSON(t, s, "/api/top?window=1m&limit=1", &top)
	if top.Window != "1m" || top.Start == nil || !top.Start.Equal(t0.Add(2*time.Minute)) || !top.End.Equal(t0.Add(3*time.Minute)) ||
		len(top.URLs) != 1 || top.URLs[0].URL != `/b"<script>` || top.URLs[0].Clicks != 22 {
		t.Errorf("top of the newest 1m window, limit 1: %+v", top)
	}
	getJSON(t, s, "/api/top?window=1h", &top)
	if len(top.URLs) != 1 || top.URLs[0].Clicks != 33 {
		t.Errorf("top of the 1h window: %+v", top)
	}
	var u URLAnswer
	getJSON(t, s, "/api/url?url=%2Fa", &u)
	if u.Window != "1m" || u.Total != 33 || len(u.Windows) != 3 || u.Windows[0].Clicks != 10 || u.Windows[2].Clicks != 12 ||
		!u.Windows[0].Start.Equal(t0) {
		t.Errorf("/a's 1m windows, oldest first: %+v", u)
	}
	q := url.Values{"url": {"/a"}, "window": {"1m"}, "from": {t0.Add(time.Minute).Format(time.RFC3339)}, "limit": {"1"}}
	getJSON(t, s, "/api/url?"+q.Encode(), &u)
	if len(u.Windows) != 1 || u.Windows[0].Clicks != 12 {
		t.Errorf("/a's newest 1m window from t0+1m: %+v", u)
	}
	getJSON(t, s, "/api/url?url=%2Fnever&window=1h", &u)
	if u.Total != 0 || u.Windows == nil || len(u.Windows) != 0 {
		t.Errorf("unknown URL: %+v, want no windows ([]) and total 0", u)
	}
	// A query that waits on a lock times out: 503, saying so.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE clickagg.url_clicks IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	code, _, body := s.get(t, "/api/url?url=%2Fa")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "postgres query timed out after 500ms") {
		t.Errorf("/api/url with url_clicks locked: %d %s, want 503 timed out", code, body)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	pool.Close() // PostgreSQL gone: 503, saying so without details
	code, _, body = s.get(t, "/api/top")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "postgres query failed") {
		t.Errorf("/api/top with the pool closed: %d %s", code, body)
	}
}

func getJSON(t *testing.T, s *server, path string, v any) {
	t.Helper()
	code, _, body := s.get(t, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}
