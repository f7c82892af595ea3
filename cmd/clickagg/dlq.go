package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/clickagg/clickagg/checkpoint"
)

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const use = "usage: clickagg dlq inspect [--dead-letter-topic T] [--show N] [--json]"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprintln(stdout, use)
		return flag.ErrHelp
	}
	if len(args) == 0 || args[0] != "inspect" {
		fmt.Fprintln(stderr, use)
		return errUsage
	}
	fs := flag.NewFlagSet("clickagg dlq inspect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := configFlags(fs, append([]string{"dead_letter.topic"}, kafkaKeys...)...)
	show := fs.Int("show", 0, "also print the last N records")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", time.Minute, "give up reading after this long")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if cfg.DeadLetter.Topic == "" {
		return badConfig("dead_letter.topic: required (--dead-letter-topic)")
	}
	if *show < 0 {
		return badConfig("--show %d: must not be negative", *show)
	}
	kopts, err := cfg.kafkaOptions("clickagg-dlq", nil).ClientOpts()
	if err != nil {
		return badConfig("%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	s, err := checkpoint.InspectDeadLetters(ctx, kopts, cfg.DeadLetter.Topic, *show)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	fmt.Fprintf(stdout, "dead-letter topic %s: %d records, %d distinct source records, %d duplicates, %d without clickagg headers\n",
		s.Topic, s.Records, s.Distinct, s.Duplicates, s.Foreign)
	if s.Truncated > 0 {
		fmt.Fprintf(stdout, "%d of the distinct records were too large for the topic: sent as references (headers and the first %d bytes; the record is in its source topic)\n",
			s.Truncated, checkpoint.ReferencePrefixBytes)
	}
	if s.Records > 0 {
		fmt.Fprintf(stdout, "record timestamps %s .. %s\n", s.First.UTC().Format(time.RFC3339), s.Last.UTC().Format(time.RFC3339))
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(s.ByReason) > 0 {
		fmt.Fprintln(tw, "reason\trecords\t")
		for _, r := range slices.Sorted(maps.Keys(s.ByReason)) {
			fmt.Fprintf(tw, "%s\t%d\t\n", r, s.ByReason[r])
		}
		fmt.Fprintln(tw, "\t\t")
		fmt.Fprintln(tw, "source (group/topic)\trecords\t")
		for _, src := range slices.Sorted(maps.Keys(s.BySource)) {
			fmt.Fprintf(tw, "%s\t%d\t\n", src, s.BySource[src])
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range s.Samples {
		v := d.Value
		if len(v) > 200 {
			v = v[:200]
		}
		late := ""
		if d.LateWindows != "" {
			late = " (" + d.LateWindows + ")"
		}
		ref := ""
		if d.Truncated {
			ref = fmt.Sprintf(" (reference to a %d-byte record)", d.OriginalSize)
		}
		fmt.Fprintf(stdout, "%d@%d %s %s%s from %s%s: %q\n", d.Partition, d.Offset, d.Timestamp.UTC().Format(time.RFC3339Nano), d.Reason, late, d.Source, ref, v)
	}
	return nil
}
