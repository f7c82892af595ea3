package pgtest

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func query(t *testing.T, dsn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestDSNGivesFreshDatabases(t *testing.T) {
	var names []string
	for _, sub := range []string{"a", "b"} {
		t.Run(sub, func(t *testing.T) {
			dsn := DSN(t)
			db := query(t, dsn, "SELECT current_database()")
			if !strings.HasPrefix(db, "t_testdsngivesfreshdatabases_"+sub+"_") {
				t.Errorf("database name %q", db)
			}
			if n := query(t, dsn, "SELECT count(*)::text FROM pg_tables WHERE schemaname = 'public'"); n != "0" {
				t.Errorf("fresh database has %s tables", n)
			}
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			// Left open on purpose: the cleanup must drop the database anyway.
			t.Cleanup(func() { conn.Close(ctx) })
			if _, err := conn.Exec(ctx, "CREATE TABLE clicks (n int)"); err != nil {
				t.Fatal(err)
			}
			names = append(names, db)
		})
	}
	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("databases %v", names)
	}
	admin := os.Getenv("DATABASE_URL")
	if admin == "" {
		admin = Server(t).DSNFor("postgres")
	}
	for _, db := range names {
		if n := query(t, admin, "SELECT count(*)::text FROM pg_database WHERE datname = '"+db+"'"); n != "0" {
			t.Errorf("database %s not dropped", db)
		}
	}
}

func TestParallelDSN(t *testing.T) {
	for range 8 {
		t.Run("p", func(t *testing.T) {
			t.Parallel()
			if got := query(t, DSN(t), "SELECT 'ok'"); got != "ok" {
				t.Fatal(got)
			}
		})
	}
}

func TestServerRestart(t *testing.T) {
	s := NewServer(t)
	ctx := context.Background()
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := query(t, s.DSN(), "SELECT 'ok'"); got != "ok" {
		t.Fatal(got)
	}
	if os.Getenv("DATABASE_URL") == "" && Server(t) == nil {
		t.Fatal("Server returned nil without DATABASE_URL")
	}
}

func TestDBName(t *testing.T) {
	valid := regexp.MustCompile(`^t(_[a-z0-9]+)*_[0-9a-f]{8}$`)
	for _, name := range []string{
		"TestX",
		"TestFoo/sub_test#01",
		"Test/" + strings.Repeat("Ünïcode-", 30),
		"///",
	} {
		got := dbName(name)
		if len(got) > 63 || !valid.MatchString(got) || strings.Contains(got, "__") {
			t.Errorf("dbName(%q) = %q", name, got)
		}
	}
	if a, b := dbName("TestX"), dbName("TestX"); a == b {
		t.Errorf("dbName not random: %s", a)
	}
}

func TestWithDatabase(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"postgres://u:p@h:5432/app?sslmode=disable", "postgres://u:p@h:5432/t_x?sslmode=disable"},
		{"postgresql://h/", "postgresql://h/t_x"},
		{"postgres://h/app?dbname=app&sslmode=disable", "postgres://h/t_x?sslmode=disable"},
		{"host=h user=u dbname=app", "host=h user=u dbname=app dbname=t_x"},
	} {
		got, err := withDatabase(c.in, "t_x")
		if err != nil || got != c.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		if _, err := pgx.ParseConfig(got); err != nil {
			t.Errorf("pgx cannot parse %q: %v", got, err)
		}
	}
	cfg, _ := pgx.ParseConfig("host=h user=u dbname=app dbname=t_x")
	if cfg.Database != "t_x" {
		t.Errorf("keyword/value override: database %q", cfg.Database)
	}
}
