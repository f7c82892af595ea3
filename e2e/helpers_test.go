// Package e2e drives the built clickagg binary as a subprocess against an
// in-process Kafka-protocol broker (kfake) and a real PostgreSQL, kills it,
// restarts it, and compares PostgreSQL with counts computed independently
// from the records in the topic (internal/oracle).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/clickagg/clickagg/internal/testutil"
	"github.com/clickagg/clickagg/internal/testutil/kafkatest"
	"github.com/clickagg/clickagg/internal/testutil/pgtest"
	"github.com/clickagg/clickagg/sink"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clickagg-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "clickagg")
	build := exec.Command("go", "build", "-o", binary, "../cmd/clickagg")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build clickagg:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	// NB: pgtest.Main runs the tests and exits; the wrapper stops the
	// shared real broker (if one was started) before that.
	pgtest.Main(kafkatest.Wrap(m))
}

var windows = []time.Duration{time.Minute, time.Hour}

// realKafka reports whether the end-to-end tests run against the real
// Apache Kafka broker: CLICKAGG_E2E_BROKER=kafka|kfake picks, the default
// is the real one when it is available (see internal/testutil/kafkatest).
func realKafka(t testing.TB) bool {
	switch os.Getenv("CLICKAGG_E2E_BROKER") {
	case "kfake":
		return false
	case "kafka":
		return true
	}
	if ok, _ := kafkatest.Available(); ok {
		return true
	}
	if os.Getenv(kafkatest.RequireEnv) != "" {
		_, why := kafkatest.Available()
		t.Fatalf("%s is set but the real Kafka broker is unavailable: %s", kafkatest.RequireEnv, why)
	}
	return false
}

type env struct {
	t       *testing.T
	real    *kafkatest.Broker // nil with kfake
	fake    *kfake.Cluster
	brokers string
	topic   string
	group   string
	dsn     string
	pool    *pgxpool.Pool
}

// newEnv gives the test a topic with the given partitions on the broker
// (kfake in-process or the shared real one), a consumer group of its own
// and a fresh database.
func newEnv(t *testing.T, partitions int32) *env {
	t.Helper()
	e := &env{t: t, topic: "clicks", group: "clickagg"}
	if realKafka(t) {
		e.real = kafkatest.Shared(t)
		e.brokers = e.real.Addr()
		suffix := fmt.Sprintf("%s-%d", strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()), time.Now().UnixNano()%1e9)
		e.topic, e.group = "clicks-"+suffix, "clickagg-"+suffix
		e.createTopic(e.topic, partitions)
	} else {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, e.topic),
			kfake.GroupMinSessionTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		e.fake, e.brokers = c, strings.Join(c.ListenAddrs(), ",")
	}
	e.dsn, e.pool = newDB(t)
	return e
}

// newDB gives the test a fresh database with the schema.
func newDB(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	dsn := pgtest.DSN(t)
	pool, err := sink.NewPool(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	conn, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := sink.Migrate(context.Background(), conn.Conn(), sink.DefaultSchema); err != nil {
		t.Fatal(err)
	}
	return dsn, pool
}

func (e *env) admin() (*kadm.Client, func()) {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.brokers, ",")...))
	if err != nil {
		e.t.Fatal(err)
	}
	return kadm.NewClient(cl), cl.Close
}

func (e *env) createTopic(name string, partitions int32) {
	e.t.Helper()
	adm, done := e.admin()
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		e.t.Fatalf("create topic %s: %v", name, err)
	}
}

// proc is one running clickagg.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	mu   sync.Mutex
	logs bytes.Buffer
}

// flags are the settings every command of the test runs with: its
// broker, topic and group, and quick timings.
func (e *env) flags() []string {
	return []string{"--brokers", e.brokers, "--topic", e.topic, "--group", e.group, "--http-addr", "off",
		"--log-format", "json", "--session-timeout", "2s", "--windows", "1m,1h", "--checkpoint-interval", "100ms"}
}

// run starts `clickagg run` with the test's broker and database plus args.
func (e *env) run(args ...string) *proc {
	e.t.Helper()
	return start(e.t, e.dsn, nil, os.Stdout, append(append([]string{"run"}, e.flags()...), args...)...)
}

// start starts the binary with args and DATABASE_URL=dsn, its stdin from
// stdin (nil: none) and its stdout to stdout; its stderr is kept
// (proc.tail) and shown when t fails.
func start(t *testing.T, dsn string, stdin io.Reader, stdout io.Writer, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dsn)
	p := &proc{cmd: cmd, done: make(chan struct{})}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin, cmd.Stdout = stdin, stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.Write(sc.Bytes())
			p.logs.WriteByte('\n')
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("clickagg logs:\n%s", p.tail(60))
		}
	})
	return p
}

