package sink

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

// Deltas accumulates a checkpoint's url_clicks deltas. The same key may be
// added many times, from many partitions. The url_totals deltas are not
// kept apart: they are those of the windows Checkpoint.TotalsWindow long.
// The zero value is ready to use; Reset reuses the memory.
//
// In memory, the deltas of one row are summed as they are added (a map
// from row key to row; the URL copied once into a chunked arena, no
// allocation per row). At commit the rows are sorted by key once (Go's
// sort is cheaper than PostgreSQL's), so that new rows go straight into
// url_clicks by binary COPY, in the order of its primary key; see
// Writer.Commit.
//
// Large checkpoints (closing a day window over millions of URLs) would not
// fit in memory: with SpillDir set, once the deltas take more than
// SpillBytes they move to a temporary file there, encoded in PostgreSQL's
// binary COPY format for the staging table, and so does every later one.
// PostgreSQL then sums and orders them (the staged path), and memory stays
// bounded by SpillBytes. (64 MiB holds about 250,000 rows, a checkpoint at
// the default limit of pending counters.)
type Deltas struct {
	SpillDir   string           // "" keeps everything in memory
	SpillBytes int              // 0 means 64 MiB
	rows       []delta          // one per row key
	index      map[rowKey]int32 // row key -> rows index, while not sorted
	isSorted   bool             // rows are sorted by key
	spare      []delta          // sorted's output buffer, reused
	keys       []sortKey        // sorted's sort keys, reused
	arena      arena
	memBytes   int
	spilled    bool        // the deltas are in clicks, not rows
	clicks     spillBuffer // the staged COPY stream once spilled
	nClicks    int
	copyBuf    []byte // rowStream's buffer, reused
	scratch    []byte // writeStaged's row, reused
	// spans are the url_clicks partitions the deltas touch, each once;
	// lastSpan (ending at lastSpanEnd) is the newest, the common case for
	// the next delta: a range check, no division, per row.
	spans       []spanKey
	lastSpan    spanKey
	lastSpanEnd int64
}

// delta adds clicks (late of them late) to url's window [start, end), in
// Unix milliseconds.
type delta struct {
	url                      string
	start, end, clicks, late int64
}

// rowKey is a url_clicks row's key: URL and window.
type rowKey struct {
	url        string
	start, end int64
}

// rowBytes is about what a row in memory costs besides its URL, with its
// index entry and, at commit, the sort's copy and key.
const rowBytes = int(2*unsafe.Sizeof(delta{}) + unsafe.Sizeof(rowKey{}) + unsafe.Sizeof(sortKey{}) + 16)

// copyHeader starts a binary COPY stream: signature, flags, header
// extension length.
var copyHeader = []byte("PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")

var copyTrailer = []byte{0xff, 0xff}

// pgEpochMicros is 2000-01-01T00:00:00Z in Unix microseconds: binary
// timestamptz counts microseconds from there.
const pgEpochMicros = 946684800 * 1_000_000

// Reset empties d, keeping its memory and removing spill files.
func (d *Deltas) Reset() {
	d.clicks.reset()
	clear(d.rows) // NB: drop the URLs' references for the GC
	d.rows, d.isSorted, d.memBytes, d.spilled = d.rows[:0], false, 0, false
	clear(d.index)
	d.arena.reset()
	d.nClicks = 0
	d.spans = d.spans[:0]
}

// Err returns the first error writing a spill file.
func (d *Deltas) Err() error { return d.clicks.err }

func (d *Deltas) limit() int {
	if d.SpillBytes == 0 {
		return 64 << 20
	}
	return d.SpillBytes
}

// Clicks returns how many url_clicks deltas were added (duplicates included).
func (d *Deltas) Clicks() int { return d.nClicks }

