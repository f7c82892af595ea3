package e2e

// The chaos suite: exactly-once on the real Apache Kafka broker under
// faults. It runs when CLICKAGG_CHAOS is set (`make test` sets it to
// "short"; "soak" runs a long soak before a release) and needs the real
// broker (internal/testutil/kafkatest). Every scenario produces a known
// input with a fixed seed (plus records written by kcat, an independent
// client) onto a 12-partition topic, applies its faults while clickagg
// consumes, and ends with an exact comparison of every url_clicks and
// url_totals row against the oracle, and with the consumer group's
// committed offsets equal to the log end offsets (lag 0, as lag tools see
// it).

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/clickagg/clickagg/internal/testutil/kafkatest"
	"github.com/clickagg/clickagg/internal/testutil/pgtest"
	"github.com/clickagg/clickagg/sink"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// chaosLevel returns the suite's size, skipping when it is off.
func chaosLevel(t *testing.T) (scale int) {
	t.Helper()
	switch level := os.Getenv("CLICKAGG_CHAOS"); level {
	case "":
		t.Skip("chaos suite off: set CLICKAGG_CHAOS=short (make test does) or soak")
	case "short":
		scale = 1
	case "soak":
		scale = 10
	default:
		t.Fatalf("CLICKAGG_CHAOS=%q: want short or soak", level)
	}
	if !realKafka(t) {
		t.Skip("the chaos suite runs against the real Kafka broker only (see internal/testutil/kafkatest)")
	}
	return scale
}

// scenario is one chaos scenario's bookkeeping and report.
type scenario struct {
	t          *testing.T
	e          *env
	name       string
	start      time.Time
	rng        *rand.Rand
	kills      int
	restarts   int
	rebalances int
	notes      []string
	// expire, when set, removes from the expected counts what retention
	// dropped.
	expire func(*oracle.Expected)
}

func newScenario(t *testing.T, name string, partitions int32) *scenario {
	seed := uint64(42)
	if s := os.Getenv("CLICKAGG_E2E_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	return &scenario{t: t, e: newEnv(t, partitions), name: name, start: time.Now(), rng: rand.New(rand.NewPCG(seed, 99))}
}

func (s *scenario) note(format string, args ...any) {
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
	s.t.Logf(format, args...)
}

// finish compares everything and writes the scenario's report line.
func (s *scenario) finish(ctx context.Context) {
	s.t.Helper()
	recs := s.e.records(ctx)
	exp := oracle.Compute(recs, windows, 2048)
	if s.expire != nil {
		s.expire(&exp)
	}
	err := oracle.Compare(ctx, s.e.pool, sink.DefaultSchema, exp)
	lagErr := s.e.checkLagZero(ctx)
	result := "exact, lag 0"
	if err != nil || lagErr != nil {
		result = fmt.Sprintf("FAILED: %v %v", err, lagErr)
	}
	line := fmt.Sprintf("%-28s kills=%d restarts=%d rebalances=%d records=%d valid=%d rows=%d seconds=%.1f result=%s",
		s.name, s.kills, s.restarts, s.rebalances, len(recs), exp.Valid, len(exp.Clicks), time.Since(s.start).Seconds(), result)
	if len(s.notes) > 0 {
		line += " (" + strings.Join(s.notes, "; ") + ")"
	}
	s.t.Log(line)
	if p := os.Getenv("CLICKAGG_CHAOS_REPORT"); p != "" {
		if f, ferr := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); ferr == nil {
			fmt.Fprintln(f, line)
			f.Close()
		}
	}
	if err != nil {
		s.t.Fatal(err)
	}
	if lagErr != nil {
		s.t.Fatal(lagErr)
	}
}

// checkLagZero compares the group's committed offsets with the log end
// offsets, as lag tools do.
func (e *env) checkLagZero(ctx context.Context) error {
	adm, done := e.admin()
	defer done()
	ends, err := adm.ListEndOffsets(ctx, e.topic)
	if err != nil {
		return err
	}
	committed, err := adm.FetchOffsets(ctx, e.group)
	if err != nil {
		return err
	}
	var bad []string
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(e.topic, o.Partition)
		if !ok || c.At != o.Offset {
			bad = append(bad, fmt.Sprintf("partition %d: committed %d, end %d", o.Partition, c.At, o.Offset))
		}
	})
	if len(bad) > 0 {
		return fmt.Errorf("consumer group %s lags: %s", e.group, strings.Join(bad, "; "))
	}
	return nil
}

