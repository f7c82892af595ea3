package oracle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clickagg/clickagg/stream"
)

// The input mapping (input.*) as the README states it, applied on its own:
// the record is decoded with encoding/json into map[string]any (so with
// duplicate keys the last occurrence wins, ancestors included), and paths,
// timestamp formats and filters are parsed and applied here, never by
// package stream, whose InputOptions is only the type of the settings.

// Result is what the aggregator must do with one record.
type Result uint8

const (
	// Valid: counted.
	Valid Result = iota
	// Invalid: rejected with some reason.
	Invalid
	// Filtered: failed input.filter; counted nowhere and not a rejection.
	Filtered
)

func (r Result) String() string {
	switch r {
	case Valid:
		return "valid"
	case Invalid:
		return "invalid"
	case Filtered:
		return "filtered"
	}
	return fmt.Sprintf("Result(%d)", uint8(r))
}

// Mapping is an input mapping as the oracle applies it.
type Mapping struct {
	url, ts, id []string
	tsFormat    string
	recordTime  bool // ts_source record
	filter      []condition
}

type condition struct {
	path  []string
	equal bool // == (else !=)
	value string
}

// DefaultMapping is the mapping of the zero InputOptions: top-level url, ts
// and id, ts format auto, event time from the payload, no filter.
var DefaultMapping = mustMapping(stream.InputOptions{})

func mustMapping(in stream.InputOptions) *Mapping {
	m, err := NewMapping(in)
	if err != nil {
		panic(err)
	}
	return m
}

// NewMapping parses in by the README's rules.
func NewMapping(in stream.InputOptions) (*Mapping, error) {
	var m Mapping
	var err error
	for _, p := range []struct {
		dst     *[]string
		v, def  string
		setting string
	}{{&m.url, in.URL, "url", "input.url"}, {&m.ts, in.TS, "ts", "input.ts"}, {&m.id, in.ID, "id", "input.id"}} {
		v := p.v
		if v == "" {
			v = p.def
		}
		if *p.dst, err = splitPath(v); err != nil {
			return nil, fmt.Errorf("%s %q: %w", p.setting, v, err)
		}
	}
	switch in.TSFormat {
	case "", "auto":
		m.tsFormat = "auto"
	case "rfc3339", "unix_s", "unix_ms", "unix_us", "unix_ns":
		m.tsFormat = in.TSFormat
	default:
		return nil, fmt.Errorf("input.ts_format %q: unknown", in.TSFormat)
	}
	switch in.TSSource {
	case "", "event":
	case "record":
		m.recordTime = true
	default:
		return nil, fmt.Errorf("input.ts_source %q: unknown", in.TSSource)
	}
	if len(in.Filter) > 8 {
		return nil, fmt.Errorf("input.filter: %d conditions, at most 8", len(in.Filter))
	}
	for _, f := range in.Filter {
		c, err := parseCondition(f)
		if err != nil {
			return nil, fmt.Errorf("input.filter %q: %w", f, err)
		}
		m.filter = append(m.filter, c)
	}
	return &m, nil
}

// splitPath splits a dotted path into its keys; `\.` is a dot and `\\` a
// backslash within a key.
func splitPath(p string) ([]string, error) {
	var keys []string
	var key strings.Builder
	empty := true
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '\\':
			if i+1 == len(p) || (p[i+1] != '.' && p[i+1] != '\\') {
				return nil, errors.New(`a backslash must escape a dot or a backslash`)
			}
			i++
			key.WriteByte(p[i])
			empty = false
		case '.':
			if empty {
				return nil, errors.New("empty key")
			}
			keys = append(keys, key.String())
			key.Reset()
			empty = true
		default:
			key.WriteByte(c)
			empty = false
		}
	}
	if empty {
		return nil, errors.New("empty key")
	}
	return append(keys, key.String()), nil
}

// parseCondition splits "path==value" or "path!=value" at the first "=="
// or "!=" (a backslash escapes only a dot or a backslash, so neither can be
// escaped).
func parseCondition(s string) (condition, error) {
	for i := 0; i+1 < len(s); i++ {
		if s[i+1] != '=' || (s[i] != '=' && s[i] != '!') {
			continue
		}
		path, err := splitPath(s[:i])
		if err != nil {
			return condition{}, err
		}
		return condition{path: path, equal: s[i] == '=', value: s[i+2:]}, nil
	}
	return condition{}, errors.New("want path==value or path!=value")
}

