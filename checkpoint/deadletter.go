package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/clickagg/clickagg/sink"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Headers of a dead-lettered record. The record's key, value, timestamp and
// own headers are kept unchanged; these are appended.
const (
	// HeaderReason is the rejection reason (clickagg_events_rejected_total's
	// label), or "late".
	HeaderReason = "clickagg-reason"
	// HeaderLateWindows lists the window sizes a late record missed (e.g.
	// "1m,1h"); it still counts in the others.
	HeaderLateWindows = "clickagg-late-windows"
	HeaderGroup       = "clickagg-group"
	HeaderTopic       = "clickagg-topic"
	HeaderPartition   = "clickagg-partition"
	HeaderOffset      = "clickagg-offset"
)

// ReasonLate is HeaderReason of a late record (late policy dead-letter).
const ReasonLate = "late"

// deadLetters produces invalid and late records to the dead-letter topic.
// Source partition p goes to dead-letter partition p mod the topic's
// partition count, so one producer writes each source partition's records
// in offset order. A checkpoint waits until every record sent before its
// plan is acknowledged, then commits (DESIGN.md I1): a record below a
// committed next_offset is never missing from the topic. What a crashed
// run sent past the checkpoint is found again at restore (scan) and not
// sent twice.
type deadLetters struct {
	cl                  *kgo.Client
	kopts               []kgo.Opt // connection options, for the clients that scan the topic
	topic, group, input string
	parts               int32

	mu    sync.Mutex
	acked map[int32]int64 // dead-letter partition → highest acknowledged offset
	err   error           // the first produce error: the pipeline stops on it
	cur   *dlEpoch
}

// dlEpoch is the records sent between two checkpoint plans. An epoch is
// complete when its records and every earlier epoch's are acknowledged.
type dlEpoch struct {
	wg   sync.WaitGroup
	prev *dlEpoch
}

// newDeadLetters checks that the topic exists and notes where each of its
// partitions ends: whatever this process sends lands after that.
func newDeadLetters(ctx context.Context, cl *kgo.Client, adm *kadm.Client, kopts []kgo.Opt, topic, group, input string) (*deadLetters, error) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(lctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("dead-letter topic %s: %w", topic, err)
	}
	d := &deadLetters{cl: cl, kopts: kopts, topic: topic, group: group, input: input, acked: make(map[int32]int64), cur: &dlEpoch{}}
	if err == nil {
		ends.Each(func(o kadm.ListedOffset) {
			d.parts = max(d.parts, o.Partition+1)
			d.acked[o.Partition] = o.Offset - 1
		})
	}
	if d.parts == 0 {
		return nil, fmt.Errorf("dead-letter topic %s does not exist: create it with as many partitions as %s", topic, input)
	}
	return d, nil
}

func (d *deadLetters) partitionFor(p int32) int32 { return p % d.parts }

// send produces r (from the input topic) to the dead-letter topic.
func (d *deadLetters) send(r *kgo.Record, reason, lateWindows string) {
	hs := make([]kgo.RecordHeader, 0, len(r.Headers)+6)
	hs = append(hs, r.Headers...)
	hs = append(hs,
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(reason)},
		kgo.RecordHeader{Key: HeaderGroup, Value: []byte(d.group)},
		kgo.RecordHeader{Key: HeaderTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
		kgo.RecordHeader{Key: HeaderOffset, Value: strconv.AppendInt(nil, r.Offset, 10)})
	if lateWindows != "" {
		hs = append(hs, kgo.RecordHeader{Key: HeaderLateWindows, Value: []byte(lateWindows)})
	}
	dp := d.partitionFor(r.Partition)
	out := &kgo.Record{Topic: d.topic, Partition: dp, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp, Headers: hs}
	d.mu.Lock()
	e := d.cur
	d.mu.Unlock()
	e.wg.Add(1)
	d.cl.Produce(context.Background(), out, func(out *kgo.Record, err error) {
		d.mu.Lock()
		if err != nil {
			if d.err == nil {
				d.err = err
			}
		} else if out.Offset > d.acked[dp] {
			d.acked[dp] = out.Offset
		}
		d.mu.Unlock()
		e.wg.Done()
	})
}

