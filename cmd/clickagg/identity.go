package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/clickagg/clickagg/checkpoint"
	"github.com/clickagg/clickagg/sink"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// claimPipeline records this run as the schema's pipeline, or refuses it
// (a configError: one line, exit 2) when the schema's counts belong to
// another group or topic or were made under other settings that change
// counts, unless takeover is set. Window sizes added or removed are
// logged once, when recorded.
func claimPipeline(ctx context.Context, pool *pgxpool.Pool, cfg *Config, popts checkpoint.Options, log *zap.Logger) error {
	id := checkpoint.PipelineIdentity(popts)
	claim, err := sink.ClaimPipeline(ctx, pool, cfg.PostgresSchema, id, cfg.Takeover)
	var oe *sink.OwnerError
	if errors.As(err, &oe) {
		return badConfig("%s", refusal(oe, cfg))
	}
	if err != nil {
		return fmt.Errorf("pipeline identity: %w", err)
	}
	schema := zap.String("schema", cfg.PostgresSchema)
	switch {
	case claim.Previous != nil:
		log.Warn(fmt.Sprintf("took over schema %s from group %q (topic %q): counts continue from group %q's own checkpoints",
			cfg.PostgresSchema, claim.Previous.Group, claim.Previous.Topic, cfg.Group), schema,
			zap.Stringers("settings_changed", claim.Changes))
	case len(claim.Changes) > 0:
		log.Warn("settings that change counts changed with --takeover: the schema's counts mix both: "+sink.JoinChanges(claim.Changes), schema)
	case claim.Created:
		log.Info("pipeline identity recorded: this group owns the schema's counts", schema,
			zap.String("group", cfg.Group), zap.String("topic", cfg.Topic))
	}
	if claim.Created {
		return nil
	}
	for _, w := range claim.Added {
		l := sink.SizeLabel(w.Milliseconds())
		log.Warn(fmt.Sprintf("window size %s added: its rows start at the current position; earlier windows of %s are not backfilled — see clickagg backfill / reprocess", l, l), schema)
	}
	for _, w := range claim.Removed {
		log.Warn(fmt.Sprintf("window size %s removed: its existing rows stay in url_clicks and are no longer written", sink.SizeLabel(w.Milliseconds())), schema)
	}
	return nil
}

// refusal is the one line of a refused start: who owns the schema, or
// what changed, and the ways out.
func refusal(oe *sink.OwnerError, cfg *Config) string {
	if len(oe.Changes) > 0 {
		return fmt.Sprintf("postgres_schema %s was counted with other settings (%s); counting on would mix both in one row. "+
			"Ways out: recount into a new schema with `clickagg reprocess --into SCHEMA`, empty this one with `clickagg reset`, "+
			"use another postgres_schema, or keep the mix with --takeover (records the new settings)",
			cfg.PostgresSchema, sink.JoinChanges(oe.Changes))
	}
	since := ""
	if !oe.Owner.Since.IsZero() {
		since = " since " + oe.Owner.Since.UTC().Format(time.RFC3339)
	}
	if oe.FromCheckpoints {
		since = " (its checkpoints rows)"
	}
	return fmt.Sprintf("postgres_schema %s is owned by group %q on topic %q%s; group %q on topic %q would add its counts to the same rows. "+
		"Ways out: --takeover moves ownership to this group (counts then continue from this group's own checkpoints: "+
		"stop group %q and start this one where it stopped), `clickagg reset` empties the schema for a fresh count, "+
		"or use another postgres_schema",
		cfg.PostgresSchema, oe.Owner.Group, oe.Owner.Topic, since, cfg.Group, cfg.Topic, oe.Owner.Group)
}

// cmdReset is `clickagg reset`: empty the schema's data tables after a
// confirmation (or --yes), for a fresh count.
func cmdReset(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clickagg reset", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := configFlags(fs, "postgres", "postgres_schema")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return badConfig("reset: unexpected argument %q", fs.Arg(0))
	}
	cfg, pool, err := loadPostgres(ctx, load)
	if err != nil {
		return err
	}
	defer pool.Close()
	owner, found, err := sink.ReadPipeline(ctx, pool, cfg.PostgresSchema)
	if err != nil {
		return fmt.Errorf("%w (has `clickagg migrate` run on schema %s?)", err, cfg.PostgresSchema)
	}
	who := "no recorded owner"
	if found {
		who = fmt.Sprintf("owned by group %q on topic %q", owner.Group, owner.Topic)
	}
	if !*yes {
		fmt.Fprintf(stdout, "This deletes every count and checkpoint in schema %s (%s); stop every clickagg run on it first.\nType the schema name to confirm: ",
			cfg.PostgresSchema, who)
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if strings.TrimSpace(line) != cfg.PostgresSchema {
			return badConfig("reset: not confirmed; nothing deleted")
		}
	}
	if err := sink.Reset(ctx, pool, cfg.PostgresSchema); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "schema %s reset: url_clicks, url_totals, checkpoints and the pipeline row are empty; the next run claims it and counts from start_offset\n", cfg.PostgresSchema)
	return nil
}

// stdin is the confirmation source of reset (tests replace it).
var stdin io.Reader = os.Stdin
