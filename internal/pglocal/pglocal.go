package pglocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clickagg/clickagg/internal/child"
	"github.com/jackc/pgx/v5"
)

// ErrNotInstalled is returned (wrapped) when no PostgreSQL server binaries
// are found.
var ErrNotInstalled = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; " +
	"install the PostgreSQL server: apt-get install postgresql (Debian/Ubuntu; or run scripts/ensure-postgres.sh), " +
	"or set PG_BIN to the directory holding initdb")

// ErrStopped is returned by Pause, Resume and Restart after Stop.
var ErrStopped = errors.New("pglocal: server has been stopped")

const (
	// SuperUser is the superuser role created by initdb.
	SuperUser = "clickagg"
	// DefaultDatabase is the database created when Options.Database is "".
	DefaultDatabase = "clickagg"

	readyTimeout    = 30 * time.Second
	initdbTimeout   = 2 * time.Minute
	portAttempts    = 5
	fastStopTimeout = 20 * time.Second
	quitTimeout     = 5 * time.Second
	killTimeout     = 5 * time.Second
	logTailBytes    = 4096
	folderPrefix    = "clickagg-pg-"
	ownerFile       = "owner.pid"
	logFile         = "postgres.log"
	dataSubdir      = "data"
	maxSocketPath   = 100 // sun_path is 104 (BSD) or 108 (Linux) bytes
)

var binaries = []string{"initdb", "pg_ctl", "postgres"}

// FindBinDir returns the directory holding initdb, pg_ctl and postgres:
// $PG_BIN if set, else the directory of initdb on PATH (symlinks resolved),
// else the highest-version /usr/lib/postgresql/*/bin, else
// /usr/local/pgsql/bin. The error wraps ErrNotInstalled when none of them
// holds the binaries.
func FindBinDir() (string, error) {
	if dir := os.Getenv("PG_BIN"); dir != "" {
		if hasBinaries(dir) {
			return dir, nil
		}
		return "", fmt.Errorf("pglocal: PG_BIN=%s does not contain %s: %w",
			dir, strings.Join(binaries, ", "), ErrNotInstalled)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if dir := filepath.Dir(p); hasBinaries(dir) {
			return dir, nil
		}
	}
	if dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin"); len(dirs) > 0 {
		slices.SortFunc(dirs, func(a, b string) int {
			return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
		})
		for _, dir := range dirs {
			if hasBinaries(dir) {
				return dir, nil
			}
		}
	}
	if dir := "/usr/local/pgsql/bin"; hasBinaries(dir) {
		return dir, nil
	}
	return "", fmt.Errorf("pglocal: searched $PG_BIN, initdb on PATH, /usr/lib/postgresql/*/bin and /usr/local/pgsql/bin: %w",
		ErrNotInstalled)
}

func hasBinaries(dir string) bool {
	for _, name := range binaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// compareVersions compares dotted numeric versions ("9.6" < "10" < "15").
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return strings.Compare(a, b)
}

// Options configures Start.
type Options struct {
	Dir      string                           // parent for the temporary data folder; "" = os.TempDir()
	Database string                           // database to create; "" = "clickagg"
	Logf     func(format string, args ...any) // optional progress log
	// Settings, when not nil, replace the server settings (Settings()),
	// e.g. for a benchmark with durable production settings.
	Settings []string
}

// settings are the server settings the postmaster is started with (besides
// its port, listen address and socket folder): speed over durability.
var settings = []string{
	"fsync=off",
	"synchronous_commit=off",
	"full_page_writes=off",
	"wal_level=minimal",
	"max_wal_senders=0",
	"shared_buffers=16MB",
	"max_connections=200",
	"jit=off",
	"huge_pages=off",
	"max_parallel_workers_per_gather=0",
	"logging_collector=off",
	"log_checkpoints=off",
	"ssl=off",
}

// Settings returns the server settings (name=value) every Server runs
// with, besides its port, listen address and socket folder; the rest are
// PostgreSQL's defaults. A benchmark states them with its numbers.
func Settings() []string { return slices.Clone(settings) }

// Server is a running throwaway PostgreSQL. Its methods are safe for
// concurrent use.
type Server struct {
	binDir   string
	root     string // the temporary folder; removed by Stop
	dataDir  string
	sockDir  string // "" when the path would be too long for a unix socket
	logPath  string
	database string
	port     int
	logf     func(format string, args ...any)
	settings []string

	mu      sync.Mutex
	cred    *syscall.Credential // nil unless running as root
	proc    *child.Process      // nil while paused or stopped
	stopped bool
}