// lookup walks path from obj; never into arrays. ok is false when absent.
func lookup(obj map[string]any, path []string) (v any, ok bool) {
	v = obj
	for _, k := range path {
		m, isObj := v.(map[string]any)
		if !isObj {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// scalarText is the text a filter compares: a string's decoded text, a
// number's, true's, false's or null's literal; objects and arrays have none.
func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
	case bool:
		return strconv.FormatBool(x), true
	case nil:
		return "null", true
	}
	return "", false
}

func (c condition) holds(obj map[string]any) bool {
	v, ok := lookup(obj, c.path)
	var eq bool
	if ok {
		text, scalar := scalarText(v)
		eq = scalar && text == c.value
	}
	return eq == c.equal
}

// isInteger reports whether s is ASCII digits with an optional leading
// '-': a JSON number without fraction or exponent, or the text of an
// integer in a string (where leading zeros are allowed).
func isInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// eventTime applies ts_format to the value at input.ts.
func (m *Mapping) eventTime(v any) (int64, bool) {
	var text string
	switch x := v.(type) {
	case string:
		if m.tsFormat == "auto" || m.tsFormat == "rfc3339" {
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return 0, false
			}
			return t.UnixMilli(), true
		}
		text = x // unix_*: an integer in a string
	case json.Number:
		if m.tsFormat == "rfc3339" {
			return 0, false
		}
		text = string(x)
	default:
		return 0, false
	}
	if !isInteger(text) {
		return 0, false
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, false
	}
	switch m.tsFormat {
	case "unix_s":
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			return 0, false
		}
		return n * 1000, true
	case "unix_us":
		return floorDiv(n, 1000), true
	case "unix_ns":
		return floorDiv(n, 1_000_000), true
	}
	return n, true // auto, unix_ms
}

// Decode applies the event format under the mapping to one record value
// with Kafka record timestamp recordTS (Unix ms). url, ts and id are set
// when the result is Valid; a numeric id is its literal text.
func (m *Mapping) Decode(v []byte, recordTS int64, maxURL int) (url string, ts int64, id string, res Result) {
	return m.decode(v, recordTS, true, maxURL)
}

// DecodeLine is Decode for a line of a file (`clickagg backfill`), which
// has no record timestamp: an event without a time is invalid, and the
// skew limit, being relative to the record timestamp, does not apply.
func (m *Mapping) DecodeLine(v []byte, maxURL int) (url string, ts int64, id string, res Result) {
	return m.decode(v, 0, false, maxURL)
}

func (m *Mapping) decode(v []byte, recordTS int64, hasRecord bool, maxURL int) (url string, ts int64, id string, res Result) {
	if maxURL <= 0 {
		maxURL = 2048
	}
	if !utf8.Valid(v) {
		return "", 0, "", Invalid
	}
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return "", 0, "", Invalid
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", 0, "", Invalid // trailing data
	}
	for _, c := range m.filter {
		if !c.holds(obj) {
			return "", 0, "", Filtered
		}
	}
	u, ok := lookup(obj, m.url)
	if url, _ = u.(string); !ok || u == nil || url == "" || len(url) > maxURL || strings.ContainsRune(url, 0) {
		return "", 0, "", Invalid
	}
	ts = recordTS
	if t, ok := lookup(obj, m.ts); ok && t != nil && !m.recordTime {
		if ts, ok = m.eventTime(t); !ok {
			return "", 0, "", Invalid
		}
	}
	if ts < minTS || ts >= maxTS {
		return "", 0, "", Invalid
	}
	// clickagg's default max_future_skew: an event time more than an hour
	// ahead of its record's timestamp is rejected.
	if hasRecord && ts-recordTS > time.Hour.Milliseconds() {
		return "", 0, "", Invalid
	}
	if x, ok := lookup(obj, m.id); ok && x != nil {
		switch x := x.(type) {
		case string:
			id = x
		case json.Number:
			if !isInteger(string(x)) {
				return "", 0, "", Invalid
			}
			id = string(x)
		default:
			return "", 0, "", Invalid
		}
	}
	return url, ts, id, Valid
}
