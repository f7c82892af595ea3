package state

import (
	"fmt"
	"math"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func openMem(t *testing.T, fs vfs.FS, identity string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: "db", FS: fs}, identity)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func scan(t *testing.T, s *Store, p int32, w Window) string {
	t.Helper()
	out := ""
	if err := s.ScanWindow(p, w, func(url []byte, n int64) error {
		out += fmt.Sprintf("%s=%d ", url, n)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStoreCountsMergeAndWindowsDelete(t *testing.T) {
	fs := vfs.NewMem()
	s := openMem(t, fs, "g\x00t")
	w1, w2 := Window{Size: 60_000, Start: 0}, Window{Size: 60_000, Start: 60_000}
	b := s.NewBatch()
	b.AddCount(3, w1, "/a", 2)
	b.AddCount(3, w1, "/b", 1)
	b.AddCount(3, w2, "/a", 5)
	b.AddCount(4, w1, "/a", 9)
	b.SetWindow(3, w1, 10)
	b.SetWindow(3, w2, 12)
	b.SetMeta(3, PartitionMeta{NextOffset: 20, Watermark: 30, RestartOffset: 10, DedupOffset: 5, DedupClock: 25})
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b = s.NewBatch()
	b.AddCount(3, w1, "/a", 3) // merged, not overwritten
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := scan(t, s, 3, w1); got != "/a=5 /b=1 " {
		t.Fatalf("window 1 = %q", got)
	}
	reg, err := s.Windows(3)
	if err != nil || len(reg) != 2 || reg[w1] != 10 || reg[w2] != 12 {
		t.Fatalf("registry = %v %v", reg, err)
	}
	b = s.NewBatch()
	b.DeleteWindow(3, w1)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := scan(t, s, 3, w1); got != "" {
		t.Fatalf("deleted window still holds %q", got)
	}
	if got := scan(t, s, 3, w2); got != "/a=5 " {
		t.Fatalf("neighbour window = %q", got)
	}
	if got := scan(t, s, 4, w1); got != "/a=9 " {
		t.Fatalf("other partition = %q", got)
	}
	// Survives a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	s = openMem(t, fs, "g\x00t")
	m, ok, err := s.Meta(3)
	if err != nil || !ok || m != (PartitionMeta{20, 30, 10, 5, 25}) {
		t.Fatalf("Meta after reopen = %+v %v %v", m, ok, err)
	}
	// DropPartition removes one partition, tag included.
	b = s.NewBatch()
	b.DropPartition(3)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Meta(3); ok {
		t.Fatal("tag survived DropPartition")
	}
	if got := scan(t, s, 3, w2); got != "" {
		t.Fatalf("counts survived DropPartition: %q", got)
	}
	if got := scan(t, s, 4, w1); got != "/a=9 " {
		t.Fatalf("DropPartition(3) touched partition 4: %q", got)
	}
	s.Close()
}

func TestStoreWipedForAnotherIdentity(t *testing.T) {
	fs := vfs.NewMem()
	s := openMem(t, fs, "g1\x00clicks")
	b := s.NewBatch()
	b.SetMeta(0, PartitionMeta{NextOffset: 5})
	b.AddCount(0, Window{Size: 1000, Start: 0}, "/a", 1)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openMem(t, fs, "g2\x00clicks")
	defer s.Close()
	if _, ok, _ := s.Meta(0); ok {
		t.Fatal("state of another group and topic was kept")
	}
	if got := scan(t, s, 0, Window{Size: 1000, Start: 0}); got != "" {
		t.Fatalf("counts kept: %q", got)
	}
}

func BenchmarkBatchAddCount(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir()}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	urls := make([]string, 10_000)
	for i := range urls {
		urls[i] = fmt.Sprintf("https://example.com/page/%d", i)
	}
	w := Window{Size: 60_000, Start: 0}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(urls) {
		batch := s.NewBatch()
		for _, u := range urls {
			batch.AddCount(0, w, u, 1)
		}
		if err := batch.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSeenSightingsExpire(t *testing.T) {
	s := openMem(t, vfs.NewMem(), "g\x00t")
	b := s.NewBatch()
	b.SetSeen(1, "a", 100)
	b.SetSeen(1, "b", 200)
	b.SetSeen(1, "c", 300)
	b.SetSeen(2, "a", 100) // another partition: untouched
	b.SetDedup(1, 300, [][3]int64{{1, 7, -5}, {2, 9, 150}})
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	seen := func(p int32, id string) int64 {
		t.Helper()
		v, ok, _, err := s.Seen(p, []byte(id), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return -1
		}
		return v
	}
	if seen(1, "a") != 100 || seen(1, "b") != 200 || seen(1, "zz") != -1 {
		t.Fatalf("Seen = %d %d %d", seen(1, "a"), seen(1, "b"), seen(1, "zz"))
	}
	// "b" is seen again at 250 in the same batch that expires up to 200:
	// the newer sighting must survive its old index entry's expiry.
	b = s.NewBatch()
	b.ExpireSeen(s, 1, 200)
	b.ReplaceSeen(1, "b", 250, 200, 200)
	b.ReplaceSeen(1, "d", 150, math.MinInt64, 200) // dead on arrival: not stored
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if seen(1, "a") != -1 || seen(1, "b") != 250 || seen(1, "c") != 300 || seen(2, "a") != 100 || seen(1, "d") != -1 {
		t.Fatalf("after expiry: a=%d b=%d c=%d p2.a=%d", seen(1, "a"), seen(1, "b"), seen(1, "c"), seen(2, "a"))
	}
	// The old index entry of "b" went with the expired range; its new one
	// expires it later.
	b = s.NewBatch()
	b.ExpireSeen(s, 1, 260)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if seen(1, "b") != -1 || seen(1, "c") != 300 {
		t.Fatalf("after second expiry: b=%d c=%d", seen(1, "b"), seen(1, "c"))
	}
	clock, hist, ok, err := s.Dedup(1)
	if err != nil || !ok || clock != 300 || len(hist) != 2 || hist[1] != [3]int64{2, 9, 150} {
		t.Fatalf("Dedup = %d %v %v %v", clock, hist, ok, err)
	}
	b = s.NewBatch()
	b.DropPartition(1)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := s.Dedup(1); ok || seen(1, "c") != -1 || seen(2, "a") != 100 {
		t.Fatal("DropPartition left dedup state behind, or touched another partition")
	}
}
