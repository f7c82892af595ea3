package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/testutil"
)

// audit runs `clickagg audit` with the test's broker, database and the
// window sizes of run, and returns its exit code and output.
func (e *env) audit(args ...string) (code int, stdout, stderr string) {
	e.t.Helper()
	base := []string{"audit", "--brokers", e.brokers, "--topic", e.topic, "--group", e.group,
		"--windows", "1m,1h", "--log-format", "json"}
	cmd := exec.Command(binary, append(base, args...)...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+e.dsn)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	go func() { <-ctx.Done(); _ = cmd.Process.Kill() }()
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	}
	if err != nil {
		e.t.Fatalf("audit: %v\n%s", err, errb.String())
	}
	return 0, out.String(), errb.String()
}

type auditReport struct {
	Result   string `json:"result"`
	Compared int64  `json:"windows_compared"`
	Equal    int64  `json:"equal"`
	Read     int64  `json:"records_read"`
	Totals   struct {
		Compared bool  `json:"compared"`
		URLs     int64 `json:"urls"`
	} `json:"totals"`
	NotRetained []struct {
		Partition int32 `json:"partition"`
	} `json:"not_retained"`
}

// TestAudit: after a clean run the audit finds every row equal (exit 0);
// a row changed by hand and a row deleted are found and named (exit 1);
// once records the recount needs are deleted from the topic, it says the
// range is no longer retained and which partition (exit 2).
func TestAudit(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	st := e.produce(ctx, gen.Options{Count: 9000, URLs: 150, Zipf: 1.1, Seed: 23, StartTime: time.Now().Add(-2 * time.Hour),
		EventRate: 2, LateFraction: 0.02, OutOfOrderFraction: 0.1, InvalidFraction: 0.02, Unkeyed: true})
	p := e.run("--state-dir", t.TempDir(), "--exit-when-idle", "1s")
	if code := p.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("run: exit code %d", code)
	}
	// Independently of the audit: the tables are exact.
	exp := e.expectExact(ctx, e.records(ctx))

	code, out, errOut := e.audit("--json")
	var rep auditReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("audit --json: %v\n%s\n%s", err, out, errOut)
	}
	if code != 0 || rep.Result != "equal" {
		t.Fatalf("clean run: audit exit %d, result %q:\n%s", code, rep.Result, out)
	}
	if rep.Compared != int64(len(exp.Clicks)) || rep.Equal != rep.Compared || rep.Read != st.Produced {
		t.Fatalf("audit compared %d rows (%d equal) over %d records; the oracle has %d rows over %d produced",
			rep.Compared, rep.Equal, rep.Read, len(exp.Clicks), st.Produced)
	}
	if !rep.Totals.Compared || rep.Totals.URLs != int64(len(exp.Totals)) {
		t.Fatalf("url_totals: compared %v, %d URLs; the oracle has %d", rep.Totals.Compared, rep.Totals.URLs, len(exp.Totals))
	}
	if !strings.Contains(errOut, `"msg":"audit progress"`) {
		t.Errorf("no progress log line on a non-terminal stderr:\n%s", errOut)
	}

	// A row changed by hand.
	var changed, deleted string
	if err := e.pool.QueryRow(ctx, `UPDATE clickagg.url_clicks SET clicks = clicks + 1
WHERE (url, window_start, window_end) = (SELECT url, window_start, window_end FROM clickagg.url_clicks
  WHERE window_end - window_start = interval '1 minute' ORDER BY clicks DESC, url LIMIT 1) RETURNING url`).Scan(&changed); err != nil {
		t.Fatal(err)
	}
	code, out, _ = e.audit()
	if code != 1 || !strings.Contains(out, `url_clicks differing "`+changed+`" 1m0s window`) || !strings.Contains(out, "1 differing") {
		t.Fatalf("after an UPDATE of %s: exit %d, want 1 naming the row:\n%s", changed, code, out)
	}
	// A row deleted.
	if err := e.pool.QueryRow(ctx, `DELETE FROM clickagg.url_clicks
WHERE (url, window_start, window_end) = (SELECT url, window_start, window_end FROM clickagg.url_clicks
  WHERE window_end - window_start = interval '1 hour' AND url <> $1 ORDER BY clicks, url LIMIT 1) RETURNING url`, changed).Scan(&deleted); err != nil {
		t.Fatal(err)
	}
	code, out, _ = e.audit()
	if code != 1 || !strings.Contains(out, `url_clicks missing "`+deleted+`" 1h0m0s window`) || !strings.Contains(out, "1 missing") {
		t.Fatalf("after a DELETE of %s: exit %d, want 1 naming the row:\n%s", deleted, code, out)
	}
	t.Logf("audit after the changes:\n%s", out)

	// Records deleted from the topic, as retention would.
	adm, done := e.admin()
	defer done()
	if err := testutil.DeleteRecords(ctx, adm, e.topic, 1, 10); err != nil {
		t.Fatal(err)
	}
	code, out, _ = e.audit("--json")
	rep = auditReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if code != 2 || rep.Result != "not_retained" || len(rep.NotRetained) != 1 || rep.NotRetained[0].Partition != 1 {
		t.Fatalf("after deleting records of partition 1: exit %d, want 2 naming partition 1:\n%s", code, out)
	}
	code, out, _ = e.audit()
	if code != 2 || !strings.Contains(out, "partition 1: the log starts at offset 10; the recount needs offset 0") {
		t.Fatalf("exit %d, want 2 naming partition 1:\n%s", code, out)
	}
	// A range whose records all came after the deleted ones (by Kafka
	// timestamp, less max_future_skew) is still retained.
	code, out, _ = e.audit("--from", time.Now().Add(2*time.Hour).UTC().Format(time.RFC3339))
	if code != 0 {
		t.Fatalf("a range after the deleted records: exit %d, want 0:\n%s", code, out)
	}
}

