package backfill

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/clickagg/clickagg/stream"
	"github.com/klauspost/compress/zstd"
)

// Input is one input of a backfill: a file of JSON lines (plain, gzip or
// zstd) or stdin.
type Input struct {
	// Path is the file's absolute path, or "-" for stdin.
	Path string
	// Size is the file's size on disk; -1 for stdin.
	Size int64
	// ID is the content identity: a hash of the size and the first and
	// last MiB (stdin: of its first MiB), in hex.
	ID string
	// Compression is "", "gzip" or "zstd", from the content's magic bytes.
	Compression string

	stdin *bufio.Reader // stdin only: its first MiB is buffered
	used  bool          // stdin only: read once already
	// read is how far the current reader got in the file's own bytes
	// (compressed bytes for a compressed file), for progress.
	read atomic.Int64
}

// identityBytes is how much of a file's start and of its end the identity
// hashes.
const identityBytes = 1 << 20

// maxLine bounds a line: a longer one is fed to the decoder as an empty
// value (rejected as invalid_json) instead of being held in memory.
const maxLine = 16 << 20

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

func compressionOf(head []byte) string {
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return "gzip"
	case bytes.HasPrefix(head, zstdMagic):
		return "zstd"
	}
	return ""
}

// Expand turns the command line's arguments into paths: "-" (stdin, at
// most once), file names, and globs (sorted; one that matches nothing is
// an error).
func Expand(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		if a == "-" || !strings.ContainsAny(a, "*?[") {
			out = append(out, a)
			continue
		}
		m, err := filepath.Glob(a)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", a, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("%q matches no file", a)
		}
		slices.Sort(m)
		out = append(out, m...)
	}
	if n := slices.Index(out, "-"); n >= 0 && slices.Index(out[n+1:], "-") >= 0 {
		return nil, errors.New(`"-" (stdin) given more than once`)
	}
	return out, nil
}

