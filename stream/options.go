package stream

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// LatePolicy says what happens to a record whose window the watermark has
// already passed.
type LatePolicy uint8

const (
	// LateCount adds the record to its window's clicks and late_clicks (and
	// to url_totals) at the next checkpoint. The default: nothing is dropped.
	LateCount LatePolicy = iota
	// LateDrop counts the record in clickagg_late_events_total only.
	LateDrop
	// LateDeadLetter is LateDrop plus the record produced, unchanged, to
	// the dead-letter topic (the caller's job: see Outcome.Late).
	LateDeadLetter
)

// String returns the policy's configuration name.
func (p LatePolicy) String() string {
	switch p {
	case LateCount:
		return "count"
	case LateDrop:
		return "drop"
	case LateDeadLetter:
		return "dead-letter"
	}
	return fmt.Sprintf("LatePolicy(%d)", uint8(p))
}

// ParseLatePolicy parses "count", "drop" or "dead-letter".
func ParseLatePolicy(s string) (LatePolicy, error) {
	switch s {
	case "count", "":
		return LateCount, nil
	case "drop":
		return LateDrop, nil
	case "dead-letter":
		return LateDeadLetter, nil
	}
	return 0, fmt.Errorf("late policy %q: must be count, drop or dead-letter", s)
}

// OperatorOptions configure an Operator.
type OperatorOptions struct {
	// Windows are the tumbling window sizes, each at least 1s and a whole
	// number of milliseconds. The smallest one also drives url_totals: a
	// record is added to its URL's total when it is emitted for the smallest
	// window.
	Windows []time.Duration
	// OutOfOrder is how far behind the highest event time seen a record may
	// be and still be on time. Zero means records must arrive in order.
	OutOfOrder time.Duration
	// Late is the late-record policy.
	Late LatePolicy
	// MaxURLBytes bounds the URL length; zero means DefaultMaxURLBytes.
	MaxURLBytes int
	// MaxFutureSkew rejects an event whose ts is further ahead of its
	// Kafka record's timestamp: one record with a clock years ahead must
	// not drag the watermark forward and close every window. Zero: off.
	MaxFutureSkew time.Duration
	// MaxPastSkew rejects an event whose ts is further behind its Kafka
	// record's timestamp. Zero: off.
	MaxPastSkew time.Duration
	// DedupWindow turns on deduplication by event id (see dedup.go): a
	// record whose id was seen within this span of event time on the
	// partition is a duplicate and counted nowhere. Zero: off.
	DedupWindow time.Duration
	// NormalizeURLs lowercases each URL's scheme and host and drops its
	// fragment before counting (NormalizeURL). Off: URLs are counted byte
	// for byte as received.
	NormalizeURLs bool
	// HoldWindows lets windows no longer than this keep their counts in
	// memory across checkpoints (Take with hold) instead of moving them to
	// the state store: a window that closes soon then costs no store write
	// and read-back. A restart with local state replays the records they
	// hold (Resume). Zero: off. Ignored with dedup, whose sightings a
	// replay over stored state would see twice.
	HoldWindows time.Duration
	// HoldRecords bounds that replay: a window stops being held (its
	// counts go to the store) at a checkpoint where it holds the counts of
	// more than this many of the partition's records, and is held afresh
	// from there. Zero means DefaultHoldRecords.
	HoldRecords int64
	// DedupKeyed (dedup scope "global") expects each record's Kafka key to
	// be its event id or its URL, so that every copy of a click lands on
	// one partition; a record keyed otherwise is flagged Misrouted.
	DedupKeyed bool
	// Input maps each record's JSON onto a click (see InputOptions): where
	// the url, ts and id are, how ts is read, and which records are clicks
	// at all. The zero value reads the top-level url, ts and id.
	Input InputOptions
}

// Validate reports the first setting NewOperator would refuse, as a
// one-line error naming it. It is the one check of these settings: the
// configuration loader calls it too.
func (opts OperatorOptions) Validate() error {
	if len(opts.Windows) == 0 {
		return errors.New("windows: at least one window size is required")
	}
	if len(opts.Windows) > MaxWindows {
		return fmt.Errorf("windows: at most %d sizes", MaxWindows)
	}
	sizes := make([]int64, 0, len(opts.Windows))
	for _, w := range opts.Windows {
		if w < time.Second {
			return fmt.Errorf("window %s: must be at least 1s", w)
		}
		if w%time.Millisecond != 0 {
			return fmt.Errorf("window %s: must be a whole number of milliseconds", w)
		}
		sizes = append(sizes, w.Milliseconds())
	}
	slices.Sort(sizes)
	if len(slices.Compact(sizes)) != len(opts.Windows) {
		return errors.New("windows: each size may appear only once")
	}
	if opts.OutOfOrder < 0 {
		return fmt.Errorf("out-of-orderness %s: must not be negative", opts.OutOfOrder)
	}
	if opts.MaxFutureSkew < 0 || opts.MaxPastSkew < 0 {
		return errors.New("max future/past skew: must not be negative")
	}
	if opts.MaxURLBytes < 0 {
		return fmt.Errorf("max URL bytes %d: must not be negative", opts.MaxURLBytes)
	}
	switch w := opts.DedupWindow; {
	case w < 0:
		return fmt.Errorf("dedup window %s: must not be negative", w)
	case w > 0 && w < time.Millisecond:
		return fmt.Errorf("dedup window %s: must be at least 1ms", w)
	}
	if opts.HoldWindows < 0 {
		return fmt.Errorf("hold windows %s: must not be negative", opts.HoldWindows)
	}
	if opts.HoldRecords < 0 {
		return fmt.Errorf("hold records %d: must not be negative", opts.HoldRecords)
	}
	return opts.Input.Validate()
}

// DefaultHoldRecords is OperatorOptions.HoldRecords when zero: a restart
// with local state replays at most about this many records per partition,
// plus those of one checkpoint interval.
const DefaultHoldRecords = 250_000

// MaxWindows is the most window sizes one operator runs.
const MaxWindows = 16
