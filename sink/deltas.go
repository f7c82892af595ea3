package sink

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"unsafe"
)

// Deltas accumulates a checkpoint's url_clicks deltas, already encoded in
// PostgreSQL's binary COPY format: adding a row costs an append, with no
// allocation per row and no sort (PostgreSQL sums duplicate keys and orders
// the rows while upserting). The same key may be added many times, from
// many partitions. The url_totals deltas are not encoded apart: they are
// those of the windows Checkpoint.TotalsWindow long, summed by PostgreSQL.
// The zero value is ready to use; Reset reuses the memory.
//
// Large checkpoints (closing a day window over millions of URLs) would not
// fit in memory: with SpillDir set, a stream larger than SpillBytes moves to
// a temporary file there, so memory stays bounded by SpillBytes.
type Deltas struct {
	SpillDir   string // "" keeps everything in memory
	SpillBytes int    // 0 means 32 MiB
	clicks     spillBuffer
	nClicks    int
	// spans are the url_clicks partitions the deltas touch, each once;
	// lastSpan (ending at lastSpanEnd) is the newest, the common case for
	// the next delta: a range check, no division, per row.
	spans       []spanKey
	lastSpan    spanKey
	lastSpanEnd int64
}

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
	d.nClicks = 0
	d.spans = d.spans[:0]
}

// Err returns the first error writing a spill file.
func (d *Deltas) Err() error { return d.clicks.err }

func (d *Deltas) buf() *spillBuffer {
	b := &d.clicks
	if b.dir == "" && d.SpillDir != "" {
		b.dir, b.limit = d.SpillDir, d.SpillBytes
		if b.limit == 0 {
			b.limit = 32 << 20
		}
	}
	return b
}

// Clicks returns how many url_clicks deltas were added (duplicates included).
func (d *Deltas) Clicks() int { return d.nClicks }

// AddClick adds clicks (of which late) to url's window [start, end), in
// Unix milliseconds.
func (d *Deltas) AddClick(url string, start, end, clicks, late int64) {
	b := d.buf()
	if d.nClicks == 0 {
		b.Write(copyHeader)
	}
	d.nClicks++
	if size := end - start; len(d.spans) == 0 || size != d.lastSpan.size || start < d.lastSpan.start || start >= d.lastSpanEnd {
		k := spanOf(size, start)
		d.lastSpan, d.lastSpanEnd = k, k.start+SpanFor(size)
		if !slices.Contains(d.spans, k) {
			d.spans = append(d.spans, k)
		}
	}
	var tmp [64]byte
	row := binary.BigEndian.AppendUint16(tmp[:0], 5)
	row = binary.BigEndian.AppendUint32(row, uint32(len(url)))
	b.Write(row)
	b.WriteString(url)
	row = appendInt64(tmp[:0], start*1000-pgEpochMicros)
	row = appendInt64(row, end*1000-pgEpochMicros)
	row = appendInt64(row, clicks)
	row = appendInt64(row, late)
	b.Write(row)
}

// AddClickBytes is AddClick for a URL held as bytes.
func (d *Deltas) AddClickBytes(url []byte, start, end, clicks, late int64) {
	d.AddClick(bytesToString(url), start, end, clicks, late)
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
