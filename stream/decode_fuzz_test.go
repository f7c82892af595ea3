package stream

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecode checks that Decode never panics, never modifies its input,
// rejects everything that is not valid JSON and valid UTF-8, and otherwise
// agrees exactly with referenceDecode, which is built on encoding/json.
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.in), uint8(max(0, min(tc.maxURL, 255))))
	}
	for _, br := range benchRecords {
		f.Add([]byte(br.in), uint8(0))
	}
	f.Fuzz(func(t *testing.T, input []byte, maxURL uint8) {
		orig := bytes.Clone(input)
		d := Decoder{MaxURLBytes: int(maxURL)}
		// Leave stale data in the scratch buffer first.
		d.Decode([]byte(`{"url":"\/stale\/url","ts":"2026-01-01T00:00:00\u005a","id":"\/stale"}`))
		c, r := d.Decode(input)
		if !bytes.Equal(input, orig) {
			t.Fatalf("Decode modified its input")
		}
		if r >= reasonCount {
			t.Fatalf("unknown reason %d", r)
		}
		if r != ReasonNone && (c.URL != nil || c.ID != nil || c.HasTime || c.TimeMs != 0) {
			t.Fatalf("rejected (%v) with non-zero Click %+v", r, c)
		}

		jsonOK, utf8OK := json.Valid(input), utf8.Valid(input)
		if !jsonOK || !utf8OK {
			if r != ReasonInvalidJSON && r != ReasonInvalidUTF8 {
				t.Fatalf("json.Valid=%v utf8.Valid=%v but reason = %v", jsonOK, utf8OK, r)
			}
			// Valid JSON can only hold invalid UTF-8 inside strings, so a
			// valid object nested no deeper than allowed is invalid_utf8.
			if jsonOK && isObject(input) && jsonDepth(input) <= maxDepth && r != ReasonInvalidUTF8 {
				t.Fatalf("valid JSON with invalid UTF-8 in strings: reason = %v, want invalid_utf8", r)
			}
			return
		}
		if jsonDepth(input) > maxDepth {
			if r != ReasonInvalidJSON && r != ReasonInvalidUTF8 {
				t.Fatalf("nesting deeper than %d: reason = %v", maxDepth, r)
			}
			return
		}

		want, wr := referenceDecode(input, d.MaxURLBytes)
		if r != wr {
			t.Fatalf("reason = %v, reference = %v", r, wr)
		}
		checkReference(t, c, want)
	})
}

// checkReference fails t unless click c equals the reference decoder's.
func checkReference(t *testing.T, c, want Click) {
	t.Helper()
	if !bytes.Equal(c.URL, want.URL) {
		t.Fatalf("URL = %q, reference = %q", c.URL, want.URL)
	}
	if c.HasTime != want.HasTime || c.TimeMs != want.TimeMs {
		t.Fatalf("time = (%d, %v), reference = (%d, %v)", c.TimeMs, c.HasTime, want.TimeMs, want.HasTime)
	}
	if (c.ID == nil) != (want.ID == nil) || !bytes.Equal(c.ID, want.ID) {
		t.Fatalf("ID = %q (nil %v), reference = %q (nil %v)", c.ID, c.ID == nil, want.ID, want.ID == nil)
	}
}

// FuzzParseRFC3339 checks that parseRFC3339 agrees with
// time.Parse(time.RFC3339Nano): same accept/reject and same UnixMilli.
func FuzzParseRFC3339(f *testing.F) {
	for _, s := range []string{
		"2026-01-01T00:00:00Z",
		"2026-01-01T00:00:00.123Z",
		"2026-01-01T1:00:00,5+05:30",
		"2024-02-29T23:59:59.999999999-24:60",
		"0000-01-01T00:00:00Z",
		"9999-12-31T23:59:59.1234567890123+00:00",
		"2026-01-01T24:00:00Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkRFC3339(t, s)
	})
}