// produceKcat writes n keyed clicks with kcat, the librdkafka CLI: an
// independent producer whose records the counts must include exactly.
func (e *env) produceKcat(n int, seed int) {
	e.t.Helper()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if kcat, err = exec.LookPath("kafkacat"); err != nil {
			if os.Getenv(kafkatest.RequireEnv) != "" {
				e.t.Fatal("kcat is not installed (scripts/ensure-kcat.sh installs it)")
			}
			e.t.Log("kcat not installed: skipping the kcat part of the input")
			return
		}
	}
	var b strings.Builder
	base := time.Now().Add(-20 * time.Minute).UnixMilli()
	for i := range n {
		url := fmt.Sprintf("https://example.com/page/%d", (i*7+seed)%300)
		fmt.Fprintf(&b, "%s\t{\"url\":%q,\"ts\":%d,\"src\":\"kcat\"}\n", url, url, base+int64(i)*37)
	}
	f := filepath.Join(e.t.TempDir(), "kcat.txt")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(kcat, "-P", "-b", e.brokers, "-t", e.topic, "-K", "\t", "-l", f)
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("kcat: %v\n%s", err, out)
	}
}

// kcatRecords counts the records kcat wrote, read back from the topic.
func kcatRecords(recs []*kgo.Record) int {
	n := 0
	for _, r := range recs {
		if strings.Contains(string(r.Value), `"src":"kcat"`) {
			n++
		}
	}
	return n
}

// producer runs the generated part of the input in the background.
func (s *scenario) producer(ctx context.Context, count int64, rate float64, unkeyed bool) (wait func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.e.produce(ctx, gen.Options{Count: count, Rate: rate, EventRate: 200, StartTime: time.Now().Add(-30 * time.Minute),
			URLs: 300, Zipf: 1.1, Seed: 7 + uint64(len(s.name)), Unkeyed: unkeyed,
			LateFraction: 0.02, OutOfOrderFraction: 0.1, InvalidFraction: 0.02})
	}()
	return wg.Wait
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitProgress waits until the checkpoints moved past before, or everything
// produced so far is checkpointed.
func (s *scenario) waitProgress(ctx context.Context, before int64, producing func() bool) {
	s.t.Helper()
	waitFor(s.t, 3*time.Minute, "checkpoint progress", func() bool {
		n := sumNext(s.e.positions(ctx))
		return n > before || (!producing() && n >= s.e.endOffsets(ctx))
	})
}

func doneFunc(wait func()) func() bool {
	ch := make(chan struct{})
	go func() { wait(); close(ch) }()
	return func() bool {
		select {
		case <-ch:
			return false
		default:
			return true
		}
	}
}

// finalRun consumes whatever is left with one process and waits for it.
func (s *scenario) finalRun(dir string, extra ...string) {
	s.t.Helper()
	p := s.e.run(append([]string{"--state-dir", dir, "--exit-when-idle", "3s"}, extra...)...)
	if code := p.wait(s.t, 5*time.Minute); code != 0 {
		s.t.Fatalf("final run: exit code %d", code)
	}
}

// 1. SIGKILL at random moments, 20 times (more in a soak), restarting each
// time with the same static membership id, so the restarted process gets
// its partitions back at once instead of after the session timeout.
func TestChaosSIGKILL(t *testing.T) {
	scale := chaosLevel(t)
	ctx := context.Background()
	s := newScenario(t, "sigkill", 12)
	s.e.produceKcat(2000, 1)
	wait := s.producer(ctx, int64(40_000*scale), 2500, false)
	producing := doneFunc(wait)
	dir := t.TempDir()
	args := []string{"--state-dir", dir, "--instance-id", "chaos-0", "--session-timeout", "30s"}
	for s.kills < 20*scale {
		before := sumNext(s.e.positions(ctx))
		p := s.e.run(args...)
		s.restarts++
		// With a 30s session timeout, only static membership gets the
		// partitions back well within this deadline.
		s.waitProgress(ctx, before, producing)
		time.Sleep(time.Duration(s.rng.Int64N(int64(time.Second)))) // a random kill point, not a wait for a result
		p.kill(syscall.SIGKILL)
		p.wait(t, 10*time.Second)
		s.kills++
	}
	wait()
	s.finalRun(dir, "--instance-id", "chaos-0", "--session-timeout", "30s")
	if n := kcatRecords(s.e.records(ctx)); n != 2000 {
		t.Fatalf("topic holds %d kcat records, want 2000", n)
	}
	s.note("static membership, 2000 records by kcat")
	s.finish(ctx)
}

