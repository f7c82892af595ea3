package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/clickagg/clickagg/internal/testutil"
	"github.com/clickagg/clickagg/sink"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

func scramAuth(user, pass string) sasl.Mechanism {
	return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
}

// TestExitWhenIdleOverPreProducedTopic: `clickagg run --exit-when-idle 5s`
// over a pre-produced topic exits 0 and leaves exact counts.
func TestExitWhenIdleOverPreProducedTopic(t *testing.T) {
	e := newEnv(t, 6)
	ctx := context.Background()
	e.produce(ctx, gen.Options{Count: 30_000, URLs: 1000, Zipf: 1.1, Seed: 3,
		LateFraction: 0.02, OutOfOrderFraction: 0.1, InvalidFraction: 0.02})
	p := e.run("--state-dir", t.TempDir(), "--exit-when-idle", "5s")
	if code := p.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	exp := e.expectExact(ctx, e.records(ctx))
	t.Logf("%d valid, %d invalid records; %d url_clicks rows", exp.Valid, exp.Invalid, len(exp.Clicks))
}

// TestExactlyOnceUnderSIGKILL produces a known stream (keyed and unkeyed,
// late, out-of-order and invalid records) while SIGKILLing `clickagg run`
// at random moments, restarting it each time (sometimes without its state
// folder), and then compares every row with the oracle.
func TestExactlyOnceUnderSIGKILL(t *testing.T) {
	e := newEnv(t, 6)
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CLICKAGG_E2E_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (set CLICKAGG_E2E_SEED to repeat)", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	start := time.Now().Add(-30 * time.Minute)

	var wg sync.WaitGroup
	for i, unkeyed := range []bool{false, true} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.produce(ctx, gen.Options{Count: 25_000, Rate: 800, EventRate: 100, StartTime: start,
				URLs: 500, Zipf: 1.1, Seed: seed + uint64(i), Unkeyed: unkeyed,
				LateFraction: 0.02, OutOfOrderFraction: 0.1, InvalidFraction: 0.02})
		}()
	}
	isProducing := doneFunc(wg.Wait)

	dir := filepath.Join(t.TempDir(), "state")
	kills, killsWhileProducing := e.killWhileConsuming([]string{"--state-dir", dir}, dir, 6, 3, 1500*time.Millisecond, isProducing, rng)
	if killsWhileProducing < 5 {
		t.Errorf("only %d of %d kills happened while records were still arriving; want at least 5", killsWhileProducing, kills)
	}
	p := e.run("--state-dir", dir, "--exit-when-idle", "3s")
	if code := p.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("final run: exit code %d", code)
	}
	exp := e.expectExact(ctx, e.records(ctx))
	t.Logf("%d kills (%d while producing); %d valid records, %d invalid; %d url_clicks rows exact", kills, killsWhileProducing, exp.Valid, exp.Invalid, len(exp.Clicks))
}

