package state

import (
	"errors"
	"fmt"
	"github.com/clickagg/clickagg/base"
	"io"
	"math"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// mergerName is stored on disk by Pebble; changing it makes old stores
// unreadable, so it carries a version.
const mergerName = "clickagg.int64add.v1"

// addMerger sums little-endian int64 operands.
var addMerger = &pebble.Merger{
	Name: mergerName,
	Merge: func(_, value []byte) (pebble.ValueMerger, error) {
		v, err := decodeInt64(value)
		if err != nil {
			return nil, err
		}
		return &sumMerger{sum: v}, nil
	},
}

type sumMerger struct {
	sum int64
	buf [8]byte
}

func (m *sumMerger) MergeNewer(value []byte) error { return m.merge(value) }
func (m *sumMerger) MergeOlder(value []byte) error { return m.merge(value) }

func (m *sumMerger) merge(value []byte) error {
	v, err := decodeInt64(value)
	if err != nil {
		return err
	}
	m.sum += v
	return nil
}

func (m *sumMerger) Finish(bool) ([]byte, io.Closer, error) {
	return encodeInt64(m.buf[:0], m.sum), nil, nil
}

// Options configure Open.
type Options struct {
	// Dir is the store's folder; created when missing.
	Dir string
	// FS overrides the file system (tests use vfs.NewMem); nil means disk.
	FS vfs.FS
	// CacheBytes is Pebble's block cache size; zero means 64 MiB.
	CacheBytes int64
	// Logger receives Pebble's messages; nil discards informational ones.
	Logger pebble.Logger
	// PointLookups adds Bloom filters to the tables, for dedup's one Get
	// per record (most of them for ids not seen yet).
	PointLookups bool
	// LongWindows lets many more files pile up in L0 before compacting:
	// counts of long windows (hours, days) are deleted when the window
	// closes, so compacting them before is mostly wasted. Short windows are
	// read back within minutes and do better with a tidy L0. Their blocks
	// are not compressed either: about twice the disk, a tenth less CPU.
	LongWindows bool
}

// Store is the local state store of one consumer group and topic.
type Store struct {
	db  *pebble.DB
	h   *health
	dir string
}

// abandoned are the folders whose Open never returned (a full volume can
// keep Pebble retrying a flush for good): Pebble holds their lock until the
// process exits.
var abandoned sync.Map

// Open opens (or creates) the store in opts.Dir for the given identity (the
// consumer group and topic). A store written for another identity is wiped:
// its offsets mean nothing for this one.
//
// An error wraps ErrCorrupt (the files are damaged: Discard them and open
// again) or ErrUnusable (the volume refuses the store). When Pebble fails
// while opening and cannot be stopped (a flush retried on a full volume),
// Open returns ErrUnusable without waiting for it; that folder cannot be
// opened again by this process.
func Open(opts Options, identity string) (*Store, error) {
	if _, stuck := abandoned.Load(opts.Dir); stuck && opts.FS == nil {
		return nil, fmt.Errorf("%w: %w", ErrUnusable, ErrRestart)
	}
	cacheBytes := opts.CacheBytes
	if cacheBytes == 0 {
		cacheBytes = 64 << 20
	}
	cache := pebble.NewCache(cacheBytes)
	defer cache.Unref()
	logger := opts.Logger
	if logger == nil {
		logger = quietLogger{}
	}
	h := newHealth(logger.Errorf)
	po := &pebble.Options{
		FS:            opts.FS,
		Cache:         cache,
		Merger:        addMerger,
		Logger:        healthLogger{Logger: logger, h: h},
		EventListener: h.listener(),
		// NB: the store holds short-lived data (a window's counts are
		// deleted when it closes) written in large checkpoint batches:
		// bigger memtables and a lazier L0 avoid rewriting counts in
		// compactions before their window closes. Measured with
		// clickagg bench --workload uniform (BENCHMARKS.md).
		MemTableSize:                64 << 20,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       8,
		L0StopWritesThreshold:       32,
		LBaseMaxBytes:               256 << 20,
	}
	if opts.LongWindows {
		// NB: clickagg bench --workload uniform (1d window): 67 -> 57 CPU-s;
		// the 1m-window zipf workload was ~4% slower with it (BENCHMARKS.md).
		po.L0CompactionThreshold, po.L0StopWritesThreshold = 64, 256
		// NB: long windows' counts are compacted over and over before
		// their window closes; without block compression that costs a
		// tenth less CPU (uniform: 42-43 -> 37-38 CPU-s) for about twice
		// the disk (2 M day-window counts: 78 -> 146 MiB).
		for i := range po.Levels {
			po.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
		}
	}
	if opts.PointLookups {
		// NB: the deeper levels inherit L0's filter policy.
		po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := openDB(opts.Dir, po, h)
	if err != nil {
		return nil, fmt.Errorf("open state store %s: %w", opts.Dir, classify(err))
	}
	s := &Store{db: db, h: h, dir: opts.Dir}
	if err := s.checkIdentity(identity); err != nil {
		_ = db.Close()
		return nil, classify(err)
	}
	return s, nil
}

// openDB opens Pebble, or gives up on it once it reports a failure.
func openDB(dir string, po *pebble.Options, h *health) (*pebble.DB, error) {
	type opened struct {
		db  *pebble.DB
		err error
	}
	done := make(chan opened, 1)
	go func() {
		db, err := pebble.Open(dir, po)
		done <- opened{db, err}
	}()
	select {
	case o := <-done:
		return o.db, o.err
	case <-h.failed:
		// NB: a corruption found by a background job (the table stats)
		// while Open finishes: Open returns, and the store is closed as any
		// corrupt one, so that the folder opens again once discarded. Any
		// other failure while opening may be retried by Pebble for good:
		// the open goroutine is left behind, holding the folder's lock.
		if errors.Is(h.err(), ErrCorrupt) {
			select {
			case o := <-done:
				if o.err != nil || closeWithin(o.db, corruptCloseTimeout) {
					return nil, h.err()
				}
			case <-time.After(corruptCloseTimeout):
			}
		}
		abandoned.Store(dir, true)
		return nil, h.err()
	}
}

// corruptCloseTimeout bounds the wait for a corrupt store to open or close.
const corruptCloseTimeout = 10 * time.Second

// closeWithin closes db and reports whether that finished within d (its
// error repeats the failure that made the caller close it).
func closeWithin(db *pebble.DB, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		_ = db.Close()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Err returns the failure that made the store unusable (wrapping
// ErrCorrupt or ErrUnusable), or nil. Once it is set, every later write
// fails with it; the store should be closed and discarded.
func (s *Store) Err() error { return s.h.err() }

// Failed is closed when Err becomes non-nil.
func (s *Store) Failed() <-chan struct{} { return s.h.failed }

func (s *Store) checkIdentity(identity string) error {
	v, closer, err := s.db.Get(identityKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return fmt.Errorf("read state identity: %w", err)
	default:
		same := string(v) == identity
		_ = closer.Close()
		if same {
			return nil
		}
	}
	b := s.db.NewBatch()
	defer b.Close()
	// NB: wipe everything but the identity key itself, then tag.
	if err := b.DeleteRange([]byte{kindMeta}, []byte{0xff}, nil); err != nil {
		return err
	}
	if err := b.Set(identityKey, []byte(identity), nil); err != nil {
		return err
	}
	if err := s.commit(b); err != nil {
		return fmt.Errorf("reset state store: %w", err)
	}
	return nil
}

// commit applies and syncs b, unless the store failed first.
func (s *Store) commit(b *pebble.Batch) error {
	if err := s.h.err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- b.Commit(pebble.Sync) }()
	select {
	case err := <-done:
		if err != nil && s.h.err() != nil {
			return s.h.err()
		}
		return classify(err)
	case <-s.h.failed:
		// NB: Pebble blocks a commit whose WAL write failed (Fatalf); its
		// goroutine stays behind, and so must the batch.
		return s.h.err()
	}
}

// Close closes the store. Safe to call twice. A store that failed returns
// its failure; if it failed for ErrUnusable, or does not close within 10s,
// it is left open (Pebble may be blocked in a write for good) and its
// folder cannot be opened again by this process.
func (s *Store) Close() error {
	if s.db == nil {
		return nil
	}
	db := s.db
	s.db = nil
	failure := s.h.err()
	if failure == nil {
		return db.Close()
	}
	if errors.Is(failure, ErrCorrupt) && closeWithin(db, corruptCloseTimeout) {
		return failure
	}
	abandoned.Store(s.dir, true)
	return failure
}

// Meta returns partition p's checkpoint tag; ok is false when the partition
// has no usable local state.
func (s *Store) Meta(p int32) (m base.Position, ok bool, err error) {
	v, closer, err := s.db.Get(partitionKey(nil, kindMeta, p))
	if errors.Is(err, pebble.ErrNotFound) {
		return base.Position{}, false, nil
	}
	if err != nil {
		return base.Position{}, false, fmt.Errorf("read partition %d tag: %w", p, err)
	}
	defer closer.Close()
	if len(v) != 24 && len(v) != 40 {
		return base.Position{}, false, nil // unknown format: rebuild
	}
	m.NextOffset, _ = decodeInt64(v[0:8])
	m.Watermark, _ = decodeInt64(v[8:16])
	m.RestartOffset, _ = decodeInt64(v[16:24])
	m.DedupOffset, m.DedupClock = m.RestartOffset, math.MinInt64 // before dedup existed
	if len(v) == 40 {
		m.DedupOffset, _ = decodeInt64(v[24:32])
		m.DedupClock, _ = decodeInt64(v[32:40])
	}
	return m, true, nil
}

// Windows returns partition p's open-window registry.
func (s *Store) Windows(p int32) (map[base.Window]base.OpenWindow, error) {
	prefix := partitionKey(nil, kindWindow, p)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := make(map[base.Window]base.OpenWindow)
	for ok := it.First(); ok; ok = it.Next() {
		_, w, _, err := decodeWindowKey(it.Key())
		if err != nil {
			return nil, err
		}
		v, e := it.Value(), base.OpenWindow{MemFrom: -1}
		if len(v) == 16 {
			e.MemFrom, err = decodeInt64(v[8:])
			v = v[:8]
		}
		if err == nil {
			e.First, err = decodeInt64(v)
		}
		if err != nil {
			return nil, fmt.Errorf("registry entry of window %v: %w", w, err)
		}
		out[w] = e
	}
	return out, it.Error()
}

// ScanWindow calls fn with every URL count stored for window w of partition
// p, in URL byte order. url is only valid during the call.
func (s *Store) ScanWindow(p int32, w base.Window, fn func(url []byte, count int64) error) error {
	prefix := windowKey(nil, kindCount, p, w)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		n, err := decodeInt64(v)
		if err != nil {
			return err
		}
		if err := fn(it.Key()[len(prefix):], n); err != nil {
			return err
		}
	}
	return it.Error()
}

// Seen returns the event time stored for dedup id in slot of partition p,
// if any. key is scratch space for the key; the returned slice can be
// passed again.
func (s *Store) Seen(p int32, slot int64, id []byte, key []byte) (t int64, ok bool, scratch []byte, err error) {
	key = seenKey(key[:0], p, slot, id)
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, key, nil
	}
	if err != nil {
		return 0, false, key, fmt.Errorf("read dedup sighting of partition %d: %w", p, err)
	}
	t, err = decodeInt64(v)
	_ = closer.Close()
	return t, err == nil, key, err
}

// ScanSeen calls fn with every dedup sighting of partition p in slots
// from fromSlot on. id is only valid during the call.
func (s *Store) ScanSeen(p int32, fromSlot int64, fn func(slot int64, id []byte, t int64)) error {
	prefix := partitionKey(nil, kindSeen, p)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: seenKey(nil, p, fromSlot, ""), UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		slot, id, err := decodeSeenKey(it.Key())
		var t int64
		if err == nil {
			t, err = decodeInt64(it.Value())
		}
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("partition %d dedup sighting: %w", p, err)
		}
		fn(slot, id, t)
	}
	return it.Close()
}