// Start runs initdb into a fresh temporary folder, starts postgres on a free
// loopback TCP port, waits until it accepts connections and creates
// Options.Database. ctx bounds the start-up only. See the package
// documentation for details.
func Start(ctx context.Context, opts Options) (*Server, error) {
	began := time.Now()
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	binDir, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	cred, userName, err := serverCredential()
	if err != nil {
		return nil, err
	}
	parent := opts.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	for _, dir := range child.RemoveStale(parent, folderPrefix, ownerFile, filepath.Join(dataSubdir, "postmaster.pid")) {
		logf("pglocal: removed leftover %s", dir)
	}

	root, err := os.MkdirTemp(parent, folderPrefix)
	if err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	s := &Server{
		binDir:   binDir,
		root:     root,
		database: opts.Database,
		logf:     logf,
		cred:     cred,
		settings: settings,
	}
	if opts.Settings != nil {
		s.settings = slices.Clone(opts.Settings)
	}
	started := false
	defer func() {
		if !started {
			if err := s.Stop(); err != nil {
				logf("pglocal: cleaning up after failed start: %v", err)
			}
		}
	}()
	if s.database == "" {
		s.database = DefaultDatabase
	}
	// Resolve symlinks so that the data_directory reported by the server
	// matches ours exactly (see waitReady).
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	s.root = root
	s.dataDir = filepath.Join(root, dataSubdir)
	s.logPath = filepath.Join(root, logFile)
	if len(s.dataDir)+len("/.s.PGSQL.65535") <= maxSocketPath {
		s.sockDir = s.dataDir
	}
	if err := os.WriteFile(filepath.Join(root, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	if err := s.chown(root); err != nil {
		return nil, err
	}

	if cred != nil {
		logf("pglocal: running as root; initdb and postgres run as user %q", userName)
	}
	logf("pglocal: initdb (%s) into %s", binDir, s.dataDir)
	initdbBegan := time.Now()
	if err := s.initdb(ctx); err != nil {
		if cred != nil && (errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "Permission denied")) {
			err = fmt.Errorf("%w (running as root, the server runs as user %q, which must be able to reach %s: "+
				"Options.Dir and its parents must be searchable by that user, e.g. mode 0755)", err, userName, root)
		}
		return nil, err
	}
	initdbTook := time.Since(initdbBegan)
	hba := "# written by pglocal: trust, loopback only\n" +
		"local all all trust\n" +
		"host  all all 127.0.0.1/32 trust\n"
	hbaPath := filepath.Join(s.dataDir, "pg_hba.conf")
	if err := os.WriteFile(hbaPath, []byte(hba), 0o600); err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	if err := s.chown(hbaPath); err != nil {
		return nil, err
	}

	s.mu.Lock()
	for attempt := 1; ; attempt++ {
		s.port, err = pickPort()
		if err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("pglocal: choosing a port: %w", err)
		}
		err = s.launch(ctx)
		if err == nil {
			break
		}
		if errors.Is(err, errPortInUse) && attempt < portAttempts && ctx.Err() == nil {
			logf("pglocal: port %d was taken, retrying with another one", s.port)
			continue
		}
		s.mu.Unlock()
		return nil, err
	}
	s.mu.Unlock()

	if s.database != "postgres" && s.database != "template1" {
		if err := s.createDatabase(ctx, s.database); err != nil {
			return nil, err
		}
	}
	logf("pglocal: PostgreSQL ready at %s (started in %v, of which initdb %v)", s.DSN(),
		time.Since(began).Round(time.Millisecond), initdbTook.Round(time.Millisecond))
	started = true
	return s, nil
}

// DSN returns a postgres:// URL for Options.Database (sslmode=disable),
// usable by pgx.
func (s *Server) DSN() string { return s.DSNFor(s.database) }

// DSNFor returns the DSN for another database on the same server.
func (s *Server) DSNFor(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(SuperUser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Database returns the name of the database created by Start.
func (s *Server) Database() string { return s.database }

// Port returns the TCP port the server listens on (on 127.0.0.1).
func (s *Server) Port() int { return s.port }

// DataDir returns the server's data directory.
func (s *Server) DataDir() string { return s.dataDir }

// Dir returns the temporary folder (data directory, log) removed by Stop.
func (s *Server) Dir() string { return s.root }

// PostmasterPID returns the process id of the running postmaster, from
// the first line of postmaster.pid in the data directory (the server's
// backends and background workers are its children).
func (s *Server) PostmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.dataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("pglocal: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pglocal: postmaster.pid: bad first line %q", line)
	}
	return pid, nil
}

