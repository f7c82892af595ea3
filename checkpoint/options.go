package checkpoint

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/stream"
	"go.uber.org/zap"
)

// Options configure a Pipeline. Zero values are documented per field.
type Options struct {
	Kafka    stream.KafkaOptions
	Consumer stream.ConsumerOptions
	Operator stream.OperatorOptions

	// CheckpointInterval is the time between checkpoints; zero means 1s.
	CheckpointInterval time.Duration
	// EarlyInterval, when positive, flushes the partial counts of open
	// windows at that interval (early results, final = false).
	EarlyInterval time.Duration
	// IdleTimeout, when positive, advances the watermark of a caught-up
	// partition that has had no record for that long to the wall clock
	// minus the out-of-orderness, so its windows close.
	IdleTimeout time.Duration
	// ExitWhenIdle, when positive, makes Run take a final checkpoint and
	// return once every partition of the topic is counted up to the end
	// offset it had when Run started: the partitions this process owns are
	// restored, caught up and without records for that long, and every
	// other partition's checkpoints row has passed its end (exit.go).
	ExitWhenIdle time.Duration
	// DeadLetterTopic, when set, receives every invalid record and (late
	// policy dead-letter) every late one, unchanged plus headers. It must
	// exist.
	DeadLetterTopic string
	// StartOffset is where a partition PostgreSQL has never seen starts:
	// "earliest" (default) or "latest".
	StartOffset string
	// MaxPendingKeys triggers a checkpoint before the interval when this
	// many (window, URL) counters are buffered; zero means 250,000 (a checkpoint in flight holds as many again).
	MaxPendingKeys int
	// SpillDir holds temporary files of checkpoints too large for memory;
	// "" keeps them in memory.
	SpillDir string
	// MaxPollRecords bounds the records processed per poll; zero means 10,000.
	MaxPollRecords int
	// AlignWatermarks caps the watermark of each partition at the lowest
	// own watermark among this process's other partitions that are
	// catching up (records left to read), like a Flink source that reads
	// several partitions. A window then closes on every partition at
	// about the same time, once its records are all in, so its rows are
	// written once and final instead of once per partition and once more
	// by the finalizer, and fewer records are late. A caught-up partition
	// is held back by the others but never holds them back, nor does one
	// that stopped delivering records (10 polls and 10s). Ignored with late
	// policy dead-letter: which records are late then depends on other
	// partitions' progress, so a run after a crash could count a record
	// the crashed run had dead-lettered past its checkpoint.
	AlignWatermarks bool
	// StallTimeout is how long a process that owns partitions may go
	// without a successful checkpoint before it is not ready
	// (NotReadyStalled); zero means 10 checkpoint intervals, at least 30s.
	StallTimeout time.Duration
	// ShutdownTimeout bounds the final checkpoint; zero means 30s.
	ShutdownTimeout time.Duration
	// StatsInterval is the period of the progress log line; zero means 10s,
	// negative disables it.
	StatsInterval time.Duration
	// Retention is, per window size, how much of url_clicks to keep behind
	// the global watermark (the lowest partition's); older partitions are
	// dropped. A size without an entry is kept forever. Each entry must be
	// a configured window size, kept at least one window long.
	Retention map[time.Duration]time.Duration
	// MaintainInterval is the period of the storage maintenance (creating
	// url_clicks partitions ahead, applying Retention); zero means 30s.
	MaintainInterval time.Duration
	// TotalsFoldPeriod makes the maintenance fold url_totals in whole
	// periods of event time (a URL's folded total written once per
	// period); zero folds up to the watermark at every run.
	TotalsFoldPeriod time.Duration

	Logger  *zap.Logger // nil: no logs
	Metrics *Metrics    // nil: unregistered series
}

