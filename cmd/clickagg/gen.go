package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func cmdGen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("clickagg gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := configFlags(fs, append([]string{"topic"}, kafkaKeys...)...)
	var o gen.Options
	partitions := fs.Int("partitions", 12, "partitions of the topic when gen creates it")
	fs.Int64Var(&o.Count, "count", 100_000, "records to produce (0: until interrupted)")
	fs.Float64Var(&o.Rate, "rate", 0, "records per second (0: as fast as possible)")
	fs.IntVar(&o.URLs, "urls", 1000, "distinct URLs")
	fs.Float64Var(&o.Zipf, "zipf", 1.1, "Zipf exponent of URL popularity (> 1; 0: uniform)")
	fs.Uint64Var(&o.Seed, "seed", 1, "random seed: same seed, same records")
	start := fs.String("start-time", "", "event time of the first record, RFC 3339 (default: now)")
	fs.Float64Var(&o.EventRate, "event-rate", 0, "records per second of event time (default: --rate, or 1000)")
	fs.Float64Var(&o.LateFraction, "late", 0, "fraction of late records (event time --late-by in the past)")
	fs.DurationVar(&o.LateBy, "late-by", 10*time.Minute, "how far late records lag")
	fs.Float64Var(&o.OutOfOrderFraction, "out-of-order", 0, "fraction of out-of-order records (up to --jitter back, still on time)")
	fs.DurationVar(&o.Jitter, "jitter", 2*time.Second, "how far out-of-order records lag")
	fs.Float64Var(&o.InvalidFraction, "invalid", 0, "fraction of invalid records (every rejection kind)")
	fs.Float64Var(&o.DuplicateFraction, "duplicates", 0, "fraction of records that repeat a recent valid record (same id), as client retries do")
	fs.BoolVar(&o.Unkeyed, "unkeyed", false, "produce without keys (a URL's clicks spread over partitions)")
	fs.StringVar(&o.Shape, "shape", "clicks", "clicks ({\"url\",\"ts\",\"id\"}) or tracker (Segment-style events, 5% not clicks; read them with "+
		strings.Join(gen.TrackerInputFlags, " ")+")")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	if *start != "" {
		t, err := time.Parse(time.RFC3339Nano, *start)
		if err != nil {
			return badConfig("--start-time %q: not RFC 3339", *start)
		}
		o.StartTime = t
	}
	if *partitions < 1 || *partitions > 10000 {
		return badConfig("--partitions %d: must be between 1 and 10000", *partitions)
	}
	g, err := gen.New(o)
	if err != nil {
		return badConfig("gen: %v", err)
	}
	kopts, err := cfg.kafkaOptions("clickagg-gen", nil).ClientOpts()
	if err != nil {
		return badConfig("%v", err)
	}
	kopts = append(kopts, kgo.ProducerLinger(5*time.Millisecond), kgo.DefaultProduceTopic(cfg.Topic),
		kgo.MaxBufferedRecords(100_000))
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return fmt.Errorf("create kafka client: %w", err)
	}
	defer cl.Close()
	if err := gen.EnsureTopic(ctx, kadm.NewClient(cl), cfg.Topic, int32(*partitions)); err != nil {
		return err
	}
	st, err := gen.Produce(ctx, cl, cfg.Topic, g, nil)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{
			"topic": cfg.Topic, "produced": st.Produced - st.Failed, "valid": st.Valid, "late": st.Late,
			"out_of_order": st.OutOfOrder, "duplicates": st.Duplicates, "invalid": st.Invalid, "failed": st.Failed,
			"filtered": st.Filtered, "shape": g.Shape(),
			"seconds": st.Elapsed.Seconds(), "records_per_second": st.Rate(),
			"first_event": st.FirstEvent, "last_event": st.LastEvent,
		})
	} else {
		fmt.Fprintf(stdout, "produced %d records to %s in %.2fs (%.0f/s): %d valid (%d late, %d out of order, %d duplicates), ",
			st.Produced-st.Failed, cfg.Topic, st.Elapsed.Seconds(), st.Rate(), st.Valid, st.Late, st.OutOfOrder, st.Duplicates)
		if st.Filtered > 0 {
			fmt.Fprintf(stdout, "%d not clicks (input.filter drops them), ", st.Filtered)
		}
		fmt.Fprintf(stdout, "%d invalid", st.Produced-st.Valid-st.Filtered)
		kinds := slices.Sorted(func(yield func(string) bool) {
			for k := range st.Invalid {
				if !yield(k) {
					return
				}
			}
		})
		for i, k := range kinds {
			sep := ", "
			if i == 0 {
				sep = " ("
			}
			fmt.Fprintf(stdout, "%s%s %d", sep, k, st.Invalid[k])
		}
		if len(kinds) > 0 {
			fmt.Fprint(stdout, ")")
		}
		fmt.Fprintf(stdout, "; event time %s to %s\n", st.FirstEvent.UTC().Format(time.RFC3339), st.LastEvent.UTC().Format(time.RFC3339))
	}
	return err
}
