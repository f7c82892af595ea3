package statuspage

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/clickagg/clickagg/checkpoint"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// metrics returns the pipeline's real metrics and a way to gather them.
func metrics(t *testing.T) (*checkpoint.Metrics, func() []*dto.MetricFamily) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := checkpoint.NewMetrics(reg)
	return m, func() []*dto.MetricFamily {
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		return fams
	}
}

func TestBuildWhileStarting(t *testing.T) {
	_, gather := metrics(t)
	d := Build(Input{Now: t0, Process: Process{Name: "host-a"}, Windows: []time.Duration{time.Minute, time.Hour},
		Phase: "waiting for postgres (attempt 2): connection refused", Metrics: gather()})
	if d.Phase != "starting" || d.Ready || d.Starting != "waiting for postgres (attempt 2): connection refused" {
		t.Errorf("phase %q ready %v starting %q", d.Phase, d.Ready, d.Starting)
	}
	if len(d.NotReady) != 1 || d.NotReady[0].Reason != "starting" || !strings.Contains(d.NotReady[0].Detail, "waiting for postgres") {
		t.Errorf("not ready %+v, want the start-up phase", d.NotReady)
	}
	if strings.Join(d.Windows, ",") != "1m,1h" {
		t.Errorf("windows %v", d.Windows)
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	// NB: the page iterates over these: arrays, never null.
	for _, want := range []string{`"partitions":[]`, `"not_ready":[{`, `"last":null`, `"records_per_second":null`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
}

func TestBuildFromStatusAndMetrics(t *testing.T) {
	m, gather := metrics(t)
	m.Consumed.Add(1000)
	m.Accepted.Add(900)
	m.Rejected.WithLabelValues("invalid_json").Add(30)
	m.Rejected.WithLabelValues("url_too_long").Add(20)
	m.Late.WithLabelValues("1m0s", "count").Add(7)
	m.Late.WithLabelValues("1h0m0s", "count").Add(1)
	m.Duplicates.Add(5)
	m.Filtered.Add(45)
	m.Replayed.Add(12)
	m.Checkpoints.Add(3)
	m.CheckpointDuration.Observe(0.5)
	m.CheckpointDuration.Observe(1.5)
	m.CheckpointFailures.WithLabelValues("postgres").Inc()
	st := checkpoint.Status{Joined: true, PostgresOK: true, Partitions: []int32{0, 3}, Restoring: []int32{3}, Lag: 40,
		LastCheckpoint: t0.Add(-1500 * time.Millisecond), CheckpointTook: 20 * time.Millisecond, Progress: t0, RowsWritten: 77,
		Owned: []checkpoint.PartitionStatus{
			{Partition: 0, Lag: 40, Watermark: t0.Add(-90 * time.Second)},
			{Partition: 3, Restoring: true, Lag: -1},
		}}
	rate := 250.0
	d := Build(Input{Now: t0, Process: Process{Name: "host-a"}, Windows: []time.Duration{time.Minute}, Phase: "opening the state store",
		Status: &st, Metrics: gather(), Rate: &rate, RateOver: 10 * time.Second})

	if d.Phase != "running" || d.Ready || d.Starting != "" {
		t.Errorf("phase %q ready %v starting %q; want running, not ready (restoring)", d.Phase, d.Ready, d.Starting)
	}
	if len(d.NotReady) != 1 || d.NotReady[0].Reason != "restoring" || d.NotReady[0].Detail != "restoring: partitions [3]" {
		t.Errorf("not ready %+v", d.NotReady)
	}
	if len(d.Partitions) != 2 {
		t.Fatalf("partitions %+v", d.Partitions)
	}
	p0, p3 := d.Partitions[0], d.Partitions[1]
	if p0.Partition != 0 || p0.Owner != "host-a" || p0.Restoring || p0.LagRecords == nil || *p0.LagRecords != 40 ||
		p0.Watermark == nil || !p0.Watermark.Equal(t0.Add(-90*time.Second)) || *p0.EventTimeLagSeconds != 90 {
		t.Errorf("partition 0: %+v", p0)
	}
	if p3.Partition != 3 || !p3.Restoring || p3.LagRecords != nil || p3.Watermark != nil || p3.EventTimeLagSeconds != nil {
		t.Errorf("partition 3 (restoring, end unknown, no watermark): %+v", p3)
	}
	if d.LagRecords != 40 || d.EventTimeLagSeconds == nil || *d.EventTimeLagSeconds != 90 {
		t.Errorf("lag %d, event-time lag %v", d.LagRecords, d.EventTimeLagSeconds)
	}
	c := d.Checkpoint
	if c.Last == nil || *c.AgeSeconds != 1.5 || *c.DurationSeconds != 0.02 || *c.MeanDurationSeconds != 1 ||
		c.Total != 3 || c.RowsWritten != 77 || c.Failures["postgres"] != 1 || len(c.Failures) != 1 {
		t.Errorf("checkpoint %+v", c)
	}
	want := Counters{Consumed: 1000, Accepted: 900, Replayed: 12, Rejected: 50, Late: 8, Duplicates: 5, Filtered: 45,
		RejectedByReason: map[string]int64{"invalid_json": 30, "url_too_long": 20}}
	if got, _ := json.Marshal(d.Counters); string(got) != mustJSON(t, want) {
		t.Errorf("counters %s, want %s", got, mustJSON(t, want))
	}
	if d.Rates.RecordsPerSecond == nil || *d.Rates.RecordsPerSecond != 250 || d.Rates.OverSeconds != 10 {
		t.Errorf("rates %+v", d.Rates)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSizeString(t *testing.T) {
	for d, want := range map[time.Duration]string{time.Minute: "1m", time.Hour: "1h", 24 * time.Hour: "24h",
		90 * time.Minute: "1h30m", 90 * time.Second: "1m30s", 10 * time.Second: "10s", time.Hour + time.Second: "1h0m1s"} {
		if got := SizeString(d); got != want {
			t.Errorf("SizeString(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestMeter(t *testing.T) {
	var m Meter
	if _, _, ok := m.Observe(t0, 100); ok {
		t.Fatal("a rate from one sample")
	}
	if _, _, ok := m.Observe(t0.Add(500*time.Millisecond), 150); ok {
		t.Fatal("a rate over half a second")
	}
	if r, over, ok := m.Observe(t0.Add(2*time.Second), 500); !ok || r != 200 || over != 2*time.Second {
		t.Fatalf("rate %v over %s (%v), want 200/s over 2s", r, over, ok)
	}
	// Past the span the oldest samples go, but one older than the span stays.
	for i := 3; i <= 20; i++ {
		m.Observe(t0.Add(time.Duration(i)*time.Second), 500+int64(i-2)*10)
	}
	if r, over, ok := m.Observe(t0.Add(21*time.Second), 690); !ok || over != RateSpan || r != 10 {
		t.Fatalf("rate %v over %s (%v), want 10/s over %s", r, over, ok, RateSpan)
	}
	// A counter reset (a new process's counter) starts over.
	if _, _, ok := m.Observe(t0.Add(22*time.Second), 3); ok {
		t.Fatal("a rate across a counter reset")
	}
}