// TestRestartResumesAtCheckpoint shows that a restarted process starts at
// the PostgreSQL checkpoint: from local state when it matches, by a replay
// from the restart offset (not from the start) when it is gone.
func TestRestartResumesAtCheckpoint(t *testing.T) {
	for _, mode := range []string{"local-state", "local-held", "state-lost"} {
		lose, held := mode == "state-lost", mode == "local-held"
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, 3)
			ctx := context.Background()
			dir := t.TempDir()
			// 10 minutes of event time at 20 records/s: many 1m windows, so
			// the restart offset moves on as they close.
			e.produce(ctx, gen.Options{Count: 12_000, EventRate: 20, URLs: 50, Seed: 9,
				StartTime: time.Now().Add(-time.Hour)})
			// NB: local-state keeps no window in memory across
			// checkpoints: a restart replays nothing. local-held does
			// (the default): a restart replays what they held.
			hold := "0s"
			if held {
				hold = "10m"
			}
			p := e.run("--state-dir", dir, "--windows", "1m", "--hold-windows", hold)
			waitFor(t, time.Minute, "everything checkpointed", func() bool {
				return sumNext(e.positions(ctx)) == 12_000
			})
			p.kill(syscall.SIGKILL)
			p.wait(t, 10*time.Second)
			at := e.positions(ctx)
			var replay int64
			for _, pos := range at {
				replay += pos.NextOffset - pos.RestartOffset
			}
			if lose {
				os.RemoveAll(dir)
			}
			e.produce(ctx, gen.Options{Count: 900, EventRate: 20, URLs: 50, Seed: 10, StartTime: time.Now().Add(-time.Hour).Add(10 * time.Minute)})
			p = e.run("--state-dir", dir, "--windows", "1m", "--exit-when-idle", "2s", "--hold-windows", hold)
			if code := p.wait(t, 2*time.Minute); code != 0 {
				t.Fatalf("exit code %d", code)
			}
			var heldReplay int64
			for _, a := range p.logEntries("partition assigned") {
				part := int32(a["partition"].(float64))
				pos := at[part]
				start := int64(a["start"].(float64))
				want := pos.NextOffset
				switch {
				case lose:
					want = pos.RestartOffset
				case held && start >= pos.RestartOffset && start <= pos.NextOffset:
					want = start
					heldReplay += pos.NextOffset - start
				}
				if start != want || a["local_state"].(bool) == lose {
					t.Errorf("partition %d: started at %v (local state %v); checkpoint next %d restart %d",
						part, a["start"], a["local_state"], pos.NextOffset, pos.RestartOffset)
				}
			}
			stopped := p.logEntries("pipeline stopped")
			if len(stopped) != 1 {
				t.Fatalf("want one 'pipeline stopped' line, got %d", len(stopped))
			}
			consumed, replayed := int64(stopped[0]["records_consumed"].(float64)), int64(stopped[0]["records_replayed"].(float64))
			wantReplay := heldReplay
			if lose {
				wantReplay = replay
			}
			if held && heldReplay == 0 {
				t.Errorf("held windows: a restart with local state replayed nothing; want the open windows' records")
			}
			if consumed != 900 || replayed != wantReplay {
				t.Fatalf("consumed %d (want the 900 new records), replayed %d (want %d of the 12000 before the kill)", consumed, replayed, wantReplay)
			}
			if lose && (replay == 0 || replay >= 12_000) {
				t.Fatalf("replay span %d: want some, but not everything", replay)
			}
			e.expectExact(ctx, e.records(ctx), time.Minute)
		})
	}
}

// TestHeldWindowsLostToRetention: when retention deleted records a held
// window kept in memory only, a restart cannot replay them from local
// state; it rebuilds, and says loudly that counts are short, instead of
// resuming short without a word.
func TestHeldWindowsLostToRetention(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	dir := t.TempDir()
	e.produce(ctx, gen.Options{Count: 3000, EventRate: 20, URLs: 50, Seed: 9, StartTime: time.Now().Add(-time.Hour)})
	p := e.run("--state-dir", dir, "--windows", "1m", "--hold-windows", "10m")
	waitFor(t, time.Minute, "everything checkpointed", func() bool {
		return sumNext(e.positions(ctx)) == 3000
	})
	p.kill(syscall.SIGKILL)
	p.wait(t, 10*time.Second)
	pos := e.positions(ctx)[0]
	if pos.RestartOffset >= pos.NextOffset {
		t.Fatalf("checkpoint %+v: want an open window", pos)
	}
	adm, done := e.admin()
	defer done()
	if err := testutil.DeleteRecords(ctx, adm, e.topic, 0, pos.NextOffset); err != nil {
		t.Fatal(err)
	}
	e.produce(ctx, gen.Options{Count: 100, EventRate: 20, URLs: 50, Seed: 10, StartTime: time.Now().Add(-time.Hour).Add(3 * time.Minute)})
	p = e.run("--state-dir", dir, "--windows", "1m", "--hold-windows", "10m", "--exit-when-idle", "2s")
	if code := p.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if len(p.logEntries("local state holds windows in memory only that this run cannot replay; rebuilding")) != 1 ||
		len(p.logEntries("records needed to rebuild open windows were deleted by retention; their counts will be short")) != 1 {
		t.Fatalf("want the rebuild and the retention error logged; logs:\n%s", p.tail(20))
	}
}

