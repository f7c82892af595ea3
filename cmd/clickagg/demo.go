package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/clickagg/clickagg/checkpoint"
	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/pglocal"
	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/stream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
)

// cmdDemo runs the whole product on loopback: an embedded Kafka-protocol
// broker (kfake), the generator, the aggregator and PostgreSQL (DATABASE_URL
// or a throwaway local server), with a live view of the counts.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clickagg demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := configFlags(fs, "postgres", "postgres_schema", "windows", "checkpoint_interval",
		"out_of_orderness", "idle_timeout", "late.policy", "emit.early_interval", "http_addr")
	duration := fs.Duration("duration", 0, "stop after this long (0: until Ctrl-C)")
	rate := fs.Float64("rate", 2000, "generated clicks per second")
	urls := fs.Int("urls", 500, "distinct URLs")
	zipf := fs.Float64("zipf", 1.1, "Zipf exponent of URL popularity")
	partitions := fs.Int("partitions", 4, "partitions of the demo topic")
	top := fs.Int("top", 10, "URLs in the live view")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if !isExplicit(fs, "early-interval") && cfg.Emit.EarlyInterval == 0 {
		cfg.Emit.EarlyInterval = Duration(time.Second) // show counts rising
	}
	if !isExplicit(fs, "http-addr") && os.Getenv("CLICKAGG_HTTP_ADDR") == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if *partitions < 1 || *partitions > 1000 {
		return badConfig("--partitions %d: must be between 1 and 1000", *partitions)
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	tmp, err := os.MkdirTemp("", "clickagg-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	logPath := filepath.Join(os.TempDir(), fmt.Sprintf("clickagg-demo-%d.log", os.Getpid()))
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log, err := newLogger("info", "json", logFile)
	if err != nil {
		return err
	}

	pgWhere := "DATABASE_URL"
	if cfg.Postgres == "" {
		fmt.Fprintln(stdout, "starting a throwaway PostgreSQL…")
		srv, err := pglocal.Start(ctx, pglocal.Options{Database: "clickagg"})
		if errors.Is(err, pglocal.ErrNotInstalled) {
			return fmt.Errorf("PostgreSQL is not installed: run `make demo` (it installs it as root), `apt-get install postgresql`, or set DATABASE_URL")
		}
		if err != nil {
			return fmt.Errorf("start local postgres: %w", err)
		}
		defer srv.Stop()
		cfg.Postgres = srv.DSN()
		pgWhere = fmt.Sprintf("throwaway server on 127.0.0.1:%d", srv.Port())
	}

	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(*partitions), cfg.Topic))
	if err != nil {
		return fmt.Errorf("start embedded broker: %w", err)
	}
	defer broker.Close()
	cfg.Brokers = broker.ListenAddrs()
	cfg.StateDir = filepath.Join(tmp, "state")
	cfg.Group = "clickagg-demo"
	cfg.SessionTimeout = Duration(6 * time.Second)

	fmt.Fprintf(stdout, "embedded broker on %s, PostgreSQL: %s, logs: %s\n", cfg.Brokers[0], pgWhere, logPath)

	var (
		mu       sync.Mutex
		pl       *checkpoint.Pipeline
		pool     *pgxpool.Pool
		page     string // the status page's address, once it listens
		produced atomic.Int64
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return runPipeline(gctx, cfg, log, &runHooks{
			started: func(p *checkpoint.Pipeline, pp *pgxpool.Pool) {
				mu.Lock()
				pl, pool = p, pp
				mu.Unlock()
			},
			listening: func(addr string) {
				mu.Lock()
				page = "http://" + addr + "/"
				mu.Unlock()
			},
		})
	})
	g.Go(func() error {
		gn, err := gen.New(gen.Options{Rate: *rate, URLs: *urls, Zipf: *zipf, Seed: uint64(time.Now().UnixNano()),
			OutOfOrderFraction: 0.05, LateFraction: 0.01, InvalidFraction: 0.01})
		if err != nil {
			return err
		}
		kopts, err := stream.KafkaOptions{Brokers: cfg.Brokers, ClientID: "clickagg-demo-gen"}.ClientOpts()
		if err != nil {
			return err
		}
		cl, err := kgo.NewClient(append(kopts, kgo.ProducerLinger(5*time.Millisecond))...)
		if err != nil {
			return err
		}
		defer cl.Close()
		if err := gen.EnsureTopic(gctx, kadm.NewClient(cl), cfg.Topic, int32(*partitions)); err != nil {
			return err
		}
		_, err = gen.Produce(gctx, cl, cfg.Topic, gn, func(gen.Event, *kgo.Record) { produced.Add(1) })
		if gctx.Err() != nil {
			return nil
		}
		return err
	})
	g.Go(func() error {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		v := &demoView{out: stdout, tty: isTerminalWriter(stdout), windows: cfg.windows, top: *top, schema: cfg.PostgresSchema}
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-tick.C:
			}
			mu.Lock()
			p, pp := pl, pool
			v.page = page
			mu.Unlock()
			if p != nil {
				v.draw(gctx, p.Status(), pp, produced.Load())
			}
		}
	})
	err = g.Wait()
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w (see %s)", err, logPath)
	}
	// Final summary straight from PostgreSQL.
	mu.Lock()
	p := pl
	mu.Unlock()
	if p != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pp, err := sink.NewPool(sctx, cfg.Postgres)
		if err == nil {
			defer pp.Close()
			r, _ := sink.NewReader(pp, cfg.PostgresSchema)
			if clicks, n, err := r.Totals(sctx); err == nil {
				fmt.Fprintf(stdout, "\ndemo stopped: generated %d records; PostgreSQL url_totals holds %d clicks over %d URLs (invalid records are rejected, late ones counted)\n",
					produced.Load(), clicks, n)
			}
		}
	}
	return nil
}

