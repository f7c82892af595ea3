package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/clickagg/clickagg/sink"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Reading the dead-letter topic back: when a partition is opened (scan:
// which records past its checkpoint an earlier run already dead-lettered),
// and for the operator (InspectDeadLetters, clickagg dlq inspect).

// scan reads what runs before this one dead-lettered for partitions
// past their checkpoints: from each row's dead-letter position to the end
// of that dead-letter partition. It returns, per source partition, the
// offsets found (not to be sent again).
func (d *deadLetters) scan(ctx context.Context, rows map[int32]sink.Row) (map[int32]map[int64]bool, error) {
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
	truncated                         bool  // a reference
	originalSize                      int64 // a reference's; else 0
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
		case HeaderTruncated:
			h.truncated = string(x.Value) == "true"
		case HeaderOriginalSize:
			h.originalSize, _ = strconv.ParseInt(string(x.Value), 10, 64)
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
	Truncated  int64            `json:"truncated"`  // distinct records dead-lettered as references (HeaderTruncated)
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
	// Truncated marks a reference (HeaderTruncated): Value is the first
	// ReferencePrefixBytes of a record of OriginalSize bytes.
	Truncated    bool   `json:"truncated,omitempty"`
	OriginalSize int64  `json:"original_size,omitempty"`
	Value        []byte `json:"value"`
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
				Reason: h.reason, LateWindows: h.lateWindows, Group: h.group, Truncated: h.truncated, OriginalSize: h.originalSize,
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
		if h.truncated {
			s.Truncated++
		}
		s.ByReason[h.reason]++
		s.BySource[h.group+"/"+h.topic]++
	})
	return s, err
}