// TestZombieIsFenced: a process frozen (SIGSTOP) long enough to lose its
// partitions, then resumed, holds a stale checkpoint position; its writes
// must be refused while the new owner goes on, and the counts stay exact.
func TestZombieIsFenced(t *testing.T) {
	e := newEnv(t, 4)
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.produce(ctx, gen.Options{Count: 20_000, Rate: 1500, URLs: 200, Seed: 21, Unkeyed: true,
			OutOfOrderFraction: 0.1, LateFraction: 0.01})
	}()
	zombie := e.run("--state-dir", t.TempDir(), "--checkpoint-interval", "300ms")
	waitFor(t, time.Minute, "first checkpoint", func() bool { return sumNext(e.positions(ctx)) > 0 })
	zombie.kill(syscall.SIGSTOP)
	frozenAt := e.positions(ctx)
	owner := e.run("--state-dir", t.TempDir(), "--exit-when-idle", "3s")
	waitFor(t, time.Minute, "the new owner to move every row", func() bool {
		now := e.positions(ctx)
		for p, pos := range frozenAt {
			if now[p] == pos {
				return false
			}
		}
		return true
	})
	zombie.kill(syscall.SIGCONT)
	<-done
	if code := owner.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("owner exit code %d", code)
	}
	zombie.kill(syscall.SIGTERM)
	zombie.wait(t, time.Minute)
	fenced := len(zombie.logEntries("checkpoint fenced: another writer moved these partitions; re-syncing from postgres"))
	lost := len(zombie.logEntries("partitions lost")) + len(zombie.logEntries("partitions revoked"))
	t.Logf("zombie: %d fenced checkpoints, %d lost/revoked notices", fenced, lost)
	if fenced+lost == 0 {
		t.Fatal("the resumed zombie was neither fenced nor told it lost its partitions")
	}
	// The zombie may have re-joined and taken partitions back after the
	// owner left; finish whatever is left with one more run.
	last := e.run("--state-dir", t.TempDir(), "--exit-when-idle", "2s")
	if code := last.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("last run exit code %d", code)
	}
	e.expectExact(ctx, e.records(ctx))
}

