package stream

// Tests of JSON scanning (decode_scan.go): the nesting limit, and every
// truncated prefix of a valid record being rejected without a panic.

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDecodeDepth(t *testing.T) {
	// The top-level object is depth 1, so it may hold 511 nested containers.
	nest := func(n int, open, close string) string {
		return `{"url":"u","x":` + strings.Repeat(open, n) + strings.Repeat(close, n) + `}`
	}
	tests := []struct {
		name string
		in   string
		want Reason
	}{
		{"arrays at limit", nest(maxDepth-1, "[", "]"), ReasonNone},
		{"arrays over limit", nest(maxDepth, "[", "]"), ReasonInvalidJSON},
		{"objects at limit", `{"url":"u","x":` + strings.Repeat(`{"a":`, maxDepth-2) + "{}" + strings.Repeat("}", maxDepth-2) + `}`, ReasonNone},
		{"objects over limit", `{"url":"u","x":` + strings.Repeat(`{"a":`, maxDepth-1) + "{}" + strings.Repeat("}", maxDepth-1) + `}`, ReasonInvalidJSON},
		{"mixed over limit", `{"url":"u","x":` + strings.Repeat(`[{"a":`, maxDepth/2) + strings.Repeat("}]", maxDepth/2) + `}`, ReasonInvalidJSON},
		{"very deep unterminated", `{"x":` + strings.Repeat("[", 100000), ReasonInvalidJSON},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var d Decoder
			if _, r := d.Decode([]byte(tc.in)); r != tc.want {
				t.Errorf("reason = %v, want %v", r, tc.want)
			}
			if tc.want == ReasonNone && !json.Valid([]byte(tc.in)) {
				t.Errorf("test input is not valid JSON")
			}
		})
	}
}

// TestDecodeTruncations feeds every prefix of some valid records: none may
// be accepted (they are all incomplete objects) and none may panic.
func TestDecodeTruncations(t *testing.T) {
	records := []string{
		typical,
		typicalTS,
		`{"url":"caf\u00e9\ud83c\udf89","ts":"2026-01-01T00:00:00+01:00","id":-12,"x":[true,false,null,{"a":1.5e-3}]}`,
		"{\"url\":\"日本\",\"id\":\"\\\"\"}",
	}
	var d Decoder
	for _, rec := range records {
		if _, r := d.Decode([]byte(rec)); r != ReasonNone {
			t.Fatalf("full record %s rejected: %v", rec, r)
		}
		for n := 0; n < len(rec); n++ {
			if _, r := d.Decode([]byte(rec[:n])); r != ReasonInvalidJSON && r != ReasonInvalidUTF8 {
				t.Errorf("prefix %q: reason %v, want invalid_json or invalid_utf8", rec[:n], r)
			}
		}
	}
}
