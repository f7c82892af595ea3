package stream

// The record decoder's entry point: Click, the Reason codes a record is
// rejected with (also used by Operator for its skew checks) and their metric
// names, and Decoder. Decode scans the whole record first (decode_scan.go,
// decode_string.go), noting the values at the mapped paths (decode_path.go,
// configured by InputOptions in input.go), then applies the filter, then
// checks the url (missing, invalid, empty, too long), then ts (parsed in
// decode_ts.go), then id.

import (
	"bytes"
	"strconv"
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

// reasonFiltered is what Decode returns for a record that input.filter
// excludes. It is not a rejection and not in Reasons(): the operator turns
// it into Outcome.Filtered.
const reasonFiltered Reason = 255

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
	if r == reasonFiltered {
		return "filtered"
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// DefaultMaxURLBytes is the URL length limit used when Decoder.MaxURLBytes is
// zero or negative.
const DefaultMaxURLBytes = 2048

// maxRetainedScratch bounds the scratch buffer a Decoder keeps between calls,
// so one huge escaped record does not pin memory forever.
const maxRetainedScratch = 64 << 10

// Decoder decodes click JSON. The zero value reads the top-level url, ts
// and id and uses DefaultMaxURLBytes; NewDecoder makes one for any
// InputOptions. Not safe for concurrent use.
type Decoder struct {
	// MaxURLBytes limits the decoded URL length in bytes; <= 0 means
	// DefaultMaxURLBytes.
	MaxURLBytes int

	scratch []byte
	m       *mapping        // nil: the default mapping (top-level url, ts, id)
	slots   [maxSlots]field // where the values at m's paths lie in the record
}

// Decode decodes one record value. On success it returns the click and
// ReasonNone; otherwise it returns a zero Click and the rejection reason.
//
// The record is always scanned in full first, so structural problems win:
//
//  1. invalid_json / invalid_utf8: whichever problem comes first in the
//     record (the whole record must be one valid JSON object with valid
//     UTF-8 in every string, ignored fields included);
//  2. the filter: a record failing a condition is returned with a Reason
//     outside Reasons() whose String is "filtered" (not a rejection: the
//     operator reports it as Outcome.Filtered);
//  3. url: missing_url, invalid_url, empty_url, url_too_long, in that order;
//  4. ts: invalid_timestamp, timestamp_out_of_range;
//  5. id: invalid_id.
//
// Keys match exactly (case-sensitive, after unescaping); with duplicate keys
// the last occurrence wins (see InputOptions for paths). Decode never panics
// and allocates only when an escaped url, ts or id outgrows the scratch
// buffer.
func (d *Decoder) Decode(value []byte) (Click, Reason) {
	if cap(d.scratch) > maxRetainedScratch {
		d.scratch = nil
	}
	d.scratch = d.scratch[:0]

	m := d.m
	var s scanner
	s.data = value
	var f topFields
	i := skipWS(value, 0)
	if i >= len(value) || value[i] != '{' {
		return Click{}, ReasonInvalidJSON
	}
	if m == nil {
		i = s.scanObject(i, 1, &f)
	} else {
		for j := range m.nslots {
			d.slots[j].kind = kindAbsent
		}
		s.m, s.slots = m, &d.slots
		i = s.scanMappedObject(i, 1, 0)
	}
	if i < 0 {
		return Click{}, s.err
	}
	if skipWS(value, i) != len(value) {
		return Click{}, ReasonInvalidJSON
	}

	format := tsAuto
	if m != nil {
		if len(m.filters) > 0 && !m.pass(value, &d.slots) {
			return Click{}, reasonFiltered
		}
		f.url, f.id = d.slots[m.url], d.slots[m.id]
		if m.ts >= 0 {
			f.ts = d.slots[m.ts]
		}
		format = m.tsFormat
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
	switch {
	case f.ts.kind == kindAbsent || f.ts.kind == kindNull:
		ok = true
	case f.ts.kind == kindInt && format == tsAuto: // NB: the common cases inline
		c.TimeMs, ok = parseInt64(f.ts.bytes(value))
		c.HasTime = true
	case f.ts.kind == kindString && format <= tsRFC3339:
		c.TimeMs, ok = parseRFC3339(f.ts.bytes(value))
		c.HasTime = true
	default:
		c.TimeMs, ok = d.parseTime(value, f.ts, format)
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

// parseTime reads a present, non-null ts value f in the given format,
// reporting false when it is invalid; the range is not checked.
func (d *Decoder) parseTime(value []byte, f field, format tsFormat) (int64, bool) {
	switch f.kind {
	case kindString:
		return parseTimeString(f.bytes(value), format)
	case kindEscapedString:
		n := len(d.scratch)
		ms, ok := parseTimeString(d.unescape(f.bytes(value)), format)
		d.scratch = d.scratch[:n]
		return ms, ok
	case kindInt:
		if format == tsRFC3339 {
			return 0, false
		}
		ms, ok := parseInt64(f.bytes(value))
		if !ok {
			return 0, false
		}
		return scaleToMs(ms, format)
	}
	return 0, false
}

// unescape appends the decoded form of the (already validated) string
// contents raw to the scratch buffer and returns it, capacity-limited so a
// caller's append cannot clobber later scratch data.
func (d *Decoder) unescape(raw []byte) []byte {
	n := len(d.scratch)
	d.scratch = appendUnescaped(d.scratch, raw)
	return d.scratch[n:len(d.scratch):len(d.scratch)]
}
