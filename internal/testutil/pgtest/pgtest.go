// Package pgtest gives integration tests a fresh, empty PostgreSQL database.
// Test-only: imported by _test.go files, never by the binary.
//
// When DATABASE_URL is set, databases are created on that server (the role
// needs the CREATEDB privilege). Otherwise one throwaway server per test
// binary is started lazily with [pglocal.Start] and shared by all tests of
// the package. Use it like this:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		dsn := pgtest.DSN(t) // fresh database, dropped after the test
//		...
//	}
//
// When the PostgreSQL server binaries are not installed (and DATABASE_URL is
// not set), tests that need a database are skipped with a message saying
// how to install them, unless CLICKAGG_REQUIRE_POSTGRES is set, in which
// case they fail.
//
// Tests that stop or restart PostgreSQL get the shared server from [Server]
// (it is nil when DATABASE_URL is used: skip then). Pausing the shared server
// breaks every other test using it at the same time, so such tests must not
// run in parallel with other database tests of the package; [NewServer]
// gives a test a private server instead.
//
// If a package forgets pgtest.Main, the shared server still shuts itself
// down when the test binary exits (see the pglocal package documentation),
// but its temporary folder is only removed by a later run.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/clickagg/clickagg/internal/pglocal"
)

// RequireEnv names the environment variable that turns "PostgreSQL is not
// installed" from a skip into a failure.
const RequireEnv = "CLICKAGG_REQUIRE_POSTGRES"

const (
	startTimeout = 2 * time.Minute
	opTimeout    = 30 * time.Second
	maxNameLen   = 63 // NAMEDATALEN-1
)

var (
	once      sync.Once
	mu        sync.Mutex
	shared    *pglocal.Server
	sharedErr error
)

// DSN returns a DSN for a fresh, empty database for this test: when
// DATABASE_URL is set, it creates a uniquely named database on that server;
// otherwise it lazily starts one shared pglocal.Server per test binary and
// creates a fresh database on it. The database is dropped in t.Cleanup
// (forcibly, so connections still open then are terminated).
func DSN(t testing.TB) string {
	t.Helper()
	admin := os.Getenv("DATABASE_URL")
	if admin == "" {
		admin = Server(t).DSNFor("postgres")
	}
	name := dbName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := execSQL(ctx, admin, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if err := dropDatabase(ctx, admin, name); err != nil {
			t.Logf("pgtest: dropping database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// Server returns the shared local server (starting it if needed), or nil
// when DATABASE_URL is used. It skips or fails t when the server cannot be
// started.
func Server(t testing.TB) *pglocal.Server {
	t.Helper()
	if os.Getenv("DATABASE_URL") != "" {
		return nil
	}
	once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		s, err := pglocal.Start(ctx, pglocal.Options{})
		mu.Lock()
		shared, sharedErr = s, err
		mu.Unlock()
	})
	mu.Lock()
	s, err := shared, sharedErr
	mu.Unlock()
	if err != nil {
		fail(t, err)
	}
	return s
}

// NewServer starts a private local server for this test, stopped in
// t.Cleanup; for tests that stop or restart PostgreSQL while other tests
// run. It skips or fails t like Server. It ignores DATABASE_URL.
func NewServer(t testing.TB) *pglocal.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s, err := pglocal.Start(ctx, pglocal.Options{Logf: t.Logf})
	if err != nil {
		fail(t, err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// Main runs the tests and stops the shared server:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// It calls os.Exit(m.Run()) after cleanup. m is usually the *testing.M;
// a wrapper can stop more shared servers after the tests.
func Main(m interface{ Run() int }) {
	code := m.Run()
	mu.Lock()
	s := shared
	shared = nil
	mu.Unlock()
	if s != nil {
		if err := s.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stopping the shared PostgreSQL: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// fail skips t when PostgreSQL is not installed and RequireEnv is unset,
// and fails it otherwise.
func fail(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, pglocal.ErrNotInstalled) && os.Getenv(RequireEnv) == "" {
		t.Skipf("%v (set DATABASE_URL to use an existing server)", err)
	}
	t.Fatalf("pgtest: starting a local PostgreSQL: %v", err)
}

// dbName returns "t_" + the sanitized test name (lower case, runs of other
// characters than a-z and 0-9 replaced by "_") + "_" + a random suffix of 8
// hex digits, at most 63 bytes.
func dbName(testName string) string {
	var b strings.Builder
	underscore := false
	for _, r := range strings.ToLower(testName) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			underscore = false
		} else if !underscore {
			b.WriteByte('_')
			underscore = true
		}
	}
	suffix := fmt.Sprintf("_%08x", rand.Uint32())
	name := strings.Trim(b.String(), "_")
	name = strings.TrimRight(name[:min(len(name), maxNameLen-len("t_")-len(suffix))], "_")
	if name == "" {
		return "t" + suffix
	}
	return "t_" + name + suffix
}

// withDatabase returns dsn (URL or keyword/value form) with the database
// replaced by db.
func withDatabase(dsn, db string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parsing DATABASE_URL: %w", err)
		}
		u.Path, u.RawPath = "/"+db, ""
		q := u.Query()
		if q.Has("dbname") {
			q.Del("dbname")
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	// Keyword/value form: a later setting overrides an earlier one.
	return strings.TrimSpace(dsn) + " dbname=" + db, nil
}

func execSQL(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

func dropDatabase(ctx context.Context, admin, name string) error {
	ident := pgx.Identifier{name}.Sanitize()
	err := execSQL(ctx, admin, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42601" { // syntax error: before PostgreSQL 13
		err = execSQL(ctx, admin, "DROP DATABASE IF EXISTS "+ident)
	}
	return err
}
