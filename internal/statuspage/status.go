// Package statuspage serves the live status page of `clickagg run` on
// http_addr: a small web page embedded in the binary (plain HTML, CSS and
// JavaScript, no external assets) and the JSON it reads: /status (the
// process, its readiness, its partitions, checkpoints, rates and counters,
// built by Build from the pipeline's Status and the Prometheus metrics),
// /api/top and /api/url (counts read from PostgreSQL through sink.Reader).
//
// Each replica serves its own page: the partitions it lists are the ones
// this process owns. Nothing it serves carries a secret: the DSN and the
// passwords are not among its inputs.
package statuspage

import (
	"math"
	"strings"
	"sync"
	"time"

	"github.com/clickagg/clickagg/checkpoint"
	dto "github.com/prometheus/client_model/go"
)

// Process says which process serves the page; none of it is secret.
type Process struct {
	Name       string    `json:"name"` // the owner shown for each partition: the host name
	Version    string    `json:"version"`
	Group      string    `json:"group"`
	Topic      string    `json:"topic"`
	InstanceID string    `json:"instance_id,omitempty"`
	StartedAt  time.Time `json:"started_at"`
}

// Document is the /status answer.
type Document struct {
	Time    time.Time `json:"time"`
	Process Process   `json:"process"`
	// Phase is "starting" until the pipeline runs (Starting says what
	// start-up waits for), then "running".
	Phase    string   `json:"phase"`
	Starting string   `json:"starting,omitempty"`
	Ready    bool     `json:"ready"`
	NotReady []Reason `json:"not_ready"`
	Windows  []string `json:"windows"` // the configured window sizes, for /api/top and /api/url
	// Partitions are those this process owns (each replica's page shows
	// its own).
	Partitions          []Partition `json:"partitions"`
	LagRecords          int64       `json:"lag_records"`            // over the partitions whose end is known
	EventTimeLagSeconds *float64    `json:"event_time_lag_seconds"` // wall clock minus the slowest watermark
	Checkpoint          Checkpoint  `json:"checkpoint"`
	Rates               Rates       `json:"rates"`
	Counters            Counters    `json:"counters"`
}

// Reason is one reason the process is not ready, as /readyz words it.
type Reason struct {
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}

// Partition is one owned partition.
type Partition struct {
	Partition           int32      `json:"partition"`
	Owner               string     `json:"owner"`
	Restoring           bool       `json:"restoring"`
	LagRecords          *int64     `json:"lag_records"` // null while the partition's end is unknown
	Watermark           *time.Time `json:"watermark"`   // null before the first record
	EventTimeLagSeconds *float64   `json:"event_time_lag_seconds"`
}

// Checkpoint describes the checkpoints of this process.
type Checkpoint struct {
	Last                *time.Time       `json:"last"` // null before the first that wrote to PostgreSQL
	AgeSeconds          *float64         `json:"age_seconds"`
	DurationSeconds     *float64         `json:"duration_seconds"`      // the last one
	MeanDurationSeconds *float64         `json:"mean_duration_seconds"` // since start
	Total               int64            `json:"total"`
	RowsWritten         int64            `json:"rows_written"`
	Failures            map[string]int64 `json:"failures"` // by cause
}

// Rates are measured between /status requests over the last RateSpan.
type Rates struct {
	RecordsPerSecond *float64 `json:"records_per_second"` // null until two samples a second apart
	OverSeconds      float64  `json:"over_seconds"`
}

// Counters count records since the process started.
type Counters struct {
	Consumed         int64            `json:"consumed"`
	Accepted         int64            `json:"accepted"`
	Replayed         int64            `json:"replayed"`
	Rejected         int64            `json:"rejected"`
	RejectedByReason map[string]int64 `json:"rejected_by_reason"` // reasons with a count only
	Late             int64            `json:"late"`
	Duplicates       int64            `json:"duplicates"`
	Filtered         int64            `json:"filtered"`
	DeadLetters      int64            `json:"dead_letters"`
	Lost             int64            `json:"lost"`
}

// Input is what Build reads.
type Input struct {
	Now     time.Time
	Process Process
	Windows []time.Duration
	// Phase is what start-up waits for, shown while Status is nil.
	Phase string
	// Status is the pipeline's; nil before it runs.
	Status *checkpoint.Status
	// Metrics are the gathered Prometheus families (clickagg_*).
	Metrics []*dto.MetricFamily
	// Rate is the records per second, if known (see Meter).
	Rate     *float64
	RateOver time.Duration
}

// consumedTotal is the counter of records consumed, whose rate /status
// shows.
const consumedTotal = "clickagg_records_consumed_total"