func (p *proc) kill(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("clickagg did not exit within %s; logs:\n%s", within, p.tail(40))
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", p.err)
	return -1
}

func (p *proc) tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(p.logs.String()), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logEntries returns the JSON log entries whose message is msg.
func (p *proc) logEntries(msg string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(p.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// ownedPartitions is how many partitions p's log says it owns now.
func (p *proc) ownedPartitions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	owned := map[float64]bool{}
	for _, line := range strings.Split(p.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		switch m["msg"] {
		case "partition assigned":
			if n, ok := m["partition"].(float64); ok {
				owned[n] = true
			}
		case "partitions revoked", "partitions lost":
			parts, _ := m["partitions"].([]any)
			for _, x := range parts {
				if n, ok := x.(float64); ok {
					delete(owned, n)
				}
			}
		}
	}
	return len(owned)
}

// produce generates records and returns when all are acknowledged.
func (e *env) produce(ctx context.Context, o gen.Options) gen.Stats {
	e.t.Helper()
	g, err := gen.New(o)
	if err != nil {
		e.t.Error(err)
		return gen.Stats{}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(e.brokers, ",")...), kgo.ProducerLinger(2*time.Millisecond))
	if err != nil {
		e.t.Error(err)
		return gen.Stats{}
	}
	defer cl.Close()
	st, err := gen.Produce(ctx, cl, e.topic, g, nil)
	if err != nil && ctx.Err() == nil {
		e.t.Error(err)
	}
	return st
}

// endOffsets returns the sum of the topic's end offsets.
func (e *env) endOffsets(ctx context.Context) int64 {
	e.t.Helper()
	adm, done := e.admin()
	defer done()
	ends, err := adm.ListEndOffsets(ctx, e.topic)
	if err != nil {
		e.t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// positions returns the checkpoints rows of the test's group by partition.
func (e *env) positions(ctx context.Context) map[int32]sink.Row {
	e.t.Helper()
	w, err := sink.NewWriter(e.pool, sink.Options{Group: e.group, Topic: e.topic})
	if err != nil {
		e.t.Fatal(err)
	}
	parts := make([]int32, 64)
	for i := range parts {
		parts[i] = int32(i)
	}
	pos, err := w.ReadRows(ctx, parts)
	if err != nil {
		e.t.Fatal(err)
	}
	return pos
}

// records reads the topic back.
func (e *env) records(ctx context.Context) []*kgo.Record {
	e.t.Helper()
	recs, err := oracle.ReadTopic(ctx, strings.Split(e.brokers, ","), e.topic)
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

// expectExact compares PostgreSQL with the oracle over records.
func (e *env) expectExact(ctx context.Context, recs []*kgo.Record, sizes ...time.Duration) oracle.Expected {
	e.t.Helper()
	if sizes == nil {
		sizes = windows
	}
	exp := oracle.Compute(recs, sizes, 2048)
	if err := oracle.Compare(ctx, e.pool, sink.DefaultSchema, exp); err != nil {
		e.t.Fatal(err)
	}
	return exp
}

// waitFor polls cond until it holds or the deadline passes.
var waitFor = testutil.WaitFor

func sumNext(pos map[int32]sink.Row) int64 {
	var n int64
	for _, p := range pos {
		n += p.NextOffset
	}
	return n
}

// killWhileConsuming runs `clickagg run args...` and SIGKILLs it at a
// random moment (up to maxDelay) after each checkpoint it makes, at least
// minKills times and until producing reports false; every wipeEvery-th
// restart (from the second) first deletes the state folder dir, as a pod
// rescheduled without its volume. It returns the number of kills, and of
// those made while producing.
func (e *env) killWhileConsuming(args []string, dir string, minKills, wipeEvery int, maxDelay time.Duration,
	producing func() bool, rng *rand.Rand) (kills, whileProducing int) {
	e.t.Helper()
	ctx := context.Background()
	for kills < minKills || producing() {
		if kills%wipeEvery == wipeEvery-1 {
			if err := os.RemoveAll(dir); err != nil {
				e.t.Fatal(err)
			}
		}
		p := e.run(args...)
		before := sumNext(e.positions(ctx))
		waitFor(e.t, 2*time.Minute, "a checkpoint after restart", func() bool {
			n := sumNext(e.positions(ctx))
			return n > before || (!producing() && n == e.endOffsets(ctx))
		})
		time.Sleep(time.Duration(rng.Int64N(int64(maxDelay)))) // a random kill point, not a wait for a result
		if producing() {
			whileProducing++
		}
		p.kill(syscall.SIGKILL)
		p.wait(e.t, 10*time.Second)
		kills++
	}
	return kills, whileProducing
}
