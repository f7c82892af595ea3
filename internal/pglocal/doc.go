// Package pglocal runs a throwaway PostgreSQL server for the demo command and
// for tests, when no DATABASE_URL is configured. Product runtime: `clickagg
// demo` and `clickagg bench` start one, so it is part of the binary; the
// tests use it through package pgtest.
//
// # Contract
//
//   - [FindBinDir] locates the server binaries (initdb, pg_ctl, postgres):
//     $PG_BIN if set (authoritative: if it does not hold them, the search
//     stops there), else the directory of initdb on PATH (symlinks resolved),
//     else the highest-version /usr/lib/postgresql/*/bin, else
//     /usr/local/pgsql/bin. When nothing is found the error wraps
//     [ErrNotInstalled], whose message says how to install the server
//     (scripts/ensure-postgres.sh does it on Debian/Ubuntu).
//
//   - [Start] creates a fresh temporary folder (clickagg-pg-* under
//     Options.Dir, default os.TempDir()), runs initdb into it with the
//     superuser role "clickagg" and trust authentication, starts postgres on
//     a free port of 127.0.0.1 only (the unix socket lives in the data
//     folder), waits until it accepts connections (polling, at most ~30 s)
//     and creates Options.Database (default "clickagg"). The settings favour
//     speed over durability (fsync=off, synchronous_commit=off,
//     full_page_writes=off, wal_level=minimal, small shared_buffers,
//     max_connections=200, jit=off; [Settings] lists them all, for
//     benchmarks to state); the server log goes to postgres.log in
//     the folder. If the chosen port is taken before postgres binds it,
//     Start retries with another port a few times. A failed Start leaves no
//     process and no folder behind; its error includes the tail of the
//     server log. The context bounds the start-up only, never the server.
//
//   - Running as root: initdb and postgres refuse to run as root, so they run
//     as the "postgres" system user if it exists, else as "nobody" (with no
//     supplementary groups), and the folder is chowned to that user. That
//     user must be able to reach Options.Dir (the default /tmp is fine; a
//     folder under /root is not).
//
//   - [Server.DSN] / [Server.DSNFor] return postgres:// URLs
//     (user clickagg, host 127.0.0.1, sslmode=disable) usable by pgx.
//
//   - [Server.PostmasterPID] reads the postmaster's process id from
//     postmaster.pid (its first line); backends and background workers are
//     the postmaster's children. Benchmarks read the server's CPU from it.
//
//   - [Server.Pause] stops the postmaster but keeps the data; [Server.Resume]
//     starts it again on the same port and data folder and waits until it is
//     ready; [Server.Restart] does both. Tests use them to simulate a
//     PostgreSQL restart or outage. Resume fails if another process took the
//     port in the meantime.
//
//   - [Server.Stop] performs a fast shutdown (SIGINT to the postmaster, which
//     is what "pg_ctl stop -m fast" sends; pg_ctl itself refuses to run as
//     root), escalating to SIGQUIT and then SIGKILL of the server's process
//     group if it does not exit in time, and removes the folder. It is safe
//     to call more than once and from several goroutines.
//
// # Process lifetime
//
// The postmaster runs in its own process group, so a Ctrl-C in a terminal
// reaches only the Go process and Stop can still shut the server down
// cleanly. Callers should always call Stop (defer it). As a safety net the
// postmaster is started with a parent-death signal (SIGINT, i.e. fast
// shutdown) from a dedicated OS thread that never exits, so it shuts itself
// down whenever the Go process ends without calling Stop — os.Exit, a panic,
// a fatal signal, even SIGKILL (Linux only). In those cases the temporary
// folder is left behind; the next Start in the same parent folder removes
// such leftovers once both their owning Go process and their postmaster are
// gone. On platforms without a parent-death signal nothing notices the death
// of the Go process, and the server keeps running until killed.
package pglocal
