package main

import (
	"testing"
	"time"
)

// TestStateBackoffSchedule: the README promises "5 tries over 15 s" for a
// state volume that refuses the store: waits of exactly 1, 2, 4 and 8 s.
func TestStateBackoffSchedule(t *testing.T) {
	b := stateBackoff()
	var total time.Duration
	for i, want := range []time.Duration{1, 2, 4, 8} {
		d := b.Next()
		if d != want*time.Second {
			t.Fatalf("wait %d: %s, want %s", i+1, d, want*time.Second)
		}
		total += d
	}
	if stateTries != 5 || total != 15*time.Second {
		t.Fatalf("%d tries over %s, want 5 over 15s", stateTries, total)
	}
}
