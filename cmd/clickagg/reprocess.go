package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/clickagg/clickagg/base"
	"github.com/clickagg/clickagg/sink"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// cmdReprocess is `clickagg reprocess --into SCHEMA`: recount the topic,
// from its earliest retained offsets or --from, into a fresh schema with
// the given settings, as a batch run (exit when idle) of a consumer group
// of its own, while the live pipeline goes on; then (--switch) re-point
// the readers' views at it.
func cmdReprocess(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clickagg reprocess", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := configFlags(fs)
	into := fs.String("into", "", "schema to recount into (required; fresh, or an earlier reprocess's to resume)")
	fromS := fs.String("from", "", "recount from the first records at or after this time (RFC 3339; Kafka record timestamps) instead of the earliest retained offsets")
	doSwitch := fs.Bool("switch", false, "once the recount is done, point the readers' views (--live-schema) at --into")
	switchOnly := fs.Bool("switch-only", false, "only point the readers' views at --into (no recount): to create them, or to switch back")
	live := fs.String("live-schema", sink.DefaultLiveSchema, "schema of the readers' views url_clicks and url_totals")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return badConfig("reprocess: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if err := cfg.requirePostgres(); err != nil {
		return err
	}
	if *into == "" {
		return badConfig("reprocess: --into SCHEMA is required")
	}
	for _, s := range []string{*into, *live} {
		if err := sink.ValidateSchemaName(s); err != nil {
			return badConfig("reprocess: %v", err)
		}
	}
	if *live == *into || *live == cfg.PostgresSchema {
		return badConfig("reprocess: --live-schema %s must differ from --into and postgres_schema", *live)
	}
	var from time.Time
	if *fromS != "" {
		if from, err = time.Parse(time.RFC3339, *fromS); err != nil {
			return badConfig("reprocess: --from %q: must be an RFC 3339 time (2026-01-01T00:00:00Z)", *fromS)
		}
	}
	pool, err := sink.NewPool(ctx, cfg.Postgres)
	if err != nil {
		return err
	}
	defer pool.Close()
	if *switchOnly {
		return switchLive(ctx, pool, stdout, *live, *into)
	}
	if *into == cfg.PostgresSchema {
		return badConfig("reprocess: --into %s is postgres_schema, the live pipeline's schema: recount into another one", *into)
	}
	log, err := newLogger(cfg.Log.Level, cfg.Log.Format, stderr)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck

	rc := reprocessConfig(cfg, *into)
	if err := migrate(ctx, pool, rc.PostgresSchema, log); err != nil {
		return err
	}
	if !from.IsZero() {
		if err := seedFrom(ctx, pool, rc, from, log); err != nil {
			return err
		}
	}
	log.Info("reprocess: recounting the topic into a fresh schema", zap.String("schema", rc.PostgresSchema),
		zap.String("group", rc.Group), zap.String("live_schema", cfg.PostgresSchema), zap.Stringp("from", fromS))
	if err := runPipeline(ctx, rc, log, nil); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("reprocess into %s stopped before it reached the end offsets; run the same command again to resume from its checkpoints", rc.PostgresSchema)
	}
	fmt.Fprintf(stdout, "reprocess: schema %s holds the topic's counts up to the end offsets it saw at its start (consumer group %s)\n",
		rc.PostgresSchema, rc.Group)
	if *doSwitch {
		if err := switchLive(ctx, pool, stdout, *live, rc.PostgresSchema); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, `next:
  1. move the live pipeline to it: start clickagg run with --postgres-schema %[1]s --group %[2]s and the new settings
     (it continues from the recount's checkpoints); once it has caught up, stop the old one (group %[3]s)
`, rc.PostgresSchema, rc.Group, cfg.Group)
	if !*doSwitch {
		fmt.Fprintf(stdout, "  2. point the readers at it: clickagg reprocess --switch-only --into %s (views %s.url_clicks, %s.url_totals)\n",
			rc.PostgresSchema, *live, *live)
	}
	fmt.Fprintf(stdout, "  then retire schema %s once nothing reads it: DROP SCHEMA %s CASCADE (until then, --switch-only --into %s switches back)\n",
		cfg.PostgresSchema, cfg.PostgresSchema, cfg.PostgresSchema)
	return nil
}

// reprocessConfig is the live configuration turned into the recount's:
// schema into, a consumer group of its own, from the earliest offsets,
// exiting once it reached the end offsets of its start, its own state
// folder, no HTTP server unless one was asked for.
func reprocessConfig(cfg *Config, into string) *Config {
	rc := *cfg
	rc.PostgresSchema = into
	rc.Group = cfg.Group + "-reprocess-" + into
	rc.StartOffset = "earliest"
	rc.InstanceID = ""
	rc.Takeover = false
	if rc.ExitWhenIdle == 0 {
		rc.ExitWhenIdle = Duration(2 * time.Second)
	}
	rc.StateDir = cfg.StateDir + "-reprocess-" + into
	if !cfg.setExplicitly("http_addr") {
		rc.HTTPAddr = ""
	}
	return &rc
}

// seedFrom writes the recount's first checkpoints rows: each partition
// starts at its first record at or after from (the broker's offsets for
// times), unless the schema has its rows already (a resumed recount).
func seedFrom(ctx context.Context, pool *pgxpool.Pool, rc *Config, from time.Time, log *zap.Logger) error {
	kopts, err := rc.kafkaOptions("clickagg-reprocess", nil).ClientOpts()
	if err != nil {
		return badConfig("%v", err)
	}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	offsets, err := kadm.NewClient(cl).ListOffsetsAfterMilli(ctx, from.UnixMilli(), rc.Topic)
	if err != nil {
		return fmt.Errorf("offsets for time %s: %w", from.Format(time.RFC3339), err)
	}
	if err := offsets.Error(); err != nil {
		return fmt.Errorf("offsets for time %s: %w", from.Format(time.RFC3339), err)
	}
	w, err := sink.NewWriter(pool, sink.Options{Schema: rc.PostgresSchema, Group: rc.Group, Topic: rc.Topic})
	if err != nil {
		return err
	}
	var seedErr error
	offsets.Each(func(o kadm.ListedOffset) {
		if seedErr != nil {
			return
		}
		start := sink.Row{DeadLetterPartition: -1, DeadLetterOffset: -1}
		start.Position = base.Start(o.Offset)
		got, err := w.InitRow(ctx, o.Partition, start)
		if err != nil {
			seedErr = err
			return
		}
		if got != start {
			log.Info("reprocess: partition resumes from its checkpoint, not --from", zap.Int32("partition", o.Partition),
				zap.Int64("next_offset", got.NextOffset))
		}
	})
	return seedErr
}

// switchLive points the views and says what it did.
func switchLive(ctx context.Context, pool *pgxpool.Pool, stdout io.Writer, live, target string) error {
	prev, err := sink.SwitchLive(ctx, pool, live, target)
	if err != nil {
		return err
	}
	was := ""
	if prev != "" {
		was = fmt.Sprintf(" (was %s)", prev)
	}
	fmt.Fprintf(stdout, "readers: %s.url_clicks and %s.url_totals now read schema %s%s, switched in one transaction\n", live, live, target, was)
	return nil
}
