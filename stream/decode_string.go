package stream

// JSON strings for Decode: scanString, which skips plain bytes sixteen at
// a time (SWAR, see skipPlain and specialBytes; shortString for strings of
// fewer than eight bytes) and validates UTF-8 and escape sequences
// (including surrogate pairs), and appendUnescaped, which decodes a
// validated string's escapes into the Decoder's scratch buffer.

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// plainByte marks the bytes that may appear unescaped in a string and need
// no further checking: printable ASCII other than '"' and '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString scans string contents starting at i (just past the opening
// quote). It returns the index of the closing quote and whether the string
// contains escapes.
func (s *scanner) scanString(i int) (int, bool) {
	data := s.data
	escaped := false
	for {
		if i = skipPlain(data, i); i == len(data) {
			return s.fail(ReasonInvalidJSON), false
		}
		switch c := data[i]; {
		case c == '"':
			return i, escaped
		case c == '\\':
			escaped = true
			if i = s.scanEscape(i); i < 0 {
				return -1, false
			}
		case c < 0x20:
			return s.fail(ReasonInvalidJSON), false
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return s.fail(ReasonInvalidUTF8), false
			}
			i += size
		}
	}
}

// skipPlain returns the index of the first byte from i on that is not
// plainByte, or len(data). It looks at sixteen bytes at a time, then
// eight (see specialBytes), then single bytes.
func skipPlain(data []byte, i int) int {
	rest := data[i:]
	for len(rest) >= 16 {
		a := specialBytes(binary.LittleEndian.Uint64(rest[:8]))
		b := specialBytes(binary.LittleEndian.Uint64(rest[8:16]))
		if a|b != 0 {
			if a != 0 {
				return len(data) - len(rest) + bits.TrailingZeros64(a)>>3
			}
			return len(data) - len(rest) + 8 + bits.TrailingZeros64(b)>>3
		}
		rest = rest[16:]
	}
	if len(rest) >= 8 {
		if a := specialBytes(binary.LittleEndian.Uint64(rest[:8])); a != 0 {
			return len(data) - len(rest) + bits.TrailingZeros64(a)>>3
		}
		rest = rest[8:]
	}
	for len(rest) > 0 && plainByte[rest[0]] {
		rest = rest[1:]
	}
	return len(data) - len(rest)
}

// shortString is scanString's fast path, small enough to inline: for
// string contents at i whose closing quote is among the next eight bytes
// with only plain bytes before it (most keys and many short values), it
// returns the quote's index; otherwise -1, and scanString decides.
func shortString(data []byte, i int) int {
	if i+8 <= len(data) {
		if m := specialBytes(binary.LittleEndian.Uint64(data[i:])); m != 0 {
			if j := i + bits.TrailingZeros64(m)>>3; data[j] == '"' {
				return j
			}
		}
	}
	return -1
}

const (
	ones8 = 0x0101010101010101
	high8 = 0x8080808080808080
)

// specialBytes returns x (eight bytes, little-endian) with the high bit of
// every byte that is not plainByte set, and possibly of bytes after the
// first such one (a borrow carries upwards only from a flagged byte), so
// its lowest set bit always marks the first special byte exactly.
func specialBytes(x uint64) uint64 {
	q := x ^ (ones8 * '"')
	b := x ^ (ones8 * '\\')
	// NB: for a byte in [0x20, 0x80) other than '"' and '\\', q and b are
	// in [1, 0x80) and the byte minus 0x20 is in [0, 0x60): no high bit
	// and no borrow. A byte >= 0x80 sets its own high bit through x.
	return ((q - ones8) | (b - ones8) | (x - ones8*0x20) | x) & high8
}

// scanEscape validates the escape sequence at i (data[i] == '\\'). A \u
// escape for a high surrogate must be followed by one for a low surrogate;
// any other use of surrogates is invalid UTF-8.
func (s *scanner) scanEscape(i int) int {
	data := s.data
	if i+1 >= len(data) {
		return s.fail(ReasonInvalidJSON)
	}
	switch data[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 2
	case 'u':
	default:
		return s.fail(ReasonInvalidJSON)
	}
	r, ok := hex4(data, i+2)
	if !ok {
		return s.fail(ReasonInvalidJSON)
	}
	i += 6
	switch {
	case r < 0xD800 || r >= 0xE000:
		return i
	case r >= 0xDC00: // lone low surrogate
		return s.fail(ReasonInvalidUTF8)
	}
	if i+1 < len(data) && data[i] == '\\' && data[i+1] == 'u' {
		r2, ok := hex4(data, i+2)
		if !ok {
			return s.fail(ReasonInvalidJSON)
		}
		if r2 >= 0xDC00 && r2 < 0xE000 {
			return i + 6
		}
	}
	return s.fail(ReasonInvalidUTF8)
}

// hex4 decodes the four hex digits at data[i:i+4].
func hex4(data []byte, i int) (rune, bool) {
	if len(data)-i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// appendUnescaped appends the decoded form of string contents that
// scanString has already validated.
func appendUnescaped(dst, raw []byte) []byte {
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\\')
		if i < 0 {
			return append(dst, raw...)
		}
		dst = append(dst, raw[:i]...)
		dst, raw = appendEscape(dst, raw[i:])
	}
	return dst
}

// appendEscape appends the decoded form of the one escape sequence raw
// starts with (raw[0] is the backslash; validated by scanString, a
// surrogate pair counting as one) and returns what follows it.
func appendEscape(dst, raw []byte) ([]byte, []byte) {
	if len(raw) < 2 {
		return dst, nil // unreachable for validated input
	}
	c := raw[1]
	raw = raw[2:]
	switch c {
	case 'b':
		return append(dst, '\b'), raw
	case 'f':
		return append(dst, '\f'), raw
	case 'n':
		return append(dst, '\n'), raw
	case 'r':
		return append(dst, '\r'), raw
	case 't':
		return append(dst, '\t'), raw
	case 'u':
		r, _ := hex4(raw, 0)
		raw = raw[min(4, len(raw)):]
		if r >= 0xD800 && r < 0xDC00 && len(raw) >= 6 {
			r2, _ := hex4(raw, 2)
			r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
			raw = raw[6:]
		}
		return utf8.AppendRune(dst, r), raw
	}
	return append(dst, c), raw // '"', '\\', '/'
}
