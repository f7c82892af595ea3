package backoff

import (
	"context"
	"testing"
	"time"
)

func TestScheduleGrowsCapsAndJitters(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		w *= time.Millisecond
		d := b.Next()
		if d < w/2 || d > w {
			t.Fatalf("wait %d: %s, want in [%s, %s]", i, d, w/2, w)
		}
	}
	if b.Attempts() != len(want) {
		t.Fatalf("attempts %d, want %d", b.Attempts(), len(want))
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Fatalf("after Reset: %s", d)
	}
	// Jitter: many draws of one step are not all the same.
	seen := map[time.Duration]bool{}
	for range 50 {
		b.Reset()
		seen[b.Next()] = true
	}
	if len(seen) < 2 {
		t.Fatal("no jitter")
	}
}

func TestNoJitterAndDefaults(t *testing.T) {
	b := Backoff{Base: time.Second, Max: 8 * time.Second, NoJitter: true}
	for i, w := range []time.Duration{1, 2, 4, 8, 8} {
		if d := b.Next(); d != w*time.Second {
			t.Fatalf("wait %d: %s, want %s", i, d, w*time.Second)
		}
	}
	var z Backoff
	if d := z.Next(); d < 50*time.Millisecond || d > 100*time.Millisecond {
		t.Fatalf("zero value first wait %s", d)
	}
}

func TestWaitStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := Backoff{Base: time.Hour}
	if err := b.Wait(ctx); err != context.Canceled {
		t.Fatalf("Wait on a cancelled context: %v", err)
	}
	b = Backoff{Base: time.Millisecond}
	if err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}