// AddClick adds clicks (of which late) to url's window [start, end), in
// Unix milliseconds.
func (d *Deltas) AddClick(url string, start, end, clicks, late int64) {
	d.nClicks++
	if size := end - start; len(d.spans) == 0 || size != d.lastSpan.size || start < d.lastSpan.start || start >= d.lastSpanEnd {
		k := spanOf(size, start)
		d.lastSpan, d.lastSpanEnd = k, k.start+SpanFor(size)
		if !slices.Contains(d.spans, k) {
			d.spans = append(d.spans, k)
		}
	}
	if d.spilled {
		d.writeStaged(&delta{url: url, start: start, end: end, clicks: clicks, late: late})
		return
	}
	if d.isSorted || d.index == nil {
		d.reindex()
	}
	if i, ok := d.index[rowKey{url, start, end}]; ok {
		r := &d.rows[i]
		r.clicks += clicks
		r.late += late
		return
	}
	u := d.arena.copy(url)
	d.index[rowKey{u, start, end}] = int32(len(d.rows))
	d.rows = append(d.rows, delta{url: u, start: start, end: end, clicks: clicks, late: late})
	d.memBytes += rowBytes + len(url)
	if d.SpillDir != "" && d.memBytes > d.limit() {
		d.spill()
	}
}

// reindex rebuilds the row index (after sorted moved the rows).
func (d *Deltas) reindex() {
	if d.index == nil {
		d.index = map[rowKey]int32{}
	}
	clear(d.index)
	for i, r := range d.rows {
		d.index[rowKey{r.url, r.start, r.end}] = int32(i)
	}
	d.isSorted = false
}

// AddClickBytes is AddClick for a URL held as bytes.
func (d *Deltas) AddClickBytes(url []byte, start, end, clicks, late int64) {
	d.AddClick(bytesToString(url), start, end, clicks, late)
}

// spill moves the deltas in memory to a spill file, as the staged COPY
// stream, and frees their memory.
func (d *Deltas) spill() {
	b := &d.clicks
	b.dir = d.SpillDir
	b.spill()
	b.Write(copyHeader)
	d.spilled = true
	for i := range d.rows {
		d.writeStaged(&d.rows[i])
	}
	clear(d.rows)
	clear(d.index)
	d.rows, d.isSorted, d.memBytes = d.rows[:0], false, 0
	d.arena.reset()
}

// writeStaged appends r to the spilled COPY stream.
func (d *Deltas) writeStaged(r *delta) {
	d.scratch = appendStaged(d.scratch[:0], r)
	d.clicks.Write(d.scratch)
}

// sorted sorts the rows in memory (AddClick summed each row's deltas) by
// key: url in byte order, the order of the staging table's COLLATE "C" and
// of the upsert's ORDER BY, then window. Idempotent: a retried transaction
// sorts nothing again.
//
// URLs share long prefixes (a scheme and a host), where a string compare
// spends most of its time; so the sort compares the 16 bytes after the
// prefix all URLs share, as two integers, and whole URLs only on a tie.
func (d *Deltas) sorted() []delta {
	if d.isSorted {
		return d.rows
	}
	rows := d.rows
	var prefix string
	if len(rows) > 0 {
		prefix = rows[0].url
	}
	for i := range rows {
		if u := rows[i].url; !strings.HasPrefix(u, prefix) {
			n := 0
			for n < len(prefix) && n < len(u) && prefix[n] == u[n] {
				n++
			}
			prefix = prefix[:n]
		}
	}
	p := len(prefix)
	keys := d.keys[:0]
	for i := range rows {
		u := rows[i].url
		keys = append(keys, sortKey{hi: keyAt(u, p), lo: keyAt(u, p+8), start: rows[i].start, n: int32(len(u)), i: int32(i)})
	}
	slices.SortFunc(keys, func(a, b sortKey) int {
		if a.hi != b.hi {
			return cmp.Compare(a.hi, b.hi)
		}
		if a.lo != b.lo {
			return cmp.Compare(a.lo, b.lo)
		}
		// NB: equal keys cover both URLs whole when both end within
		// them: then the shorter one (zero-padded) sorts first.
		if int(a.n) > p+16 || int(b.n) > p+16 {
			if c := strings.Compare(rows[a.i].url[p:], rows[b.i].url[p:]); c != 0 {
				return c
			}
		} else if a.n != b.n {
			return cmp.Compare(a.n, b.n)
		}
		if a.start != b.start {
			return cmp.Compare(a.start, b.start)
		}
		return cmp.Compare(rows[a.i].end, rows[b.i].end)
	})
	out := d.spare[:0]
	for _, k := range keys {
		out = append(out, rows[k.i])
	}
	clear(rows) // NB: drop the URLs' references for the GC
	d.keys, d.spare = keys[:0], rows[:0]
	d.rows, d.isSorted = out, true
	return out
}

