package bench

// The peer comparison (`clickagg bench --peers`): the same pre-loaded topic
// through other stream processors — a Flink job and a Kafka Streams app,
// each a JVM program in peers/NAME built by scripts/ensure-peers.sh — on the
// same broker and PostgreSQL, measured like RunAggregator and compared
// window by window with clickagg's url_clicks and with the oracle.
//
// A peer follows one command-line contract (peers/flink/README.md): it reads
// the topic from the earliest offsets up to the end offsets at its start,
// counts each URL's clicks per tumbling event-time window, upserts the
// counts into SCHEMA.url_clicks (created here) and exits 0, printing a
// one-line JSON summary on stdout.

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Peer is one contender: a JVM program under Dir (its jar in Dir/target,
// the jars it needs in Dir/target/lib, its main class in the jar's
// manifest).
type Peer struct {
	Name string // also names its schema, bench_peer_<name>, and consumer group
	Dir  string
	// LatenessMs is how long after a window closes a late record still
	// updates it (Flink's allowed lateness, Kafka Streams' grace).
	LatenessMs int64
	Args       []string // further arguments, e.g. Flink's --checkpoint-ms
	JVMOpts    []string
}

// ErrPeerNotBuilt is returned (wrapped) by PeerCommand when a peer's jars
// are missing.
var ErrPeerNotBuilt = errors.New("bench: peer not built (run make peers)")

// Peers are the standard contenders under dir (e.g. "peers"): flink with
// an allowed lateness of 30 minutes, kstreams with a grace of a day, and
// kstreams-grace5s, which shows what a grace as short as the
// out-of-orderness bound drops. Like clickagg with late policy count, the
// first two must drop no record. Kafka Streams needs the longer grace: its
// stream time is per task, and after the repartition a task's follows the
// fastest input partition, so on a backlog records of slower partitions
// arrive "late" by however far the reading of the partitions drifted
// apart (with 30 minutes it dropped 118 of 1 M and 2,926 of 2 M records
// in the peer's own tests; a day covers the workloads' event time whole).
func Peers(dir string, jvmOpts []string) []Peer {
	const lateness = 30 * 60 * 1000
	return []Peer{
		{Name: "flink", Dir: filepath.Join(dir, "flink"), LatenessMs: lateness,
			Args: []string{"--checkpoint-ms", "10000"}, JVMOpts: jvmOpts},
		{Name: "kstreams", Dir: filepath.Join(dir, "kstreams"), LatenessMs: 24 * 60 * 60 * 1000, JVMOpts: jvmOpts},
		{Name: "kstreams-grace5s", Dir: filepath.Join(dir, "kstreams"), LatenessMs: 5000, JVMOpts: jvmOpts},
	}
}

// PeerSchema is the schema a peer writes to.
func PeerSchema(name string) string {
	return "bench_peer_" + strings.ReplaceAll(name, "-", "_")
}

// PeerClassPath returns the class path of the peer built in dir and its
// main class (from the jar's manifest), or an error wrapping
// ErrPeerNotBuilt.
func PeerClassPath(dir string) (classPath, mainClass string, err error) {
	jars, _ := filepath.Glob(filepath.Join(dir, "target", "*.jar"))
	jars = slices.DeleteFunc(jars, func(j string) bool {
		// NB: the shade plugin leaves the unshaded jar as original-*.jar.
		return strings.HasSuffix(j, "-sources.jar") || strings.HasSuffix(j, "-tests.jar") ||
			strings.HasPrefix(filepath.Base(j), "original-")
	})
	markers, _ := filepath.Glob(filepath.Join(dir, "target", ".complete-*"))
	if len(jars) != 1 || len(markers) == 0 {
		return "", "", fmt.Errorf("%w: want one jar and a .complete-* marker in %s, found %d jars and %d markers",
			ErrPeerNotBuilt, filepath.Join(dir, "target"), len(jars), len(markers))
	}
	main, err := manifestMainClass(jars[0])
	if err != nil {
		return "", "", err
	}
	return filepath.Join(dir, "target", "lib", "*") + string(filepath.ListSeparator) + jars[0], main, nil
}

// manifestMainClass reads Main-Class from a jar's manifest.
func manifestMainClass(jar string) (string, error) {
	z, err := zip.OpenReader(jar)
	if err != nil {
		return "", err
	}
	defer z.Close()
	f, err := z.Open("META-INF/MANIFEST.MF")
	if err != nil {
		return "", fmt.Errorf("%s: %w", jar, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Main-Class:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s: no Main-Class in its manifest (set it with maven-jar-plugin's archive/manifest/mainClass)", jar)
}

// JDBCURL turns a PostgreSQL DSN into a JDBC URL for the same database.
func JDBCURL(dsn string) (string, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "", err
	}
	q := url.Values{"user": {cfg.User}}
	if cfg.Password != "" {
		q.Set("password", cfg.Password)
	}
	if cfg.TLSConfig == nil {
		q.Set("sslmode", "disable")
	}
	return fmt.Sprintf("jdbc:postgresql://%s/%s?%s",
		net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), url.PathEscape(cfg.Database), q.Encode()), nil
}

// RunPeer creates the peer's schema (dropping an earlier one), runs the
// peer over topic with a consumer group of its own and measures it: wall
// time, its CPU and peak RSS from rusage, PostgreSQL's and the broker's CPU
// over the run, and the url_clicks rows it wrote (inserts plus updates).
// Extra holds the peer's own summary (records read, invalid skipped).
// Correctness is checked apart: ComparePeer and VerifyPeer.
func RunPeer(ctx context.Context, env Env, p Peer, topic string, w Workload) (Result, error) {
	if len(w.Windows) != 1 {
		return Result{}, fmt.Errorf("peer %s: the workload has %d window sizes; peers count one", p.Name, len(w.Windows))
	}
	cp, main, err := PeerClassPath(p.Dir)
	if err != nil {
		return Result{}, fmt.Errorf("peer %s: %w", p.Name, err)
	}
	jdbc, err := JDBCURL(env.DSN)
	if err != nil {
		return Result{}, err
	}
	schema := PeerSchema(p.Name)
	if err := createPeerSchema(ctx, env.DSN, schema); err != nil {
		return Result{}, err
	}
	group := topic + "-" + p.Name
	args := append(slices.Clone(p.JVMOpts), "-cp", cp, main,
		"--brokers", strings.Join(env.Brokers, ","), "--topic", topic, "--group", group,
		"--jdbc-url", jdbc, "--schema", schema,
		"--window-ms", strconv.FormatInt(w.Windows[0].Milliseconds(), 10),
		"--out-of-orderness-ms", "5000", "--lateness-ms", strconv.FormatInt(p.LatenessMs, 10),
		"--parallelism", "2")
	args = append(args, p.Args...)
	cmd := exec.CommandContext(ctx, "java", args...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	tail := &tailWriter{max: 40}
	var logOut io.Writer = tail
	if env.LogDir != "" {
		f, err := os.Create(filepath.Join(env.LogDir, group+".log"))
		if err != nil {
			return Result{}, err
		}
		defer f.Close()
		logOut = io.MultiWriter(f, tail)
	}
	cmd.Stderr = logOut

	marks, err := markServers(env)
	if err != nil {
		return Result{}, err
	}
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("peer %s: %w\n%s", p.Name, err, tail)
	}
	wall := time.Since(t0)
	r := Result{
		Workload: w.Name, Contender: p.Name, Shape: w.Shape, Records: w.Records,
		Windows:     []string{shortDuration(w.Windows[0])},
		WallSeconds: wall.Seconds(),
		CPUSeconds:  (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds(),
		Extra:       map[string]any{},
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.PeakRSSMiB = float64(ru.Maxrss) / 1024
	}
	r.RecordsPerSec = float64(w.Records) / r.WallSeconds
	r.RecordsPerCPU = float64(w.Records) / r.CPUSeconds
	if err := marks.finish(env, &r); err != nil {
		return r, err
	}
	var summary map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &summary) == nil {
			break
		}
	}
	if summary == nil {
		return r, fmt.Errorf("peer %s: no JSON summary on stdout (%q)", p.Name, stdout.String())
	}
	r.ValidRecords = int64(num(summary["valid"]))
	r.Extra["invalid_skipped"] = int64(num(summary["invalid"]))
	if read := int64(num(summary["records"])); read != w.Records {
		r.Extra["records_read"] = read
	}
	r.RowsWritten, err = peerRowsWritten(ctx, env.DSN, schema)
	return r, err
}

// createPeerSchema (re)creates schema with the url_clicks table a peer
// writes.
func createPeerSchema(ctx context.Context, dsn, schema string) error {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	_, err = pool.Exec(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE;
CREATE SCHEMA `+schema+`;
CREATE TABLE `+schema+`.url_clicks (url text NOT NULL, window_start timestamptz NOT NULL,
	window_end timestamptz NOT NULL, clicks bigint NOT NULL, PRIMARY KEY (url, window_start))`)
	if err != nil {
		return fmt.Errorf("create schema %s: %w", schema, err)
	}
	return nil
}

// peerRowsWritten returns the inserts plus updates of schema.url_clicks.
// A session reports its counters to the statistics when it ends, which
// happens just after the peer exits: wait (at most 10 s) until no other
// session of the database is left before reading them.
func peerRowsWritten(ctx context.Context, dsn, schema string) (int64, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		var others int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE backend_type = 'client backend' AND datname = current_database() AND pid <> pg_backend_pid()`).Scan(&others)
		if err != nil {
			return 0, err
		}
		if others == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	// NB: this session's own pending counters; the ended sessions' are in.
	_, _ = pool.Exec(ctx, `SELECT pg_stat_force_next_flush()`)
	var n int64
	err = pool.QueryRow(ctx, `SELECT coalesce(sum(n_tup_ins + n_tup_upd), 0)::bigint
FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'url_clicks'`, schema).Scan(&n)
	return n, err
}

// ComparePeer compares the peer's windows with clickagg's (refSchema's
// url_clicks rows of the window size) and adds to r.Extra the windows that
// match, differ, are missing or extra, and the clicks missing and extra,
// summed over the windows.
func ComparePeer(ctx context.Context, dsn, schema, refSchema string, window time.Duration, r *Result) error {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	var match, differ, missing, extra, clicksMissing, clicksExtra int64
	err = pool.QueryRow(ctx, `WITH ref AS (
	SELECT url, window_start, clicks FROM `+refSchema+`.url_clicks WHERE window_size = $1::interval)
SELECT count(*) FILTER (WHERE r.clicks = p.clicks),
	count(*) FILTER (WHERE r.clicks <> p.clicks),
	count(*) FILTER (WHERE p.url IS NULL),
	count(*) FILTER (WHERE r.url IS NULL),
	coalesce(sum(greatest(coalesce(r.clicks, 0) - coalesce(p.clicks, 0), 0)), 0)::bigint,
	coalesce(sum(greatest(coalesce(p.clicks, 0) - coalesce(r.clicks, 0), 0)), 0)::bigint
FROM ref r FULL OUTER JOIN `+schema+`.url_clicks p ON p.url = r.url AND p.window_start = r.window_start`,
		fmt.Sprintf("%d milliseconds", window.Milliseconds())).
		Scan(&match, &differ, &missing, &extra, &clicksMissing, &clicksExtra)
	if err != nil {
		return fmt.Errorf("compare %s with %s: %w", schema, refSchema, err)
	}
	if r.Extra == nil {
		r.Extra = map[string]any{}
	}
	r.Extra["windows_match"] = match
	r.Extra["windows_differ"] = differ
	r.Extra["windows_missing"] = missing
	r.Extra["windows_extra"] = extra
	r.Extra["clicks_missing"] = clicksMissing
	if clicksExtra > 0 {
		r.Extra["clicks_extra"] = clicksExtra
	}
	return nil
}

// VerifyPeer compares every row of the peer's url_clicks with the counts
// expected for the window size, setting r.Verified or r.VerifyError.
func VerifyPeer(ctx context.Context, dsn, schema string, window time.Duration, exp oracle.Expected, r *Result) error {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	rows, err := pool.Query(ctx, `SELECT url, (extract(epoch FROM window_start) * 1000)::bigint,
	(extract(epoch FROM window_end) * 1000)::bigint, clicks FROM `+schema+`.url_clicks`)
	if err != nil {
		return err
	}
	defer rows.Close()
	seen := 0
	var wrong, extra int
	var first string
	for rows.Next() {
		var k oracle.Key
		var n int64
		if err := rows.Scan(&k.URL, &k.Start, &k.End, &n); err != nil {
			return err
		}
		want, ok := exp.Clicks[k]
		switch {
		case !ok:
			extra++
		case n != want:
			wrong++
		default:
			seen++
			continue
		}
		if first == "" {
			first = fmt.Sprintf("%s: %d clicks, want %d", k, n, want)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	total := 0
	for k := range exp.Clicks {
		if k.End-k.Start == window.Milliseconds() {
			total++
		}
	}
	missing := total - seen - wrong
	if wrong == 0 && extra == 0 && missing == 0 {
		r.Verified = true
		return nil
	}
	r.Verified = false
	r.VerifyError = fmt.Sprintf("vs the oracle: %d of %d windows wrong, %d missing, %d extra (first: %s)",
		wrong, total, missing, extra, first)
	return nil
}

// tailWriter keeps the last max lines written to it.
type tailWriter struct {
	max   int
	lines []string
	part  []byte
}

func (t *tailWriter) Write(b []byte) (int, error) {
	t.part = append(t.part, b...)
	for {
		i := bytes.IndexByte(t.part, '\n')
		if i < 0 {
			break
		}
		t.lines = append(t.lines, string(t.part[:i]))
		t.part = t.part[i+1:]
		if len(t.lines) > t.max {
			t.lines = t.lines[1:]
		}
	}
	return len(b), nil
}

func (t *tailWriter) String() string {
	return strings.Join(append(slices.Clone(t.lines), string(t.part)), "\n")
}
