package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	pprofrt "runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clickagg/clickagg/checkpoint"
	"github.com/clickagg/clickagg/internal/backoff"
	"github.com/clickagg/clickagg/internal/statuspage"
	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/state"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clickagg run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := configFlags(fs)
	printConfig := fs.Bool("print-config", false, "print the effective configuration (secrets redacted) and exit")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (benchmarks)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return badConfig("run: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if *printConfig {
		fmt.Fprint(stdout, cfg.Redacted())
		return nil
	}
	if err := cfg.requirePostgres(); err != nil {
		return err
	}
	log, err := newLogger(cfg.Log.Level, cfg.Log.Format, stderr)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprofrt.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprofrt.StopCPUProfile()
	}
	return runPipeline(ctx, cfg, log, nil)
}

// runHooks let the demo (and tests) watch a pipeline they start
// in-process.
type runHooks struct {
	started   func(*checkpoint.Pipeline, *pgxpool.Pool)
	listening func(addr string) // the HTTP server's address
}

// runPipeline wires the aggregator: the HTTP endpoints first (so that
// /healthz answers from the first second and /readyz says what start-up
// waits for), then PostgreSQL (schema applied), the state store and the
// pipeline, until ctx ends.
func runPipeline(ctx context.Context, cfg *Config, log *zap.Logger, hooks *runHooks) error {
	for _, c := range cfg.envConflicts {
		log.Warn("environment: " + c)
	}
	log.Info("starting clickagg", zap.String("version", version), zap.Strings("brokers", cfg.Brokers),
		zap.String("topic", cfg.Topic), zap.String("group", cfg.Group), zap.Strings("windows", cfg.Windows),
		zap.String("state_dir", cfg.StateDir), zap.String("postgres_schema", cfg.PostgresSchema),
		zap.Stringer("input", cfg.inputOptions()))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clickagg_build_info",
		Help: "Always 1; the labels say which build runs (version: the release tag or commit; goversion: the Go toolchain)."},
		[]string{"version", "goversion"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	reg.MustRegister(buildInfo)
	metrics := checkpoint.NewMetrics(reg)

	// NB: everything below runs in g: an HTTP failure stops start-up and
	// the pipeline through the same clean path as SIGTERM.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	g, gctx := errgroup.WithContext(runCtx)
	st := &startup{}
	st.set("connecting to postgres")
	if cfg.HTTPAddr != "" {
		srv, ln, err := newHTTPServer(cfg.HTTPAddr, reg, st, cfg.HTTPPprof, statusPage(cfg, reg, st, log))
		if err != nil {
			return err
		}
		log.Info("http listening", zap.String("addr", ln.Addr().String()))
		if hooks != nil && hooks.listening != nil {
			hooks.listening(ln.Addr().String())
		}
		g.Go(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http server: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}
	g.Go(func() error {
		err := runStages(gctx, cfg, log, hooks, reg, metrics, st)
		if err == nil {
			err = errStopped // NB: unblocks the HTTP server's shutdown
		}
		return err
	})
	if err := g.Wait(); err != nil && !errors.Is(err, errStopped) {
		return err
	}
	return nil
}

// startup is what the HTTP endpoints see of a starting process: what it
// waits for, then the running pipeline, its PostgreSQL writer and the
// status page's reader.
type startup struct {
	phase    atomic.Pointer[string]
	pipeline atomic.Pointer[checkpoint.Pipeline]
	writer   atomic.Pointer[sink.Writer]
	reader   atomic.Pointer[sink.Reader]
}

func (s *startup) set(phase string) { s.phase.Store(&phase) }

// statusPage returns the status page's handler over st, or nil when
// http_status_page is off.
func statusPage(cfg *Config, reg *prometheus.Registry, st *startup, log *zap.Logger) *statuspage.Handler {
	if !cfg.HTTPStatusPage {
		return nil
	}
	hostname, _ := os.Hostname()
	return statuspage.New(statuspage.Source{
		Process: statuspage.Process{Name: hostname, Version: version, Group: cfg.Group, Topic: cfg.Topic,
			InstanceID: cfg.InstanceID, StartedAt: time.Now().UTC()},
		Windows: cfg.windows,
		Phase:   func() string { return *st.phase.Load() },
		Status: func() (checkpoint.Status, bool) {
			if pl := st.pipeline.Load(); pl != nil {
				return pl.Status(), true
			}
			return checkpoint.Status{}, false
		},
		Reader:  st.reader.Load,
		Metrics: reg,
		Log:     log,
	})
}

// runStages connects to PostgreSQL (waiting for it), opens the state store
// and runs the pipeline, restarting it in-process after a store failure
// it can rebuild from.
func runStages(ctx context.Context, cfg *Config, log *zap.Logger, hooks *runHooks, reg *prometheus.Registry, metrics *checkpoint.Metrics, st *startup) error {
	pool, err := sink.NewPool(ctx, cfg.Postgres)
	if err != nil {
		return err
	}
	defer pool.Close()
	// NB: PostgreSQL may come up after us (a pod starting with its
	// database); wait for it rather than crash-loop.
	wait := backoff.Backoff{Base: 200 * time.Millisecond, Max: 5 * time.Second}
	for {
		err := migrate(ctx, pool, cfg.PostgresSchema, log)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			// NB: SIGTERM while waiting: nothing was consumed, nothing is
			// lost; a clean stop (exit 0), as after any other SIGTERM.
			log.Info("stopped while waiting for postgres")
			return nil
		}
		if !sink.Retryable(err) {
			return err
		}
		st.set(fmt.Sprintf("waiting for postgres (attempt %d): %v", wait.Attempts()+1, err))
		d := wait.Next()
		log.Warn("postgres unavailable at start; retrying", zap.Int("retry", wait.Attempts()), zap.Duration("backoff", d), zap.Error(err))
		if backoff.Sleep(ctx, d) != nil {
			log.Info("stopped while waiting for postgres")
			return nil
		}
	}
	hostname, _ := os.Hostname()
	// NB: load validated these options already (Config.finish), before
	// any connection.
	popts := cfg.pipelineOptions("clickagg-"+hostname, log, metrics)
	st.set("checking the schema's pipeline identity")
	if err := claimPipeline(ctx, pool, cfg, popts, log); err != nil {
		if ctx.Err() != nil {
			log.Info("stopped while checking the pipeline identity")
			return nil
		}
		return err
	}
	w, err := sink.NewWriter(pool, sink.Options{Schema: cfg.PostgresSchema, Group: cfg.Group, Topic: cfg.Topic})
	if err != nil {
		return err
	}
	st.writer.Store(w)
	rd, err := sink.NewReader(pool, cfg.PostgresSchema)
	if err != nil {
		return err
	}
	st.reader.Store(rd)
	st.set("opening the state store")
	stores := newStateStore(state.Options{Dir: cfg.StateDir, PointLookups: cfg.Dedup.Window > 0,
		LongWindows: slices.Max(cfg.windows) >= time.Hour}, checkpoint.StateIdentity(popts), log, reg)
	store, err := stores.open(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // NB: SIGTERM while waiting for the volume
		}
		return err
	}
	defer func() { _ = store.Close() }()
	start := func() error {
		pl, err := checkpoint.New(popts, store, w)
		if err != nil {
			return err
		}
		st.pipeline.Store(pl)
		if hooks != nil && hooks.started != nil {
			hooks.started(pl, pool)
		}
		return nil
	}
	if err := start(); err != nil {
		return err
	}
	for restarts := 0; ; restarts++ {
		err := st.pipeline.Load().Run(ctx)
		if err == nil {
			log.Info("stopped cleanly")
			return nil
		}
		if store.Err() == nil {
			return err
		}
		st.pipeline.Load().SetStoreUnusable(store.Err().Error())
		// NB: the store is a cache: the pipeline stopped without
		// touching PostgreSQL's positions, so a fresh store rebuilds
		// every partition by replay, as after a lost volume.
		if !stores.failed(store) || restarts == stateRestarts {
			return fmt.Errorf("%w (restarting the process rebuilds it from PostgreSQL)", store.Err())
		}
		if store, err = stores.open(ctx); err != nil {
			return err
		}
		if err := start(); err != nil {
			return err
		}
	}
}

