package stream

// Tests of event-time handling (decode_ts.go): the accepted range's bounds,
// parseRFC3339 against time.Parse(time.RFC3339Nano) on edge cases
// (checkRFC3339 is shared with FuzzParseRFC3339), and the unix_* units
// (parseDecimal, scaleToMs).

import (
	"math"
	"testing"
	"time"
)

func TestValidEventTime(t *testing.T) {
	if got := time.UnixMilli(MinEventTimeMs).UTC().Format(time.RFC3339); got != "2000-01-01T00:00:00Z" {
		t.Errorf("MinEventTimeMs is %s", got)
	}
	if got := time.UnixMilli(MaxEventTimeMs).UTC().Format(time.RFC3339); got != "2100-01-01T00:00:00Z" {
		t.Errorf("MaxEventTimeMs is %s", got)
	}
	tests := []struct {
		ms   int64
		want bool
	}{
		{MinEventTimeMs - 1, false},
		{MinEventTimeMs, true},
		{jan2026, true},
		{MaxEventTimeMs - 1, true},
		{MaxEventTimeMs, false},
		{0, false},
		{-1, false},
		{1<<63 - 1, false},
		{-1 << 63, false},
	}
	for _, tc := range tests {
		if got := ValidEventTime(tc.ms); got != tc.want {
			t.Errorf("ValidEventTime(%d) = %v, want %v", tc.ms, got, tc.want)
		}
	}
}

func TestParseRFC3339(t *testing.T) {
	inputs := []string{
		"2026-01-01T00:00:00Z",
		"2026-01-01T00:00:00.123Z",
		"2026-01-01T00:00:00,123Z",
		"2026-01-01T00:00:00.1234567891234Z",
		"2026-01-01T23:59:59.999999999+23:59",
		"2026-01-01T00:00:00-23:59",
		"2026-01-01T00:00:00+24:00",
		"2026-01-01T00:00:00+24:60",
		"2026-01-01T00:00:00+24:61",
		"2026-01-01T00:00:00+25:00",
		"2026-01-01T00:00:00*01:00",
		"2026-01-01T00:00:00+1:00",
		"2026-01-01T00:00:00+01:0",
		"2026-01-01T00:00:00+01:000",
		"2026-01-01T0:00:00Z",
		"2026-01-01T9:59:59Z",
		"2026-01-01T:00:00Z",
		"2026-01-01T000:00:00Z",
		"2026-01-01T00:0:00Z",
		"2026-01-01T00:00:0Z",
		"2026-01-01T00:00:00",
		"2026-01-01T00:00:00.",
		"2026-01-01T00:00:00.Z",
		"2026-01-01T00:00:00.5",
		"2026-01-01T00:00:00ZZ",
		"2026-01-01T00:00:00z",
		"2026-01-01T23:60:00Z",
		"2026-01-01T23:00:60Z",
		"2026-1-01T00:00:00Z",
		"2026-01-1T00:00:00Z",
		"226-01-01T00:00:00Z",
		"+026-01-01T00:00:00Z",
		"-026-01-01T00:00:00Z",
		"20260-01-01T00:00:00Z",
		"0000-01-01T00:00:00Z",
		"0000-02-29T00:00:00Z",
		"0001-01-01T00:00:00Z",
		"1900-02-29T00:00:00Z",
		"2000-02-29T00:00:00Z",
		"2100-02-29T00:00:00Z",
		"9999-12-31T23:59:59.999999999-24:00",
		"1969-12-31T23:59:59.9995Z",
		"2026-00-01T00:00:00Z",
		"2026-04-31T00:00:00Z",
		"2026-04-00T00:00:00Z",
		"2026-01-01T00:00:00+00:00",
		"2026-01-01T00:00:00 +00:00",
		" 2026-01-01T00:00:00Z",
		"2026-01-01",
		"",
	}
	for _, s := range inputs {
		checkRFC3339(t, s)
	}
}

// checkRFC3339 compares parseRFC3339 with time.Parse(time.RFC3339Nano).
func checkRFC3339(t *testing.T, s string) {
	t.Helper()
	ms, ok := parseRFC3339([]byte(s))
	want, err := time.Parse(time.RFC3339Nano, s)
	if ok != (err == nil) {
		t.Fatalf("parseRFC3339(%q) ok = %v, time.Parse error = %v", s, ok, err)
	}
	if ok && ms != want.UnixMilli() {
		t.Fatalf("parseRFC3339(%q) = %d, time.Parse gives %d", s, ms, want.UnixMilli())
	}
}

func TestScaleToMs(t *testing.T) {
	cases := []struct {
		n      int64
		format tsFormat
		want   int64
		ok     bool
	}{
		{1, tsUnixS, 1000, true},
		{-1, tsUnixS, -1000, true},
		{math.MaxInt64 / 1000, tsUnixS, math.MaxInt64 / 1000 * 1000, true},
		{math.MaxInt64/1000 + 1, tsUnixS, 0, false},
		{math.MinInt64 / 1000, tsUnixS, math.MinInt64 / 1000 * 1000, true},
		{math.MinInt64/1000 - 1, tsUnixS, 0, false},
		{-5, tsUnixMs, -5, true},
		{999, tsUnixUs, 0, true},
		{1000, tsUnixUs, 1, true},
		{-1, tsUnixUs, -1, true},
		{-1000, tsUnixUs, -1, true},
		{-1001, tsUnixUs, -2, true},
		{-999999, tsUnixNs, -1, true},
		{-1000000, tsUnixNs, -1, true},
		{-1000001, tsUnixNs, -2, true},
		{math.MinInt64, tsUnixNs, -9223372036855, true},
		{math.MaxInt64, tsUnixNs, 9223372036854, true},
	}
	for _, c := range cases {
		got, ok := scaleToMs(c.n, c.format)
		if got != c.want || ok != c.ok {
			t.Errorf("scaleToMs(%d, %d) = %d, %v; want %d, %v", c.n, c.format, got, ok, c.want, c.ok)
		}
	}
}

func TestParseDecimal(t *testing.T) {
	ok := map[string]int64{
		"0": 0, "-0": 0, "7": 7, "-7": -7, "007": 7, "-007": -7,
		"9223372036854775807":     math.MaxInt64,
		"-9223372036854775808":    math.MinInt64,
		"0009223372036854775807":  math.MaxInt64,
		"-0009223372036854775808": math.MinInt64,
	}
	for s, want := range ok {
		if got, valid := parseDecimal([]byte(s)); !valid || got != want {
			t.Errorf("parseDecimal(%q) = %d, %v; want %d", s, got, valid, want)
		}
	}
	for _, s := range []string{"", "-", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "9223372036854775808", "-9223372036854775809", "--1", "1-"} {
		if got, valid := parseDecimal([]byte(s)); valid {
			t.Errorf("parseDecimal(%q) = %d, want invalid", s, got)
		}
	}
}
