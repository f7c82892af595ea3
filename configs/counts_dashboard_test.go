package configs

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/clickagg/clickagg/internal/testutil/pgtest"
	"github.com/clickagg/clickagg/sink"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	countsDashboardFile = "grafana/clickagg-counts-dashboard.json"
	pgPlugin            = "grafana-postgresql-datasource"
	oneMinute           = "window_size = interval '1 minute'"
)

// sqlQuery is one SQL query of the counts dashboard.
type sqlQuery struct {
	where  string
	sql    string
	format string // table, time_series ("" for a variable's query)
	panel  int    // panel id, 0 for a variable
}

// loadCountsDashboard parses the dashboard and returns its SQL queries,
// failing t for a panel without a PostgreSQL data source or a query.
func loadCountsDashboard(t *testing.T) []sqlQuery {
	t.Helper()
	b, err := os.ReadFile(countsDashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID           string `json:"uid"`
		Title         string `json:"title"`
		SchemaVersion int    `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name       string            `json:"name"`
				Type       string            `json:"type"`
				Query      any               `json:"query"`
				Datasource map[string]string `json:"datasource"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int                `json:"id"`
			Type       string             `json:"type"`
			Title      string             `json:"title"`
			Datasource map[string]string  `json:"datasource"`
			GridPos    struct{ X, W int } `json:"gridPos"`
			Targets    []struct {
				RefID      string            `json:"refId"`
				Datasource map[string]string `json:"datasource"`
				Format     string            `json:"format"`
				RawSQL     string            `json:"rawSql"`
				RawQuery   bool              `json:"rawQuery"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", countsDashboardFile, err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("uid %q, title %q, schemaVersion %d", d.UID, d.Title, d.SchemaVersion)
	}
	dsVar := ""
	for _, v := range d.Templating.List {
		if v.Type == "datasource" && v.Query == pgPlugin {
			dsVar = "${" + v.Name + "}"
		}
	}
	if dsVar == "" {
		t.Fatalf("no datasource variable of type %s", pgPlugin)
	}
	okDS := func(ds map[string]string) bool { return ds["type"] == pgPlugin && ds["uid"] == dsVar }
	var qs []sqlQuery
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		s, _ := v.Query.(string)
		if !okDS(v.Datasource) || strings.TrimSpace(s) == "" {
			t.Errorf("variable %s: datasource %v, query %q: want %s and SQL", v.Name, v.Datasource, s, dsVar)
		}
		qs = append(qs, sqlQuery{where: "variable " + v.Name, sql: s})
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if ids[p.ID] {
			t.Errorf("%s: id used twice", where)
		}
		ids[p.ID] = true
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: gridPos x %d w %d outside the 24 columns", where, p.GridPos.X, p.GridPos.W)
		}
		if p.Type == "row" {
			continue
		}
		if !okDS(p.Datasource) {
			t.Errorf("%s: datasource %v, want type %s uid %s", where, p.Datasource, pgPlugin, dsVar)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		for _, tg := range p.Targets {
			if !okDS(tg.Datasource) {
				t.Errorf("%s target %s: datasource %v", where, tg.RefID, tg.Datasource)
			}
			if strings.TrimSpace(tg.RawSQL) == "" || !tg.RawQuery {
				t.Errorf("%s target %s: no raw SQL", where, tg.RefID)
			}
			if tg.Format != "table" && tg.Format != "time_series" {
				t.Errorf("%s target %s: format %q", where, tg.RefID, tg.Format)
			}
			qs = append(qs, sqlQuery{where: where + " " + tg.RefID, sql: tg.RawSQL, format: tg.Format, panel: p.ID})
		}
	}
	return qs
}

// grafanaSQL expands the Grafana macros and variables the dashboard uses
// into plain SQL, as Grafana's PostgreSQL data source does, for the time
// range [from, to] and the url variable. Anything else starting with $ is
// an error: a new macro needs its expansion here.
func grafanaSQL(sql string, from, to time.Time, url string) (string, error) {
	ts := func(t time.Time) string { return "'" + t.UTC().Format(time.RFC3339Nano) + "'" }
	sql = regexp.MustCompile(`\$__timeFilter\(([^)]+)\)`).ReplaceAllString(sql, "$1 BETWEEN "+ts(from)+" AND "+ts(to))
	var err error
	sql = regexp.MustCompile(`\$__timeGroupAlias\(([^,]+),\s*'(\w+)'\)`).ReplaceAllStringFunc(sql, func(m string) string {
		sm := regexp.MustCompile(`\$__timeGroupAlias\(([^,]+),\s*'(\w+)'\)`).FindStringSubmatch(m)
		d, perr := time.ParseDuration(sm[2])
		if perr != nil {
			err = perr
			return m
		}
		s := int64(d / time.Second)
		return fmt.Sprintf(`floor(extract(epoch from %s)/%d)*%d AS "time"`, sm[1], s, s)
	})
	sql = strings.ReplaceAll(sql, "${url:sqlstring}", "'"+strings.ReplaceAll(url, "'", "''")+"'")
	if err == nil && strings.Contains(sql, "$") {
		err = fmt.Errorf("unexpanded macro or variable in %q", sql)
	}
	return sql, err
}

func TestGrafanaSQLExpansion(t *testing.T) {
	from, to := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), time.Date(2026, 1, 2, 4, 4, 5, 0, time.UTC)
	got, err := grafanaSQL("SELECT $__timeGroupAlias(ws, '5m') WHERE $__timeFilter(ws) AND url = ${url:sqlstring}", from, to, "it's")
	want := `SELECT floor(extract(epoch from ws)/300)*300 AS "time" WHERE ws BETWEEN '2026-01-02T03:04:05Z' AND '2026-01-02T04:04:05Z' AND url = 'it''s'`
	if err != nil || got != want {
		t.Errorf("got %q, %v\nwant %q", got, err, want)
	}
	if _, err := grafanaSQL("SELECT $__unixEpochFilter(x)", from, to, ""); err == nil {
		t.Error("an unknown macro was accepted")
	}
}

// TestCountsDashboard parses the counts dashboard and runs every query,
// macros expanded, against a real PostgreSQL with clickagg's schema and a
// few known rows, checking the answers.
func TestCountsDashboard(t *testing.T) {
	qs := loadCountsDashboard(t)
	if len(qs) < 4 {
		t.Fatalf("%d queries, want the variable's and one per panel", len(qs))
	}
	for _, q := range qs {
		if strings.Contains(q.sql, "url_clicks") && !strings.Contains(q.sql, oneMinute) {
			t.Errorf("%s: reads url_clicks without %q (the 1-minute windows)", q.where, oneMinute)
		}
		if strings.Contains(q.sql, "url_clicks") && !strings.Contains(q.sql, "$__timeFilter(window_start)") {
			t.Errorf("%s: not limited to the dashboard's time range ($__timeFilter(window_start))", q.where)
		}
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := sink.Migrate(ctx, conn, sink.DefaultSchema); err != nil {
		t.Fatal(err)
	}
	// Three 1-minute windows of a URL with a quote, one of another URL, a
	// 1-hour window (not a 1-minute one) and a window older than the range.
	now := time.Now().UTC().Truncate(time.Minute)
	quoted := "https://example.com/it's"
	rows := []struct {
		url          string
		start        time.Time
		size         time.Duration
		clicks, late int64
		final        bool
	}{
		{quoted, now.Add(-30 * time.Minute), time.Minute, 10, 1, true},
		{quoted, now.Add(-29 * time.Minute), time.Minute, 20, 2, true},
		{quoted, now.Add(-10 * time.Minute), time.Minute, 30, 3, false},
		{"https://example.com/b", now.Add(-20 * time.Minute), time.Minute, 5, 0, true},
		{"https://example.com/hourly", now.Add(-time.Hour), time.Hour, 1000, 0, false},
		{"https://example.com/old", now.Add(-3 * time.Hour), time.Minute, 500, 0, true},
	}
	pool, err := sink.NewPool(ctx, conn.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	w, err := sink.NewWriter(pool, sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if err := w.EnsurePartitions(ctx, r.size, r.start, r.start); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO clickagg.url_clicks (url, window_start, window_end, window_size, clicks, late_clicks, final) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			r.url, r.start, r.start.Add(r.size), r.size, r.clicks, r.late, r.final); err != nil {
			t.Fatal(err)
		}
	}
	for url, n := range map[string]int64{quoted: 60, "https://example.com/b": 5, "https://example.com/hourly": 1000, "https://example.com/old": 500} {
		if _, err := conn.Exec(ctx, `INSERT INTO clickagg.url_totals_base (url, clicks) VALUES ($1, $2)`, url, n); err != nil {
			t.Fatal(err)
		}
	}

	from, to := now.Add(-time.Hour), now.Add(time.Minute)
	answers := map[int][][]any{}
	var variable [][]any
	for _, q := range qs {
		sql, err := grafanaSQL(q.sql, from, to, quoted)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		res, err := conn.Query(ctx, sql)
		if err != nil {
			t.Errorf("%s: %v\n%s", q.where, err, sql)
			continue
		}
		var got [][]any
		for res.Next() {
			vals, err := res.Values()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, vals)
		}
		if err := res.Err(); err != nil {
			t.Errorf("%s: %v\n%s", q.where, err, sql)
			continue
		}
		if q.format == "time_series" {
			cols := res.FieldDescriptions()
			if len(cols) == 0 || cols[0].Name != "time" {
				t.Errorf("%s: a time series needs a first column named time, has %v", q.where, cols)
			}
		}
		t.Logf("%s: %d rows %v", q.where, len(got), got)
		if q.panel == 0 {
			variable = got
		} else {
			answers[q.panel] = got
		}
	}
	if t.Failed() {
		return
	}

	num := func(v any) float64 {
		switch v := v.(type) {
		case int64:
			return float64(v)
		case float64:
			return v
		case nil:
			return math.NaN()
		case pgtype.Numeric: // sum(bigint)
			f, err := v.Float64Value()
			if err != nil {
				t.Fatal(err)
			}
			return f.Float64
		}
		t.Fatalf("unexpected value %T %v", v, v)
		return 0
	}
	// The URL variable: the all-time leaders, first the largest.
	if len(variable) != 4 || variable[0][0] != "https://example.com/hourly" {
		t.Errorf("url variable: %v", variable)
	}
	// Panel 1, top URLs: 1-minute windows of the range only.
	if top := answers[1]; len(top) != 2 || top[0][0] != quoted || num(top[0][1]) != 60 || num(top[0][2]) != 6 ||
		top[1][0] != "https://example.com/b" || num(top[1][1]) != 5 {
		t.Errorf("top URLs: %v, want %s 60 (6 late), then /b 5", top, quoted)
	}
	// Panel 2, the chosen URL per minute.
	if s := answers[2]; len(s) != 3 || num(s[0][1]) != 10 || num(s[1][1]) != 20 || num(s[2][1]) != 30 || num(s[2][2]) != 3 {
		t.Errorf("clicks per minute of %s: %v", quoted, s)
	}
	// Panel 3, all URLs per minute.
	var sum float64
	for _, r := range answers[3] {
		sum += num(r[1])
	}
	if len(answers[3]) != 4 || sum != 65 {
		t.Errorf("clicks per minute, all URLs: %v, want 4 minutes summing to 65", answers[3])
	}
	// Panel 4, late share per 5-minute bucket: the quoted URL's windows
	// are 10% late, /b's not at all.
	shares := map[float64]int{}
	for _, r := range answers[4] {
		shares[math.Round(num(r[1])*1000)/1000]++
	}
	if n := len(answers[4]); n < 3 || n > 4 || shares[0.1] == 0 || shares[0] != 1 || shares[0.1]+shares[0] != n {
		t.Errorf("late share: %v, want 2 or 3 buckets of 0.1 and one of 0", answers[4])
	}
}
