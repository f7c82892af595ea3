package checkpoint

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clickagg/clickagg/stream"
)

func TestStatusNotReady(t *testing.T) {
	now := time.Now()
	ready := Status{Joined: true, Partitions: []int32{0, 1}, PostgresOK: true, Progress: now}
	if !ready.Ready() || ready.NotReady() != nil {
		t.Fatalf("%+v: not ready for %v", ready, ready.NotReady())
	}
	if (Status{}).Ready() {
		t.Fatal("the zero Status is ready")
	}
	all := Status{Fenced: true, Restoring: []int32{1}, LastError: "connection refused", Stalled: true,
		StoreUnusable: "disk full", Partitions: []int32{1}, Progress: now.Add(-time.Minute)}
	if got := all.NotReady(); !slices.Equal(got, NotReadyReasons()) {
		t.Fatalf("not ready for %v, want every reason %v", got, NotReadyReasons())
	}
	for r, want := range map[NotReady]string{
		NotReadyUnassigned: "no partition assignment",
		NotReadyFenced:     "same one",
		NotReadyRestoring:  "[1]",
		NotReadyPostgres:   "connection refused",
		NotReadyStalled:    "for 1m0s",
		NotReadyStore:      "disk full",
	} {
		line := all.Explain(r, now)
		if !strings.HasPrefix(line, string(r)+": ") || !strings.Contains(line, want) || strings.Contains(line, "\n") {
			t.Errorf("Explain(%s) = %q, want one line naming the reason with %q", r, line, want)
		}
	}
}

func TestStallTimeoutDefault(t *testing.T) {
	for _, c := range []struct{ interval, set, want time.Duration }{
		{time.Second, 0, 30 * time.Second},
		{10 * time.Second, 0, 100 * time.Second},
		{time.Second, 5 * time.Second, 5 * time.Second},
	} {
		o := Options{CheckpointInterval: c.interval, StallTimeout: c.set, Consumer: stream.ConsumerOptions{Topic: "t", Group: "g"}}
		if err := o.setDefaults(); err != nil {
			t.Fatal(err)
		}
		if o.StallTimeout != c.want {
			t.Errorf("interval %s, stall timeout %s: got %s, want %s", c.interval, c.set, o.StallTimeout, c.want)
		}
	}
}
