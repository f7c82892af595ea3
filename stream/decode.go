package stream

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// Click is one decoded click event. URL and ID alias either the input
// or the Decoder's scratch buffer; they are valid until the next Decode call
// on the same Decoder. Callers copy what they keep.
type Click struct {
	URL     []byte
	TimeMs  int64 // event time, Unix milliseconds; meaningful only when HasTime
	HasTime bool
	ID      []byte // nil when absent or null; for a numeric id, the number's literal text
}

// Reason says why a record was rejected. ReasonNone means accepted.
type Reason uint8

// Rejection reasons, in the order Decode checks for them.
const (
	// ReasonNone means the record was accepted.
	ReasonNone Reason = iota
	// ReasonInvalidJSON: the record is not a single valid JSON object
	// (including trailing data and nesting deeper than 512 levels).
	ReasonInvalidJSON
	// ReasonMissingURL: there is no "url" key, or its value is null.
	ReasonMissingURL
	// ReasonInvalidURL: "url" is not a string, or it contains a NUL byte
	// (PostgreSQL text cannot hold it).
	ReasonInvalidURL
	// ReasonEmptyURL: "url" is the empty string.
	ReasonEmptyURL
	// ReasonURLTooLong: the decoded URL is longer than MaxURLBytes bytes.
	ReasonURLTooLong
	// ReasonInvalidUTF8: some string in the record (key or value, even in an
	// ignored field) holds invalid UTF-8, or a \u escape forming a lone or
	// mismatched surrogate.
	ReasonInvalidUTF8
	// ReasonInvalidTimestamp: "ts" has the wrong type, is a non-integer
	// number, overflows int64, or is a string that is not RFC 3339.
	ReasonInvalidTimestamp
	// ReasonTimestampOutOfRange: "ts" parsed but lies outside
	// [MinEventTimeMs, MaxEventTimeMs).
	ReasonTimestampOutOfRange
	// ReasonInvalidID: "id" is not a string, an integer number, or null.
	ReasonInvalidID
	// ReasonTimestampAhead: the event time is more than the operator's
	// MaxFutureSkew ahead of the Kafka record's own timestamp (not the wall
	// clock, so a replay decides the same way). Checked by Operator, not
	// Decode.
	ReasonTimestampAhead
	// ReasonTimestampBehind: the event time is more than the operator's
	// MaxPastSkew behind the Kafka record's timestamp. Checked by Operator.
	ReasonTimestampBehind

	reasonCount // keep last; unexported
)

var reasonNames = [reasonCount]string{
	ReasonNone:                "none",
	ReasonInvalidJSON:         "invalid_json",
	ReasonMissingURL:          "missing_url",
	ReasonInvalidURL:          "invalid_url",
	ReasonEmptyURL:            "empty_url",
	ReasonURLTooLong:          "url_too_long",
	ReasonInvalidUTF8:         "invalid_utf8",
	ReasonInvalidTimestamp:    "invalid_timestamp",
	ReasonTimestampOutOfRange: "timestamp_out_of_range",
	ReasonInvalidID:           "invalid_id",
	ReasonTimestampAhead:      "timestamp_ahead_of_record",
	ReasonTimestampBehind:     "timestamp_behind_record",
}

// Reasons lists every rejection reason (not ReasonNone), in order, for
// metric pre-registration and docs. The caller may modify the returned slice.
func Reasons() []Reason {
	rs := make([]Reason, 0, reasonCount-1)
	for r := ReasonNone + 1; r < reasonCount; r++ {
		rs = append(rs, r)
	}
	return rs
}

