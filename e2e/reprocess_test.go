package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/clickagg/clickagg/sink"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestReprocessIntoNewSchema: the live pipeline counts byte-exact URLs
// into schema clickagg while `clickagg reprocess --into renorm
// --url-normalize --switch` recounts the topic (more records arriving
// meanwhile) and then re-points the readers' views. A reader polling the
// views all along sees, in every statement, both views on the old schema
// or both on the new one (equal to the schema read directly in the same
// snapshot), old before new, never a mix. renorm holds exactly what an
// independent normalizing recount of the records below its checkpoints
// gives; once the live pipeline is moved as the command says, renorm
// holds the whole topic's normalized counts.
func TestReprocessIntoNewSchema(t *testing.T) {
	e := newEnv(t, 4)
	ctx := context.Background()
	const into, live = "renorm", sink.DefaultLiveSchema
	produceVariants(t, e, 3000, 1)
	e.run("--state-dir", t.TempDir()) // the live pipeline, until the test ends
	waitFor(t, time.Minute, "the live pipeline to count the first records", func() bool {
		return sumNext(e.positions(ctx)) == e.endOffsets(ctx)
	})
	if out := e.command(t, 0, "reprocess", "--switch-only", "--into", sink.DefaultSchema); !strings.Contains(out, "now read schema clickagg") {
		t.Fatalf("--switch-only: %s", out)
	}
	e.command(t, 0, "migrate", "--postgres-schema", into) // NB: the reader names its tables from the start

	// The reader: one statement reads the views and both schemas' tables
	// in one snapshot.
	type sig [4]int64
	var (
		mu     sync.Mutex
		states []string
		bad    []string
	)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		q := `SELECT ` + sigSQL(live) + `, ` + sigSQL("clickagg") + `, ` + sigSQL(into)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var v [12]int64
			err := e.pool.QueryRow(ctx, q).Scan(&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11])
			state := ""
			switch view, old, cur := sig(v[0:4]), sig(v[4:8]), sig(v[8:12]); {
			case err != nil:
				state = "error: " + err.Error()
			case view == old && view == cur:
				state = "both"
			case view == old:
				state = "old"
			case view == cur:
				state = "new"
			default:
				state = fmt.Sprintf("partial: views %v, old %v, new %v", view, old, cur)
			}
			mu.Lock()
			if n := len(states); n == 0 || states[n-1] != state {
				states = append(states, state)
			}
			if state != "old" && state != "new" && state != "both" {
				bad = append(bad, state)
			}
			mu.Unlock()
		}
	}()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); produceVariants(t, e, 3000, 2) }() // NB: while the recount runs
	out := e.command(t, 0, "reprocess", "--into", into, "--url-normalize", "--switch", "--exit-when-idle", "1s",
		"--state-dir", t.TempDir()+"/state")
	wg.Wait()
	t.Logf("reprocess:\n%s", out)
	group := e.group + "-reprocess-" + into
	for _, want := range []string{"now read schema renorm (was clickagg)", "--postgres-schema renorm --group " + group} {
		if !strings.Contains(out, want) {
			t.Errorf("reprocess output lacks %q", want)
		}
	}
	waitFor(t, 30*time.Second, "the reader to see the new schema", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(states) > 0 && states[len(states)-1] == "new"
	})
	close(stop)
	<-readerDone
	t.Logf("reader states: %v", states)
	if len(bad) > 0 {
		t.Fatalf("the reader saw %d bad states, first: %s", len(bad), bad[0])
	}
	// NB: "both": the schemas looked alike (both empty at first, before
	// the live pipeline's windows closed).
	var seen []string
	for _, s := range states {
		if s != "both" && (len(seen) == 0 || seen[len(seen)-1] != s) {
			seen = append(seen, s)
		}
	}
	if strings.Join(seen, ",") != "old,new" {
		t.Fatalf("reader states %v: want old, then new, never back", states)
	}

	// renorm is exact up to its checkpoints.
	w, err := sink.NewWriter(e.pool, sink.Options{Schema: into, Group: group, Topic: e.topic})
	if err != nil {
		t.Fatal(err)
	}
	pos, err := w.ReadRows(ctx, []int32{0, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	all := e.records(ctx)
	var prefix []*kgo.Record
	for _, r := range all {
		if r.Offset < pos[r.Partition].NextOffset {
			prefix = append(prefix, r)
		}
	}
	exp, err := oracle.ComputeWith(prefix, oracle.Options{Windows: windows, MaxURLBytes: 2048, NormalizeURLs: true})
	if err != nil {
		t.Fatal(err)
	}
	raw := oracle.Compute(prefix, windows, 2048)
	if len(exp.Totals)*2 > len(raw.Totals) {
		t.Fatalf("normalizing merges %d URLs into %d: the input does not exercise url.normalize", len(raw.Totals), len(exp.Totals))
	}
	if err := oracle.Compare(ctx, e.pool, into, exp); err != nil {
		t.Fatalf("renorm after the recount of %d records: %v", len(prefix), err)
	}
	t.Logf("renorm exact after the recount: %d of %d records, %d URLs (%d byte-exact)", len(prefix), len(all), len(exp.Totals), len(raw.Totals))

	// The live pipeline moved as the command says: renorm then holds the
	// whole topic.
	e.group = group
	p := e.run("--state-dir", t.TempDir(), "--postgres-schema", into, "--url-normalize", "--exit-when-idle", "1s")
	if code := p.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("the live pipeline on renorm: exit code %d", code)
	}
	exp, err = oracle.ComputeWith(e.records(ctx), oracle.Options{Windows: windows, MaxURLBytes: 2048, NormalizeURLs: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := oracle.Compare(ctx, e.pool, into, exp); err != nil {
		t.Fatalf("renorm after the live pipeline moved: %v", err)
	}
}

// sigSQL reads a schema's url_totals and url_clicks: rows and clicks.
func sigSQL(schema string) string {
	return fmt.Sprintf(`(SELECT count(*) FROM %[1]s.url_totals), (SELECT coalesce(sum(clicks), 0)::bigint FROM %[1]s.url_totals),
	(SELECT count(*) FROM %[1]s.url_clicks), (SELECT coalesce(sum(clicks), 0)::bigint FROM %[1]s.url_clicks)`, schema)
}

// produceVariants produces n clicks on 50 pages, each spelled in several
// ways url.normalize counts as one (host and scheme case, #fragment).
func produceVariants(t *testing.T, e *env, n int, seed uint64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.brokers, ",")...), kgo.ProducerLinger(2*time.Millisecond))
	if err != nil {
		t.Error(err)
		return
	}
	defer cl.Close()
	rng := rand.New(rand.NewPCG(seed, 7))
	spellings := []string{"https://example.com/p/%d", "https://Example.COM/p/%d", "HTTPS://example.com/p/%d#top", "https://EXAMPLE.com/p/%d#a"}
	now := time.Now()
	for i := range n {
		url := fmt.Sprintf(spellings[rng.IntN(len(spellings))], rng.IntN(50))
		ts := now.Add(time.Duration(i-n) * 10 * time.Millisecond)
		v, _ := json.Marshal(map[string]any{"url": url, "ts": ts.UnixMilli(), "id": fmt.Sprintf("%d-%d", seed, i)})
		cl.Produce(context.Background(), &kgo.Record{Topic: e.topic, Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Error(err)
	}
}

// command runs a clickagg command with the test's broker, topic, group and
// database to its end, checks its exit code, and returns its output.
func (e *env) command(t *testing.T, want int, args ...string) string {
	t.Helper()
	if args[0] != "migrate" { // NB: migrate takes only the PostgreSQL settings
		args = append(args, e.flags()...)
	}
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+e.dsn)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		t.Fatalf("clickagg %v did not finish; output:\n%s", args, out.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != want {
		t.Fatalf("clickagg %v: exit %d, want %d; output:\n%s", args, code, want, out.String())
	}
	return out.String()
}
