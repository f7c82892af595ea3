// Command clickagg counts clicks per URL from a Kafka topic into PostgreSQL,
// exactly once. See the README for the commands and settings.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/clickagg/clickagg/state"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const usage = `clickagg — exact per-URL click counts from Kafka into PostgreSQL

Usage:
  clickagg run      [flags]   run the aggregator
  clickagg migrate  [flags]   create or upgrade the PostgreSQL schema
  clickagg reset    [--yes]   empty the schema's counts and checkpoints (a fresh count)
  clickagg reprocess --into SCHEMA [--from T] [--switch]  recount into a fresh schema; switch the readers' views
  clickagg query top [--window 1m] [--limit 10]   top URLs of the latest window
  clickagg query url URL                          one URL's windows and total
  clickagg storage status [--partitions]  url_clicks partitions, retention, sizes
  clickagg gen      [flags]   produce generated clicks to a topic
  clickagg dlq inspect [flags]  summarize the dead-letter topic by reason
  clickagg audit [--from T] [--to T] [--json]  recount from Kafka, compare with PostgreSQL (read-only)
  clickagg backfill [flags] FILE|GLOB|- ...  count archived JSON lines (plain, .gz, .zst) exactly once
  clickagg demo     [flags]   embedded broker + generator + aggregator + PostgreSQL
  clickagg bench    [flags]   benchmark harness (see BENCHMARKS.md)
  clickagg version

Run 'clickagg <command> -h' for the command's flags.
`

// version is set by the build (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// exit codes
const (
	exitOK     = 0
	exitError  = 1
	exitConfig = 2
	// exitState: the state volume refuses the store (full, read-only) even
	// after it was discarded; a restart rebuilds it from PostgreSQL.
	exitState = 3
)

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitConfig
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = cmdRun(ctx, rest, stdout, stderr)
	case "migrate":
		err = cmdMigrate(ctx, rest, stdout, stderr)
	case "reset":
		err = cmdReset(ctx, rest, stdin, stdout, stderr)
	case "reprocess":
		err = cmdReprocess(ctx, rest, stdout, stderr)
	case "query":
		err = cmdQuery(ctx, rest, stdout, stderr)
	case "storage":
		err = cmdStorage(ctx, rest, stdout, stderr)
	case "gen":
		err = cmdGen(ctx, rest, stdout, stderr)
	case "dlq":
		err = cmdDLQ(ctx, rest, stdout, stderr)
	case "audit":
		err = cmdAudit(ctx, rest, stdout, stderr)
	case "backfill":
		err = cmdBackfill(ctx, rest, stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, rest, stdout, stderr)
	case "bench":
		err = cmdBench(ctx, rest, stdout, stderr)
	case "kfake-broker": // hidden: used by bench
		err = cmdKfakeBroker(ctx, rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "clickagg", version)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "clickagg: unknown command %q\n\n%s", cmd, usage)
		return exitConfig
	}
	var ce *configError
	var ec *exitCode
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ce):
		fmt.Fprintf(stderr, "clickagg: %s\n", ce.msg)
		return exitConfig
	case errors.Is(err, errUsage):
		return exitConfig
	case errors.As(err, &ec):
		return ec.code
	case errors.Is(err, state.ErrUnusable), errors.Is(err, state.ErrCorrupt):
		fmt.Fprintf(stderr, "clickagg: %v\n", err)
		return exitState
	default:
		fmt.Fprintf(stderr, "clickagg: %v\n", err)
		return exitError
	}
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "--help", "-help", "help":
		return true
	}
	return false
}

// errUsage: the flag package has printed the problem and the usage already.
var errUsage = errors.New("usage")

// parseFlags parses args into fs, mapping flag errors to errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// newLogger builds the process logger: JSON in production, console on a
// terminal (format auto).
func newLogger(level, format string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, badConfig("log.level %q: %v", level, err)
	}
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && isTerminal(f) {
			format = "console"
		}
	}
	var enc zapcore.Encoder
	if format == "console" {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)), nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