// String returns the snake_case name of r ("none" for ReasonNone), suitable
// as a metric label value.
func (r Reason) String() string {
	if r < reasonCount {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// The accepted event-time range.
const (
	// MinEventTimeMs is the earliest accepted event time, 2000-01-01T00:00:00Z (inclusive).
	MinEventTimeMs int64 = 946684800000
	// MaxEventTimeMs is the end of the accepted event-time range, 2100-01-01T00:00:00Z (exclusive).
	MaxEventTimeMs int64 = 4102444800000
)

// ValidEventTime reports whether ms is within [MinEventTimeMs, MaxEventTimeMs).
func ValidEventTime(ms int64) bool {
	return ms >= MinEventTimeMs && ms < MaxEventTimeMs
}

// DefaultMaxURLBytes is the URL length limit used when Decoder.MaxURLBytes is
// zero or negative.
const DefaultMaxURLBytes = 2048

// maxDepth is the deepest nesting of objects and arrays accepted; the
// top-level object counts as depth 1.
const maxDepth = 512

// maxRetainedScratch bounds the scratch buffer a Decoder keeps between calls,
// so one huge escaped record does not pin memory forever.
const maxRetainedScratch = 64 << 10

// Decoder decodes click JSON. The zero value uses DefaultMaxURLBytes. Not
// safe for concurrent use.
type Decoder struct {
	// MaxURLBytes limits the decoded URL length in bytes; <= 0 means
	// DefaultMaxURLBytes.
	MaxURLBytes int

	scratch []byte
}

// Decode decodes one record value. On success it returns the click and
// ReasonNone; otherwise it returns a zero Click and the rejection reason.
//
// The record is always scanned in full first, so structural problems win:
//
//  1. invalid_json / invalid_utf8: whichever problem comes first in the
//     record (the whole record must be one valid JSON object with valid
//     UTF-8 in every string, ignored fields included);
//  2. url: missing_url, invalid_url, empty_url, url_too_long, in that order;
//  3. ts: invalid_timestamp, timestamp_out_of_range;
//  4. id: invalid_id.
//
// Keys match exactly (case-sensitive, after unescaping); with duplicate keys
// the last occurrence wins. Decode never panics and allocates only when an
// escaped url, ts or id outgrows the scratch buffer.
func (d *Decoder) Decode(value []byte) (Click, Reason) {
	if cap(d.scratch) > maxRetainedScratch {
		d.scratch = nil
	}
	d.scratch = d.scratch[:0]

	s := scanner{data: value}
	var f topFields
	i := skipWS(value, 0)
	if i >= len(value) || value[i] != '{' {
		return Click{}, ReasonInvalidJSON
	}
	i = s.scanObject(i, 1, &f)
	if i < 0 {
		return Click{}, s.err
	}
	if skipWS(value, i) != len(value) {
		return Click{}, ReasonInvalidJSON
	}

	var c Click

	// url
	switch f.url.kind {
	case kindAbsent, kindNull:
		return Click{}, ReasonMissingURL
	case kindString:
		c.URL = f.url.bytes(value)
	case kindEscapedString:
		c.URL = d.unescape(f.url.bytes(value))
		if bytes.IndexByte(c.URL, 0) >= 0 {
			return Click{}, ReasonInvalidURL
		}
	default:
		return Click{}, ReasonInvalidURL
	}
	if len(c.URL) == 0 {
		return Click{}, ReasonEmptyURL
	}
	maxURL := d.MaxURLBytes
	if maxURL <= 0 {
		maxURL = DefaultMaxURLBytes
	}
	if len(c.URL) > maxURL {
		return Click{}, ReasonURLTooLong
	}

	// ts
	var ok bool
	switch f.ts.kind {
	case kindAbsent, kindNull:
		ok = true
	case kindInt:
		c.TimeMs, ok = parseInt64(f.ts.bytes(value))
		c.HasTime = true
	case kindString:
		c.TimeMs, ok = parseRFC3339(f.ts.bytes(value))
		c.HasTime = true
	case kindEscapedString:
		n := len(d.scratch)
		c.TimeMs, ok = parseRFC3339(d.unescape(f.ts.bytes(value)))
		d.scratch = d.scratch[:n]
		c.HasTime = true
	}
	if !ok {
		return Click{}, ReasonInvalidTimestamp
	}
	if c.HasTime && !ValidEventTime(c.TimeMs) {
		return Click{}, ReasonTimestampOutOfRange
	}

	// id
	switch f.id.kind {
	case kindAbsent, kindNull:
	case kindString, kindInt:
		c.ID = f.id.bytes(value)
	case kindEscapedString:
		c.ID = d.unescape(f.id.bytes(value))
	default:
		return Click{}, ReasonInvalidID
	}
	return c, ReasonNone
}

// unescape appends the decoded form of the (already validated) string
// contents raw to the scratch buffer and returns it, capacity-limited so a
// caller's append cannot clobber later scratch data.
func (d *Decoder) unescape(raw []byte) []byte {
	n := len(d.scratch)
	d.scratch = appendUnescaped(d.scratch, raw)
	return d.scratch[n:len(d.scratch):len(d.scratch)]
}

// valueKind classifies a scanned JSON value.
type valueKind uint8

const (
	kindAbsent        valueKind = iota // key not present
	kindString                         // string without escapes
	kindEscapedString                  // string containing backslash escapes
	kindInt                            // number literal without fraction or exponent
	kindFloat                          // number literal with fraction or exponent
	kindNull
	kindOther // true, false, object, array
)

// field records where a top-level value lies in the input. For strings the
// span excludes the quotes.
type field struct {
	start, end int
	kind       valueKind
}

func (f field) bytes(data []byte) []byte { return data[f.start:f.end:f.end] }

// topFields holds the last occurrence of each top-level key we care about.
type topFields struct {
	url, ts, id field
}

// lookup returns the slot for a top-level key, or nil for an ignored key.
// raw is the key's undecoded contents.
func (f *topFields) lookup(raw []byte, escaped bool) *field {
	if escaped {
		// An escape encodes at least one byte in at most 6 (12 for a
		// surrogate pair, which encodes 4), so a key longer than 6*3 bytes
		// cannot decode to "url", "ts" or "id".
		if len(raw) > 18 {
			return nil
		}
		var buf [18]byte
		raw = appendUnescaped(buf[:0], raw)
	}
	switch string(raw) {
	case "url":
		return &f.url
	case "ts":
		return &f.ts
	case "id":
		return &f.id
	}
	return nil
}

// scanner validates JSON. Its scan methods take the index of the first byte
// of a construct and return the index just past it, or -1 after recording
// the first problem in err.
type scanner struct {
	data []byte
	err  Reason
}

func (s *scanner) fail(r Reason) int {
	if s.err == ReasonNone {
		s.err = r
	}
	return -1
}

// plainByte marks the bytes that may appear unescaped in a string and need
// no further checking: printable ASCII other than '"' and '\\'.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func skipWS(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanValue scans any JSON value starting at i, inside a container at depth.
func (s *scanner) scanValue(i, depth int) (int, valueKind) {
	data := s.data
	if i >= len(data) {
		return s.fail(ReasonInvalidJSON), 0
	}
	switch c := data[i]; c {
	case '"':
		end, escaped := s.scanString(i + 1)
		if end < 0 {
			return -1, 0
		}
		if escaped {
			return end + 1, kindEscapedString
		}
		return end + 1, kindString
	case '{':
		return s.scanObject(i, depth+1, nil), kindOther
	case '[':
		return s.scanArray(i, depth+1), kindOther
	case 't':
		return s.scanLiteral(i, "true"), kindOther
	case 'f':
		return s.scanLiteral(i, "false"), kindOther
	case 'n':
		return s.scanLiteral(i, "null"), kindNull
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return s.scanNumber(i)
		}
		return s.fail(ReasonInvalidJSON), 0
	}
}

// scanObject scans the object at i (data[i] == '{'). When top is non-nil the
// object is the record itself and the url/ts/id values are recorded in top.
func (s *scanner) scanObject(i, depth int, top *topFields) int {
	if depth > maxDepth {
		return s.fail(ReasonInvalidJSON)
	}
	data := s.data
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return s.fail(ReasonInvalidJSON)
		}
		keyEnd, keyEscaped := s.scanString(i + 1)
		if keyEnd < 0 {
			return -1
		}
		var slot *field
		if top != nil {
			slot = top.lookup(data[i+1:keyEnd], keyEscaped)
		}
		i = skipWS(data, keyEnd+1)
		if i >= len(data) || data[i] != ':' {
			return s.fail(ReasonInvalidJSON)
		}
		i = skipWS(data, i+1)
		start := i
		end, kind := s.scanValue(i, depth)
		if end < 0 {
			return -1
		}
		if slot != nil {
			if kind == kindString || kind == kindEscapedString {
				*slot = field{start: start + 1, end: end - 1, kind: kind}
			} else {
				*slot = field{start: start, end: end, kind: kind}
			}
		}
		i = skipWS(data, end)
		if i >= len(data) {
			return s.fail(ReasonInvalidJSON)
		}
		switch data[i] {
		case ',':
			i = skipWS(data, i+1)
		case '}':
			return i + 1
		default:
			return s.fail(ReasonInvalidJSON)
		}
	}
}

