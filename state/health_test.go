package state

import (
	"errors"
	"fmt"
	"github.com/clickagg/clickagg/base"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/clickagg/clickagg/internal/testutil"
)

// fill writes a window of n counts to partition 0 and tags it.
func fill(t *testing.T, s *Store, n int) error {
	t.Helper()
	b := s.NewBatch()
	for i := range n {
		b.AddCount(0, base.Window{Size: 60_000}, fmt.Sprintf("https://example.com/%08d", i), 1)
	}
	b.SetMeta(0, base.Position{NextOffset: int64(n)})
	return b.Commit()
}

// storeFiles returns the store's files in dir whose names contain part.
func storeFiles(t *testing.T, dir, part string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+part+"*"))
	if err != nil || len(m) == 0 {
		t.Fatalf("no %s file in %s (%v)", part, dir, err)
	}
	return m
}

// TestCorruptStoreIsReportedAndDiscarded: a damaged MANIFEST, WAL or table
// makes Open or the reads fail with ErrCorrupt (never a process exit);
// Discard keeps one quarantined copy and a fresh store opens in its place.
func TestCorruptStoreIsReportedAndDiscarded(t *testing.T) {
	for _, tc := range []struct {
		file  string
		flush bool // write the counts to a table first
	}{
		{file: "MANIFEST"},
		{file: ".log"},
		{file: ".sst", flush: true},
	} {
		t.Run(strings.TrimPrefix(tc.file, "."), func(t *testing.T) {
			dir := t.TempDir()
			var logged atomic.Int64
			opts := Options{Dir: dir, Logger: countingLogger{&logged}}
			s, err := Open(opts, "id")
			if err != nil {
				t.Fatal(err)
			}
			if err := fill(t, s, 20_000); err != nil {
				t.Fatal(err)
			}
			if tc.flush {
				if err := s.db.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for _, f := range storeFiles(t, dir, tc.file) {
				testutil.Damage(t, f)
			}
			s, err = Open(opts, "id")
			if err == nil {
				// A damaged table is found when it is read.
				_, _, err = s.Meta(0)
				if err == nil {
					err = s.ScanWindow(0, base.Window{Size: 60_000}, func([]byte, int64) error { return nil })
				}
				if err != nil && s.Err() == nil {
					t.Errorf("read error %v, but Err() = nil", err)
				}
				if err != nil {
					err = s.Err()
				}
				_ = s.Close()
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("after corrupting %s: %v, want ErrCorrupt", tc.file, err)
			}
			if err := Discard(dir, true); err != nil {
				t.Fatal(err)
			}
			if q := storeFiles(t, filepath.Join(dir, QuarantineDir), tc.file); len(q) == 0 {
				t.Fatal("nothing quarantined")
			}
			s, err = Open(opts, "id")
			if err != nil {
				t.Fatalf("open after discard: %v", err)
			}
			defer s.Close()
			if _, ok, err := s.Meta(0); ok || err != nil {
				t.Fatalf("fresh store has a tag (%v, %v)", ok, err)
			}
			if err := fill(t, s, 10); err != nil {
				t.Fatal(err)
			}
			if n := logged.Load(); n > 5 {
				t.Errorf("%d error lines logged, want a few", n)
			}
		})
	}
}

// TestFullVolumeIsUnusableNotABusyLoop: on a full volume a commit fails with
// ErrUnusable at once (Pebble's fatal commit error would exit the
// process), the store logs a few lines, not one per retry, and after
// Discard frees the volume a fresh store works.
func TestFullVolumeIsUnusableNotABusyLoop(t *testing.T) {
	dir := testutil.Tmpfs(t, 8<<20)
	var logged atomic.Int64
	opts := Options{Dir: dir, Logger: countingLogger{&logged}, CacheBytes: 1 << 20}
	s, err := Open(opts, "id")
	if err != nil {
		t.Fatal(err)
	}
	// NB: count batches far larger than the volume.
	for i := 0; err == nil && i < 100; i++ {
		err = fill(t, s, 50_000)
	}
	if !errors.Is(err, ErrUnusable) || !errors.Is(s.Err(), ErrUnusable) {
		t.Fatalf("filling an 8 MiB volume: %v (Err %v), want ErrUnusable", err, s.Err())
	}
	if err := fill(t, s, 1); !errors.Is(err, ErrUnusable) {
		t.Fatalf("commit after the failure: %v, want ErrUnusable", err)
	}
	if n := logged.Load(); n > 5 {
		t.Errorf("%d error lines logged, want a few", n)
	}
	// NB: Close leaves the failed store to Pebble, which may be blocked in
	// it; its files are removed under it, as a restarting process would.
	if err := s.Close(); !errors.Is(err, ErrUnusable) {
		t.Fatalf("Close = %v, want the failure", err)
	}
	if err := Discard(dir, false); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(opts, "id"); !errors.Is(err, ErrUnusable) {
		t.Fatalf("reopening the folder in this process: %v, want ErrUnusable", err)
	}
	sub := filepath.Join(dir, "fresh")
	s2, err := Open(Options{Dir: sub, CacheBytes: 1 << 20}, "id")
	if err != nil {
		t.Fatalf("open on the freed volume: %v", err)
	}
	defer s2.Close()
	if err := fill(t, s2, 100); err != nil {
		t.Fatal(err)
	}
}

type countingLogger struct{ n *atomic.Int64 }

func (countingLogger) Infof(string, ...any)        {}
func (l countingLogger) Errorf(string, ...any)     { l.n.Add(1) }
func (l countingLogger) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