// cut ends the current epoch and returns it; records sent from now on
// belong to the next checkpoint.
func (d *deadLetters) cut() *dlEpoch {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.cur
	d.cur = &dlEpoch{prev: e}
	return e
}

// wait blocks until epoch e and every earlier one are acknowledged.
func (d *deadLetters) wait(ctx context.Context, e *dlEpoch) error {
	done := make(chan struct{})
	go func() {
		for x := e; x != nil; x = x.prev {
			x.wg.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("wait for the dead-letter topic: %w", ctx.Err())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return fmt.Errorf("produce to dead-letter topic %s: %w", d.topic, d.err)
	}
	e.prev = nil // NB: acknowledged; let the chain go
	return nil
}

// position returns where source partition p's records sent from now on
// will be: after every offset acknowledged so far in its dead-letter
// partition (one producer keeps each partition's order).
func (d *deadLetters) position(p int32) (int32, int64) {
	dp := d.partitionFor(p)
	d.mu.Lock()
	defer d.mu.Unlock()
	return dp, d.acked[dp] + 1
}

// scan reads what runs before this one dead-lettered for partitions
// past their checkpoints: from each row's dead-letter position to the end
// of that dead-letter partition. It returns, per source partition, the
// offsets found (not to be sent again).
func (d *deadLetters) scan(ctx context.Context, rows map[int32]sink.Position) (map[int32]map[int64]bool, error) {
	from := map[int32]int64{} // dead-letter partition → lowest position
	for _, pos := range rows {
		if pos.DeadLetterOffset < 0 || pos.DeadLetterPartition < 0 {
			continue
		}
		if cur, ok := from[pos.DeadLetterPartition]; !ok || pos.DeadLetterOffset < cur {
			from[pos.DeadLetterPartition] = pos.DeadLetterOffset
		}
	}
	out := make(map[int32]map[int64]bool)
	if len(from) == 0 {
		return out, nil
	}
	cl, err := kgo.NewClient(d.kopts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	err = readTopic(ctx, cl, d.topic, from, func(r *kgo.Record) {
		h, ok := parseHeaders(r)
		if !ok || h.group != d.group || h.topic != d.input {
			return
		}
		if pos, ok := rows[h.partition]; !ok || h.offset < pos.NextOffset {
			return
		}
		if out[h.partition] == nil {
			out[h.partition] = make(map[int64]bool)
		}
		out[h.partition][h.offset] = true
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readTopic calls fn with every record of topic's partitions from the
// given offsets (nil: from their start) up to their ends as they are now.
func readTopic(ctx context.Context, cl *kgo.Client, topic string, from map[int32]int64, fn func(*kgo.Record)) error {
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("dead-letter topic %s: %w", topic, err)
	}
	if from == nil {
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err == nil {
			err = starts.Error()
		}
		if err != nil {
			return fmt.Errorf("dead-letter topic %s: %w", topic, err)
		}
		from = map[int32]int64{}
		starts.Each(func(o kadm.ListedOffset) { from[o.Partition] = o.Offset })
	}
	left := map[int32]int64{} // partition → end still to reach
	for p, off := range from {
		if o, ok := ends.Lookup(topic, p); ok && o.Offset > off {
			left[p] = o.Offset
		}
	}
	if len(left) == 0 {
		return nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsetsAt(from)})
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read dead-letter topic %s: %w", topic, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil {
			return fmt.Errorf("read dead-letter topic %s: %w", topic, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := left[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if r.Offset+1 >= end {
				delete(left, r.Partition)
			}
			fn(r)
		})
	}
	return nil
}

// deadLetterHeaders are the clickagg headers of a dead letter.
type deadLetterHeaders struct {
	reason, lateWindows, group, topic string
	partition                         int32
	offset                            int64
}

// parseHeaders reads r's clickagg headers; ok is false when r has none.
func parseHeaders(r *kgo.Record) (h deadLetterHeaders, ok bool) {
	var ps, os string
	for _, x := range r.Headers {
		switch x.Key {
		case HeaderReason:
			h.reason = string(x.Value)
		case HeaderLateWindows:
			h.lateWindows = string(x.Value)
		case HeaderGroup:
			h.group = string(x.Value)
		case HeaderTopic:
			h.topic = string(x.Value)
		case HeaderPartition:
			ps = string(x.Value)
		case HeaderOffset:
			os = string(x.Value)
		}
	}
	p, err1 := strconv.ParseInt(ps, 10, 32)
	off, err2 := strconv.ParseInt(os, 10, 64)
	if h.reason == "" || err1 != nil || err2 != nil {
		return deadLetterHeaders{}, false
	}
	h.partition, h.offset = int32(p), off
	return h, true
}

func offsetsAt(m map[int32]int64) map[int32]kgo.Offset {
	out := make(map[int32]kgo.Offset, len(m))
	for p, off := range m {
		out[p] = kgo.NewOffset().At(off)
	}
	return out
}

// DeadLetterSummary describes a dead-letter topic (clickagg dlq inspect).
type DeadLetterSummary struct {
	Topic      string           `json:"topic"`
	Records    int64            `json:"records"`
	Distinct   int64            `json:"distinct"`   // distinct (group, topic, partition, offset) sources
	Duplicates int64            `json:"duplicates"` // Records - Distinct - Foreign
	Foreign    int64            `json:"foreign"`    // records without clickagg headers
	ByReason   map[string]int64 `json:"by_reason"`  // distinct records per reason
	BySource   map[string]int64 `json:"by_source"`  // distinct records per "group/topic"
	First      time.Time        `json:"first,omitzero"`
	Last       time.Time        `json:"last,omitzero"`
	Samples    []DeadLetter     `json:"samples,omitempty"`
}

// DeadLetter is one dead-lettered record as inspect shows it.
type DeadLetter struct {
	Partition   int32     `json:"partition"` // in the dead-letter topic
	Offset      int64     `json:"offset"`
	Timestamp   time.Time `json:"timestamp"`
	Reason      string    `json:"reason"`
	LateWindows string    `json:"late_windows,omitempty"`
	Group       string    `json:"group"`
	Source      string    `json:"source"` // topic/partition@offset
	Value       []byte    `json:"value"`
}

// InspectDeadLetters reads the dead-letter topic from its start to its
// current end and summarizes it; samples keeps the last n records.
func InspectDeadLetters(ctx context.Context, kopts []kgo.Opt, topic string, n int) (DeadLetterSummary, error) {
	s := DeadLetterSummary{Topic: topic, ByReason: map[string]int64{}, BySource: map[string]int64{}}
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return s, err
	}
	defer cl.Close()
	seen := map[deadLetterHeaders]bool{}
	err = readTopic(ctx, cl, topic, nil, func(r *kgo.Record) {
		s.Records++
		if s.First.IsZero() || r.Timestamp.Before(s.First) {
			s.First = r.Timestamp
		}
		if r.Timestamp.After(s.Last) {
			s.Last = r.Timestamp
		}
		h, ok := parseHeaders(r)
		if !ok {
			s.Foreign++
			return
		}
		if n > 0 {
			s.Samples = append(s.Samples, DeadLetter{Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp,
				Reason: h.reason, LateWindows: h.lateWindows, Group: h.group,
				Source: fmt.Sprintf("%s/%d@%d", h.topic, h.partition, h.offset), Value: r.Value})
			if len(s.Samples) > n {
				s.Samples = s.Samples[1:]
			}
		}
		src := deadLetterHeaders{group: h.group, topic: h.topic, partition: h.partition, offset: h.offset}
		if seen[src] {
			s.Duplicates++
			return
		}
		seen[src] = true
		s.Distinct++
		s.ByReason[h.reason]++
		s.BySource[h.group+"/"+h.topic]++
	})
	return s, err
}
