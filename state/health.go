package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
)

// The store is a cache of PostgreSQL, so a broken one is thrown away, not
// repaired. Its failures fall in two classes, which Open, Batch.Commit and
// Store.Err report by wrapping one of these:
var (
	// ErrCorrupt: the store's files are damaged (a checksum mismatch, a bad
	// MANIFEST or WAL, an unreadable format). Discard the folder (Discard)
	// and open a fresh store; the partitions rebuild by replay.
	ErrCorrupt = errors.New("state: store corrupt")
	// ErrUnusable: the volume cannot take the store: full, read-only, not
	// permitted, or a write failed so that Pebble cannot go on. A fresh
	// store on the same volume may fail the same way; after a full disk,
	// discarding the store frees what it held.
	ErrUnusable = errors.New("state: volume unusable")
	// ErrRestart (with ErrUnusable): an earlier store in the folder failed
	// and Pebble may still hold it; only a new process can open it.
	ErrRestart = errors.New("state: folder held by a failed store until the process restarts")
)

// classify wraps a Pebble error in ErrUnusable or ErrCorrupt. Errors of the
// volume (full, read-only, permissions, I/O) and a folder another process
// has locked are ErrUnusable; every other error opening or reading the store
// is taken for damage (ErrCorrupt): the store is only a cache.
func classify(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrUnusable), errors.Is(err, ErrCorrupt):
		return err
	case volumeError(err):
		return fmt.Errorf("%w: %w", ErrUnusable, err)
	default:
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
}

// volumeError reports whether err comes from the volume rather than the
// store's contents.
func volumeError(err error) bool {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EROFS,
		syscall.EACCES, syscall.EPERM, syscall.EIO, syscall.EAGAIN} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// health records the first fatal failure of an open store: a corruption
// Pebble found, a background write the volume refused, or a fatal error
// Pebble reported through its logger. Once failed, the store must not be
// used again; Pebble's own goroutines may keep retrying until the process
// drops the store.
type health struct {
	mu struct {
		sync.Mutex
		err error
	}
	failed chan struct{} // closed on the first failure
	logf   func(format string, args ...any)
}

func newHealth(logf func(string, ...any)) *health {
	return &health{failed: make(chan struct{}), logf: logf}
}

// fail records err (the first one wins) and logs it once.
func (h *health) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.err != nil {
		return
	}
	h.mu.err = classify(err)
	close(h.failed)
	h.logf("state store failed (it is a cache of PostgreSQL and will be discarded): %v", h.mu.err)
}

func (h *health) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.err
}

// listener turns Pebble's corruption and background-error events into a
// failure. NB: without it Pebble's default listener calls Fatalf on a
// corruption (exit with a stack dump), and logs a failing flush or
// compaction on every retry: on a full volume, over a thousand lines a
// second.
func (h *health) listener() *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			if volumeError(err) || pebble.IsCorruptionError(err) {
				h.fail(err)
			}
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			h.fail(fmt.Errorf("%w: %s", ErrCorrupt, info))
		},
	}
}

// healthLogger passes Pebble's errors on and turns its Fatalf, which must
// not return, into a failure: it records the failure and blocks the calling
// goroutine for good. Batch.Commit, the one caller of ours that Pebble may
// block this way (a WAL write the volume refused), waits for the failure as
// well as for the commit.
type healthLogger struct {
	pebble.Logger
	h *health
}

func (l healthLogger) Fatalf(format string, args ...any) {
	l.h.fail(fmt.Errorf("%w: pebble: %s", ErrUnusable, fmt.Sprintf(format, args...)))
	select {}
}

// QuarantineDir is the folder, inside the store's, where Discard keeps the
// last discarded corrupt store for inspection. Only one is kept.
const QuarantineDir = "quarantine"

// Discard empties the store folder dir, which must not be open. With keep,
// its files move to dir/quarantine (replacing an earlier quarantined store),
// for a person to inspect; without, they and any quarantined store are
// removed, to free the volume. The folder itself stays (it may be a mount
// point).
func Discard(dir string, keep bool) error {
	q := filepath.Join(dir, QuarantineDir)
	if err := os.RemoveAll(q); err != nil {
		return fmt.Errorf("remove quarantined state: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read state dir: %w", err)
	}
	if keep {
		if err := os.Mkdir(q, 0o750); err != nil {
			return fmt.Errorf("quarantine state: %w", err)
		}
	}
	for _, e := range entries {
		from := filepath.Join(dir, e.Name())
		if keep {
			err = os.Rename(from, filepath.Join(q, e.Name()))
		} else {
			err = os.RemoveAll(from)
		}
		if err != nil {
			return fmt.Errorf("discard state: %w", err)
		}
	}
	return nil
}