// TestAuditWithOpenWindows: a replica killed while windows are open left
// rows that cover only the windows its watermark closed; the audit
// compares those, skips the open ones (exit 0) and leaves url_totals out.
func TestAuditWithOpenWindows(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	st := e.produce(ctx, gen.Options{Count: 3000, URLs: 50, Seed: 29, StartTime: time.Now().Add(-20 * time.Minute),
		EventRate: 5, OutOfOrderFraction: 0.1})
	p := e.run("--state-dir", t.TempDir())
	waitFor(t, time.Minute, "everything checkpointed", func() bool { return sumNext(e.positions(ctx)) == st.Produced })
	p.kill(syscall.SIGKILL)
	p.wait(t, 10*time.Second)
	open := false
	for _, pos := range e.positions(ctx) {
		open = open || pos.RestartOffset < pos.NextOffset
	}
	if !open {
		t.Fatal("no partition has open windows: nothing to test")
	}
	code, out, errOut := e.audit("--json")
	var rep struct {
		auditReport
		Open int64 `json:"open_skipped"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out, errOut)
	}
	if code != 0 || rep.Compared == 0 || rep.Open == 0 || rep.Totals.Compared {
		t.Fatalf("exit %d, %d rows compared, %d open skipped, totals compared %v; want 0, some, some, false:\n%s",
			code, rep.Compared, rep.Open, rep.Totals.Compared, out)
	}
	t.Logf("%d rows compared, %d of open windows skipped", rep.Compared, rep.Open)
}

// TestAuditAfterRetention: after a batch run over three days of event time
// with 1m windows kept one day, the audit leaves the expired 1m windows out
// on both sides (the recount has them, the table no longer does), compares
// the rest and url_totals, and finds them equal.
func TestAuditAfterRetention(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	e.produce(ctx, gen.Options{Count: 4000, URLs: 40, Seed: 31, StartTime: time.Now().Add(-72 * time.Hour),
		EventRate: 4000.0 / (72 * 3600), OutOfOrderFraction: 0.1}) // NB: keyed: both partitions span the 3 days
	p := e.run("--state-dir", t.TempDir(), "--exit-when-idle", "1s", "--retention", "1m=1d")
	if code := p.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("run: exit code %d", code)
	}
	code, out, errOut := e.audit("--json")
	var rep struct {
		auditReport
		Excluded int64                `json:"excluded"`
		Expired  map[string]time.Time `json:"expired_before"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("audit --json: %v\n%s\n%s", err, out, errOut)
	}
	if code != 0 || rep.Result != "equal" || rep.Expired["1m0s"].IsZero() || rep.Excluded == 0 || rep.Compared == 0 || !rep.Totals.Compared {
		t.Fatalf("audit after retention: exit %d, result %q, expired %v, %d excluded, %d compared, totals compared %v; want 0, equal, 1m expired, some, some, true:\n%s",
			code, rep.Result, rep.Expired, rep.Excluded, rep.Compared, rep.Totals.Compared, out)
	}
}
