package pglocal

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// requirePostgres skips the test when the server binaries are missing,
// unless CLICKAGG_REQUIRE_POSTGRES is set, in which case it fails.
func requirePostgres(t *testing.T) {
	t.Helper()
	_, err := FindBinDir()
	if err == nil {
		return
	}
	if errors.Is(err, ErrNotInstalled) && os.Getenv("CLICKAGG_REQUIRE_POSTGRES") == "" {
		t.Skip(err.Error())
	}
	t.Fatal(err)
}

// tempDir returns a fresh folder for Options.Dir. When the tests run as
// root, the server runs as another user, which must be able to reach it, so
// the folder and its parent (created by t.TempDir with mode 0700) are made
// searchable.
func tempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began := time.Now()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start took %v", time.Since(began))
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func queryOne(t *testing.T, dsn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(ctx)
	var out string
	if err := conn.QueryRow(ctx, sql).Scan(&out); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func TestServerLifecycle(t *testing.T) {
	requirePostgres(t)
	t.Parallel()
	parent := tempDir(t)
	s := startServer(t, Options{Dir: parent})

	if got := queryOne(t, s.DSN(), "SELECT current_database() || ' ' || current_user"); got != "clickagg clickagg" {
		t.Fatalf("database/user = %q", got)
	}
	if got := queryOne(t, s.DSN(), "SHOW fsync"); got != "off" {
		t.Errorf("fsync = %q", got)
	}
	if got := queryOne(t, s.DSN(), "SHOW max_connections"); got != "200" {
		t.Errorf("max_connections = %q", got)
	}
	for _, kv := range Settings() {
		name, want, _ := strings.Cut(kv, "=")
		if got := queryOne(t, s.DSN(), "SHOW "+name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	pid, err := s.PostmasterPID()
	if err != nil {
		t.Fatal(err)
	}
	if pid != s.proc.Pid() {
		t.Errorf("PostmasterPID() = %d, the postgres process started is %d", pid, s.proc.Pid())
	}
	// A backend (of a connection still open) is the postmaster's child.
	if _, err := os.Stat("/proc/self/status"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := pgx.Connect(ctx, s.DSN())
		if err != nil {
			t.Fatal(err)
		}
		backend := int(conn.PgConn().PID())
		b, err := os.ReadFile("/proc/" + strconv.Itoa(backend) + "/status")
		conn.Close(ctx)
		cancel()
		if err != nil || !strings.Contains(string(b), "\nPPid:\t"+strconv.Itoa(pid)+"\n") {
			t.Errorf("backend %d is not a child of the postmaster %d: %v\n%s", backend, pid, err, b)
		}
	}
	if got := queryOne(t, s.DSNFor("postgres"), "SELECT current_database()"); got != "postgres" {
		t.Errorf("DSNFor(postgres) connects to %q", got)
	}
	if !strings.HasPrefix(s.DataDir(), s.Dir()) || !strings.Contains(s.DSN(), ":"+strconv.Itoa(s.Port())+"/") {
		t.Errorf("inconsistent DataDir %q / Dir %q / DSN %q / Port %d", s.DataDir(), s.Dir(), s.DSN(), s.Port())
	}

	// Data survives Pause/Resume; the port stays the same; the server is
	// unreachable while paused.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE clicks (n int); INSERT INTO clicks VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	dsn := s.DSN()
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(); err != nil {
		t.Fatalf("second Pause: %v", err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("query on old connection succeeded while paused")
	}
	conn.Close(ctx)
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	if c, err := pgx.Connect(short, dsn); err == nil {
		c.Close(ctx)
		t.Fatal("connected while paused")
	}
	cancelShort()
	began := time.Now()
	if err := s.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Resume took %v", time.Since(began))
	if s.DSN() != dsn {
		t.Fatalf("DSN changed across Pause/Resume: %s -> %s", dsn, s.DSN())
	}
	if got := queryOne(t, s.DSN(), "SELECT n::text FROM clicks"); got != "42" {
		t.Fatalf("after Resume: %q", got)
	}
	if err := s.Resume(ctx); err != nil {
		t.Fatalf("Resume of a running server: %v", err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := queryOne(t, s.DSN(), "SELECT count(*)::text FROM clicks"); got != "1" {
		t.Fatalf("after Restart: %q", got)
	}

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(s.Dir()); !os.IsNotExist(err) {
		t.Fatalf("folder %s still exists after Stop (err=%v)", s.Dir(), err)
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Fatalf("parent folder not empty after Stop: %v", left)
	}
	if err := s.Resume(ctx); !errors.Is(err, ErrStopped) {
		t.Fatalf("Resume after Stop = %v, want ErrStopped", err)
	}
	if c, err := pgx.Connect(short, dsn); err == nil {
		c.Close(ctx)
		t.Fatal("connected after Stop")
	}
}

func TestCustomDatabaseAndDefaultDir(t *testing.T) {
	requirePostgres(t)
	t.Parallel()
	s := startServer(t, Options{Database: "other"})
	if !strings.HasPrefix(s.Dir(), resolve(os.TempDir())) {
		t.Errorf("Dir %s not under %s", s.Dir(), os.TempDir())
	}
	if got := queryOne(t, s.DSN(), "SELECT current_database()"); got != "other" {
		t.Fatalf("current_database = %q", got)
	}
}

func resolve(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

func TestResumeFailsWhenPortTaken(t *testing.T) {
	requirePostgres(t)
	t.Parallel()
	s := startServer(t, Options{Dir: tempDir(t)})
	began := time.Now()
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Pause took %v", time.Since(began))
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port())))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = s.Resume(ctx)
	if err == nil {
		t.Fatal("Resume succeeded although the port is taken")
	}
	if !strings.Contains(err.Error(), "postgres.log (tail)") {
		t.Errorf("error lacks the log tail: %v", err)
	}
	t.Logf("expected error: %v", err)
	l.Close()
	began = time.Now()
	if err := s.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Resume took %v", time.Since(began))
	if got := queryOne(t, s.DSN(), "SELECT 'ok'"); got != "ok" {
		t.Fatal(got)
	}
}

func TestFailedStartCleansUp(t *testing.T) {
	requirePostgres(t)
	t.Parallel()
	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		parent := tempDir(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if s, err := Start(ctx, Options{Dir: parent}); err == nil {
			s.Stop()
			t.Fatal("Start with a cancelled context succeeded")
		} else {
			t.Logf("expected error: %v", err)
		}
		checkNothingLeft(t, parent)
	})
	t.Run("after postmaster started", func(t *testing.T) {
		t.Parallel()
		parent := tempDir(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// template0 already exists, so creating it fails once the server
		// is up.
		if s, err := Start(ctx, Options{Dir: parent, Database: "template0", Logf: t.Logf}); err == nil {
			s.Stop()
			t.Fatal("Start creating template0 succeeded")
		} else if !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("unexpected error: %v", err)
		}
		checkNothingLeft(t, parent)
	})
	t.Run("not reachable", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("only as root")
		}
		t.Parallel()
		parent := t.TempDir() // 0700, not searchable by the server user
		_, err := Start(context.Background(), Options{Dir: parent})
		if err == nil || !strings.Contains(err.Error(), "must be able to reach") {
			t.Fatalf("Start in an unreachable folder: %v", err)
		}
		checkNothingLeft(t, parent)
	})
}

// checkNothingLeft checks that parent is empty and that no process mentions
// it on its command line.
func checkNothingLeft(t *testing.T, parent string) {
	t.Helper()
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("failed Start left %v behind", left)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), parent) {
			t.Errorf("process %s still running: %q", p, b)
		}
	}
}

