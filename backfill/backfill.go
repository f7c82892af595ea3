// Package backfill counts archived click events, files of JSON lines, into
// the same tables as `clickagg run`, with the same rules and exactly once
// across crashes and restarts: `clickagg backfill`.
//
// Each input is one partition of its own, run by checkpoint.RunSeq over the
// same Coordinator as the Kafka runner: its checkpoints row is keyed by
//
//	consumer_group = "backfill:" + name   (Group; --name, default "default")
//	topic          = "file:" + identity + ":" + absolute path   (stdin: "stdin:" + identity)
//	partition      = 31 bits of the identity
//
// and next_offset is the byte offset (of the decompressed stream) after
// the last line counted. So an input's positions commit in the same fenced
// transaction as its deltas, a killed run resumes from the row (re-reading
// from its restart offset to rebuild open windows), and an input counted
// to its end adds nothing when given again.
//
// Identity is the content: a hash of the file's size and of its first and
// last MiB. The same content under another path is the same input (moved
// or copied archives are not counted twice); a path whose row has another
// identity is a file that changed after it was counted, which is refused
// (RefusedError) before anything is read. stdin has no size and cannot be
// read twice: its identity hashes its first MiB, and an earlier row for
// it, finished or not, is refused rather than counted again.
//
// All of the backfill's naming of groups and topics, and its identity
// checks, are in this file.
package backfill

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clickagg/clickagg/checkpoint"
	"github.com/clickagg/clickagg/sink"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// DefaultName is the backfill name when none is given: every backfill of
// a schema shares it, so a file is never counted twice whatever other
// files are given with it.
const DefaultName = "default"

// GroupPrefix starts the consumer_group of every backfill's checkpoints
// rows; no Kafka consumer group is ever joined under it.
const GroupPrefix = "backfill:"

// Group returns the consumer_group of the backfill named name.
func Group(name string) string { return GroupPrefix + name }

// IsBackfillGroup reports whether a checkpoints row's consumer_group is a
// backfill's (pipeline identity checks exempt them).
func IsBackfillGroup(group string) bool { return strings.HasPrefix(group, GroupPrefix) }

// stateTopic is the topic in the state store's identity: one store holds
// every input's partition.
const stateTopic = "files"

// topic returns the checkpoints topic of an input.
func (in *Input) topic() string {
	if in.Stdin() {
		return "stdin:" + in.ID
	}
	return "file:" + in.ID + ":" + in.Path
}

// parseTopic splits a backfill checkpoints topic.
func parseTopic(topic string) (kind, id, path string, ok bool) {
	kind, rest, ok := strings.Cut(topic, ":")
	if !ok {
		return "", "", "", false
	}
	id, path, _ = strings.Cut(rest, ":")
	return kind, id, path, kind == "file" || kind == "stdin"
}

// Options configure a backfill.
type Options struct {
	// Pipeline are the run's settings (Options prepares them).
	Pipeline checkpoint.Options
	Name     string // DefaultName when empty
	Schema   string // PostgreSQL schema; sink.DefaultSchema when empty
	// Progress, when set, is called about once a second and after each
	// input.
	Progress func(Progress)
}

// PipelineOptions returns the run's options as a backfill applies them:
// the backfill's group and the store's topic; no Kafka record timestamps
// (a line has none), so the skew limits are off; dedup within each input.
func PipelineOptions(o checkpoint.Options, name string) checkpoint.Options {
	if name == "" {
		name = DefaultName
	}
	o.Consumer.Group, o.Consumer.Topic = Group(name), stateTopic
	o.Operator.MaxFutureSkew, o.Operator.MaxPastSkew = 0, 0
	o.Operator.DedupKeyed = false
	o.DeadLetterTopic, o.AlignWatermarks, o.IdleTimeout, o.EarlyInterval, o.ExitWhenIdle = "", false, 0, 0, 0
	return o
}

// StateIdentity is the state store's identity for the backfill.
func StateIdentity(o checkpoint.Options, name string) string {
	return checkpoint.StateIdentity(PipelineOptions(o, name))
}

