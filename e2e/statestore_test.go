package e2e

import (
	"context"
	be "encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/testutil"
	"github.com/clickagg/clickagg/state"
	"github.com/cockroachdb/pebble/v2"
)

// TestDamagedStateRebuilds: a state folder with a damaged MANIFEST, WAL or
// table is quarantined (one copy) with one clear log line, and the
// partitions rebuild from PostgreSQL to exact counts: no operator, no
// crash loop.
func TestDamagedStateRebuilds(t *testing.T) {
	for _, file := range []string{"MANIFEST", ".log", ".sst"} {
		t.Run(strings.TrimPrefix(file, "."), func(t *testing.T) {
			e := newEnv(t, 3)
			ctx := context.Background()
			dir := t.TempDir()
			o := gen.Options{Count: 6_000, URLs: 2_000, Seed: 5, StartTime: time.Now().Add(-3 * time.Hour), EventRate: 2}
			e.produce(ctx, o)
			// NB: hour windows stay open in the store across the restart.
			p := runOnState(t, e, dir, 0, "first run")
			if file == ".sst" {
				flushStore(t, dir)
			}
			damage(t, dir, file)
			o.Seed, o.StartTime = 6, o.StartTime.Add(time.Hour)
			e.produce(ctx, o)
			p = runOnState(t, e, dir, 0, "run on the damaged store")
			if n := len(p.logEntries("state store damaged: moved to quarantine/ (replacing an older one); partitions rebuild from PostgreSQL")); n != 1 {
				t.Errorf("%d 'state store damaged' lines, want 1", n)
			}
			if _, err := os.Stat(filepath.Join(dir, state.QuarantineDir)); err != nil {
				t.Errorf("no quarantined store: %v", err)
			}
			e.expectExact(ctx, e.records(ctx), time.Minute, 24*time.Hour)
		})
	}
}

// TestFullStateVolume: when the state volume fills up (here a leftover
// file in it), the aggregator says so in one line, removes its store (a
// cache) to free the volume and exits with code 3 instead of crashing in a
// loop or spinning; the next start rebuilds from PostgreSQL to exact
// counts.
func TestFullStateVolume(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	dir := testutil.Tmpfs(t, 32<<20)
	o := gen.Options{Count: 6_000, URLs: 2_000, Seed: 7, StartTime: time.Now().Add(-3 * time.Hour), EventRate: 2}
	e.produce(ctx, o)
	p := runOnState(t, e, dir, 0, "first run")
	// Whatever fills the volume (here an old quarantined store) is not
	// the aggregator's to keep.
	if err := os.MkdirAll(filepath.Join(dir, state.QuarantineDir), 0o750); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, state.QuarantineDir, "ballast"))
	if err != nil {
		t.Fatal(err)
	}
	for _, err = f.Write(make([]byte, 1<<20)); err == nil; _, err = f.Write(make([]byte, 1<<20)) {
	}
	f.Close()
	o.Seed, o.StartTime = 8, o.StartTime.Add(time.Hour)
	e.produce(ctx, o)
	p = runOnState(t, e, dir, 3, "run on a full volume")
	if n := len(p.logEntries("state volume full: state store removed to free it; partitions rebuild from PostgreSQL")); n != 1 {
		t.Errorf("%d 'state volume full' lines, want 1", n)
	}
	if lines := strings.Count(p.tail(1_000_000), "\n"); lines > 200 {
		t.Errorf("%d log lines: a busy loop?", lines)
	}
	p = runOnState(t, e, dir, 0, "run after the volume was freed")
	e.expectExact(ctx, e.records(ctx), time.Minute, 24*time.Hour)
}

// runOnState runs clickagg on the state folder dir until it exits when
// idle, and checks its exit code.
func runOnState(t *testing.T, e *env, dir string, want int, what string) *proc {
	t.Helper()
	p := e.run("--state-dir", dir, "--windows", "1m,24h", "--exit-when-idle", "2s")
	if code := p.wait(t, 2*time.Minute); code != want {
		t.Fatalf("%s: exit code %d, want %d", what, code, want)
	}
	return p
}

// damage damages the store's files whose names contain part.
func damage(t *testing.T, dir, part string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*"+part+"*"))
	if len(files) == 0 {
		t.Fatalf("no %s file in the state folder", part)
	}
	for _, file := range files {
		testutil.Damage(t, file)
	}
}

// flushStore writes the store's memtable to a table file. NB: it opens
// Pebble directly, with a merger of the store's name (int64 sums), so that
// the store's identity check cannot wipe it.
func flushStore(t *testing.T, dir string) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Merger: &pebble.Merger{
		Name: "clickagg.int64add.v1",
		Merge: func(_, v []byte) (pebble.ValueMerger, error) {
			return &sum{n: int64(be.LittleEndian.Uint64(v))}, nil
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

type sum struct{ n int64 }

func (s *sum) MergeNewer(v []byte) error { s.n += int64(be.LittleEndian.Uint64(v)); return nil }
func (s *sum) MergeOlder(v []byte) error { return s.MergeNewer(v) }
func (s *sum) Finish(bool) ([]byte, io.Closer, error) {
	return be.LittleEndian.AppendUint64(nil, uint64(s.n)), nil, nil
}
