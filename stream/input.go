package stream

// The input mapping's configuration: InputOptions (where in a record's JSON
// the url, ts and id are, how ts is read, which records are clicks at all),
// its validation, its canonical text, the parsing of paths and filter
// conditions, and NewDecoder, which compiles it (decode_path.go holds the
// compiled form).

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// InputOptions map a record's JSON onto a click. The zero value is today's
// behaviour: top-level url, ts (auto), id.
//
// Paths are dot-separated object keys: "context.page.url" is the "url" key
// of the "page" object in the "context" object of the record. A key that
// holds a dot or a backslash is written with a backslash before it: `a\.b`
// is the one key "a.b", `a\\b` the key `a\b`; no other escape exists. An
// empty key ("a..b", a leading or trailing dot) is a configuration error,
// and so is a path (or filter condition) that is not valid UTF-8.
// Keys match exactly, after JSON unescaping (case-sensitive). A path never
// descends into an array: a path through an array, string, number, true,
// false or null is absent. With duplicate keys the last occurrence wins,
// for everything below it too: in {"page":{"url":"a"},"page":{"title":"x"}}
// there is no page.url.
//
// The url at its path is checked as the top-level "url" always was
// (missing_url when absent or null, invalid_url, empty_url, url_too_long),
// and so is the id.
//
// TSFormat says how the value at the ts path is read:
//   - "auto" (or ""): an integer is Unix milliseconds, a string is RFC 3339.
//     A 10-digit number of seconds is therefore read as milliseconds, a time
//     in 1970, and rejected as timestamp_out_of_range: use unix_s.
//   - "rfc3339": a string holding an RFC 3339 time; nothing else.
//   - "unix_s", "unix_ms", "unix_us", "unix_ns": an integer, or a string
//     holding one (ASCII digits with an optional leading '-'), in seconds,
//     milliseconds, microseconds or nanoseconds since the Unix epoch. It is
//     scaled to milliseconds; microseconds and nanoseconds round toward
//     negative infinity (floor division), so a time before 1970 still lands
//     in the right window. A fraction, an exponent or an overflow of int64
//     (before or after scaling) is invalid_timestamp.
//
// A time outside [MinEventTimeMs, MaxEventTimeMs) is timestamp_out_of_range;
// an absent or null ts means the Kafka record timestamp. TSSource "record"
// ignores the payload's ts entirely, even a malformed one, and always uses
// the Kafka record timestamp.
//
// Filter conditions "path==value" and "path!=value" (split at the first
// "==" or "!=", so a filter path cannot hold either; at most
// MaxInputFilters of them) must all hold for the record to be a click; a record failing one is filtered (Outcome.Filtered):
// not a rejection, counted nowhere. Filtering is decided after the record is
// found to be valid JSON and before its url is looked at. The value is
// compared with the JSON value at the path: a string by its unescaped text,
// a number, true, false or null by its literal text (so "n==1" matches 1
// and "1" but not 1.0); an object or an array equals nothing. At an absent
// path "==" fails and "!=" holds. Neither side is trimmed: "type == click"
// compares the key "type " with " click".
type InputOptions struct {
	URL, TS, ID string   // dotted paths into the JSON object; "" means "url", "ts", "id"
	TSFormat    string   // "" or "auto", "rfc3339", "unix_s", "unix_ms", "unix_us", "unix_ns"
	TSSource    string   // "" or "event" (the payload's time; the Kafka record timestamp when absent), "record" (always the Kafka record timestamp)
	Filter      []string // conditions "path==value" or "path!=value" that must all hold
}

// MaxInputFilters is the most conditions InputOptions.Filter may hold.
const MaxInputFilters = 8

var tsFormats = map[string]tsFormat{
	"": tsAuto, "auto": tsAuto, "rfc3339": tsRFC3339,
	"unix_s": tsUnixS, "unix_ms": tsUnixMs, "unix_us": tsUnixUs, "unix_ns": tsUnixNs,
}

// parsedCond is a filter condition split into its parts.
type parsedCond struct {
	path  []string
	neg   bool
	value string
}

// Validate reports the first setting that is not valid, as a one-line
// error naming it.
func (o InputOptions) Validate() error {
	_, err := o.compile()
	return err
}

// compile validates o and builds its mapping: nil for the default one,
// which Decode reads without a mapping.
func (o InputOptions) compile() (*mapping, error) {
	url, err := parseRolePath("input.url", o.URL, "url")
	if err != nil {
		return nil, err
	}
	ts, err := parseRolePath("input.ts", o.TS, "ts")
	if err != nil {
		return nil, err
	}
	format, ok := tsFormats[o.TSFormat]
	if !ok {
		return nil, fmt.Errorf("input.ts_format %q: must be auto, rfc3339, unix_s, unix_ms, unix_us or unix_ns", o.TSFormat)
	}
	switch o.TSSource {
	case "", "event":
	case "record":
		ts = nil
	default:
		return nil, fmt.Errorf("input.ts_source %q: must be event or record", o.TSSource)
	}
	id, err := parseRolePath("input.id", o.ID, "id")
	if err != nil {
		return nil, err
	}
	if len(o.Filter) > MaxInputFilters {
		return nil, fmt.Errorf("input.filter: at most %d conditions, got %d", MaxInputFilters, len(o.Filter))
	}
	conds := make([]parsedCond, 0, len(o.Filter))
	for _, c := range o.Filter {
		pc, err := parseCondition(c)
		if err != nil {
			return nil, fmt.Errorf("input.filter %q: %w", c, err)
		}
		conds = append(conds, pc)
	}
	if o.String() == defaultInput {
		return nil, nil
	}
	return compileMapping(url, ts, id, format, conds), nil
}

