package checkpoint

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clickagg/clickagg/sink"
	"go.uber.org/zap"
)

// maintainer runs the storage maintenance (sink.Writer.Maintain: url_clicks
// partitions ahead of the watermark, retention) in the background every
// Options.MaintainInterval, so a slow DETACH never holds up the poll loop.
type maintainer struct {
	w       *sink.Writer // nil: none (tests without a writer)
	running atomic.Bool
	wg      sync.WaitGroup
	last    time.Time // owned by the loop
}

// maintainOptions snapshots what Maintain needs; called on the loop.
func (pl *Pipeline) maintainOptions(now time.Time) sink.MaintainOptions {
	o := sink.MaintainOptions{TopicPartitions: pl.c.topicPartitions, Now: now, Retention: map[int64]int64{},
		FoldPeriod: pl.opts.TotalsFoldPeriod.Milliseconds()}
	for _, size := range pl.opts.Operator.Windows {
		o.Sizes = append(o.Sizes, size.Milliseconds())
	}
	for size, keep := range pl.opts.Retention {
		o.Retention[size.Milliseconds()] = keep.Milliseconds()
	}
	return o
}

// maybeMaintain starts a maintenance run when one is due and none runs.
func (pl *Pipeline) maybeMaintain(ctx context.Context, now time.Time) {
	mt := &pl.maint
	if mt.w == nil || mt.running.Load() || now.Sub(mt.last) < pl.opts.MaintainInterval {
		return
	}
	mt.last = now
	o := pl.maintainOptions(now)
	mt.running.Store(true)
	mt.wg.Add(1)
	go func() {
		defer mt.wg.Done()
		defer mt.running.Store(false)
		_ = pl.maintain(ctx, o)
	}()
}

// finalMaintain waits for a run in flight, then runs once more, now: a
// batch run exits with the retention applied to what it wrote.
func (pl *Pipeline) finalMaintain(ctx context.Context) error {
	pl.maint.wg.Wait()
	if pl.maint.w == nil {
		return nil
	}
	return pl.maintain(ctx, pl.maintainOptions(time.Now()))
}

// maintain runs Maintain once and publishes what it found.
func (pl *Pipeline) maintain(ctx context.Context, o sink.MaintainOptions) error {
	w := pl.maint.w
	res, err := w.Maintain(ctx, o)
	if err != nil {
		if ctx.Err() == nil {
			pl.m.MaintenanceFailures.Inc()
			pl.log.Warn("storage maintenance failed; retrying at the next run", zap.Error(err),
				zap.Duration("interval", pl.opts.MaintainInterval))
		}
		return err
	}
	pl.m.PartitionsDropped.Add(float64(res.Dropped))
	if res.Dropped > 0 || res.Created > 0 || res.Fold.URLs > 0 {
		pl.log.Info("storage maintenance", zap.Int("partitions_created", res.Created),
			zap.Int("partitions_dropped", res.Dropped), zap.Duration("expire_took", res.ExpireTook),
			zap.Int64("totals_folded_urls", res.Fold.URLs), zap.Duration("fold_took", res.Fold.Took))
	}
	sizes, err := w.Storage(ctx)
	if err != nil {
		if ctx.Err() == nil {
			pl.m.MaintenanceFailures.Inc()
			pl.log.Warn("read storage status", zap.Error(err))
		}
		return err
	}
	for _, st := range sizes {
		label := windowLabel(st.Size.Milliseconds())
		pl.m.StoragePartitions.WithLabelValues(label).Set(float64(len(st.Partitions)))
		pl.m.StorageBytes.WithLabelValues(label).Set(float64(st.Bytes))
		if st.Oldest.IsZero() {
			pl.m.StorageOldest.DeleteLabelValues(label)
		} else {
			pl.m.StorageOldest.WithLabelValues(label).Set(float64(st.Oldest.Unix()))
		}
	}
	pl.m.MaintenanceLast.Set(float64(time.Now().UnixNano()) / 1e9)
	return nil
}

// countExpired adds a committed checkpoint's expired clicks to the metric.
func (m *Metrics) countExpired(res sink.Result) {
	for size, n := range res.Expired {
		m.ExpiredClicks.WithLabelValues(windowLabel(size)).Add(float64(n))
	}
}
