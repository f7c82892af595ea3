package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
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
	// HeaderGroup is the consumer group that dead-lettered the record.
	HeaderGroup = "clickagg-group"
	// HeaderTopic is the record's topic.
	HeaderTopic = "clickagg-topic"
	// HeaderPartition is the record's partition (decimal).
	HeaderPartition = "clickagg-partition"
	// HeaderOffset is the record's offset (decimal).
	HeaderOffset = "clickagg-offset"
	// HeaderTruncated is "true" on a reference: a dead letter that stands
	// for a record too large for the dead-letter topic. A reference keeps
	// the record's timestamp and the clickagg headers; its key and value
	// are their first ReferencePrefixBytes bytes, and the record's own
	// headers are kept only when together they take at most
	// ReferencePrefixBytes. The record itself is still in the source
	// topic, at HeaderPartition and HeaderOffset.
	HeaderTruncated = "clickagg-truncated"
	// HeaderOriginalSize is a reference's original record size in bytes:
	// its key, value, and header keys and values (decimal).
	HeaderOriginalSize = "clickagg-original-size"
)

// ReferencePrefixBytes bounds a reference's key and value (see
// HeaderTruncated).
const ReferencePrefixBytes = 1024

// ReasonLate is HeaderReason of a late record (late policy dead-letter).
const ReasonLate = "late"

// Dead-letter size limits. A dead letter is sent whole when its encoded
// size fits the topic's max.message.bytes, else as a reference.
const (
	// defaultMaxMessageBytes is the broker's default max.message.bytes,
	// assumed when the topic's cannot be read.
	defaultMaxMessageBytes = 1048588
	// maxDeadLetterBytes caps the limit whatever the topic allows: a
	// produce request must stay under the broker's socket.request.max.bytes
	// and the client's BrokerMaxWriteBytes (both 100 MiB by default).
	maxDeadLetterBytes = 64 << 20
	// batchOverhead bounds a one-record batch's encoding besides the
	// record's key, value and headers: the batch header (61 bytes) and the
	// record's varint fields; headerOverhead bounds a header's two length
	// varints.
	batchOverhead  = 128
	headerOverhead = 10
)

// deadLetters produces invalid and late records to the dead-letter topic.
// Source partition p goes to dead-letter partition p mod the topic's
// partition count, so one producer writes each source partition's records
// in offset order. A checkpoint waits until every record sent before its
// plan is acknowledged, then commits: a record below a
// committed next_offset is never missing from the topic. What a crashed
// run sent past the checkpoint is found again at restore (scan) and not
// sent twice.
type deadLetters struct {
	// cl produces the dead letters: a client of its own, whose batch
	// limit is the topic's max.message.bytes (limit).
	cl                  *kgo.Client
	kopts               []kgo.Opt // connection options, for the clients that scan the topic
	topic, group, input string
	parts               int32
	limit               int // bytes a dead letter's one-record batch may take
	m                   *Metrics

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

// newDeadLetters checks that the topic exists, notes where each of its
// partitions ends (whatever this process sends lands after that), reads
// its max.message.bytes and creates the producer. Close it with close.
func newDeadLetters(ctx context.Context, adm *kadm.Client, kopts []kgo.Opt, topic, group, input string, m *Metrics, log *zap.Logger) (*deadLetters, error) {
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(lctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("dead-letter topic %s: %w", topic, err)
	}
	d := &deadLetters{kopts: kopts, topic: topic, group: group, input: input, m: m, acked: make(map[int32]int64), cur: &dlEpoch{}}
	if err == nil {
		ends.Each(func(o kadm.ListedOffset) {
			d.parts = max(d.parts, o.Partition+1)
			d.acked[o.Partition] = o.Offset - 1
		})
	}
	if d.parts == 0 {
		return nil, fmt.Errorf("dead-letter topic %s does not exist: create it with as many partitions as %s", topic, input)
	}
	limit, err := maxMessageBytes(lctx, adm, topic)
	if err != nil {
		limit = defaultMaxMessageBytes
		log.Warn("cannot read the dead-letter topic's max.message.bytes; assuming the broker default",
			zap.String("topic", topic), zap.Int("max_message_bytes", limit), zap.Error(err))
	}
	d.limit = min(limit, maxDeadLetterBytes)
	popts := append(slices.Clone(kopts),
		// NB: dead letters go to the partition send picks.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// NB: kgo's own default (1,000,012 bytes) would refuse records the
		// topic takes; the client refuses 512 or less.
		kgo.ProducerBatchMaxBytes(int32(max(d.limit, 1024))))
	if d.cl, err = kgo.NewClient(popts...); err != nil {
		return nil, fmt.Errorf("create dead-letter producer: %w", err)
	}
	return d, nil
}

// maxMessageBytes returns topic's max.message.bytes (its own or the
// broker's default).
func maxMessageBytes(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, err
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return 0, err
	}
	for _, c := range rc.Configs {
		if c.Key == "max.message.bytes" && c.Value != nil {
			n, err := strconv.Atoi(*c.Value)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("max.message.bytes %q: not a positive number", *c.Value)
			}
			return n, nil
		}
	}
	return 0, errors.New("max.message.bytes: not in the topic's configuration")
}