// scanArray scans the array at i (data[i] == '[').
func (s *scanner) scanArray(i, depth int) int {
	if depth > maxDepth {
		return s.fail(ReasonInvalidJSON)
	}
	data := s.data
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == ']' {
		return i + 1
	}
	for {
		end, _ := s.scanValue(i, depth)
		if end < 0 {
			return -1
		}
		i = skipWS(data, end)
		if i >= len(data) {
			return s.fail(ReasonInvalidJSON)
		}
		switch data[i] {
		case ',':
			i = skipWS(data, i+1)
		case ']':
			return i + 1
		default:
			return s.fail(ReasonInvalidJSON)
		}
	}
}

func (s *scanner) scanLiteral(i int, lit string) int {
	if len(s.data)-i < len(lit) || string(s.data[i:i+len(lit)]) != lit {
		return s.fail(ReasonInvalidJSON)
	}
	return i + len(lit)
}

// scanNumber scans a number per RFC 8259 and reports whether it is an
// integer literal (no fraction, no exponent).
func (s *scanner) scanNumber(i int) (int, valueKind) {
	data := s.data
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		i = skipDigits(data, i+1)
	default:
		return s.fail(ReasonInvalidJSON), 0
	}
	kind := kindInt
	if i < len(data) && data[i] == '.' {
		kind = kindFloat
		j := skipDigits(data, i+1)
		if j == i+1 {
			return s.fail(ReasonInvalidJSON), 0
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		kind = kindFloat
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := skipDigits(data, i)
		if j == i {
			return s.fail(ReasonInvalidJSON), 0
		}
		i = j
	}
	return i, kind
}