// Dedup returns partition p's stored dedup clock and history (ok false
// when there is none).
func (s *Store) Dedup(p int32) (d base.DedupState, ok bool, err error) {
	v, closer, err := s.db.Get(partitionKey(nil, kindDedup, p))
	if errors.Is(err, pebble.ErrNotFound) {
		return d, false, nil
	}
	if err != nil {
		return d, false, fmt.Errorf("read partition %d dedup clock: %w", p, err)
	}
	defer closer.Close()
	if len(v) < 8 || (len(v)-8)%24 != 0 {
		return d, false, fmt.Errorf("partition %d dedup clock: %w", p, errBadKey)
	}
	d.Clock, _ = decodeInt64(v[:8])
	for b := v[8:]; len(b) > 0; b = b[24:] {
		var m base.ClockMark
		m.Slot, _ = decodeInt64(b[0:8])
		m.Offset, _ = decodeInt64(b[8:16])
		m.Before, _ = decodeInt64(b[16:24])
		d.Hist = append(d.Hist, m)
	}
	return d, true, nil
}

// DiskUsage returns the store's size on disk in bytes.
func (s *Store) DiskUsage() uint64 {
	return s.db.Metrics().DiskSpaceUsage()
}

// NewBatch starts an atomic write.
func (s *Store) NewBatch() *Batch {
	return &Batch{s: s, b: s.db.NewBatch()}
}