// Settings returns the settings this server runs with (Options.Settings
// or the package's).
func (s *Server) Settings() []string { return slices.Clone(s.settings) }

// LogPath returns the path of the server log file.
func (s *Server) LogPath() string { return s.logPath }

// Stop shuts the server down (fast shutdown, escalating to killing it) and
// removes its folder. It is safe to call more than once; later calls return
// nil.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	err := s.halt()
	if rmErr := os.RemoveAll(s.root); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("pglocal: removing %s: %w", s.root, rmErr))
	}
	return err
}

// Pause stops the postmaster (fast shutdown) but keeps the data folder, so
// that Resume can start it again. Pausing a paused server is a no-op.
func (s *Server) Pause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	return s.halt()
}

// Resume starts the postmaster again on the same port and data folder and
// waits until it accepts connections. It is a no-op when the server is
// running; it also restarts a postmaster that died on its own.
func (s *Server) Resume(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	if s.proc != nil && !s.proc.Exited() {
		return nil
	}
	s.proc = nil
	err := s.launch(ctx)
	if errors.Is(err, errPortInUse) {
		return fmt.Errorf("pglocal: cannot resume, port %d is now used by another process: %w", s.port, err)
	}
	return err
}

// Restart is Pause followed by Resume.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Pause(); err != nil {
		return err
	}
	return s.Resume(ctx)
}

// StopServer is an alias of Pause.
func (s *Server) StopServer() error { return s.Pause() }

// StartServer is an alias of Resume.
func (s *Server) StartServer(ctx context.Context) error { return s.Resume(ctx) }

// ---------------------------------------------------------------------------
// initdb and postgres processes

func (s *Server) initdb(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, initdbTimeout)
	defer cancel()
	offset := s.logSize()
	logFile, err := s.openLog()
	if err != nil {
		return err
	}
	defer logFile.Close()
	args := []string{
		"-D", s.dataDir,
		"-U", SuperUser,
		"--auth=trust",
		"--encoding=UTF8",
		"--no-locale",
		"--no-sync",
	}
	p, err := s.spawn(func() *exec.Cmd {
		cmd := exec.Command(filepath.Join(s.binDir, "initdb"), args...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		return cmd
	}, syscall.SIGKILL)
	if err != nil {
		return fmt.Errorf("pglocal: starting initdb: %w", err)
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Kill(killTimeout)
		return fmt.Errorf("pglocal: initdb: %w%s", ctx.Err(), s.logTail(offset))
	}
	if err := p.Err(); err != nil {
		return fmt.Errorf("pglocal: initdb: %w%s", err, s.logTail(offset))
	}
	return nil
}

// errPortInUse marks a postmaster that exited because it could not bind its
// port.
var errPortInUse = errors.New("port already in use")

// launch starts the postmaster on s.port and waits until it is ready. On
// failure no postmaster is left running. s.mu must be held.
func (s *Server) launch(ctx context.Context) error {
	offset := s.logSize()
	logFile, err := s.openLog()
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own copy
	args := []string{
		"-D", s.dataDir,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + s.sockDir,
	}
	for _, kv := range s.settings {
		args = append(args, "-c", kv)
	}
	p, err := s.spawn(func() *exec.Cmd {
		cmd := exec.Command(filepath.Join(s.binDir, "postgres"), args...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		return cmd
	}, syscall.SIGINT)
	if err != nil {
		return fmt.Errorf("pglocal: starting postgres: %w", err)
	}
	s.proc = p
	if err := s.waitReady(ctx, p, offset); err != nil {
		if haltErr := s.halt(); haltErr != nil {
			s.logf("pglocal: %v", haltErr)
		}
		return err
	}
	return nil
}

// waitReady polls the server until it accepts connections, it exits, or the
// deadline passes.
func (s *Server) waitReady(ctx context.Context, p *child.Process, logOffset int64) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	// Abort a pending probe as soon as the postmaster exits.
	probeCtx, cancelProbe := context.WithCancel(ctx)
	defer cancelProbe()
	go func() {
		select {
		case <-p.Done():
			cancelProbe()
		case <-probeCtx.Done():
		}
	}()
	cfg, err := pgx.ParseConfig(s.DSNFor("postgres"))
	if err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	cfg.ConnectTimeout = 2 * time.Second
	delay := 5 * time.Millisecond
	var lastErr error
	for {
		if p.Exited() {
			tail := s.logTail(logOffset)
			if strings.Contains(tail, "Address already in use") ||
				strings.Contains(tail, "could not create any TCP/IP sockets") {
				return fmt.Errorf("pglocal: postgres could not bind 127.0.0.1:%d: %w%s", s.port, errPortInUse, tail)
			}
			return fmt.Errorf("pglocal: postgres exited during start-up (%v)%s", p.Err(), tail)
		}
		lastErr = s.probe(probeCtx, cfg)
		if lastErr == nil {
			return nil
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("pglocal: postgres on port %d not ready: %w (last error: %v)%s",
				s.port, ctx.Err(), lastErr, s.logTail(logOffset))
		case <-p.Done():
			timer.Stop()
		case <-timer.C:
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// probe connects once and checks that the server answering is ours (another
// server may have grabbed the port between choosing and binding).
func (s *Server) probe(ctx context.Context, cfg *pgx.ConnConfig) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var dir string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dir); err != nil {
		return err
	}
	if filepath.Clean(dir) != s.dataDir {
		return fmt.Errorf("port %d is served by another PostgreSQL (data directory %s)", s.port, dir)
	}
	return nil
}

func (s *Server) createDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, s.DSNFor("postgres"))
	if err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("pglocal: creating database %q: %w", name, err)
	}
	return nil
}

