package stream

// Differential testing of mapped decoding: FuzzDecodeMapped (and
// TestDecodeMappedRandom, decode_mapped_random_test.go) compare Decode under
// an input mapping with referenceDecodeMapped, a slow reference that shares
// no code with the decoder: records decoded by encoding/json into
// map[string]any (where the last duplicate key wins, ancestors included),
// its own path and condition parsing, a walk through nested maps, and
// math/big for the timestamp units.

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var (
	refFormats = []string{"", "auto", "rfc3339", "unix_s", "unix_ms", "unix_us", "unix_ns", "unix"}
	refSources = []string{"", "event", "record", "kafka"}
)

// fuzzInput builds InputOptions from fuzz arguments: paths holds the url,
// ts and id paths and then the filter conditions, one a line; sel picks the
// ts format (low 3 bits) and source (next 2).
func fuzzInput(paths string, sel uint8) InputOptions {
	lines := strings.Split(paths, "\n")
	var in InputOptions
	for i, l := range lines {
		switch i {
		case 0:
			in.URL = l
		case 1:
			in.TS = l
		case 2:
			in.ID = l
		default:
			in.Filter = append(in.Filter, l)
		}
	}
	in.TSFormat = refFormats[sel&7]
	in.TSSource = refSources[sel>>3&3]
	return in
}

func FuzzDecodeMapped(f *testing.F) {
	for _, tc := range mappedCases {
		paths := strings.Join(append([]string{tc.in.URL, tc.in.TS, tc.in.ID}, tc.in.Filter...), "\n")
		sel := uint8(0)
		for i, s := range refFormats {
			if s == tc.in.TSFormat {
				sel = uint8(i)
			}
		}
		if tc.in.TSSource == "record" {
			sel |= 2 << 3
		}
		f.Add([]byte(tc.rec), paths, sel, uint8(0))
	}
	f.Add([]byte(trackerEvent), "context.page.url\ntimestamp\nmessageId\ntype==track", uint8(2), uint8(0))
	f.Fuzz(func(t *testing.T, input []byte, paths string, sel, maxURL uint8) {
		in := fuzzInput(paths, sel)
		checkMapped(t, input, in, int(maxURL))
	})
}

// checkMapped decodes input with the mapping in and compares the result with
// the reference.
func checkMapped(t *testing.T, input []byte, in InputOptions, maxURL int) {
	t.Helper()
	d, err := NewDecoder(in, maxURL)
	if _, ok := refParse(in); ok != (err == nil) {
		t.Fatalf("%+v: NewDecoder error %v, reference valid %v", in, err, ok)
	}
	if err != nil {
		return
	}
	orig := bytes.Clone(input)
	// Leave a value at every mapped path first: none may leak into the next record.
	d.Decode(staleRecord(in))
	c, r := d.Decode(input)
	if !bytes.Equal(input, orig) {
		t.Fatalf("Decode modified its input")
	}
	if r >= reasonCount && r != reasonFiltered {
		t.Fatalf("unknown reason %d", r)
	}
	if r != ReasonNone && (c.URL != nil || c.ID != nil || c.HasTime || c.TimeMs != 0) {
		t.Fatalf("rejected (%v) with non-zero Click %+v", r, c)
	}
	jsonOK, utf8OK := json.Valid(input), utf8.Valid(input)
	if !jsonOK || !utf8OK || jsonDepth(input) > maxDepth {
		if r != ReasonInvalidJSON && r != ReasonInvalidUTF8 {
			t.Fatalf("json.Valid=%v utf8.Valid=%v depth %d but reason = %v", jsonOK, utf8OK, jsonDepth(input), r)
		}
		return
	}
	want, wr := referenceDecodeMapped(input, in, d.MaxURLBytes)
	if r != wr {
		t.Fatalf("%s\nmapping %s: reason = %v, reference = %v", input, in, r, wr)
	}
	checkReference(t, c, want)
}