// Batch is one atomic write to the store. Not safe for concurrent use.
type Batch struct {
	s   *Store
	b   *pebble.Batch
	key []byte
	val [8]byte
	err error
}

func (b *Batch) keep(err error) {
	if b.err == nil {
		b.err = err
	}
}

// AddCount adds n to url's count in window w of partition p.
func (b *Batch) AddCount(p int32, w base.Window, url string, n int64) {
	b.key = countKey(b.key[:0], p, w, url)
	b.keep(b.b.Merge(b.key, encodeInt64(b.val[:0], n), nil))
}

// SetWindow records window w of partition p in the open-window registry.
func (b *Batch) SetWindow(p int32, w base.Window, e base.OpenWindow) {
	b.key = windowKey(b.key[:0], kindWindow, p, w)
	v := encodeInt64(b.val[:0], e.First)
	if e.MemFrom >= 0 {
		v = encodeInt64(v, e.MemFrom)
	}
	b.keep(b.b.Set(b.key, v, nil))
}

// DeleteWindow removes window w of partition p: its registry entry and,
// when stored (the store may hold counts of it), its counts. A window with
// none leaves no range deletion for later reads to step over.
func (b *Batch) DeleteWindow(p int32, w base.Window, stored bool) {
	if stored {
		prefix := windowKey(nil, kindCount, p, w)
		b.keep(b.b.DeleteRange(prefix, prefixEnd(prefix), nil))
	}
	b.key = windowKey(b.key[:0], kindWindow, p, w)
	b.keep(b.b.Delete(b.key, nil))
}