// defaultInput is the zero InputOptions' String.
var defaultInput = InputOptions{}.String()

func parseRolePath(setting, path, def string) ([]string, error) {
	if path == "" {
		path = def
	}
	keys, err := parsePath(path)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", setting, path, err)
	}
	return keys, nil
}

// parsePath splits a dotted path into its keys, undoing the \. and \\
// escapes.
func parsePath(p string) ([]string, error) {
	if p == "" {
		return nil, errors.New("empty path")
	}
	if !utf8.ValidString(p) {
		return nil, errors.New("path is not valid UTF-8")
	}
	var keys []string
	var key []byte
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '\\':
			if i+1 == len(p) {
				return nil, errors.New(`trailing backslash in path (a key's dot or backslash is escaped as \. or \\)`)
			}
			i++
			if p[i] != '.' && p[i] != '\\' {
				r, _ := utf8.DecodeRuneInString(p[i:])
				return nil, fmt.Errorf(`bad escape \%c in path: only \. and \\ are escapes`, r)
			}
			key = append(key, p[i])
		case '.':
			if len(key) == 0 {
				return nil, errors.New("empty key in path")
			}
			keys = append(keys, string(key))
			key = key[:0]
		default:
			key = append(key, c)
		}
	}
	if len(key) == 0 {
		return nil, errors.New("empty key in path")
	}
	return append(keys, string(key)), nil
}

// formatPath is parsePath's inverse: for a valid path it returns the same
// text, so it is the path's canonical form.
func formatPath(keys []string) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('.')
		}
		for j := 0; j < len(k); j++ {
			if k[j] == '.' || k[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(k[j])
		}
	}
	return b.String()
}

// parseCondition parses "path==value" or "path!=value", split at the first
// "==" or "!=".
func parseCondition(c string) (parsedCond, error) {
	if !utf8.ValidString(c) {
		return parsedCond{}, errors.New("not valid UTF-8")
	}
	for i := 0; i+1 < len(c); i++ {
		if c[i+1] != '=' || (c[i] != '=' && c[i] != '!') {
			continue
		}
		keys, err := parsePath(c[:i])
		if err != nil {
			return parsedCond{}, err
		}
		return parsedCond{path: keys, neg: c[i] == '!', value: c[i+2:]}, nil
	}
	return parsedCond{}, errors.New("must be path==value or path!=value")
}

// String returns the canonical text of the mapping: options that map
// records alike give the same text (the zero value and the explicit
// defaults, filters in any order or repeated), and a change to the mapping
// changes it. With ts_source record, ts and ts_format play no part and are
// left out. Invalid settings appear as given, quoted.
func (o InputOptions) String() string {
	var b strings.Builder
	path := func(name, p, def string) {
		if p == "" {
			p = def
		}
		if keys, err := parsePath(p); err == nil {
			p = formatPath(keys)
		}
		fmt.Fprintf(&b, "%s=%s ", name, strconv.Quote(p))
	}
	enum := func(name, v, def string, ok bool) {
		if v == "" {
			v = def
		}
		if !ok {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(&b, "%s=%s ", name, v)
	}
	path("url", o.URL, "url")
	record := o.TSSource == "record"
	if !record {
		path("ts", o.TS, "ts")
		_, ok := tsFormats[o.TSFormat]
		enum("ts_format", o.TSFormat, "auto", ok)
	}
	enum("ts_source", o.TSSource, "event", o.TSSource == "" || o.TSSource == "event" || record)
	path("id", o.ID, "id")
	conds := make([]string, 0, len(o.Filter))
	for _, c := range o.Filter {
		if pc, err := parseCondition(c); err == nil {
			op := "=="
			if pc.neg {
				op = "!="
			}
			c = formatPath(pc.path) + op + pc.value
		}
		conds = append(conds, c)
	}
	slices.Sort(conds)
	for _, c := range slices.Compact(conds) {
		fmt.Fprintf(&b, "filter=%s ", strconv.Quote(c))
	}
	return strings.TrimSuffix(b.String(), " ")
}

// NewDecoder returns a Decoder for the mapping in, with maxURL as its
// MaxURLBytes, or in's Validate error.
func NewDecoder(in InputOptions, maxURL int) (*Decoder, error) {
	m, err := in.compile()
	if err != nil {
		return nil, err
	}
	return &Decoder{MaxURLBytes: maxURL, m: m}, nil
}
