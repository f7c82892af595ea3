package sink

import (
	"fmt"
	"strconv"
	"time"
)

// url_clicks is partitioned twice: by window_size (LIST), one table per
// size named url_clicks_<label> (url_clicks_1m), and each of those by
// window_start (RANGE) into spans, one table per span named
// url_clicks_<label>_p<yyyymmdd of the span's start> (url_clicks_1m_p20261130).
// A span is a whole number of days aligned to the Unix epoch, so expiring
// one span of one size is dropping one table.

const (
	dayMs  = 24 * 60 * 60 * 1000
	hourMs = 60 * 60 * 1000
)

// SpanFor returns how much window_start one partition of a window size
// covers, in ms: a day for windows shorter than an hour, a week
// (epoch-aligned, so spans start on Thursdays) up to a day, 28 days beyond. Never change it:
// the bounds of existing partitions follow it.
func SpanFor(size int64) int64 {
	switch {
	case size < hourMs:
		return dayMs
	case size <= dayMs:
		return 7 * dayMs
	default:
		return 28 * dayMs
	}
}

// floorTo returns the largest multiple of step at or before t (t may be
// negative: before 1970).
func floorTo(t, step int64) int64 {
	q := t / step
	if t%step != 0 && t < 0 {
		q--
	}
	return q * step
}

// SizeLabel names a window size compactly for table names and metric
// labels: 1m, 5m, 1h, 1d, 90s, 1500ms.
func SizeLabel(size int64) string {
	for _, u := range []struct {
		ms     int64
		suffix string
	}{{dayMs, "d"}, {hourMs, "h"}, {60_000, "m"}, {1000, "s"}} {
		if size%u.ms == 0 {
			return strconv.FormatInt(size/u.ms, 10) + u.suffix
		}
	}
	return strconv.FormatInt(size, 10) + "ms"
}

// sizeTable is the partitioned table holding one window size's rows.
func sizeTable(size int64) string { return "url_clicks_" + SizeLabel(size) }

// spanTable is the table holding one span of one window size.
func spanTable(size, spanStart int64) string {
	return sizeTable(size) + "_p" + time.UnixMilli(spanStart).UTC().Format("20060102")
}

// parseSpanTable returns the span start a table named by spanTable(size, ·)
// holds; ok is false for any other name.
func parseSpanTable(size int64, name string) (start int64, ok bool) {
	prefix := sizeTable(size) + "_p"
	if len(name) != len(prefix)+8 || name[:len(prefix)] != prefix {
		return 0, false
	}
	t, err := time.Parse("20060102", name[len(prefix):])
	if err != nil {
		return 0, false
	}
	return t.UnixMilli(), true
}

// sqlTime is a timestamptz literal for DDL (partition bounds cannot be
// query parameters).
func sqlTime(ms int64) string {
	return "'" + time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05.000") + "+00'"
}

// sqlInterval is an interval literal of ms milliseconds.
func sqlInterval(ms int64) string {
	return fmt.Sprintf("interval '%d.%03d seconds'", ms/1000, ms%1000)
}

// spanKey is one partition: a window size and the start of its span.
type spanKey struct{ size, start int64 }

func spanOf(size, windowStart int64) spanKey {
	return spanKey{size, floorTo(windowStart, SpanFor(size))}
}