// sortKey orders a delta (rows[i]) by 16 bytes of its URL, from the
// shared prefix on, big-endian and zero-padded: integer order is the
// bytes' order, and equal keys leave the rest of the URL to compare; then
// by window, its start at hand.
type sortKey struct {
	hi, lo uint64
	start  int64 // rows[i].start
	n      int32 // len(rows[i].url)
	i      int32
}

// keyAt returns the 8 bytes of s from offset off as a big-endian integer,
// zero-padded past the end of s.
func keyAt(s string, off int) uint64 {
	if off+8 <= len(s) {
		return binary.BigEndian.Uint64(unsafe.Slice(unsafe.StringData(s[off:]), 8))
	}
	var b [8]byte
	if off < len(s) {
		copy(b[:], s[off:])
	}
	return binary.BigEndian.Uint64(b[:])
}

// stream returns a binary COPY stream of the sorted rows that keep
// selects, each encoded by enc only as COPY reads it: a 64 KiB buffer in
// memory, not the stream. The caller closes it once CopyFrom returned.
func (d *Deltas) stream(keep func(*delta) bool, enc func([]byte, *delta) []byte) *rowStream {
	return &rowStream{rows: d.rows, keep: keep, enc: enc, buf: d.copyBuf[:0], owner: d}
}

// errStreamClosed is what a closed rowStream's Read returns.
var errStreamClosed = errors.New("sink: copy stream closed")

type rowStream struct {
	// NB: CopyFrom reads on a goroutine of its own, which it can leave
	// running when it returns early (a cancelled context, a fatal server
	// error); mu and closed keep that goroutine from encoding into the
	// buffer, or reading the rows, once the caller moved on.
	mu           sync.Mutex
	closed       bool
	rows         []delta
	keep         func(*delta) bool
	enc          func([]byte, *delta) []byte
	buf          []byte
	off, next    int
	begun, ended bool
	owner        *Deltas
}

func (s *rowStream) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errStreamClosed
	}
	if s.off == len(s.buf) {
		s.buf, s.off = s.buf[:0], 0
		if !s.begun {
			s.buf, s.begun = append(s.buf, copyHeader...), true
		}
		for ; s.next < len(s.rows) && len(s.buf) < 64<<10; s.next++ {
			if r := &s.rows[s.next]; s.keep(r) {
				s.buf = s.enc(s.buf, r)
			}
		}
		if s.next == len(s.rows) && !s.ended {
			s.buf, s.ended = append(s.buf, copyTrailer...), true
		}
		if len(s.buf) == 0 {
			return 0, io.EOF
		}
	}
	n := copy(p, s.buf[s.off:])
	s.off += n
	return n, nil
}

// close ends the stream, after a Read in progress (on a goroutine CopyFrom
// left behind), and hands its buffer back for the next stream.
func (s *rowStream) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.owner.copyBuf = s.buf[:0]
}

// appendStaged appends r to a COPY stream for the staging table: url,
// window_start, window_end, clicks, late_clicks.
func appendStaged(dst []byte, r *delta) []byte {
	dst = binary.BigEndian.AppendUint16(dst, 5)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.url)))
	dst = append(dst, r.url...)
	dst = appendInt64(dst, r.start*1000-pgEpochMicros)
	dst = appendInt64(dst, r.end*1000-pgEpochMicros)
	dst = appendInt64(dst, r.clicks)
	return appendInt64(dst, r.late)
}