// staleRecord returns a record with a string at every path of in (where
// paths do not conflict).
func staleRecord(in InputOptions) []byte {
	p, _ := refParse(in)
	root := map[string]any{}
	for _, keys := range append([][]string{p.url, p.ts, p.id}, p.condPaths...) {
		m := root
		for i, k := range keys {
			if i == len(keys)-1 {
				if _, ok := m[k]; !ok {
					m[k] = "2026-01-01T00:00:00Z"
				}
				break
			}
			next, ok := m[k].(map[string]any)
			if !ok {
				if _, taken := m[k]; taken {
					break
				}
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
	}
	b, _ := json.Marshal(root)
	return b
}

// refMapping is InputOptions as the reference reads them.
type refMapping struct {
	url, ts, id []string // ts nil: ts_source record
	format      string
	condPaths   [][]string
	condNeg     []bool
	condValue   []string
}

// refParse parses and checks in, reporting false where Validate must fail.
func refParse(in InputOptions) (refMapping, bool) {
	var p refMapping
	var ok1, ok2, ok3 bool
	p.url, ok1 = refPath(in.URL, "url")
	p.ts, ok2 = refPath(in.TS, "ts")
	p.id, ok3 = refPath(in.ID, "id")
	if !ok1 || !ok2 || !ok3 || len(in.Filter) > 8 {
		return p, false
	}
	switch in.TSFormat {
	case "", "auto", "rfc3339", "unix_s", "unix_ms", "unix_us", "unix_ns":
		p.format = in.TSFormat
	default:
		return p, false
	}
	switch in.TSSource {
	case "", "event":
	case "record":
		p.ts = nil
	default:
		return p, false
	}
	for _, c := range in.Filter {
		if !utf8.ValidString(c) {
			return p, false
		}
		eq, ne := strings.Index(c, "=="), strings.Index(c, "!=")
		at, neg := eq, false
		if eq < 0 || (ne >= 0 && ne < eq) {
			at, neg = ne, true
		}
		if at < 0 {
			return p, false
		}
		path, ok := refPath(c[:at], "")
		if !ok {
			return p, false
		}
		p.condPaths = append(p.condPaths, path)
		p.condNeg = append(p.condNeg, neg)
		p.condValue = append(p.condValue, c[at+2:])
	}
	return p, true
}

// refPath splits a configured path into keys: '.' separates, '\' makes the
// next character ('.' or '\' only) part of the key.
func refPath(p, def string) ([]string, bool) {
	if p == "" {
		p = def
	}
	if p == "" || !utf8.ValidString(p) {
		return nil, false
	}
	var keys []string
	var key strings.Builder
	escaped := false
	for _, r := range p {
		switch {
		case escaped:
			if r != '.' && r != '\\' {
				return nil, false
			}
			key.WriteRune(r)
			escaped = false
		case r == '\\':
			escaped = true
		case r == '.':
			keys = append(keys, key.String())
			key.Reset()
		default:
			key.WriteRune(r)
		}
	}
	keys = append(keys, key.String())
	for _, k := range keys {
		if k == "" {
			return nil, false
		}
	}
	return keys, !escaped
}

// refLookup walks keys through nested objects only.
func refLookup(v any, keys []string) (any, bool) {
	for _, k := range keys {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// referenceDecodeMapped decodes like Decode with the mapping in. The input
// must be valid JSON, valid UTF-8, and nested at most maxDepth deep.
func referenceDecodeMapped(input []byte, in InputOptions, maxURL int) (Click, Reason) {
	p, ok := refParse(in)
	if !ok {
		panic("invalid mapping")
	}
	if !isObject(input) {
		return Click{}, ReasonInvalidJSON
	}
	for _, lit := range jsonStringLiterals(input) {
		if badSurrogates(lit) {
			return Click{}, ReasonInvalidUTF8
		}
	}
	dec := json.NewDecoder(bytes.NewReader(input))
	dec.UseNumber() // NB: keeps each number's literal text
	var rec map[string]any
	if err := dec.Decode(&rec); err != nil {
		return Click{}, ReasonInvalidJSON
	}
	if maxURL <= 0 {
		maxURL = DefaultMaxURLBytes
	}

	for i, keys := range p.condPaths {
		v, present := refLookup(rec, keys)
		equal := false
		if present {
			switch x := v.(type) {
			case string:
				equal = x == p.condValue[i]
			case json.Number:
				equal = string(x) == p.condValue[i]
			case bool:
				equal = strconv.FormatBool(x) == p.condValue[i]
			case nil:
				equal = p.condValue[i] == "null"
			}
		}
		if equal == p.condNeg[i] {
			return Click{}, reasonFiltered
		}
	}

	var c Click
	v, present := refLookup(rec, p.url)
	if !present || v == nil {
		return Click{}, ReasonMissingURL
	}
	url, isString := v.(string)
	switch {
	case !isString || strings.IndexByte(url, 0) >= 0:
		return Click{}, ReasonInvalidURL
	case url == "":
		return Click{}, ReasonEmptyURL
	case len(url) > maxURL:
		return Click{}, ReasonURLTooLong
	}
	c.URL = []byte(url)

	if p.ts != nil {
		if v, present := refLookup(rec, p.ts); present && v != nil {
			ms, ok := refTime(v, p.format)
			if !ok {
				return Click{}, ReasonInvalidTimestamp
			}
			if ms < MinEventTimeMs || ms >= MaxEventTimeMs {
				return Click{}, ReasonTimestampOutOfRange
			}
			c.TimeMs, c.HasTime = ms, true
		}
	}

	if v, present := refLookup(rec, p.id); present && v != nil {
		switch x := v.(type) {
		case string:
			c.ID = []byte(x)
		case json.Number:
			if !isIntegerLiteral([]byte(x)) {
				return Click{}, ReasonInvalidID
			}
			c.ID = []byte(x)
		default:
			return Click{}, ReasonInvalidID
		}
	}
	return c, ReasonNone
}

// refTime reads a ts value in the given format as Unix milliseconds.
func refTime(v any, format string) (int64, bool) {
	var digits string
	switch x := v.(type) {
	case string:
		if format == "" || format == "auto" || format == "rfc3339" {
			t, err := time.Parse(time.RFC3339Nano, x)
			return t.UnixMilli(), err == nil
		}
		digits = x
		if s := strings.TrimPrefix(x, "-"); s == "" || strings.Trim(s, "0123456789") != "" {
			return 0, false
		}
	case json.Number:
		if format == "rfc3339" || !isIntegerLiteral([]byte(x)) {
			return 0, false
		}
		digits = string(x)
	default:
		return 0, false
	}
	n, ok := new(big.Int).SetString(digits, 10)
	if !ok || !n.IsInt64() {
		return 0, false
	}
	switch format {
	case "unix_s":
		n.Mul(n, big.NewInt(1000))
	case "unix_us":
		n.Div(n, big.NewInt(1000)) // NB: Euclidean: floor for a positive divisor
	case "unix_ns":
		n.Div(n, big.NewInt(1_000_000))
	}
	if !n.IsInt64() {
		return 0, false
	}
	return n.Int64(), true
}

// TestReferenceDecodeMapped keeps the reference honest: it must agree with
// the mappedCases table wherever the input is valid JSON and UTF-8.
func TestReferenceDecodeMapped(t *testing.T) {
	n := 0
	for _, tc := range mappedCases {
		in := []byte(tc.rec)
		if !json.Valid(in) || !utf8.Valid(in) {
			continue
		}
		n++
		c, r := referenceDecodeMapped(in, tc.in, 0)
		if r != tc.reason {
			t.Errorf("%s: reference reason = %v, want %v", tc.name, r, tc.reason)
			continue
		}
		if r == ReasonNone {
			checkClick(t, c, decodeCase{url: tc.url, ms: tc.ms, hasTime: tc.hasTime, id: tc.id})
		}
	}
	if n < 100 {
		t.Errorf("only %d table cases were checked against the reference", n)
	}
}

// TestRefTime pins the reference's unit handling on a few values.
func TestRefTime(t *testing.T) {
	cases := []struct {
		v      any
		format string
		want   int64
		ok     bool
	}{
		{json.Number("-1"), "unix_us", -1, true},
		{json.Number("-1001"), "unix_us", -2, true},
		{"-1000001", "unix_ns", -2, true},
		{json.Number("9223372036854776"), "unix_s", 0, false},
		{json.Number(strconv.FormatInt(math.MinInt64, 10)), "unix_ns", -9223372036855, true},
		{"1.5", "unix_s", 0, false},
		{json.Number("1767225600000"), "rfc3339", 0, false},
	}
	for _, c := range cases {
		got, ok := refTime(c.v, c.format)
		if got != c.want || ok != c.ok {
			t.Errorf("refTime(%v, %s) = %d, %v; want %d, %v", c.v, c.format, got, ok, c.want, c.ok)
		}
	}
}