func isExplicit(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			found = true
		}
	})
	return found
}

func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f)
}

// demoView draws the live view: top URLs of the current window, rates,
// lag, the last checkpoint and where the status page is.
type demoView struct {
	out      io.Writer
	page     string // the status page's address; "" with http_addr off
	tty      bool
	windows  []time.Duration
	top      int
	schema   string
	last     time.Time
	lastCons int64
	lastProd int64
}

func (v *demoView) draw(ctx context.Context, st checkpoint.Status, pool *pgxpool.Pool, produced int64) {
	now := time.Now()
	var evRate, genRate float64
	if !v.last.IsZero() {
		dt := now.Sub(v.last).Seconds()
		evRate = float64(st.Consumed-v.lastCons) / dt
		genRate = float64(produced-v.lastProd) / dt
	}
	v.last, v.lastCons, v.lastProd = now, st.Consumed, produced
	var b strings.Builder
	if v.tty {
		b.WriteString("\x1b[H\x1b[2J")
	}
	ckpt := "none yet"
	if !st.LastCheckpoint.IsZero() {
		ckpt = fmt.Sprintf("%.1fs ago (%d in all)", now.Sub(st.LastCheckpoint).Seconds(), st.CheckpointsTotal)
	}
	fmt.Fprintf(&b, "clickagg demo — %s\n", now.Format("15:04:05"))
	if v.page != "" {
		fmt.Fprintf(&b, "status page: %s (open it in a browser)\n", v.page)
	}
	fmt.Fprintf(&b, "generated %.0f/s · consumed %.0f/s (%d in all) · lag %d · partitions %v · last checkpoint %s\n",
		genRate, evRate, st.Consumed, st.Lag, st.Partitions, ckpt)
	if len(st.Restoring) > 0 {
		fmt.Fprintf(&b, "restoring partitions %v\n", st.Restoring)
	}
	if pool != nil {
		r, err := sink.NewReader(pool, v.schema)
		if err == nil {
			size := v.windows[0]
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			start, ok, err := r.LatestWindow(qctx, size)
			switch {
			case err != nil:
				fmt.Fprintf(&b, "postgres: %v\n", err)
			case !ok:
				fmt.Fprintf(&b, "no %s window in PostgreSQL yet\n", size)
			default:
				rows, err := r.Top(qctx, size, start, v.top)
				if err != nil {
					fmt.Fprintf(&b, "postgres: %v\n", err)
					break
				}
				fmt.Fprintf(&b, "\ntop URLs in PostgreSQL, %s window %s–%s UTC\n", size,
					start.UTC().Format("15:04:05"), start.Add(size).UTC().Format("15:04:05"))
				tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "CLICKS\tLATE\tFINAL\tURL")
				for _, row := range rows {
					fmt.Fprintf(tw, "%d\t%d\t%t\t%s\n", row.Clicks, row.LateClicks, row.Final, row.URL)
				}
				tw.Flush()
			}
			if clicks, n, err := r.Totals(qctx); err == nil {
				fmt.Fprintf(&b, "\nurl_totals: %d clicks over %d URLs\n", clicks, n)
			}
		}
	}
	if !v.tty {
		b.WriteString("---\n")
	}
	io.WriteString(v.out, b.String())
}