// appendDirect appends r to a COPY stream for url_clicks itself: url,
// window_start, window_end, window_size, clicks, late_clicks, final.
func appendDirect(dst []byte, r *delta, final bool) []byte {
	dst = binary.BigEndian.AppendUint16(dst, 7)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.url)))
	dst = append(dst, r.url...)
	dst = appendInt64(dst, r.start*1000-pgEpochMicros)
	dst = appendInt64(dst, r.end*1000-pgEpochMicros)
	dst = appendInterval(dst, r.end-r.start)
	dst = appendInt64(dst, r.clicks)
	dst = appendInt64(dst, r.late)
	dst = binary.BigEndian.AppendUint32(dst, 1)
	if final {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// appendInterval appends a binary interval of ms milliseconds as
// window_end - window_start computes it (whole days as days, the rest as
// time, no months), so that both ways of writing a row store one value.
func appendInterval(dst []byte, ms int64) []byte {
	const dayMicros = 86_400_000_000
	us := ms * 1000
	dst = binary.BigEndian.AppendUint32(dst, 16)
	dst = binary.BigEndian.AppendUint64(dst, uint64(us%dayMicros))
	dst = binary.BigEndian.AppendUint32(dst, uint32(us/dayMicros))
	return binary.BigEndian.AppendUint32(dst, 0)
}

// arena holds the URLs of the deltas in memory: chunks that are never
// moved, so strings viewing them stay valid until reset.
type arena struct {
	chunks [][]byte
	cur    int // index of the chunk being filled
}

const arenaChunk = 256 << 10

func (a *arena) copy(s string) string {
	if len(a.chunks) == 0 {
		a.chunks = append(a.chunks, make([]byte, 0, arenaChunk))
	}
	c := a.chunks[a.cur]
	if len(c)+len(s) > cap(c) {
		if a.cur+1 < len(a.chunks) && len(s) <= arenaChunk {
			a.cur++
		} else {
			a.chunks = append(a.chunks, make([]byte, 0, max(arenaChunk, len(s))))
			a.cur = len(a.chunks) - 1
		}
		c = a.chunks[a.cur]
	}
	n := len(c)
	c = append(c, s...)
	a.chunks[a.cur] = c
	return unsafe.String(unsafe.SliceData(c[n:]), len(s))
}

func (a *arena) reset() {
	for i := range a.chunks {
		a.chunks[i] = a.chunks[i][:0]
	}
	a.cur = 0
}

func appendInt64(dst []byte, v int64) []byte {
	dst = binary.BigEndian.AppendUint32(dst, 8)
	return binary.BigEndian.AppendUint64(dst, uint64(v))
}

// spillBuffer is an append-only byte stream kept in memory up to limit
// bytes, then in a temporary file in dir (when dir is set).
type spillBuffer struct {
	dir   string
	limit int
	mem   bytes.Buffer
	f     *os.File
	w     *bufio.Writer
	n     int64 // bytes in the file
	err   error
}

func (b *spillBuffer) spill() {
	f, err := os.CreateTemp(b.dir, "checkpoint-deltas-*")
	if err != nil {
		b.err = fmt.Errorf("spill checkpoint deltas: %w", err)
		return
	}
	b.f, b.w = f, bufio.NewWriterSize(f, 1<<20)
	b.count(b.w.Write(b.mem.Bytes()))
	b.mem.Reset()
}

func (b *spillBuffer) Write(p []byte) {
	if b.toFile(len(p)) {
		b.count(b.w.Write(p))
		return
	}
	b.mem.Write(p)
}

func (b *spillBuffer) WriteString(s string) {
	if b.toFile(len(s)) {
		b.count(b.w.WriteString(s))
		return
	}
	b.mem.WriteString(s)
}

// toFile reports whether the next n bytes go to the spill file, spilling
// first when they would take the memory part past its limit.
func (b *spillBuffer) toFile(n int) bool {
	if b.f == nil && b.dir != "" && b.err == nil && b.mem.Len()+n > b.limit {
		b.spill()
	}
	return b.w != nil
}

func (b *spillBuffer) count(n int, err error) {
	b.n += int64(n)
	if err != nil && b.err == nil {
		b.err = err
	}
}

// reader returns the whole stream followed by the COPY trailer, from the
// start, without changing the buffer (a retried transaction reads it again).
func (b *spillBuffer) reader() (io.Reader, error) {
	if b.err != nil {
		return nil, b.err
	}
	if b.w != nil {
		if err := b.w.Flush(); err != nil {
			return nil, err
		}
		return io.MultiReader(io.NewSectionReader(b.f, 0, b.n), bytes.NewReader(copyTrailer)), nil
	}
	return io.MultiReader(bytes.NewReader(b.mem.Bytes()), bytes.NewReader(copyTrailer)), nil
}

func (b *spillBuffer) reset() {
	if b.f != nil {
		name := b.f.Name()
		_ = b.f.Close()
		_ = os.Remove(name)
		b.f, b.w, b.n = nil, nil, 0
	}
	b.mem.Reset()
	b.err = nil
}

// bytesToString views b as a string without copying; the caller only reads
// it before b changes (it is appended to a buffer at once).
func bytesToString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