func skipDigits(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}

// scanString scans string contents starting at i (just past the opening
// quote). It returns the index of the closing quote and whether the string
// contains escapes.
func (s *scanner) scanString(i int) (int, bool) {
	data := s.data
	escaped := false
	for i < len(data) {
		// Skip plain bytes eight at a time; stop at the first byte that
		// needs a look.
		for i+8 <= len(data) {
			m := specialBytes(binary.LittleEndian.Uint64(data[i:]))
			if m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i == len(data) {
			break
		}
		c := data[i]
		if plainByte[c] {
			i++
			continue
		}
		switch {
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
	return s.fail(ReasonInvalidJSON), false
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
		raw = raw[i:]
		if len(raw) < 2 {
			return dst // unreachable for validated input
		}
		c := raw[1]
		raw = raw[2:]
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(raw, 0)
			raw = raw[min(4, len(raw)):]
			if r >= 0xD800 && r < 0xDC00 && len(raw) >= 6 {
				r2, _ := hex4(raw, 2)
				r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
				raw = raw[6:]
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, c)
		}
	}
	return dst
}

// parseInt64 parses an integer literal (as validated by scanNumber),
// reporting false on int64 overflow.
func parseInt64(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		n = n*10 + uint64(c-'0') // at most 19 digits: cannot wrap uint64
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}

// parseRFC3339 parses s exactly as time.Parse(time.RFC3339Nano, s) does and
// returns the result's UnixMilli, without allocating. Like time.Parse it
// accepts a few things stricter RFC 3339 readers reject: a one-digit hour,
// ',' as the fraction separator, any number of fraction digits (beyond the
// ninth ignored), and zone offsets up to +24:60.
func parseRFC3339(s []byte) (int64, bool) {
	// date: 2006-01-02T
	if len(s) < len("2006-01-02T") || s[4] != '-' || s[7] != '-' || s[10] != 'T' {
		return 0, false
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	if !ok1 || !ok2 || !ok3 || month < 1 || month > 12 {
		return 0, false
	}
	if day < 1 || day > daysIn(month, year) {
		return 0, false
	}
	s = s[11:]

	// time: 15:04:05, hour may have one digit
	hourLen := 1
	if len(s) >= 2 && isDigit(s[1]) {
		hourLen = 2
	}
	if len(s) < hourLen+len(":04:05") || s[hourLen] != ':' || s[hourLen+3] != ':' {
		return 0, false
	}
	hour, ok1 := digits(s[:hourLen])
	minute, ok2 := digits(s[hourLen+1 : hourLen+3])
	sec, ok3 := digits(s[hourLen+4 : hourLen+6])
	if !ok1 || !ok2 || !ok3 || hour > 23 || minute > 59 || sec > 59 {
		return 0, false
	}
	s = s[hourLen+6:]

	// optional fraction: [.,] followed by one or more digits
	var nsec int64
	if len(s) >= 2 && (s[0] == '.' || s[0] == ',') && isDigit(s[1]) {
		n := 1
		for n < len(s) && isDigit(s[n]) {
			if n <= 9 {
				nsec = nsec*10 + int64(s[n]-'0')
			}
			n++
		}
		for k := n; k <= 9; k++ {
			nsec *= 10
		}
		s = s[n:]
	}

	// zone: Z or ±hh:mm
	var offset int64
	switch {
	case len(s) == 1 && s[0] == 'Z':
	case len(s) == 6 && (s[0] == '+' || s[0] == '-') && s[3] == ':':
		hh, ok1 := digits(s[1:3])
		mm, ok2 := digits(s[4:6])
		if !ok1 || !ok2 || hh > 24 || mm > 60 {
			return 0, false
		}
		offset = (hh*60 + mm) * 60
		if s[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false
	}

	secs := daysFromCivil(year, month, day)*86400 + hour*3600 + minute*60 + sec - offset
	return secs*1000 + nsec/1e6, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// digits parses a short all-digit field.
func digits(b []byte) (int64, bool) {
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func daysIn(month, year int64) int64 {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the number of days from 1970-01-01 to the given
// proleptic Gregorian date (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400                     // [0, 399]
	doy := (153*((m+9)%12)+2)/5 + d - 1    // [0, 365], March-based
	doe := yoe*365 + yoe/4 - yoe/100 + doy // [0, 146096]
	return era*146097 + doe - 719468
}