// 2. Three replicas in one group, killed and started while consuming
// (partitions move between processes with and without local state), and
// one replica frozen with SIGSTOP long enough to lose its partitions, then
// resumed: its writes must be fenced.
func TestChaosReplicas(t *testing.T) {
	scale := chaosLevel(t)
	ctx := context.Background()
	s := newScenario(t, "replicas", 12)
	wait := s.producer(ctx, int64(40_000*scale), 2000, true)
	producing := doneFunc(wait)
	procs, dirs := s.churn(ctx, 6*scale, 3, producing)
	// Freeze one replica past its session timeout: the others take its
	// partitions and move their rows; when it wakes up it must not write.
	// NB: one that owns partitions; a replica just restarted may not have
	// joined yet, and one without partitions has nothing to be fenced on.
	z := -1
	waitFor(t, time.Minute, "a replica that owns partitions", func() bool {
		var owners []int
		for i, p := range procs {
			if p.ownedPartitions() > 0 {
				owners = append(owners, i)
			}
		}
		if len(owners) > 0 {
			z = owners[s.rng.IntN(len(owners))]
		}
		return z >= 0
	})
	procs[z].kill(syscall.SIGSTOP)
	frozen := s.e.positions(ctx)
	waitFor(t, 2*time.Minute, "the other replicas to move every row", func() bool {
		now := s.e.positions(ctx)
		for p, pos := range frozen {
			if now[p] == pos && producing() {
				return false
			}
		}
		return true
	})
	procs[z].kill(syscall.SIGCONT)
	s.rebalances += 2
	before := sumNext(s.e.positions(ctx))
	s.waitProgress(ctx, before, producing)
	wait()
	for _, p := range procs {
		p.kill(syscall.SIGTERM)
	}
	for _, p := range procs {
		if code := p.wait(t, 2*time.Minute); code != 0 {
			t.Errorf("replica exit code %d after SIGTERM", code)
		}
	}
	fenced := len(procs[z].logEntries("checkpoint fenced: another writer moved these partitions; re-syncing from postgres"))
	lost := len(procs[z].logEntries("partitions lost")) + len(procs[z].logEntries("partitions revoked"))
	if fenced+lost == 0 {
		t.Fatal("the resumed replica was neither fenced nor told it lost its partitions")
	}
	s.note("frozen replica: %d fenced checkpoints, %d lost/revoked notices", fenced, lost)
	s.finalRun(dirs[0])
	s.finish(ctx)
}

// churn runs three replicas in one group and, rounds times, once the
// checkpoints progressed, kills one (SIGKILL or SIGTERM) and starts it
// again, on a new node (its state directory removed) one time in
// newNode. It returns the running replicas and their state directories.
func (s *scenario) churn(ctx context.Context, rounds, newNode int, producing func() bool, extra ...string) ([]*proc, []string) {
	t := s.t
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	procs := make([]*proc, 3)
	start := func(i int) {
		procs[i] = s.e.run(append([]string{"--state-dir", dirs[i], "--session-timeout", "3s"}, extra...)...)
		s.restarts++
	}
	for i := range procs {
		start(i)
	}
	for range rounds {
		before := sumNext(s.e.positions(ctx))
		s.waitProgress(ctx, before, producing)
		i := s.rng.IntN(3)
		if s.rng.IntN(2) == 0 {
			procs[i].kill(syscall.SIGKILL)
			s.kills++
		} else {
			procs[i].kill(syscall.SIGTERM)
		}
		procs[i].wait(t, time.Minute)
		s.rebalances++
		if s.rng.IntN(newNode) == 0 {
			os.RemoveAll(dirs[i]) // the replica comes back on a new node
		}
		start(i)
		s.rebalances++
	}
	return procs, dirs
}

