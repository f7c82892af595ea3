package bench

import (
	"archive/zip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/kafkalocal"
	"github.com/clickagg/clickagg/internal/pglocal"
)

// requirePeersEnv turns "the peer jars are not built" into a test failure.
const requirePeersEnv = "CLICKAGG_REQUIRE_PEERS"

// peersDir is the repository's peers folder, located from this file.
func peersDir(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		t.Skip("cannot locate the repository from this test's source path")
	}
	return filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(file))), "peers")
}

// skipUnless skips t with why, or fails it when env is set.
func skipUnless(t *testing.T, env, why string) {
	t.Helper()
	if os.Getenv(env) != "" {
		t.Fatalf("%s (and %s is set)", why, env)
	}
	t.Skip(why)
}

// TestPeersExact runs the Flink job and the Kafka Streams app of the peer
// comparison on a small topic on the real broker and checks every window
// each wrote against the counts expected from the generated records, and
// their counts of invalid records.
func TestPeersExact(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, a Kafka broker, a Flink job and a Kafka Streams app")
	}
	peers := Peers(peersDir(t), []string{"-Xmx1g"})[:2] // flink, kstreams (a day's grace)
	for _, p := range peers {
		if _, _, err := PeerClassPath(p.Dir); err != nil {
			skipUnless(t, requirePeersEnv, err.Error())
		}
	}
	if ok, why := kafkalocal.Available(); !ok {
		skipUnless(t, "CLICKAGG_REQUIRE_KAFKA", why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	pg, err := pglocal.Start(ctx, pglocal.Options{Database: "bench"})
	if errors.Is(err, pglocal.ErrNotInstalled) {
		skipUnless(t, "CLICKAGG_REQUIRE_POSTGRES", err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	b, err := kafkalocal.Start(ctx, kafkalocal.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	env := Env{Brokers: []string{b.Addr()}, Broker: "kafka", DSN: pg.DSN(), Dir: t.TempDir(), Logf: t.Logf}

	w := Workload{Name: "peer-test", Records: 20_000, URLs: 500, Zipf: 1.1,
		Windows: []time.Duration{time.Minute}, EventSpan: 20 * time.Minute, Partitions: 4}
	exp, _, err := Preload(ctx, env, "peer-test", w, 1)
	if err != nil {
		t.Fatal(err)
	}
	// NB: Preload counts only the valid records of the clicks shape.
	invalid := w.Records - exp.Valid
	if invalid == 0 {
		t.Fatal("the workload has no invalid records: the test would not check they are skipped")
	}
	for _, p := range peers {
		t.Run(p.Name, func(t *testing.T) {
			r, err := RunPeer(ctx, env, p, "peer-test", w)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyPeer(ctx, env.DSN, PeerSchema(p.Name), time.Minute, exp, &r); err != nil {
				t.Fatal(err)
			}
			if !r.Verified {
				t.Errorf("%s", r.VerifyError)
			}
			if got := r.Extra["invalid_skipped"]; got != invalid {
				t.Errorf("skipped %v invalid records, want %d", got, invalid)
			}
			if r.ValidRecords != exp.Valid {
				t.Errorf("counted %d valid records, want %d", r.ValidRecords, exp.Valid)
			}
			if r.RowsWritten < int64(len(exp.Clicks)) {
				t.Errorf("wrote %d rows, fewer than the %d windows", r.RowsWritten, len(exp.Clicks))
			}
			t.Logf("%.1fs wall, %.1f CPU-s, %.0f MiB RSS, %d rows written", r.WallSeconds, r.CPUSeconds, r.PeakRSSMiB, r.RowsWritten)
		})
	}
}

func TestJDBCURL(t *testing.T) {
	for _, c := range []struct{ dsn, want string }{
		{"postgres://clickagg@127.0.0.1:5433/bench?sslmode=disable",
			"jdbc:postgresql://127.0.0.1:5433/bench?sslmode=disable&user=clickagg"},
		{"postgres://u:p%40ss@db.example:5432/clicks?sslmode=disable",
			"jdbc:postgresql://db.example:5432/clicks?password=p%40ss&sslmode=disable&user=u"},
		{"postgres://u@[::1]:5432/bench?sslmode=require", "jdbc:postgresql://[::1]:5432/bench?user=u"},
	} {
		got, err := JDBCURL(c.dsn)
		if err != nil || got != c.want {
			t.Errorf("JDBCURL(%q) = %q, %v; want %q", c.dsn, got, err, c.want)
		}
	}
}

func TestPeerClassPath(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := PeerClassPath(dir); !errors.Is(err, ErrPeerNotBuilt) {
		t.Fatalf("empty folder: %v, want ErrPeerNotBuilt", err)
	}
	target := filepath.Join(dir, "target")
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	jar := filepath.Join(target, "app-1.jar")
	f, err := os.Create(jar)
	if err != nil {
		t.Fatal(err)
	}
	z := zip.NewWriter(f)
	m, _ := z.Create("META-INF/MANIFEST.MF")
	_, _ = m.Write([]byte("Manifest-Version: 1.0\r\nMain-Class: dev.example.Main\r\n\r\n"))
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, name := range []string{".complete-123", "original-app-1.jar", "app-1-sources.jar"} {
		if err := os.WriteFile(filepath.Join(target, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cp, main, err := PeerClassPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(target, "lib", "*") + ":" + jar; cp != want || main != "dev.example.Main" {
		t.Errorf("PeerClassPath = %q, %q; want %q, dev.example.Main", cp, main, want)
	}
}
