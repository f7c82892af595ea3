package checkpoint

import (
	"time"

	"github.com/clickagg/clickagg/stream"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the pipeline's Prometheus series. Names follow Prometheus
// conventions: clickagg_ prefix, _total counters, _seconds durations.
type Metrics struct {
	Consumed           prometheus.Counter
	Accepted           prometheus.Counter
	Rejected           *prometheus.CounterVec
	Filtered           prometheus.Counter
	Duplicates         prometheus.Counter
	DeadLetters        *prometheus.CounterVec
	DeadLetterRefs     *prometheus.CounterVec // dead letters sent as references (HeaderTruncated), also in DeadLetters
	Misrouted          prometheus.Counter
	Late               *prometheus.CounterVec
	Checkpoints        prometheus.Counter
	CheckpointFailures *prometheus.CounterVec
	CheckpointDuration prometheus.Histogram
	CheckpointRows     prometheus.Histogram
	TxDuration         prometheus.Histogram
	PostgresUp         prometheus.Gauge
	TopicMissing       prometheus.Gauge
	Ready              prometheus.Gauge
	NotReady           *prometheus.GaugeVec
	RowsWritten        *prometheus.CounterVec
	Finalized          prometheus.Counter
	Fenced             prometheus.Counter
	Restores           *prometheus.CounterVec
	RestoreDuration    prometheus.Histogram
	Replayed           prometheus.Counter
	RecordsLost        *prometheus.CounterVec
	Partitions         prometheus.Gauge
	Lag                *prometheus.GaugeVec
	Watermark          *prometheus.GaugeVec
	WatermarkLag       *prometheus.GaugeVec
	StateBytes         prometheus.Gauge
	PendingKeys        prometheus.Gauge
	OpenWindows        prometheus.Gauge
	LastCheckpoint     prometheus.Gauge

	ExpiredClicks       *prometheus.CounterVec
	StoragePartitions   *prometheus.GaugeVec
	StorageBytes        *prometheus.GaugeVec
	StorageOldest       *prometheus.GaugeVec
	PartitionsDropped   prometheus.Counter
	MaintenanceLast     prometheus.Gauge
	MaintenanceFailures prometheus.Counter
}

// NewMetrics creates the series and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickagg_records_consumed_total",
			Help: "Kafka records consumed (live, not replayed), valid or not.",
		}),
		Accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickagg_events_accepted_total",
			Help: "Records decoded into a valid click.",
		}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickagg_events_rejected_total",
			Help: "Records skipped as invalid, by reason.",
		}, []string{"reason"}),
		Filtered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickagg_events_filtered_total",
			Help: "Valid JSON records skipped because they failed input.filter (not rejections, not dead-lettered, not counted).",
		}),
		Duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickagg_duplicates_total",
			Help: "Valid records not counted because their event id was seen already (dedup.window).",
		}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickagg_dead_letters_total",
			Help: "Records produced to the dead-letter topic, by reason (a rejection reason, or late).",
		}, []string{"reason"}),
		DeadLetterRefs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickagg_dead_letters_truncated_total",
			Help: "Dead letters too large for the dead-letter topic, produced as references (clickagg headers, the first 1 KiB of key and value), by reason; also in clickagg_dead_letters_total.",
		}, []string{"reason"}),
		Misrouted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickagg_dedup_misrouted_total",
			Help: "Records with an event id whose Kafka key is neither the id nor the URL (dedup.scope global): their duplicates may land on other partitions and be counted.",
		}),
		Late: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickagg_late_events_total",
			Help: "Valid records that arrived after the watermark passed their window, by window size and what the late policy did.",
		}, []string{"window", "policy"}),
		Checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickagg_checkpoints_total",
			Help: "Checkpoints committed to PostgreSQL.",
		}),
		CheckpointFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickagg_checkpoint_failures_total",
			Help: "Failed checkpoint attempts, by cause (postgres, fenced, state).",
		}, []string{"cause"}),
		CheckpointDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "clickagg_checkpoint_duration_seconds",
			Help:    "Time to take one checkpoint: plan, PostgreSQL transaction, state batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		CheckpointRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "clickagg_checkpoint_rows",
			Help:    "Rows (url_clicks and url_totals) one checkpoint wrote.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 12),
		}),
		TxDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "clickagg_postgres_transaction_duration_seconds",
			Help:    "Time of one successful checkpoint transaction in PostgreSQL, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		PostgresUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clickagg_postgres_up",
			Help: "1 when the last PostgreSQL operation succeeded, 0 while it fails.",
		}),
		TopicMissing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clickagg_topic_missing",
			Help: "1 while the input topic does not exist (the process waits for it), else 0.",
		}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clickagg_ready",
			Help: "1 when /readyz would answer 200 (clickagg_not_ready is 0 for every reason), else 0.",
		}),
		NotReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clickagg_not_ready",
			Help: "1 while the process is not ready for this reason: not_joined, fenced (another process has the instance id), restoring, postgres_unreachable, checkpoint_stalled, store_unusable.",
		}, []string{"reason"}),
		RowsWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickagg_postgres_rows_written_total",
			Help: "Rows inserted or updated by checkpoints, by table.",
		}, []string{"table"}),
		Finalized: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickagg_windows_finalized_total",
			Help: "url_clicks rows marked final by the finalizer.",
		}),
		Fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickagg_fenced_total",
			Help: "Partitions whose checkpoint was refused because another writer moved their row.",
		}),
		Restores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickagg_restores_total",
			Help: "Partition restores, by kind: local (state store matched), rebuild (replay from PostgreSQL's restart offset), fresh (nothing to replay).",
		}, []string{"kind"}),
		RestoreDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "clickagg_restore_duration_seconds",
			Help:    "Time from assignment until a partition is restored and live.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
		Replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickagg_records_replayed_total",
			Help: "Records re-read to rebuild state (not counted again).",
		}),
		RecordsLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickagg_records_lost_total",
			Help: "Records the broker deleted (retention) before they were processed: never counted, so alert on any increase.",
		}, []string{"reason"}),
		Partitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clickagg_partitions_owned",
			Help: "Partitions this process owns.",
		}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clickagg_consumer_lag_records",
			Help: "Records between the partition's end and the next offset to process.",
		}, []string{"partition"}),
		Watermark: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clickagg_watermark_seconds",
			Help: "The partition's watermark as Unix seconds.",
		}, []string{"partition"}),
		WatermarkLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clickagg_watermark_lag_seconds",
			Help: "Wall clock minus the partition's watermark: how far event time trails.",
		}, []string{"partition"}),
		StateBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clickagg_state_bytes",
			Help: "Size of the local state store on disk.",
		}),
		PendingKeys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clickagg_pending_keys",
			Help: "(window, URL) counters buffered in memory: added since the last checkpoint, or held there by windows that close soon.",
		}),
		OpenWindows: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clickagg_open_windows",
			Help: "Windows holding counts not yet emitted, over all owned partitions.",
		}),
		LastCheckpoint: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clickagg_last_checkpoint_timestamp_seconds",
			Help: "When the last checkpoint committed, as Unix seconds.",
		}),
		ExpiredClicks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickagg_expired_clicks_total",
			Help: "Clicks (late ones, or replayed) for windows whose url_clicks partition retention had dropped: added to url_totals, not to url_clicks.",
		}, []string{"window"}),
		StoragePartitions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clickagg_storage_partitions",
			Help: "url_clicks partitions of the window size (as of the last maintenance run).",
		}, []string{"window"}),
		StorageBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clickagg_storage_bytes",
			Help: "Bytes on disk of the window size's url_clicks partitions, indexes included (as of the last maintenance run).",
		}, []string{"window"}),
		StorageOldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clickagg_storage_oldest_window_seconds",
			Help: "Start of the oldest url_clicks window kept for the window size, as Unix seconds (absent while there is none).",
		}, []string{"window"}),
		PartitionsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickagg_storage_partitions_dropped_total",
			Help: "url_clicks partitions this process dropped because retention expired them.",
		}),
		MaintenanceLast: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clickagg_storage_maintenance_last_success_timestamp_seconds",
			Help: "When the storage maintenance (partitions ahead, retention) last succeeded, as Unix seconds.",
		}),
		MaintenanceFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "clickagg_storage_maintenance_failures_total",
			Help: "Storage maintenance runs that failed (retried at the next run).",
		}),
	}
	for _, r := range stream.Reasons() {
		m.Rejected.WithLabelValues(r.String())
	}
	for _, c := range []string{"postgres", "fenced", "state"} {
		m.CheckpointFailures.WithLabelValues(c)
	}
	for _, k := range []string{"local", "rebuild", "fresh"} {
		m.Restores.WithLabelValues(k)
	}
	m.RecordsLost.WithLabelValues("retention")
	for _, r := range NotReadyReasons() {
		m.NotReady.WithLabelValues(string(r)).Set(b2f(r == NotReadyUnassigned))
	}
	m.PostgresUp.Set(1)
	if reg != nil {
		reg.MustRegister(m.Consumed, m.Accepted, m.Rejected, m.Filtered, m.Duplicates, m.DeadLetters, m.DeadLetterRefs, m.Misrouted, m.Late, m.Checkpoints,
			m.CheckpointFailures, m.CheckpointDuration, m.CheckpointRows, m.TxDuration,
			m.PostgresUp, m.TopicMissing, m.Ready, m.NotReady, m.RowsWritten, m.Finalized,
			m.Fenced, m.Restores, m.RestoreDuration, m.Replayed, m.RecordsLost, m.Partitions, m.Lag,
			m.Watermark, m.WatermarkLag, m.StateBytes, m.PendingKeys, m.OpenWindows, m.LastCheckpoint,
			m.ExpiredClicks, m.StoragePartitions, m.StorageBytes, m.StorageOldest, m.PartitionsDropped,
			m.MaintenanceLast, m.MaintenanceFailures)
	}
	return m
}

// countLate counts a late record in clickagg_late_events_total once for
// each window size it was late for (the bits of late, in the order of
// sizes) and, under policy dead-letter, returns those sizes' labels (the
// dead letter's header).
func (m *Metrics) countLate(late uint32, sizes []int64, policy stream.LatePolicy) (missed []string) {
	for i, size := range sizes {
		if late&(1<<i) != 0 {
			label := windowLabel(size)
			m.Late.WithLabelValues(label, policy.String()).Inc()
			if policy == stream.LateDeadLetter {
				missed = append(missed, label)
			}
		}
	}
	return missed
}

func windowLabel(sizeMs int64) string {
	return (time.Duration(sizeMs) * time.Millisecond).String()
}
