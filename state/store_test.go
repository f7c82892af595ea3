package state

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestMetaRoundTrip(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open(Options{Dir: "db", FS: fs}, "g\x00t")
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch()
	b.SetMeta(3, PartitionMeta{NextOffset: 10, Watermark: 20, RestartOffset: 5})
	b.AddCount(3, Window{Size: 60000, Start: 120000}, "/a", 2)
	b.AddCount(3, Window{Size: 60000, Start: 120000}, "/a", 3)
	if b.Empty() {
		t.Fatal("batch with writes reports empty")
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	m, ok, err := s.Meta(3)
	if err != nil || !ok || m != (PartitionMeta{10, 20, 5}) {
		t.Fatalf("Meta = %+v %v %v", m, ok, err)
	}
}