// Progress is how far a backfill is.
type Progress struct {
	Input, Inputs int    // the input being read (1-based) and how many
	Name          string // its name
	// Bytes read of all inputs (on disk: compressed bytes for compressed
	// files) and their total (-1 with stdin).
	Bytes, TotalBytes int64
	Records           int64 // records read past the checkpoints, of all inputs so far
	Replayed          int64 // records read again to rebuild open windows, of all inputs so far
	Elapsed           time.Duration
	Done              bool // the input is finished
}

// Report is what a backfill did.
type Report struct {
	Inputs []InputReport
}

// InputReport is one input's part.
type InputReport struct {
	Name    string
	Skipped string // why the input was not read (same content as another input)
	checkpoint.SeqStats
}

// RefusedError is an input the backfill will not count: nothing was read.
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return e.Msg }

// plan is what the rows say of each input: the topic to count it under
// ("" to skip it) and, for the log, an earlier path.
type plan struct {
	topic, skip, movedFrom string
	row                    *row
}

type row struct {
	next, restart int64
}

// check reads the group's rows and decides for each input: count (or
// resume) under its topic, or under the topic its content was counted
// under at another path; skip a repeat of an input given earlier; refuse a
// changed file or a stdin seen before.
func check(ctx context.Context, pool *pgxpool.Pool, schema, group string, inputs []*Input) ([]plan, error) {
	q := `SELECT topic, next_offset, restart_offset FROM ` + pgx.Identifier{schema, "checkpoints"}.Sanitize() +
		` WHERE consumer_group = $1`
	rs, err := pool.Query(ctx, q, group)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	byID, byPath := map[string]string{}, map[string]string{}
	rows := map[string]*row{}
	for rs.Next() {
		var topic string
		var r row
		if err := rs.Scan(&topic, &r.next, &r.restart); err != nil {
			rs.Close()
			return nil, fmt.Errorf("read checkpoints: %w", err)
		}
		kind, id, path, ok := parseTopic(topic)
		if !ok {
			continue
		}
		rows[topic] = &r
		byID[kind+":"+id] = topic
		if kind == "file" {
			byPath[path] = topic
		}
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	plans := make([]plan, len(inputs))
	first := map[string]string{}
	for i, in := range inputs {
		pl := &plans[i]
		kind := "file"
		if in.Stdin() {
			kind = "stdin"
		}
		if name, ok := first[kind+":"+in.ID]; ok {
			pl.skip = "same content as " + name
			continue
		}
		first[kind+":"+in.ID] = in.Name()
		pl.topic = in.topic()
		if t, ok := byID[kind+":"+in.ID]; ok {
			pl.topic, pl.row = t, rows[t]
			if _, _, path, _ := parseTopic(t); kind == "file" && path != in.Path {
				pl.movedFrom = path
			}
		}
		if in.Stdin() && pl.row != nil {
			return nil, &RefusedError{Msg: fmt.Sprintf("backfill: stdin: input with the same first MiB was backfilled before under %s "+
				"(checkpointed to byte %d, finished or not); stdin cannot be resumed or checked, so nothing was counted: "+
				"backfill a file instead, or give another --name to count it again on purpose", group, pl.row.next)}
		}
		if t, ok := byPath[in.Path]; ok && !in.Stdin() && t != pl.topic && pl.movedFrom == "" && pl.row == nil {
			_, was, _, _ := parseTopic(t)
			return nil, &RefusedError{Msg: fmt.Sprintf("backfill: %s changed since an earlier backfill (%s) counted it "+
				"(its size or content differs: identity %s, was %s; checkpointed to byte %d); nothing was counted: "+
				"a changed file cannot be counted exactly once; give the new version another name to count it as a new file",
				in.Path, group, in.ID, was, rows[t].next)}
		}
	}
	return plans, nil
}

// Run counts inputs, one after the other, into the tables: each from its
// checkpoints row to its end, ending with a final checkpoint that flushes
// its open windows. It refuses (RefusedError, nothing read) when an input
// changed since it was counted or is a stdin seen before. When ctx ends it
// stops after a final checkpoint of the input being read and returns
// ctx's error.
func Run(ctx context.Context, pool *pgxpool.Pool, store checkpoint.StateStore, inputs []*Input, o Options) (*Report, error) {
	if o.Schema == "" {
		o.Schema = sink.DefaultSchema
	}
	popts := PipelineOptions(o.Pipeline, o.Name)
	log := popts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	group := popts.Consumer.Group
	plans, err := check(ctx, pool, o.Schema, group, inputs)
	if err != nil {
		return nil, err
	}
	rep := &Report{}
	total := int64(0)
	for _, in := range inputs {
		if in.Stdin() {
			total = -1
			break
		}
		total += in.Size
	}
	start, before := time.Now(), int64(0)
	var records, replayed int64
	for i, in := range inputs {
		pl := plans[i]
		ir := InputReport{Name: in.Name(), Skipped: pl.skip}
		if pl.skip != "" {
			log.Warn("input skipped: "+pl.skip, zap.String("input", in.Name()))
			rep.Inputs = append(rep.Inputs, ir)
			before += in.Size
			continue
		}
		if pl.movedFrom != "" {
			log.Info("input has the content of a file backfilled before at another path; continuing that one's count",
				zap.String("input", in.Name()), zap.String("was", pl.movedFrom))
		}
		w, err := sink.NewWriter(pool, sink.Options{Schema: o.Schema, Group: group, Topic: pl.topic})
		if err != nil {
			return rep, err
		}
		po := popts
		po.Consumer.Topic = pl.topic
		po.Logger = log.With(zap.String("input", in.Name()))
		idx, done, rec0, rep0 := i+1, before, records, replayed
		progress := func(st checkpoint.SeqStats, finished bool) {
			if o.Progress == nil {
				return
			}
			o.Progress(Progress{Input: idx, Inputs: len(inputs), Name: in.Name(), Bytes: done + in.read.Load(),
				TotalBytes: total, Records: rec0 + st.Records, Replayed: rep0 + st.Replayed, Elapsed: time.Since(start), Done: finished})
		}
		po.Logger.Info("backfill input", zap.String("identity", in.ID), zap.Int64("size", in.Size),
			zap.String("compression", in.Compression), zap.String("topic", pl.topic), zap.Int32("partition", in.Partition()))
		st, err := checkpoint.RunSeq(ctx, po, store, w, checkpoint.SeqInput{
			Partition: in.Partition(), End: in.end(),
			Open: func(from int64) (checkpoint.RecordReader, error) {
				if in.Stdin() && from > 0 {
					return nil, &RefusedError{Msg: "backfill: stdin cannot be resumed (its checkpoint is at byte " +
						fmt.Sprint(from) + ")"}
				}
				return in.open(from)
			},
			Progress: func(st checkpoint.SeqStats) { progress(st, false) },
		})
		ir.SeqStats = st
		rep.Inputs = append(rep.Inputs, ir)
		if err != nil {
			var re *RefusedError
			if !errors.As(err, &re) && ctx.Err() == nil {
				err = fmt.Errorf("%s: %w", in.Name(), err)
			}
			return rep, err
		}
		// NB: the input's windows are closed now (its watermark passed
		// them): fold them into url_totals_base, so that url_totals does
		// not read them from url_clicks. Only an optimization: a failure
		// leaves the totals exact.
		if fr, err := w.FoldTotals(ctx, 1); err != nil {
			po.Logger.Warn("fold url_totals", zap.Error(err))
		} else if fr.Skipped == "" {
			po.Logger.Info("url_totals folded", zap.Int64("urls", fr.URLs), zap.Duration("took", fr.Took))
		}
		if in.Size > 0 {
			in.read.Store(in.Size)
		}
		progress(st, true)
		before += max(in.Size, 0)
		records, replayed = records+st.Records, replayed+st.Replayed
		po.Logger.Info("input counted", zap.Int64("from_offset", st.Start), zap.Int64("next_offset", st.Next),
			zap.Int64("records", st.Records), zap.Int64("replayed", st.Replayed), zap.Int64("accepted", st.Accepted),
			zap.Int64("late", st.Late), zap.Int64("duplicates", st.Duplicates), zap.Int64("filtered", st.Filtered),
			zap.Any("rejected", st.Rejected), zap.Int64("checkpoints", st.Checkpoints))
	}
	return rep, nil
}
