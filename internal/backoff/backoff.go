// Package backoff is the one retry pacing of clickagg: exponential waits
// with jitter, so that replicas retrying the same PostgreSQL or broker do
// not come back in lockstep. Product feature: aggregator code, meant for
// the binary's retry loops.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff paces retries: the n-th wait is about Base·2ⁿ⁻¹, capped at Max,
// and drawn uniformly from its upper half ("equal jitter"). The zero value
// waits 100ms growing to 5s. Not safe for concurrent use.
type Backoff struct {
	Base time.Duration // first wait; zero means 100ms
	Max  time.Duration // longest wait; zero means 5s
	// NoJitter makes every wait exactly Base·2ⁿ⁻¹ (capped): for waits a
	// user reads in the logs as a schedule (1s, 2s, 4s).
	NoJitter bool
	n        int
}

// Attempts returns how many waits Next has handed out since the last Reset.
func (b *Backoff) Attempts() int { return b.n }

// Reset starts the schedule over.
func (b *Backoff) Reset() { b.n = 0 }

// Next returns the next wait.
func (b *Backoff) Next() time.Duration {
	base, ceil := b.Base, b.Max
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	if ceil <= 0 {
		ceil = 5 * time.Second
	}
	d := base
	for i := 0; i < b.n && d < ceil; i++ {
		d *= 2
	}
	d = min(d, ceil)
	b.n++
	if b.NoJitter || d < 2 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// Wait sleeps for the next wait, or returns ctx's error when ctx ends first.
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Sleep sleeps for d, or returns ctx's error when ctx ends first: for a
// caller that logs the wait (Next) before taking it.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