func (o *Options) setDefaults() error {
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = time.Second
	}
	if o.CheckpointInterval < 10*time.Millisecond {
		return fmt.Errorf("checkpoint interval %s: must be at least 10ms", o.CheckpointInterval)
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = max(stallIntervals*o.CheckpointInterval, minStallTimeout)
	}
	if o.StallTimeout < 0 {
		return fmt.Errorf("stall timeout %s: must not be negative", o.StallTimeout)
	}
	switch o.StartOffset {
	case "":
		o.StartOffset = "earliest"
	case "earliest", "latest":
	default:
		return fmt.Errorf("start offset %q: must be earliest or latest", o.StartOffset)
	}
	if o.MaxPendingKeys == 0 {
		o.MaxPendingKeys = 250_000
	}
	if o.MaxPollRecords == 0 {
		o.MaxPollRecords = 10_000
	}
	if o.Operator.Late == stream.LateDeadLetter {
		o.AlignWatermarks = false
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	if o.StatsInterval == 0 {
		o.StatsInterval = 10 * time.Second
	}
	if o.MaintainInterval == 0 {
		o.MaintainInterval = 30 * time.Second
	}
	if o.MaintainInterval < 0 {
		return fmt.Errorf("maintain interval %s: must not be negative", o.MaintainInterval)
	}
	for size, keep := range o.Retention {
		if !slices.Contains(o.Operator.Windows, size) {
			return fmt.Errorf("retention for %s windows: not a configured window size (windows: %v)", size, o.Operator.Windows)
		}
		if keep < size {
			return fmt.Errorf("retention %s for %s windows: must keep at least one window (%s)", keep, size, size)
		}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Operator.MaxURLBytes > sink.MaxURLBytes {
		// NB: a longer URL would fail every checkpoint that carries it.
		return fmt.Errorf("max URL bytes %d: must be at most %d (the longest URL the schema holds)", o.Operator.MaxURLBytes, sink.MaxURLBytes)
	}
	if o.Consumer.Topic == "" {
		return errors.New("topic: must not be empty")
	}
	if o.Consumer.Group == "" {
		return errors.New("group: must not be empty")
	}
	return nil
}

// ValidateOptions returns the error New would return for opts.
func ValidateOptions(opts Options) error { return opts.validate() }

// validate fills in opts' defaults and checks them.
func (o *Options) validate() error {
	if err := o.setDefaults(); err != nil {
		return err
	}
	_, err := stream.NewOperator(o.Operator)
	return err
}

// StateIdentity is the identity of the local state store for these
// options: the consumer group, the topic, and every setting that changes
// what the stored counts mean. A store written under another identity is
// wiped and rebuilt from PostgreSQL.
func StateIdentity(o Options) string {
	sizes := make([]string, 0, len(o.Operator.Windows))
	for _, w := range o.Operator.Windows {
		sizes = append(sizes, w.String())
	}
	slices.Sort(sizes)
	id := fmt.Sprintf("v2\x00%s\x00%s\x00windows=%v ooo=%s late=%s max_url=%d skew=%s/%s dedup=%s normalize=%v",
		o.Consumer.Group, o.Consumer.Topic, sizes, o.Operator.OutOfOrder, o.Operator.Late, o.Operator.MaxURLBytes,
		o.Operator.MaxFutureSkew, o.Operator.MaxPastSkew, o.Operator.DedupWindow, o.Operator.NormalizeURLs)
	// NB: the input mapping decides which records count and where. The
	// default one (zero or spelled out: String is canonical) adds nothing,
	// so stores written before input mapping existed stay valid.
	if in := o.Operator.Input.String(); in != (stream.InputOptions{}).String() {
		id += " input=" + in
	}
	return id
}

// PipelineIdentity is what a schema's pipeline row records of these
// options (sink.ClaimPipeline): the group, the topic, the window sizes,
// and, by setting name, every other part of StateIdentity: the settings
// that change what a stored count means. A schema refuses counts made
// under other settings; window sizes may come and go.
func PipelineIdentity(o Options) sink.Identity {
	op := o.Operator
	settings := map[string]string{
		"out_of_orderness": op.OutOfOrder.String(),
		"late.policy":      op.Late.String(),
		"max_url_bytes":    fmt.Sprint(op.MaxURLBytes),
		"max_future_skew":  op.MaxFutureSkew.String(),
		"max_past_skew":    op.MaxPastSkew.String(),
		"dedup.window":     op.DedupWindow.String(),
		"url.normalize":    fmt.Sprint(op.NormalizeURLs),
		"input":            op.Input.String(),
	}
	if op.DedupWindow > 0 {
		// NB: without dedup the scope changes nothing.
		settings["dedup.scope"] = map[bool]string{false: "partition", true: "global"}[op.DedupKeyed]
	}
	return sink.Identity{Group: o.Consumer.Group, Topic: o.Consumer.Topic, Windows: slices.Clone(op.Windows), Settings: settings}
}