// SetSeen records dedup sighting id of partition p at event time t, in
// slot (the slot of t).
func (b *Batch) SetSeen(p int32, slot int64, id string, t int64) {
	b.key = seenKey(b.key[:0], p, slot, id)
	b.keep(b.b.Set(b.key, encodeInt64(b.val[:0], t), nil))
}

// ExpireSeen deletes partition p's dedup sightings in slots before
// beforeSlot: one range deletion.
func (b *Batch) ExpireSeen(p int32, beforeSlot int64) {
	b.keep(b.b.DeleteRange(partitionKey(nil, kindSeen, p), seenKey(nil, p, beforeSlot, ""), nil))
}

// SetDedup records partition p's dedup clock and history.
func (b *Batch) SetDedup(p int32, d base.DedupState) {
	v := make([]byte, 0, 8+24*len(d.Hist))
	v = encodeInt64(v, d.Clock)
	for _, m := range d.Hist {
		v = encodeInt64(v, m.Slot)
		v = encodeInt64(v, m.Offset)
		v = encodeInt64(v, m.Before)
	}
	b.keep(b.b.Set(partitionKey(nil, kindDedup, p), v, nil))
}

// SetMeta tags partition p's state with its checkpoint.
func (b *Batch) SetMeta(p int32, m base.Position) {
	v := make([]byte, 0, 40)
	v = encodeInt64(v, m.NextOffset)
	v = encodeInt64(v, m.Watermark)
	v = encodeInt64(v, m.RestartOffset)
	v = encodeInt64(v, m.DedupOffset)
	v = encodeInt64(v, m.DedupClock)
	b.keep(b.b.Set(partitionKey(nil, kindMeta, p), v, nil))
}

// DropPartition removes everything stored for partition p, tag included.
func (b *Batch) DropPartition(p int32) {
	for _, kind := range kinds {
		prefix := partitionKey(nil, kind, p)
		b.keep(b.b.DeleteRange(prefix, prefixEnd(prefix), nil))
	}
}

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool { return b.b.Empty() }

// Len returns the batch's encoded size in bytes.
func (b *Batch) Len() int { return b.b.Len() }

// Commit writes the batch atomically, syncs it and releases it.
//
// NB: one fsync per checkpoint, not per record. Without it Pebble keeps the
// write-ahead log in a user-space buffer, so a SIGKILL loses every batch
// since the last sync and each restart would rebuild instead of resuming.
//
// An error wraps ErrUnusable or ErrCorrupt when the store failed (Err).
func (b *Batch) Commit() error {
	if b.err != nil {
		b.Close()
		return fmt.Errorf("build state batch: %w", b.err)
	}
	err := b.s.commit(b.b)
	if err != nil && b.s.Err() != nil {
		// NB: not closed: a commit blocked in Pebble may still read it.
		b.b = nil
		return fmt.Errorf("commit state batch: %w", err)
	}
	b.Close()
	if err != nil {
		return fmt.Errorf("commit state batch: %w", err)
	}
	return nil
}

// Close releases the batch without writing it. Safe after Commit.
func (b *Batch) Close() {
	if b.b != nil {
		_ = b.b.Close()
		b.b = nil
	}
}

type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	pebble.DefaultLogger.Errorf(format, args...)
}
func (quietLogger) Fatalf(format string, args ...any) {
	pebble.DefaultLogger.Fatalf(format, args...)
}