// 3. PostgreSQL restarted and unreachable for 10 s mid-run: consumption
// stops, checkpoints retry, /readyz reports it, and the pipeline resumes
// losing nothing.
func TestChaosPostgresRestart(t *testing.T) {
	scale := chaosLevel(t)
	ctx := context.Background()
	s := newScenario(t, "postgres-restart", 12)
	srv := pgtest.NewServer(t)
	pool, err := sink.NewPool(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s.e.dsn, s.e.pool = srv.DSN(), pool
	wait := s.producer(ctx, int64(30_000*scale), 2000, false)
	httpAddr := freeAddr(t)
	dir := t.TempDir()
	p := s.e.run("--state-dir", dir, "--http-addr", httpAddr)
	ready := func() int {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, 2*time.Minute, "ready", func() bool { return ready() == http.StatusOK })
	for range scale {
		if err := srv.Pause(); err != nil {
			t.Fatal(err)
		}
		s.restarts++
		waitFor(t, 30*time.Second, "/readyz to report the outage", func() bool { return ready() == http.StatusServiceUnavailable })
		time.Sleep(10 * time.Second) // the outage itself
		if err := srv.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "ready again", func() bool { return ready() == http.StatusOK })
	}
	wait()
	p.kill(syscall.SIGTERM)
	if code := p.wait(t, time.Minute); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	retries := len(p.logEntries("postgres unavailable; retrying"))
	if retries == 0 {
		t.Fatal("no checkpoint retry was logged during the outage")
	}
	s.note("%d logged retries", retries)
	s.finalRun(dir)
	s.finish(ctx)
}

// 4. The Kafka broker restarted mid-run.
func TestChaosBrokerRestart(t *testing.T) {
	scale := chaosLevel(t)
	ctx := context.Background()
	s := newScenario(t, "broker-restart", 12)
	wait := s.producer(ctx, int64(30_000*scale), 2000, false)
	producing := doneFunc(wait)
	dir := t.TempDir()
	p := s.e.run("--state-dir", dir)
	for range scale {
		s.waitProgress(ctx, sumNext(s.e.positions(ctx)), producing)
		if err := s.e.real.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		s.restarts++
	}
	s.waitProgress(ctx, sumNext(s.e.positions(ctx)), producing)
	wait()
	p.kill(syscall.SIGTERM)
	if code := p.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	s.finalRun(dir)
	s.finish(ctx)
}

// 5. The local state folder deleted between two runs (a pod rescheduled
// onto a new node): the restore rebuilds from PostgreSQL.
func TestChaosStateLost(t *testing.T) {
	scale := chaosLevel(t)
	ctx := context.Background()
	s := newScenario(t, "state-lost", 12)
	wait := s.producer(ctx, int64(30_000*scale), 0, false)
	wait()
	dir := filepath.Join(t.TempDir(), "state")
	p := s.e.run("--state-dir", dir, "--windows", "1m,1h")
	waitFor(t, 2*time.Minute, "half the input checkpointed", func() bool {
		return sumNext(s.e.positions(ctx)) > s.e.endOffsets(ctx)/2
	})
	p.kill(syscall.SIGKILL)
	p.wait(t, 10*time.Second)
	s.kills++
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	p = s.e.run("--state-dir", dir, "--exit-when-idle", "3s")
	s.restarts++
	if code := p.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	var rebuilt int
	for _, a := range p.logEntries("partition assigned") {
		if !a["local_state"].(bool) {
			rebuilt++
		}
	}
	stopped := p.logEntries("pipeline stopped")
	if rebuilt != 12 || len(stopped) != 1 || stopped[0]["records_replayed"].(float64) == 0 {
		t.Fatalf("rebuilt %d partitions, stopped lines %v: want 12 rebuilt by replay", rebuilt, stopped)
	}
	s.note("12 partitions rebuilt, %v records replayed", stopped[0]["records_replayed"])
	s.finish(ctx)
}