// TestIdleTimeoutMakesWindowsFinal: after traffic stops, idle partitions'
// watermarks follow the clock and every window becomes final.
func TestIdleTimeoutMakesWindowsFinal(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	e.produce(ctx, gen.Options{Count: 300, EventRate: 100, URLs: 20, Seed: 4, StartTime: time.Now().Add(-3 * time.Second)})
	p := e.run("--state-dir", t.TempDir(), "--windows", "2s", "--out-of-orderness", "0s", "--idle-timeout", "1s")
	waitFor(t, time.Minute, "every window final", func() bool {
		var rows, final, clicks int64
		err := e.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE final), coalesce(sum(clicks), 0) FROM clickagg.url_clicks`).Scan(&rows, &final, &clicks)
		return err == nil && rows > 0 && rows == final && clicks == 300
	})
	p.kill(syscall.SIGTERM)
	if code := p.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// TestLateRecordsLandInLateClicks: under policy count a late record adds to
// its window's clicks and late_clicks, and to url_totals.
func TestLateRecordsLandInLateClicks(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.brokers, ",")...), kgo.DefaultProduceTopic(e.topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	base := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	var recs []*kgo.Record
	for i := range 120 { // two hours of on-time clicks
		recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, `{"url":"/on","ts":%d}`, base.Add(time.Duration(i)*time.Minute).UnixMilli())})
	}
	for i := range 7 { // then late ones for 10:05
		recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, `{"url":"/late","ts":"2026-05-01T10:05:%02dZ"}`, i)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p := e.run("--state-dir", t.TempDir(), "--exit-when-idle", "2s")
	if code := p.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	for _, size := range []string{"1 minute", "1 hour"} {
		var clicks, late int64
		if err := e.pool.QueryRow(ctx, `SELECT clicks, late_clicks FROM clickagg.url_clicks
WHERE url = '/late' AND window_end - window_start = $1::interval`, size).Scan(&clicks, &late); err != nil {
			t.Fatalf("%s window of /late: %v", size, err)
		}
		if clicks != 7 || late != 7 {
			t.Fatalf("%s window of /late: clicks %d late %d, want 7 and 7", size, clicks, late)
		}
	}
	var total int64
	if err := e.pool.QueryRow(ctx, `SELECT clicks FROM clickagg.url_totals WHERE url = '/late'`).Scan(&total); err != nil || total != 7 {
		t.Fatalf("url_totals /late = %d (%v), want 7", total, err)
	}
	e.expectExact(ctx, e.records(ctx))
}

// TestSIGTERMTakesFinalCheckpoint: SIGTERM under load exits 0 and
// PostgreSQL then holds exactly every record below the committed offsets,
// open windows included.
func TestSIGTERMTakesFinalCheckpoint(t *testing.T) {
	e := newEnv(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.produce(ctx, gen.Options{Rate: 3000, URLs: 300, Seed: 8, OutOfOrderFraction: 0.1})
	p := e.run("--state-dir", t.TempDir(), "--checkpoint-interval", "1h")
	time.Sleep(3 * time.Second) // let it consume under load; not a wait for a result
	p.kill(syscall.SIGTERM)
	if code := p.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	cancel()
	pos := e.positions(context.Background())
	if sumNext(pos) == 0 {
		t.Fatal("nothing was checkpointed")
	}
	var below []*kgo.Record
	for _, r := range e.records(context.Background()) {
		if r.Offset < pos[r.Partition].NextOffset {
			below = append(below, r)
		}
	}
	exp := oracle.Compute(below, windows, 2048)
	if err := oracle.Compare(context.Background(), e.pool, sink.DefaultSchema, exp); err != nil {
		t.Fatal(err)
	}
	t.Logf("final checkpoint holds %d records", exp.Valid)
}

// TestBadConfigIsOneLineExit2: a bad setting is a one-line error naming it.
func TestBadConfigIsOneLineExit2(t *testing.T) {
	cases := []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"run", "--windows", "1m,0s"}, "", "windows"},
		{[]string{"run", "--checkpoint-interval", "soon"}, "", "checkpoint_interval"},
		{[]string{"run", "--late-policy", "ignore"}, "", "late.policy"},
		{[]string{"run"}, "CLICKAGG_IDLE_TIMEOUT=-1s", "idle_timeout"},
		{[]string{"run", "--start-offset", "middle"}, "", "start_offset"},
		{[]string{"run", "--postgres", "postgres://u:hunter2@h/db", "--brokers", "nohostport"}, "", "brokers"},
		{[]string{"run", "--config", "/nonexistent.yaml"}, "", "config file"},
	}
	for _, c := range cases {
		cmd := exec.Command(binary, c.args...)
		cmd.Env = append(os.Environ(), "DATABASE_URL=postgres://x:secret-pass@127.0.0.1:1/db")
		if c.env != "" {
			cmd.Env = append(cmd.Env, c.env)
		}
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: err %v, want exit code 2; output %q", c.args, err, out)
			continue
		}
		s := strings.TrimSpace(string(out))
		if strings.Count(s, "\n") != 0 || !strings.Contains(s, c.want) {
			t.Errorf("%v: output %q, want one line naming %q", c.args, s, c.want)
		}
		if strings.Contains(s, "secret-pass") || strings.Contains(s, "hunter2") {
			t.Errorf("%v: output leaks a password: %q", c.args, s)
		}
	}
}

// TestGenRunQuery drives the other commands: gen creates and fills the
// topic, run aggregates it, query reads the tables back.
func TestGenRunQuery(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+e.dsn, "KAFKA_BROKERS="+e.brokers)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("clickagg %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := cli("migrate")
	if !strings.Contains(out, "schema clickagg at version") {
		t.Fatalf("migrate: %q", out)
	}
	genTopic := e.topic + "-gen"
	out = cli("gen", "--topic", genTopic, "--partitions", "3", "--count", "5000", "--urls", "40",
		"--zipf", "1.3", "--seed", "5", "--invalid", "0.1", "--late", "0.05", "--start-time", "2026-02-01T10:00:00Z")
	if !strings.HasPrefix(out, "produced 5000 records to "+genTopic) || !strings.Contains(out, "invalid (") {
		t.Fatalf("gen: %q", out)
	}
	p := e.run("--topic", genTopic, "--state-dir", t.TempDir(), "--exit-when-idle", "2s")
	if code := p.wait(t, time.Minute); code != 0 {
		t.Fatalf("run exit %d", code)
	}
	recs, err := oracle.ReadTopic(ctx, strings.Split(e.brokers, ","), genTopic)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5000 {
		t.Fatalf("topic holds %d records", len(recs))
	}
	exp := oracle.Compute(recs, windows, 2048)
	if err := oracle.Compare(ctx, e.pool, sink.DefaultSchema, exp); err != nil {
		t.Fatal(err)
	}
	top := cli("query", "top", "--window", "1h", "--limit", "3")
	lines := strings.Split(strings.TrimSpace(top), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "top 3 URLs, 1h0m0s window") {
		t.Fatalf("query top:\n%s", top)
	}
	// The newest hour's leader, computed independently.
	var newest int64
	for k := range exp.Clicks {
		if k.End-k.Start == time.Hour.Milliseconds() && k.Start > newest {
			newest = k.Start
		}
	}
	best, bestN := "", int64(0)
	for k, n := range exp.Clicks {
		if k.Start == newest && k.End-k.Start == time.Hour.Milliseconds() && (n > bestN || n == bestN && k.URL < best) {
			best, bestN = k.URL, n
		}
	}
	if f := strings.Fields(lines[2]); len(f) < 4 || f[0] != fmt.Sprint(bestN) || f[3] != best {
		t.Fatalf("top row %q, want %d clicks for %s", lines[2], bestN, best)
	}
	u := cli("query", "url", best)
	if !strings.HasPrefix(u, fmt.Sprintf("%s: %d clicks in total", best, exp.Totals[best])) {
		t.Fatalf("query url: %q, want total %d", u, exp.Totals[best])
	}

	// --json, and a time range: the hours starting in [from, to), summed
	// per URL, against the oracle's hours.
	var js struct {
		Total   int64 `json:"total"`
		Windows []struct {
			WindowStart time.Time `json:"window_start"`
			Clicks      int64     `json:"clicks"`
		} `json:"windows"`
	}
	from, to := time.UnixMilli(newest).Add(-time.Hour), time.UnixMilli(newest).Add(time.Hour)
	if err := json.Unmarshal([]byte(cli("query", "url", "--json", "--limit", "1000", "--from", from.UTC().Format(time.RFC3339),
		"--to", to.UTC().Format(time.RFC3339), best)), &js); err != nil {
		t.Fatal(err)
	}
	want := map[int64]int64{}
	for k, n := range exp.Clicks {
		if k.URL == best && k.Start >= from.UnixMilli() && k.Start < to.UnixMilli() {
			want[k.Start] += n // NB: every window size starting in the range
		}
	}
	got := map[int64]int64{}
	for _, w := range js.Windows {
		got[w.WindowStart.UnixMilli()] += w.Clicks
	}
	if js.Total != exp.Totals[best] || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("query url --json in [%s, %s): total %d windows %v, want %d and %v", from, to, js.Total, got, exp.Totals[best], want)
	}
	var tr struct {
		URLs []struct {
			URL    string `json:"url"`
			Clicks int64  `json:"clicks"`
		} `json:"urls"`
	}
	if err := json.Unmarshal([]byte(cli("query", "top", "--json", "--window", "1h", "--limit", "1", "--from", from.UTC().Format(time.RFC3339),
		"--to", to.UTC().Format(time.RFC3339))), &tr); err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}
	for k, n := range exp.Clicks {
		if k.End-k.Start == time.Hour.Milliseconds() && k.Start >= from.UnixMilli() && k.Start < to.UnixMilli() {
			sums[k.URL] += n
		}
	}
	if len(tr.URLs) != 1 || sums[tr.URLs[0].URL] != tr.URLs[0].Clicks {
		t.Fatalf("query top --json over [%s, %s): %+v, want the sum of the oracle's hours", from, to, tr.URLs)
	}
	for u, n := range sums {
		if n > tr.URLs[0].Clicks {
			t.Fatalf("query top over the range: %s has %d clicks, more than the top %+v", u, n, tr.URLs[0])
		}
	}
	// A window size no run counts is said, not an empty answer.
	cmd := exec.Command(binary, "query", "top", "--window", "5m")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+e.dsn)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no such windows: the configured sizes are 1m") {
		t.Fatalf("query top --window 5m: %v %q", err, out)
	}
}

// TestMetricsHealthAndSecrets runs against a SASL/SCRAM broker with
// passwords in the DSN and the SASL settings: /metrics must show the key
// series moving, /healthz, /readyz and the status page answer, nothing
// else is served, and no password appears in anything the process prints
// or serves.
func TestMetricsHealthAndSecrets(t *testing.T) {
	const saslPW, pgPW = "sasl-Secret-1234", "pg-Secret-5678"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "clicks"), kfake.GroupMinSessionTimeout(time.Second),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "app", saslPW))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e := newEnv(t, 1) // the database; the broker is the SASL one above
	e.brokers, e.topic, e.group = strings.Join(c.ListenAddrs(), ","), "clicks", "clickagg-sasl"
	dsn := strings.Replace(e.dsn, "postgres://clickagg@", "postgres://clickagg:"+pgPW+"@", 1)
	if dsn == e.dsn {
		t.Fatalf("cannot add a password to %s", e.dsn)
	}
	httpAddr := freeAddr(t)
	cmd := exec.Command(binary, "run", "--brokers", e.brokers, "--topic", e.topic, "--group", e.group,
		"--state-dir", t.TempDir(), "--http-addr", httpAddr, "--log-level", "debug", "--log-format", "json",
		"--checkpoint-interval", "100ms", "--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-username", "app")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dsn, "CLICKAGG_KAFKA_SASL_PASSWORD="+saslPW)
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	produce := func(n int) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("clicks"),
			kgo.SASL(scramAuth("app", saslPW)))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		var recs []*kgo.Record
		for i := range n {
			v := fmt.Sprintf(`{"url":"/p%d","ts":%d}`, i%7, time.Now().UnixMilli())
			if i%10 == 0 {
				v = `{"url":` // invalid
			}
			recs = append(recs, &kgo.Record{Value: []byte(v)})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	get := func(path string) (int, string) { return httpGet(httpAddr, path) }
	metric := func(body, name string) float64 {
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, name+" ") {
				v, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
				return v
			}
		}
		return -1
	}
	var allServed strings.Builder
	waitFor(t, time.Minute, "ready", func() bool { code, _ := get("/readyz"); return code == http.StatusOK })
	produce(500)
	var first string
	waitFor(t, time.Minute, "500 records in the metrics", func() bool {
		_, first = get("/metrics")
		return metric(first, "clickagg_records_consumed_total") == 500 && metric(first, "clickagg_checkpoints_total") > 0
	})
	produce(300)
	var second string
	waitFor(t, time.Minute, "800 records in the metrics", func() bool {
		_, second = get("/metrics")
		return metric(second, "clickagg_records_consumed_total") == 800 &&
			metric(second, "clickagg_checkpoints_total") > metric(first, "clickagg_checkpoints_total")
	})
	allServed.WriteString(first + second)
	checks := []struct {
		name string
		ok   func(a, b float64) bool
	}{
		{"clickagg_events_accepted_total", func(a, b float64) bool { return a == 450 && b == 720 }},
		{`clickagg_events_rejected_total{reason="invalid_json"}`, func(a, b float64) bool { return a == 50 && b == 80 }},
		{"clickagg_checkpoints_total", func(a, b float64) bool { return a > 0 && b > a }},
		{"clickagg_checkpoint_duration_seconds_count", func(a, b float64) bool { return a > 0 && b > a }},
		{"clickagg_postgres_transaction_duration_seconds_count", func(a, b float64) bool { return a > 0 && b > a }},
		{"clickagg_checkpoint_rows_count", func(a, b float64) bool { return a > 0 && b > a }},
		{`clickagg_consumer_lag_records{partition="0"}`, func(a, b float64) bool { return a >= 0 && b >= 0 }},
		{`clickagg_watermark_lag_seconds{partition="0"}`, func(a, b float64) bool { return a > -60 && b > -60 }},
		{"clickagg_partitions_owned", func(a, b float64) bool { return a == 2 && b == 2 }},
		{"clickagg_ready", func(a, b float64) bool { return a == 1 && b == 1 }},
		{"clickagg_postgres_up", func(a, b float64) bool { return a == 1 && b == 1 }},
		{"clickagg_state_bytes", func(a, b float64) bool { return a > 0 && b > 0 }},
		{`clickagg_restores_total{kind="fresh"}`, func(a, b float64) bool { return a == 2 && b == 2 }},
		{"clickagg_last_checkpoint_timestamp_seconds", func(a, b float64) bool { return a > 0 && b >= a }},
	}
	if info := fmt.Sprintf("clickagg_build_info{goversion=%q,version=", runtime.Version()); !strings.Contains(first, info) {
		t.Errorf("no %s...} 1 in the metrics:\n%s", info, grepLines(first, "clickagg_build_info"))
	}
	for _, ck := range checks {
		a, b := metric(first, ck.name), metric(second, ck.name)
		if !ck.ok(a, b) {
			t.Errorf("%s: %v then %v", ck.name, a, b)
		}
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	// The status page and its JSON, which must not carry a secret either.
	for _, path := range []string{"/", "/assets/app.js", "/status", "/api/top?window=1m", "/api/url?url=%2Fp1"} {
		code, body := get(path)
		if code != http.StatusOK {
			t.Errorf("GET %s = %d %s", path, code, body)
		}
		allServed.WriteString(body)
	}
	for _, path := range []string{"/debug/pprof/", "/metrics/x", "/config", "/env", "/api/", "/assets/"} {
		if code, _ := get(path); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404: only the documented paths are served", path, code)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, out.String())
	}
	printed, _ := exec.Command(binary, "run", "--print-config", "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-username", "app",
		"--kafka-sasl-password", saslPW, "--postgres", dsn).CombinedOutput()
	everything := out.String() + allServed.String() + string(printed)
	for _, secret := range []string{saslPW, pgPW} {
		if strings.Contains(everything, secret) {
			t.Fatalf("the secret %q was printed or served", secret)
		}
	}
	if !strings.Contains(out.String(), `"msg":"checkpoint"`) {
		t.Fatal("no debug checkpoint lines were logged: the leak check saw too little")
	}
}

// TestFencedReplicaNotReady: a second process started with the same
// instance id takes the first one's place in the group; the group fences
// the first out (it owns nothing, and every rejoin is refused). Its /readyz
// must turn 503 naming the reason, and stay there, while the other one is
// ready. kfake does not implement static membership: real broker only.
func TestFencedReplicaNotReady(t *testing.T) {
	if !realKafka(t) {
		t.Skip("needs the real Kafka broker: kfake does not implement static membership (see internal/testutil/kafkatest)")
	}
	e := newEnv(t, 2)
	e.produce(context.Background(), gen.Options{Count: 500, URLs: 20, Seed: 31})
	first, second := freeAddr(t), freeAddr(t)
	e.run("--state-dir", t.TempDir(), "--instance-id", "replica-0", "--http-addr", first)
	waitFor(t, time.Minute, "the first process ready", func() bool { code, _ := httpGet(first, "/readyz"); return code == http.StatusOK })
	e.run("--state-dir", t.TempDir(), "--instance-id", "replica-0", "--http-addr", second)
	// NB: which of the two the group keeps is the broker's choice; the
	// newcomer replaces the static member, so expect the first fenced.
	var body string
	waitFor(t, time.Minute, "the first process fenced and not ready", func() bool {
		var code int
		code, body = httpGet(first, "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "fenced")
	})
	t.Logf("the fenced process's /readyz: %q", body)
	waitFor(t, time.Minute, "the second process ready", func() bool { code, _ := httpGet(second, "/readyz"); return code == http.StatusOK })
	if _, body = httpGet(first, "/metrics"); !strings.Contains(body, `clickagg_not_ready{reason="fenced"} 1`) ||
		!strings.Contains(body, "\nclickagg_ready 0") {
		t.Errorf("the fenced process's metrics do not say so:\n%s", grepLines(body, "clickagg_ready", "clickagg_not_ready"))
	}
}

// httpGet returns the status code and body of GET http://addr/path, or 0
// and the error.
func httpGet(addr, path string) (int, string) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// grepLines returns the lines of s that start with one of prefixes.
func grepLines(s string, prefixes ...string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