var errStopped = errors.New("stopped")

func migrate(ctx context.Context, pool *pgxpool.Pool, schema string, log *zap.Logger) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Release()
	n, err := sink.Migrate(ctx, conn.Conn(), schema)
	if err != nil {
		return err
	}
	if n > 0 {
		log.Info("schema migrated", zap.String("schema", schema), zap.Int("applied", n), zap.Int("version", sink.SchemaVersion))
	}
	return nil
}

// newHTTPServer serves /metrics, /healthz and /readyz (200, or 503 with a
// line per reason the process is not ready), the status page (/, /assets/,
// /status, /api/top, /api/url) when page is not nil, /debug/pprof/ (but
// its cmdline) when enabled, and nothing else. st.pipeline is the current
// pipeline (a new one replaces it after the state store was rebuilt).
func newHTTPServer(addr string, reg *prometheus.Registry, st *startup, pprofOn bool, page *statuspage.Handler) (*http.Server, net.Listener, error) {
	mux := http.NewServeMux()
	if page != nil {
		page.Register(mux)
	}
	if pprofOn {
		// NB: never the command line: it may hold secrets (a DSN with its
		// password passed as --postgres). Index serves only the runtime
		// profiles by name, and cmdline is none of them; the explicit 404
		// keeps it so should a profile of that name ever be registered.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.Handle("GET /debug/pprof/cmdline", http.NotFoundHandler())
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(rw, "ok")
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, r *http.Request) {
		pl := st.pipeline.Load()
		if pl == nil {
			http.Error(rw, "not ready\nstarting: "+*st.phase.Load(), http.StatusServiceUnavailable)
			return
		}
		status := pl.Status()
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var lines []string
		for _, reason := range status.NotReady() {
			lines = append(lines, status.Explain(reason, time.Now()))
		}
		// NB: the pipeline learns of an outage at its next PostgreSQL
		// operation; the ping tells now.
		if err := st.writer.Load().Ping(ctx); err != nil && status.PostgresOK {
			lines = append(lines, fmt.Sprintf("%s: ping: %v", checkpoint.NotReadyPostgres, err))
		}
		if len(lines) > 0 {
			http.Error(rw, "not ready\n"+strings.Join(lines, "\n"), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(rw, "ready: partitions %v\n", status.Partitions)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, badConfig("http_addr %q: %v", addr, err)
	}
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln, nil
}

// loadPostgres loads the configuration of a command that needs only
// PostgreSQL and opens a pool; the caller closes it.
func loadPostgres(ctx context.Context, load func() (*Config, error)) (*Config, *pgxpool.Pool, error) {
	cfg, err := load()
	if err != nil {
		return nil, nil, err
	}
	if err := cfg.requirePostgres(); err != nil {
		return nil, nil, err
	}
	pool, err := sink.NewPool(ctx, cfg.Postgres)
	if err != nil {
		return nil, nil, err
	}
	return cfg, pool, nil
}

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clickagg migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := configFlags(fs, "postgres", "postgres_schema", "log.level", "log.format")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, pool, err := loadPostgres(ctx, load)
	if err != nil {
		return err
	}
	defer pool.Close()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Release()
	n, err := sink.Migrate(ctx, conn.Conn(), cfg.PostgresSchema)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "schema %s at version %d (%d migrations applied)\n", cfg.PostgresSchema, sink.SchemaVersion, n)
	return nil
}