// referenceDecode is a slow, obviously-correct decoder built on
// encoding/json. The input must be valid JSON, valid UTF-8, and nested at
// most maxDepth deep.
func referenceDecode(input []byte, maxURL int) (Click, Reason) {
	if !isObject(input) {
		return Click{}, ReasonInvalidJSON
	}
	for _, lit := range jsonStringLiterals(input) {
		if badSurrogates(lit) {
			return Click{}, ReasonInvalidUTF8
		}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(input, &m); err != nil {
		return Click{}, ReasonInvalidJSON
	}
	if maxURL <= 0 {
		maxURL = DefaultMaxURLBytes
	}

	var c Click
	raw, ok := m["url"]
	if !ok || string(raw) == "null" {
		return Click{}, ReasonMissingURL
	}
	var url string
	if raw[0] != '"' || json.Unmarshal(raw, &url) != nil || strings.IndexByte(url, 0) >= 0 {
		return Click{}, ReasonInvalidURL
	}
	switch {
	case url == "":
		return Click{}, ReasonEmptyURL
	case len(url) > maxURL:
		return Click{}, ReasonURLTooLong
	}
	c.URL = []byte(url)

	if raw, ok := m["ts"]; ok && string(raw) != "null" {
		c.HasTime = true
		switch {
		case raw[0] == '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return Click{}, ReasonInvalidTimestamp
			}
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return Click{}, ReasonInvalidTimestamp
			}
			c.TimeMs = t.UnixMilli()
		case isIntegerLiteral(raw):
			n, err := strconv.ParseInt(string(raw), 10, 64)
			if err != nil {
				return Click{}, ReasonInvalidTimestamp
			}
			c.TimeMs = n
		default:
			return Click{}, ReasonInvalidTimestamp
		}
		if c.TimeMs < MinEventTimeMs || c.TimeMs >= MaxEventTimeMs {
			return Click{}, ReasonTimestampOutOfRange
		}
	}

	if raw, ok := m["id"]; ok && string(raw) != "null" {
		switch {
		case raw[0] == '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return Click{}, ReasonInvalidID
			}
			c.ID = append([]byte{}, s...)
		case isIntegerLiteral(raw):
			c.ID = append([]byte{}, raw...)
		default:
			return Click{}, ReasonInvalidID
		}
	}
	return c, ReasonNone
}

// isObject reports whether the JSON text data starts with an object.
func isObject(data []byte) bool {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] == '{'
}

// isIntegerLiteral reports whether the raw JSON value is a number without
// fraction or exponent.
func isIntegerLiteral(raw []byte) bool {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return false
	}
	return !bytes.ContainsAny(raw, ".eE")
}

// badSurrogates reports whether the JSON string literal lit (quotes
// included) holds a \u escape forming a lone or mismatched surrogate.
// encoding/json decodes those to U+FFFD, so it looks for more U+FFFD in the
// decoded string than the literal spells, literally or as \ufffd.
func badSurrogates(lit []byte) bool {
	var s string
	if err := json.Unmarshal(lit, &s); err != nil {
		return false
	}
	spelled := bytes.Count(lit, []byte("\uFFFD"))
	for i := 0; i < len(lit); i++ {
		if lit[i] != '\\' {
			continue
		}
		if lit[i+1] == 'u' && strings.EqualFold(string(lit[i+2:i+6]), "fffd") {
			spelled++
		}
		i++ // skip the escaped character
	}
	return strings.Count(s, "\uFFFD") > spelled
}

// jsonStringLiterals returns every string literal (keys and values, quotes
// included) in the valid JSON text data.
func jsonStringLiterals(data []byte) [][]byte {
	var lits [][]byte
	for i := 0; i < len(data); i++ {
		if data[i] != '"' {
			continue
		}
		start := i
		for i++; data[i] != '"'; i++ {
			if data[i] == '\\' {
				i++
			}
		}
		lits = append(lits, data[start:i+1])
	}
	return lits
}

// jsonDepth returns the maximum nesting of objects and arrays in the valid
// JSON text data.
func jsonDepth(data []byte) int {
	depth, deepest := 0, 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			for i++; i < len(data) && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
			deepest = max(deepest, depth)
		case '}', ']':
			depth--
		}
	}
	return deepest
}

// TestReferenceDecode keeps the reference honest: it must agree with the
// table wherever the table's input is valid JSON and UTF-8.
func TestReferenceDecode(t *testing.T) {
	n := 0
	for _, tc := range decodeCases {
		in := []byte(tc.in)
		if !json.Valid(in) || !utf8.Valid(in) || jsonDepth(in) > maxDepth {
			continue
		}
		n++
		c, r := referenceDecode(in, tc.maxURL)
		if r != tc.reason {
			t.Errorf("%s: reference reason = %v, want %v", tc.name, r, tc.reason)
			continue
		}
		if r == ReasonNone {
			checkClick(t, c, tc)
		}
	}
	if n < 100 {
		t.Errorf("only %d table cases were checked against the reference", n)
	}
}