// halt stops the running postmaster, if any: SIGINT (fast shutdown), then
// SIGQUIT (immediate shutdown), then SIGKILL of its process group. s.mu must
// be held.
func (s *Server) halt() error {
	p := s.proc
	s.proc = nil
	if p == nil || p.Exited() {
		return nil
	}
	steps := []struct {
		sig     syscall.Signal
		timeout time.Duration
	}{{syscall.SIGINT, fastStopTimeout}, {syscall.SIGQUIT, quitTimeout}}
	for _, step := range steps {
		if p.Signal(step.sig, step.timeout) {
			return nil
		}
		s.logf("pglocal: postgres (pid %d) did not exit %v after %v", p.Pid(), step.timeout, step.sig)
	}
	if p.Kill(killTimeout) {
		return fmt.Errorf("pglocal: postgres (pid %d) did not shut down; killed it", p.Pid())
	}
	return fmt.Errorf("pglocal: postgres (pid %d) did not die after SIGKILL", p.Pid())
}

// spawn starts a child as s.cred (see child.Start). build is called again
// if the first attempt fails because setgroups is not permitted.
func (s *Server) spawn(build func() *exec.Cmd, deathSig syscall.Signal) (*child.Process, error) {
	for {
		cmd := build()
		cmd.Dir = s.root
		cmd.Env = childEnv()
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
		p, err := child.Start(cmd, deathSig)
		if err != nil && errors.Is(err, syscall.EPERM) && s.cred != nil && !s.cred.NoSetGroups {
			// setgroups may be denied (user namespaces); keep the groups.
			c := *s.cred
			c.NoSetGroups = true
			s.cred = &c
			continue
		}
		return p, err
	}
}

// childEnv is the environment without PG* variables (which could redirect
// initdb or postgres) and with the C locale.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// serverCredential returns the credential for initdb and postgres: nil unless
// running as root, else the postgres system user, else nobody.
func serverCredential() (*syscall.Credential, string, error) {
	if os.Geteuid() != 0 {
		return nil, "", nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, name, nil
	}
	return nil, "", errors.New("pglocal: running as root, and neither a postgres nor a nobody user exists to run the server as")
}

func (s *Server) chown(path string) error {
	if s.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	return nil
}

// ---------------------------------------------------------------------------
// log file

func (s *Server) openLog() (*os.File, error) {
	f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	return f, nil
}

func (s *Server) logSize() int64 {
	fi, err := os.Stat(s.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logTail returns the end of what was logged since offset, formatted for
// appending to an error message.
func (s *Server) logTail(offset int64) string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	start := max(offset, fi.Size()-logTailBytes)
	if start >= fi.Size() {
		return ""
	}
	buf := make([]byte, fi.Size()-start)
	n, _ := f.ReadAt(buf, start)
	buf = bytes.TrimSpace(buf[:n])
	if len(buf) == 0 {
		return ""
	}
	if start > offset {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return fmt.Sprintf("\n--- %s (tail) ---\n%s", s.logPath, buf)
}

// ---------------------------------------------------------------------------
// ports

// pickPort returns a port that is free on 127.0.0.1. It prefers ports below
// the kernel's ephemeral range, so that outgoing connections and other
// programs asking for port 0 are unlikely to take it while the server is
// paused.
func pickPort() (int, error) {
	if lo := ephemeralLow(); lo > 20000 {
		const base = 15000
		for range 50 {
			port := base + rand.IntN(lo-base)
			if portFree(port) {
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0
	}
	lo, _ := strconv.Atoi(fields[0])
	return lo
}