// close closes the producer; records not yet acknowledged fail.
func (d *deadLetters) close() { d.cl.Close() }

func (d *deadLetters) partitionFor(p int32) int32 { return p % d.parts }

// send produces r (from the input topic) to the dead-letter topic: whole
// when it fits the topic's limit, else as a reference (HeaderTruncated).
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
	out := &kgo.Record{Topic: d.topic, Partition: d.partitionFor(r.Partition), Key: r.Key, Value: r.Value, Timestamp: r.Timestamp, Headers: hs}
	ref := false
	if encodedSize(out) > d.limit {
		out, ref = reference(r, out), true
		d.m.DeadLetterRefs.WithLabelValues(reason).Inc()
	}
	d.mu.Lock()
	e := d.cur
	d.mu.Unlock()
	e.wg.Add(1)
	d.produce(e, r, reason, out, ref)
}

// produce sends out, the dead letter of r, as part of epoch e, whose wait
// group counts it already. resent is true when out is r's second try.
func (d *deadLetters) produce(e *dlEpoch, r *kgo.Record, reason string, out *kgo.Record, resent bool) {
	dp := out.Partition
	d.cl.Produce(context.Background(), out, func(out *kgo.Record, err error) {
		if errors.Is(err, kerr.MessageTooLarge) && !resent {
			// NB: the broker refused a batch the size estimate let
			// through: the topic's limit was lowered since the start, or
			// the broker recompressed it larger. Each of the batch's
			// records is sent once more, as a reference unless it is no
			// larger than one. The resend joins e before out leaves it, so
			// the checkpoint that covers r still waits for it. It may land
			// after dead letters sent since; the restore scan does not
			// mind: it reads from the offset recorded at a checkpoint's
			// plan, which no record acknowledged later precedes. Only once:
			// a refused resend stops the pipeline like any produce error
			// (the next run reads the topic's limit again).
			again := reference(r, out)
			if encodedSize(out) <= encodedSize(again) {
				again = out
			} else {
				d.m.DeadLetterRefs.WithLabelValues(reason).Inc()
			}
			e.wg.Add(1)
			// NB: not from this callback: Produce may block until
			// callbacks like this one return.
			go d.produce(e, r, reason, again, true)
			e.wg.Done()
			return
		}
		d.mu.Lock()
		if err != nil {
			if resent && errors.Is(err, kerr.MessageTooLarge) {
				err = fmt.Errorf("%w (even a %d-byte reference: the topic's max.message.bytes is too small)", err, encodedSize(out))
			}
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

// reference returns the reference that stands for out, the dead letter of
// r (see HeaderTruncated). out's headers are r's then the clickagg ones.
func reference(r, out *kgo.Record) *kgo.Record {
	own, tags := out.Headers[:len(r.Headers)], out.Headers[len(r.Headers):]
	hs := make([]kgo.RecordHeader, 0, len(out.Headers)+2)
	if headersSize(own) <= ReferencePrefixBytes {
		hs = append(hs, own...)
	}
	hs = append(hs, tags...)
	hs = append(hs,
		kgo.RecordHeader{Key: HeaderTruncated, Value: []byte("true")},
		kgo.RecordHeader{Key: HeaderOriginalSize, Value: strconv.AppendInt(nil, int64(len(r.Key)+len(r.Value)+headersSize(own)), 10)})
	return &kgo.Record{Topic: out.Topic, Partition: out.Partition, Timestamp: out.Timestamp, Headers: hs,
		Key: r.Key[:min(len(r.Key), ReferencePrefixBytes)], Value: r.Value[:min(len(r.Value), ReferencePrefixBytes)]}
}

// encodedSize bounds the bytes r takes alone in a record batch.
func encodedSize(r *kgo.Record) int {
	return batchOverhead + len(r.Key) + len(r.Value) + headersSize(r.Headers) + headerOverhead*len(r.Headers)
}

func headersSize(hs []kgo.RecordHeader) int {
	n := 0
	for _, h := range hs {
		n += len(h.Key) + len(h.Value)
	}
	return n
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
