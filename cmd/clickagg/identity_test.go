package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/clickagg/clickagg/internal/testutil/pgtest"
	"github.com/clickagg/clickagg/sink"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// migratedDB returns a fresh database, migrated by `clickagg migrate`,
// and a pool on it.
func migratedDB(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	dsn := pgtest.DSN(t)
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"migrate", "--postgres", dsn}, &stdout, &stderr); code != exitOK {
		t.Fatalf("migrate: exit %d: %s", code, stderr.String())
	}
	pool, err := sink.NewPool(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return dsn, pool
}

// TestRunRefusesAnotherPipeline: on a schema group a owns, `clickagg run`
// as group b, or as group a with url.normalize turned on, exits 2 before
// consuming anything, with one line naming the owner (or the change) and
// the ways out; the owner's row is unchanged. With --takeover, b becomes
// the owner; a window size added later is logged once at warn level.
func TestRunRefusesAnotherPipeline(t *testing.T) {
	ctx := context.Background()
	dsn, pool := migratedDB(t)
	claimAs := func(args ...string) (*observer.ObservedLogs, error) {
		t.Helper()
		cfg, err := load(t, append([]string{"--postgres", dsn}, args...), nil, "")
		if err != nil {
			t.Fatal(err)
		}
		core, logs := observer.New(zapcore.InfoLevel)
		return logs, claimPipeline(ctx, pool, cfg, cfg.pipelineOptions("t", nil, nil), zap.New(core))
	}
	if _, err := claimAs("--group", "a"); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		// NB: no broker listens there: a run that got past the check
		// would hang, not exit 2.
		args = append([]string{"run", "--postgres", dsn, "--http-addr", "off", "--state-dir", t.TempDir(),
			"--brokers", "127.0.0.1:1", "--log-level", "error"}, args...)
		if code := realMain(args, &stdout, &stderr); code != exitConfig {
			t.Fatalf("%v: exit %d, want %d; stderr %s", args, code, exitConfig, stderr.String())
		}
		out := strings.TrimSpace(stderr.String())
		if strings.Count(out, "\n") != 0 {
			t.Errorf("%v: want one line, got:\n%s", args, out)
		}
		return out
	}
	out := run("--group", "b")
	t.Logf("refusal: %s", out)
	for _, want := range []string{`owned by group "a" on topic "clicks"`, "--takeover", "clickagg reset", "postgres_schema"} {
		if !strings.Contains(out, want) {
			t.Errorf("refusal of group b lacks %q: %s", want, out)
		}
	}
	out = run("--group", "a", "--url-normalize")
	if !strings.Contains(out, "url.normalize false → true") || !strings.Contains(out, "--takeover") {
		t.Errorf("refusal of url.normalize lacks the change or the ways out: %s", out)
	}
	if id, _, err := sink.ReadPipeline(ctx, pool, sink.DefaultSchema); err != nil || id.Group != "a" || id.Settings["url.normalize"] != "false" {
		t.Fatalf("after the refusals the row is %+v, %v; want group a's", id, err)
	}

	logs, err := claimAs("--group", "b", "--takeover")
	if err != nil {
		t.Fatalf("takeover: %v", err)
	}
	if got := logs.FilterMessageSnippet(`took over schema clickagg from group "a"`).Len(); got != 1 {
		t.Errorf("takeover logged %d times, want once: %v", got, logs.All())
	}
	logs, err = claimAs("--group", "b", "--windows", "1m,5m")
	if err != nil {
		t.Fatal(err)
	}
	const added = "window size 5m added: its rows start at the current position; earlier windows of 5m are not backfilled — see clickagg backfill / reprocess"
	if got := logs.FilterMessage(added).FilterLevelExact(zapcore.WarnLevel).Len(); got != 1 || logs.Len() != 1 {
		t.Errorf("adding 5m: logs %v, want one warning %q", logs.All(), added)
	}
	if logs, err = claimAs("--group", "b", "--windows", "1m,5m"); err != nil || logs.Len() != 0 {
		t.Errorf("the same sizes again: %v, logs %v; want nothing logged", err, logs.All())
	}
	if logs, err = claimAs("--group", "b", "--windows", "5m"); err != nil || logs.FilterMessageSnippet("window size 1m removed").Len() != 1 {
		t.Errorf("removing 1m: %v, logs %v", err, logs.All())
	}
}

// TestResetCommand: `clickagg reset` asks for the schema's name and
// deletes nothing without it; with it, or with --yes, the counts, the
// checkpoints and the owner are gone.
func TestResetCommand(t *testing.T) {
	ctx := context.Background()
	dsn, pool := migratedDB(t)
	var stdout, stderr bytes.Buffer
	seed := func() {
		t.Helper()
		if _, err := pool.Exec(ctx, `INSERT INTO clickagg.url_totals_base (url, clicks) VALUES ('/a', 5);
INSERT INTO clickagg.checkpoints (consumer_group, topic, partition, next_offset, restart_offset) VALUES ('a', 'clicks', 0, 5, 5)`); err != nil {
			t.Fatal(err)
		}
	}
	rows := func() (n int) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM clickagg.url_totals) + (SELECT count(*) FROM clickagg.checkpoints)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	reset := func(input string, args ...string) int {
		t.Helper()
		old := stdin
		stdin = strings.NewReader(input)
		defer func() { stdin = old }()
		stdout.Reset()
		stderr.Reset()
		return realMain(append([]string{"reset", "--postgres", dsn}, args...), &stdout, &stderr)
	}
	seed()
	if code := reset("yes\n"); code != exitConfig || rows() != 2 {
		t.Fatalf("wrong confirmation: exit %d, %d rows left; want 2, nothing deleted", code, rows())
	}
	if !strings.Contains(stdout.String(), "Type the schema name") || !strings.Contains(stdout.String(), `group "a"`) && !strings.Contains(stdout.String(), "no recorded owner") {
		t.Errorf("prompt: %q", stdout.String())
	}
	if code := reset("clickagg\n"); code != exitOK || rows() != 0 {
		t.Fatalf("confirmed: exit %d (%s), %d rows left; want 0", code, stderr.String(), rows())
	}
	seed()
	if code := reset("", "--yes"); code != exitOK || rows() != 0 {
		t.Fatalf("--yes: exit %d (%s), %d rows left; want 0", code, stderr.String(), rows())
	}
}

// TestReprocessRefusesBadSchemas: reprocess needs --into, never recounts
// into the live schema, and keeps the views' schema apart: exit 2, before
// anything is written.
func TestReprocessRefusesBadSchemas(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--into SCHEMA is required"},
		{[]string{"--into", "clickagg"}, "--into clickagg is postgres_schema"},
		{[]string{"--into", "Bad-Name"}, "must match"},
		{[]string{"--into", "v2", "--live-schema", "v2"}, "--live-schema v2 must differ"},
		{[]string{"--into", "v2", "--from", "yesterday"}, "--from \"yesterday\": must be an RFC 3339 time"},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"reprocess", "--postgres", "postgres://u@127.0.0.1:1/db?connect_timeout=1"}, tc.args...)
		if code := realMain(args, &stdout, &stderr); code != exitConfig || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), exitConfig, tc.want)
		}
	}
}
