package stream

import (
	"fmt"
	"testing"
)

func TestSeenFilter(t *testing.T) {
	f := newSeenFilter()
	const n = 50_000
	for i := range n {
		f.add(int64(i%3), f.hash(fmt.Appendf(nil, "id-%d", i)))
	}
	for i := range n {
		if !has(f, 0, f.hash(fmt.Appendf(nil, "id-%d", i))) {
			t.Fatalf("false negative for id-%d", i)
		}
	}
	fp := 0
	for i := range n {
		if has(f, 0, f.hash(fmt.Appendf(nil, "other-%d", i))) {
			fp++
		}
	}
	// Three slots, each probed: well under 1% in all.
	if rate := float64(fp) / n; rate > 0.01 {
		t.Fatalf("false-positive rate %.3f", rate)
	}
	// Slots before lo are not consulted; expired ones are gone.
	g := newSeenFilter()
	h := g.hash([]byte("x"))
	g.add(0, h)
	if !has(g, 0, h) || has(g, 1, h) {
		t.Fatal("a slot before lo was consulted")
	}
	f.expire(1)
	if len(f.slots) != 2 {
		t.Fatalf("%d slots after expire, want 2", len(f.slots))
	}
	if !has(f, 0, f.hash([]byte("id-1"))) {
		t.Fatal("id-1 (slot 1) lost by expiring slot 0")
	}
}

func has(f *seenFilter, lo int64, h uint64) bool { return len(f.candidates(lo, h, nil)) > 0 }

func TestSeenFilterCandidatesNewestFirst(t *testing.T) {
	f := newSeenFilter()
	h := f.hash([]byte("x"))
	for _, s := range []int64{3, 9, 5, 7} {
		f.add(s, h)
	}
	if got := fmt.Sprint(f.candidates(5, h, nil)); got != "[9 7 5]" {
		t.Fatalf("candidates = %s", got)
	}
}