// Identify reads each path's identity (stdin: buffers its first MiB).
func Identify(paths []string, stdin io.Reader) ([]*Input, error) {
	var out []*Input
	for _, p := range paths {
		in, err := identify(p, stdin)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

func identify(path string, stdin io.Reader) (*Input, error) {
	h := sha256.New()
	h.Write([]byte("clickagg backfill v1\x00"))
	if path == "-" {
		br := bufio.NewReaderSize(stdin, identityBytes)
		head, err := br.Peek(identityBytes)
		if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		h.Write(head)
		return &Input{Path: "-", Size: -1, ID: hex.EncodeToString(h.Sum(nil)[:16]), Compression: compressionOf(head), stdin: br}, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	size := fi.Size()
	var sz [8]byte
	binary.BigEndian.PutUint64(sz[:], uint64(size))
	h.Write(sz[:])
	head := make([]byte, min(size, identityBytes))
	if _, err := io.ReadFull(f, head); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	h.Write(head)
	if size > identityBytes {
		tail := make([]byte, min(size-identityBytes, identityBytes))
		if _, err := f.ReadAt(tail, size-int64(len(tail))); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		h.Write(tail)
	}
	return &Input{Path: abs, Size: size, ID: hex.EncodeToString(h.Sum(nil)[:16]), Compression: compressionOf(head)}, nil
}

// Stdin reports whether the input is stdin.
func (in *Input) Stdin() bool { return in.Path == "-" }

// Name is how logs and errors name the input.
func (in *Input) Name() string {
	if in.Stdin() {
		return "stdin"
	}
	return in.Path
}

// Partition is the input's partition number: 31 bits of its identity.
func (in *Input) Partition() int32 {
	b, _ := hex.DecodeString(in.ID[:8])
	return int32(binary.BigEndian.Uint32(b) & 0x7fffffff)
}

// end is an offset past every record when known: a plain file's size.
func (in *Input) end() int64 {
	if in.Stdin() || in.Compression != "" {
		return -1
	}
	return in.Size
}

// open returns a reader of the input's lines at or after byte offset from
// (of the decompressed stream): lines are records, their offset the
// offset of their first byte.
func (in *Input) open(from int64) (*lineReader, error) {
	in.read.Store(0)
	var raw io.Reader
	var closers []io.Closer
	if in.Stdin() {
		if in.used || from > 0 {
			return nil, errors.New("stdin cannot be read again (a backfill of stdin is not resumable)")
		}
		in.used = true
		raw = in.stdin
	} else {
		f, err := os.Open(in.Path)
		if err != nil {
			return nil, err
		}
		closers = append(closers, f)
		if in.Compression == "" && from > 0 {
			// NB: plain files seek; the line before from is skipped below.
			if _, err := f.Seek(from-1, io.SeekStart); err != nil {
				_ = f.Close()
				return nil, err
			}
			in.read.Store(from - 1)
		}
		raw = &countingReader{r: f, n: &in.read}
	}
	r := &lineReader{closers: closers}
	var dec io.Reader = raw
	switch in.Compression {
	case "gzip":
		zr, err := gzip.NewReader(raw)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("%s: %w", in.Name(), err)
		}
		dec, r.closers = zr, append(r.closers, zr)
	case "zstd":
		zr, err := zstd.NewReader(raw, zstd.WithDecoderConcurrency(1))
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("%s: %w", in.Name(), err)
		}
		dec, r.closers = zr, append(r.closers, zstdCloser{zr})
	}
	r.br = bufio.NewReaderSize(dec, 1<<20)
	if from > 0 {
		skip := from - 1
		if in.Compression != "" || in.Stdin() {
			if n, err := r.br.Discard(int(skip)); err != nil {
				r.off = int64(n)
				return r, nil // NB: the stream ends before from: nothing left
			}
		}
		// NB: the byte before from ends the line before it, or is in
		// the middle of a line that starts before from: skip through
		// the newline.
		r.off = skip
		for {
			line, err := r.br.ReadSlice('\n')
			r.off += int64(len(line))
			if err != bufio.ErrBufferFull {
				break
			}
		}
	}
	return r, nil
}

type zstdCloser struct{ d *zstd.Decoder }

func (z zstdCloser) Close() error { z.d.Close(); return nil }

// countingReader counts the bytes read from a file.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// lineReader is a checkpoint.RecordReader over JSON lines.
type lineReader struct {
	br      *bufio.Reader
	closers []io.Closer
	off     int64  // offset of the next byte
	long    []byte // a line longer than the buffer
}

// Next implements checkpoint.RecordReader. Blank lines are no records.
// Files have no record timestamp (TimestampMs 0): an event without a time
// is rejected as out of range.
func (r *lineReader) Next() (stream.Record, error) {
	for {
		start := r.off
		line, err := r.br.ReadSlice('\n')
		n := int64(len(line))
		if err == bufio.ErrBufferFull {
			line, n, err = r.longLine(line)
		}
		r.off += n
		if err != nil && err != io.EOF {
			return stream.Record{}, err
		}
		if n == 0 {
			return stream.Record{}, io.EOF
		}
		if n > maxLine {
			// NB: rejected as invalid_json; the offset moves past it.
			return stream.Record{Offset: start}, nil
		}
		v := line
		if v[len(v)-1] == '\n' {
			v = v[:len(v)-1]
		}
		if len(v) > 0 && v[len(v)-1] == '\r' {
			v = v[:len(v)-1]
		}
		if len(v) == 0 || (isSpace(v[0]) && len(bytes.TrimSpace(v)) == 0) {
			continue
		}
		return stream.Record{Offset: start, Value: v}, nil
	}
}

// longLine reads the rest of a line longer than the buffer and returns it
// with its length; past maxLine only the length is kept.
func (r *lineReader) longLine(first []byte) ([]byte, int64, error) {
	r.long = append(r.long[:0], first...)
	n := int64(len(first))
	for {
		part, err := r.br.ReadSlice('\n')
		n += int64(len(part))
		if n <= maxLine {
			r.long = append(r.long, part...)
		}
		if err != bufio.ErrBufferFull {
			return r.long, n, err
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// Close implements checkpoint.RecordReader.
func (r *lineReader) Close() error {
	var errs []error
	for i := len(r.closers) - 1; i >= 0; i-- {
		errs = append(errs, r.closers[i].Close())
	}
	return errors.Join(errs...)
}
