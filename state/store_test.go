package state

import (
	"fmt"
	"github.com/clickagg/clickagg/base"
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

func scan(t *testing.T, s *Store, p int32, w base.Window) string {
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
	w1, w2 := base.Window{Size: 60_000, Start: 0}, base.Window{Size: 60_000, Start: 60_000}
	b := s.NewBatch()
	b.AddCount(3, w1, "/a", 2)
	b.AddCount(3, w1, "/b", 1)
	b.AddCount(3, w2, "/a", 5)
	b.AddCount(4, w1, "/a", 9)
	b.SetWindow(3, w1, base.OpenWindow{First: 10, MemFrom: -1})
	b.SetWindow(3, w2, base.OpenWindow{First: 12, MemFrom: 15}) // held in memory from offset 15
	b.SetMeta(3, base.Position{NextOffset: 20, Watermark: 30, RestartOffset: 10, DedupOffset: 5, DedupClock: 25})
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
	if err != nil || len(reg) != 2 || reg[w1] != (base.OpenWindow{First: 10, MemFrom: -1}) || reg[w2] != (base.OpenWindow{First: 12, MemFrom: 15}) {
		t.Fatalf("registry = %v %v", reg, err)
	}
	b = s.NewBatch()
	b.DeleteWindow(3, w1, true)
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
	if err != nil || !ok || m != (base.Position{NextOffset: 20, Watermark: 30, RestartOffset: 10, DedupOffset: 5, DedupClock: 25}) {
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
	b.SetMeta(0, base.Position{NextOffset: 5})
	b.AddCount(0, base.Window{Size: 1000, Start: 0}, "/a", 1)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openMem(t, fs, "g2\x00clicks")
	defer s.Close()
	if _, ok, _ := s.Meta(0); ok {
		t.Fatal("state of another group and topic was kept")
	}
	if got := scan(t, s, 0, base.Window{Size: 1000, Start: 0}); got != "" {
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
	w := base.Window{Size: 60_000, Start: 0}
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
	b.SetSeen(1, 1, "a", 100)
	b.SetSeen(1, 2, "b", 200)
	b.SetSeen(1, 3, "c", 300)
	b.SetSeen(1, -4, "n", -350) // negative slots sort before the others
	b.SetSeen(2, 1, "a", 100)   // another partition: untouched
	b.SetDedup(1, base.DedupState{Clock: 300, Hist: []base.ClockMark{{Slot: 1, Offset: 7, Before: -5}, {Slot: 2, Offset: 9, Before: 150}}})
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	seen := func(p int32, slot int64, id string) int64 {
		t.Helper()
		v, ok, _, err := s.Seen(p, slot, []byte(id), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return -1
		}
		return v
	}
	if seen(1, 1, "a") != 100 || seen(1, 2, "b") != 200 || seen(1, 2, "a") != -1 || seen(1, 1, "zz") != -1 {
		t.Fatalf("Seen = %d %d %d %d", seen(1, 1, "a"), seen(1, 2, "b"), seen(1, 2, "a"), seen(1, 1, "zz"))
	}
	scan := func(p int32, from int64) string {
		t.Helper()
		var out string
		if err := s.ScanSeen(p, from, func(slot int64, id []byte, ts int64) { out += fmt.Sprintf("%d/%s=%d ", slot, id, ts) }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := scan(1, -10); got != "-4/n=-350 1/a=100 2/b=200 3/c=300 " {
		t.Fatalf("ScanSeen = %q", got)
	}
	if got := scan(1, 2); got != "2/b=200 3/c=300 " {
		t.Fatalf("ScanSeen from slot 2 = %q", got)
	}
	// Expiry drops whole slots, of one partition only.
	b = s.NewBatch()
	b.ExpireSeen(1, 2)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := scan(1, -10); got != "2/b=200 3/c=300 " {
		t.Fatalf("after expiry: %q", got)
	}
	if seen(2, 1, "a") != 100 {
		t.Fatal("expiry touched another partition")
	}
	d, ok, err := s.Dedup(1)
	if err != nil || !ok || d.Clock != 300 || len(d.Hist) != 2 || d.Hist[1] != (base.ClockMark{Slot: 2, Offset: 9, Before: 150}) {
		t.Fatalf("Dedup = %+v %v %v", d, ok, err)
	}
	b = s.NewBatch()
	b.DropPartition(1)
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Dedup(1); ok || scan(1, -10) != "" || seen(2, 1, "a") != 100 {
		t.Fatal("DropPartition left dedup state behind, or touched another partition")
	}
}