// 6. The topic's partition count increased mid-run: keyed producers then
// send one URL's clicks to two partitions, and the new partitions start
// from their beginning (start_offset earliest).
func TestChaosPartitionsAdded(t *testing.T) {
	scale := chaosLevel(t)
	ctx := context.Background()
	s := newScenario(t, "partitions-added", 12)
	wait := s.producer(ctx, int64(30_000*scale), 2000, false)
	producing := doneFunc(wait)
	dir := t.TempDir()
	p := s.e.run("--state-dir", dir)
	s.waitProgress(ctx, 0, producing)
	adm, done := s.e.admin()
	resp, err := adm.CreatePartitions(ctx, 4, s.e.topic)
	done()
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	s.rebalances++
	// Records keyed as before now land on other partitions too.
	s.e.produceKcat(3000, 2)
	waitFor(t, 2*time.Minute, "the new partitions to be checkpointed", func() bool {
		return len(s.e.positions(ctx)) == 16
	})
	wait()
	p.kill(syscall.SIGTERM)
	if code := p.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	s.finalRun(dir)
	recs := s.e.records(ctx)
	byURL := map[string]map[int32]bool{}
	for _, r := range recs {
		var v struct{ URL string }
		if json.Unmarshal(r.Value, &v) == nil && v.URL != "" {
			if byURL[v.URL] == nil {
				byURL[v.URL] = map[int32]bool{}
			}
			byURL[v.URL][r.Partition] = true
		}
	}
	split := 0
	for _, ps := range byURL {
		if len(ps) > 1 {
			split++
		}
	}
	if split == 0 {
		t.Fatal("no URL arrived on two partitions: the scenario did not test what it should")
	}
	s.note("16 partitions, %d URLs on more than one partition", split)
	s.finish(ctx)
}

// 7. Retention drops url_clicks partitions while three replicas are killed
// and restarted, some on a new node (a rebuild replays records of days
// that expired meanwhile): five days of event time pass in the run (keyed
// records, so every partition's watermark moves and the global one with
// them), with
// 1m windows kept one day and 1h windows two, maintenance every second,
// and 2% of the records 30 hours late (into expired days). What remains
// must be exact: every window from expired_before on, no row before it,
// and url_totals complete.
func TestChaosRetention(t *testing.T) {
	scale := chaosLevel(t)
	ctx := context.Background()
	s := newScenario(t, "retention", 12)
	count, days := int64(40_000*scale), 5.0
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.e.produce(ctx, gen.Options{Count: count, Rate: 2000, StartTime: time.Now().Add(-time.Duration(days * 24 * float64(time.Hour))),
			EventRate: float64(count) / (days * 24 * 3600), URLs: 300, Zipf: 1.1, Seed: 11,
			LateFraction: 0.02, LateBy: 30 * time.Hour, OutOfOrderFraction: 0.1, InvalidFraction: 0.02})
	}()
	producing := doneFunc(wg.Wait)
	keep := []string{"--retention", "1m=1d,1h=2d", "--storage-maintenance-interval", "1s"}
	procs, dirs := s.churn(ctx, 6*scale, 2, producing, keep...)
	wg.Wait()
	for _, p := range procs {
		p.kill(syscall.SIGTERM)
	}
	dropped := 0.0
	for _, p := range procs {
		if code := p.wait(t, 2*time.Minute); code != 0 {
			t.Errorf("replica exit code %d after SIGTERM", code)
		}
		for _, l := range p.logEntries("storage maintenance") {
			dropped += l["partitions_dropped"].(float64)
		}
	}
	s.finalRun(dirs[0], keep...)
	sizes, err := sink.ReadStorage(ctx, s.e.pool, sink.DefaultSchema)
	if err != nil {
		t.Fatal(err)
	}
	expired := map[time.Duration]int64{}
	for _, st := range sizes {
		if !st.ExpiredBefore.IsZero() {
			expired[st.Size] = st.ExpiredBefore.UnixMilli()
		}
		for _, p := range st.Partitions {
			if !st.ExpiredBefore.IsZero() && p.Start.Before(st.ExpiredBefore) {
				t.Errorf("partition %s lies before expired_before %s", p.Name, st.ExpiredBefore)
			}
		}
	}
	if expired[time.Minute] == 0 || dropped == 0 {
		t.Fatalf("1m expired before %d, %.0f partitions dropped while replicas ran: the scenario did not test what it should",
			expired[time.Minute], dropped)
	}
	s.expire = func(e *oracle.Expected) {
		for size, before := range expired {
			e.Expire(size, before)
		}
	}
	s.note("1m kept from %s, %.0f partitions dropped while replicas were killed",
		time.UnixMilli(expired[time.Minute]).UTC().Format(time.DateOnly), dropped)
	s.finish(ctx)
}