// Build returns the /status document.
func Build(in Input) Document {
	d := Document{Time: in.Now, Process: in.Process, Phase: "starting", NotReady: []Reason{}, Windows: []string{},
		Partitions: []Partition{}, Rates: Rates{RecordsPerSecond: in.Rate, OverSeconds: in.RateOver.Seconds()}}
	for _, w := range in.Windows {
		d.Windows = append(d.Windows, SizeString(w))
	}
	m := metricValues(in.Metrics)
	d.Counters = Counters{
		Consumed: m.sum(consumedTotal), Accepted: m.sum("clickagg_events_accepted_total"),
		Replayed: m.sum("clickagg_records_replayed_total"), Rejected: m.sum("clickagg_events_rejected_total"),
		RejectedByReason: m.byLabel("clickagg_events_rejected_total", "reason"),
		Late:             m.sum("clickagg_late_events_total"), Duplicates: m.sum("clickagg_duplicates_total"),
		Filtered: m.sum("clickagg_events_filtered_total"), DeadLetters: m.sum("clickagg_dead_letters_total"),
		Lost: m.sum("clickagg_records_lost_total"),
	}
	d.Checkpoint = Checkpoint{Total: m.sum("clickagg_checkpoints_total"),
		Failures: m.byLabel("clickagg_checkpoint_failures_total", "cause")}
	if mean, ok := m.mean("clickagg_checkpoint_duration_seconds"); ok {
		d.Checkpoint.MeanDurationSeconds = &mean
	}
	st := in.Status
	if st == nil {
		d.Starting = in.Phase
		d.NotReady = append(d.NotReady, Reason{Reason: "starting", Detail: "starting: " + in.Phase})
		return d
	}
	d.Phase = "running"
	for _, r := range st.NotReady() {
		d.NotReady = append(d.NotReady, Reason{Reason: string(r), Detail: st.Explain(r, in.Now)})
	}
	d.Ready = len(d.NotReady) == 0
	d.LagRecords = st.Lag
	var slowest time.Time
	for _, ps := range st.Owned {
		p := Partition{Partition: ps.Partition, Owner: in.Process.Name, Restoring: ps.Restoring}
		if ps.Lag >= 0 {
			p.LagRecords = &ps.Lag
		}
		if !ps.Watermark.IsZero() {
			wm := ps.Watermark.UTC()
			p.Watermark = &wm
			p.EventTimeLagSeconds = seconds(in.Now.Sub(wm))
			if slowest.IsZero() || wm.Before(slowest) {
				slowest = wm
			}
		}
		d.Partitions = append(d.Partitions, p)
	}
	if !slowest.IsZero() {
		d.EventTimeLagSeconds = seconds(in.Now.Sub(slowest))
	}
	if !st.LastCheckpoint.IsZero() {
		last := st.LastCheckpoint.UTC()
		d.Checkpoint.Last = &last
		d.Checkpoint.AgeSeconds = seconds(in.Now.Sub(last))
		d.Checkpoint.DurationSeconds = seconds(st.CheckpointTook)
	}
	d.Checkpoint.RowsWritten = st.RowsWritten
	return d
}

// SizeString writes a window size as the configuration does: 1m, 1h,
// 1h30m, not 1m0s.
func SizeString(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func seconds(d time.Duration) *float64 {
	s := math.Round(d.Seconds()*1000) / 1000
	return &s
}

// families indexes gathered metric families by name.
type families map[string]*dto.MetricFamily

func metricValues(fams []*dto.MetricFamily) families {
	m := families{}
	for _, f := range fams {
		m[f.GetName()] = f
	}
	return m
}

func value(x *dto.Metric) float64 {
	switch {
	case x.Counter != nil:
		return x.Counter.GetValue()
	case x.Gauge != nil:
		return x.Gauge.GetValue()
	}
	return 0
}

// sum adds a counter's or gauge's series.
func (m families) sum(name string) int64 {
	var v float64
	for _, x := range m[name].GetMetric() {
		v += value(x)
	}
	return int64(v)
}

// byLabel returns the non-zero series of name by the value of label.
func (m families) byLabel(name, label string) map[string]int64 {
	out := map[string]int64{}
	for _, x := range m[name].GetMetric() {
		if v := int64(value(x)); v != 0 {
			for _, l := range x.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] += v
				}
			}
		}
	}
	return out
}

// mean returns a histogram's mean observation, if it has any.
func (m families) mean(name string) (float64, bool) {
	var sum float64
	var n uint64
	for _, x := range m[name].GetMetric() {
		sum += x.GetHistogram().GetSampleSum()
		n += x.GetHistogram().GetSampleCount()
	}
	if n == 0 {
		return 0, false
	}
	return math.Round(sum/float64(n)*1e6) / 1e6, true
}

// RateSpan is how far back Meter looks.
const RateSpan = 10 * time.Second

// maxSamples bounds a Meter's memory whatever the request rate.
const maxSamples = 256

// A Meter turns samples of a counter taken at each /status request into a
// rate over the last RateSpan. Safe for concurrent use.
type Meter struct {
	mu      sync.Mutex
	samples []sample
}

type sample struct {
	at time.Time
	n  int64
}

// Observe adds the sample n at now and returns the rate per second since
// the oldest sample within RateSpan, and over how long; ok is false until
// two samples are at least a second apart.
func (m *Meter) Observe(now time.Time, n int64) (perSec float64, over time.Duration, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k := len(m.samples); k > 0 && (n < m.samples[k-1].n || now.Before(m.samples[k-1].at)) {
		m.samples = m.samples[:0] // NB: a counter reset or a clock step
	}
	m.samples = append(m.samples, sample{now, n})
	// NB: keep the newest sample older than the span, so a rate covers
	// RateSpan even when requests are far apart.
	drop := 0
	for drop+1 < len(m.samples) && now.Sub(m.samples[drop+1].at) >= RateSpan {
		drop++
	}
	m.samples = m.samples[drop:]
	if len(m.samples) > maxSamples { // NB: many clients polling at once
		m.samples = m.samples[len(m.samples)-maxSamples:]
	}
	first := m.samples[0]
	over = now.Sub(first.at)
	if over < time.Second {
		return 0, over, false
	}
	return float64(n-first.n) / over.Seconds(), over, true
}