func TestRemovesLeftovers(t *testing.T) {
	requirePostgres(t)
	t.Parallel()
	parent := tempDir(t)
	// A folder whose owner is dead, one whose owner is alive, one without
	// an owner file.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(name, owner string) string {
		dir := filepath.Join(parent, name)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	stale := mk(folderPrefix+"stale", strconv.Itoa(dead.Process.Pid))
	alive := mk(folderPrefix+"alive", strconv.Itoa(os.Getppid()))
	noOwner := mk(folderPrefix+"noowner", "")
	other := mk("unrelated", strconv.Itoa(dead.Process.Pid))

	startServer(t, Options{Dir: parent})
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale folder not removed (err=%v)", err)
	}
	for _, dir := range []string{alive, noOwner, other} {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("%s removed: %v", dir, err)
		}
	}
}

func TestFindBinDir(t *testing.T) {
	t.Setenv("PG_BIN", filepath.Join(t.TempDir(), "nowhere"))
	_, err := FindBinDir()
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("FindBinDir with a bogus PG_BIN = %v, want ErrNotInstalled", err)
	}
	if !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("error does not say how to install: %v", err)
	}

	t.Setenv("PG_BIN", "")
	dir, err := FindBinDir()
	if errors.Is(err, ErrNotInstalled) {
		if os.Getenv("CLICKAGG_REQUIRE_POSTGRES") != "" {
			t.Fatal(err)
		}
		t.Skip(err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PG_BIN", dir)
	if got, err := FindBinDir(); err != nil || got != dir {
		t.Fatalf("FindBinDir with PG_BIN=%s = %q, %v", dir, got, err)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{{"9.6", "10", -1}, {"15", "10", 1}, {"15", "15", 0}, {"9.6", "9.5", 1}, {"16", "9.6", 1}} {
		if got := compareVersions(c.a, c.b); got != c.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
