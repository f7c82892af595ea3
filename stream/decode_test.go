package stream

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// sp returns a pointer to s, for expected IDs (nil means "ID must be nil").
func sp(s string) *string { return &s }

type decodeCase struct {
	name   string
	in     string
	maxURL int // Decoder.MaxURLBytes; 0 means default
	reason Reason
	// Expected result when reason is ReasonNone.
	url     string
	ms      int64
	hasTime bool
	id      *string
}

const (
	jan2026   int64 = 1767225600000 // 2026-01-01T00:00:00Z
	typical         = `{"url":"https://example.com/a/b?c=1","ts":1767225600000,"id":"e-123"}`
	typicalTS       = `{"url":"https://example.com/a/b?c=1","ts":"2026-01-01T00:00:00.123Z","id":"e-123"}`
)

var decodeCases = []decodeCase{
	// Accepted shapes.
	{name: "typical", in: typical, url: "https://example.com/a/b?c=1", ms: jan2026, hasTime: true, id: sp("e-123")},
	{name: "typical rfc3339", in: typicalTS, url: "https://example.com/a/b?c=1", ms: jan2026 + 123, hasTime: true, id: sp("e-123")},
	{name: "url only", in: `{"url":"u"}`, url: "u"},
	{name: "ts null id null", in: `{"url":"u","ts":null,"id":null}`, url: "u"},
	{name: "empty id string", in: `{"url":"u","id":""}`, url: "u", id: sp("")},
	{name: "numeric id", in: `{"url":"u","id":12345}`, url: "u", id: sp("12345")},
	{name: "negative numeric id", in: `{"url":"u","id":-7}`, url: "u", id: sp("-7")},
	{name: "zero id", in: `{"url":"u","id":0}`, url: "u", id: sp("0")},
	{name: "huge numeric id kept literally", in: `{"url":"u","id":123456789012345678901234567890}`, url: "u", id: sp("123456789012345678901234567890")},
	{name: "field order", in: `{"id":"x","ts":1767225600000,"url":"u"}`, url: "u", ms: jan2026, hasTime: true, id: sp("x")},
	{name: "whitespace everywhere", in: " \t\r\n{ \n\"url\" \t: \r\"u\" ,\n \"ts\" : 1767225600000 , \"id\" : 1 } \n\t\r ", url: "u", ms: jan2026, hasTime: true, id: sp("1")},
	{name: "non-ascii url", in: `{"url":"https://example.com/café/日本/🎉"}`, url: "https://example.com/café/日本/🎉"},
	{name: "literal U+FFFD is valid", in: "{\"url\":\"a\uFFFDb\"}", url: "a\uFFFDb"},
	{name: "escaped U+FFFD is valid", in: `{"url":"a\ufffdb"}`, url: "a\uFFFDb"},

	// Escapes.
	{name: "simple escapes", in: `{"url":"\"\\\/\b\f\n\r\t"}`, url: "\"\\/\b\f\n\r\t"},
	{name: "slash escapes", in: `{"url":"https:\/\/example.com\/a"}`, url: "https://example.com/a"},
	{name: "unicode escapes", in: `{"url":"caf\u00e9 \u65E5 \u0041"}`, url: "café 日 A"},
	{name: "surrogate pair", in: `{"url":"x\ud83c\udf89y"}`, url: "x🎉y"},
	{name: "surrogate pair upper hex", in: `{"url":"\uD83D\uDE00"}`, url: "😀"},
	{name: "escaped id", in: `{"url":"u","id":"a\tb\u00e9"}`, url: "u", id: sp("a\tbé")},
	{name: "escaped url and id", in: `{"url":"\u0075","id":"\u0069"}`, url: "u", id: sp("i")},
	{name: "escaped ts", in: `{"url":"u","ts":"2026-01-01T00:00:00\u002e5Z"}`, url: "u", ms: jan2026 + 500, hasTime: true},
	{name: "escaped ts then escaped id", in: `{"url":"\/u","ts":"2026-01-01T00:00:00\u005a","id":"\/i"}`, url: "/u", ms: jan2026, hasTime: true, id: sp("/i")},
	{name: "escaped key url", in: `{"u\u0072l":"u"}`, url: "u"},
	{name: "fully escaped keys", in: `{"\u0075\u0072\u006c":"u","\u0074\u0073":1767225600000,"\u0069\u0064":"x"}`, url: "u", ms: jan2026, hasTime: true, id: sp("x")},
	{name: "long escaped key ignored", in: `{"\u0075rl_and_then_a_much_longer_name":1,"url":"u"}`, url: "u"},
	{name: "escaped key not matching", in: `{"url":"u","u\u0072l2":5}`, url: "u"},
	{name: "NUL escape in id is fine", in: `{"url":"u","id":"a\u0000"}`, url: "u", id: sp("a\x00")},
	{name: "NUL escape in ignored field is fine", in: `{"url":"u","x":"\u0000"}`, url: "u"},

	// Duplicate keys: last wins, but every value must be valid.
	{name: "dup url last wins", in: `{"url":"first","url":"second"}`, url: "second"},
	{name: "dup url last invalid", in: `{"url":"first","url":5}`, reason: ReasonInvalidURL},
	{name: "dup url last null", in: `{"url":"first","url":null}`, reason: ReasonMissingURL},
	{name: "dup url earlier invalid", in: `{"url":5,"url":"u"}`, url: "u"},
	{name: "dup url via escape", in: `{"url":"a","\u0075rl":"b"}`, url: "b"},
	{name: "dup ts last wins", in: `{"url":"u","ts":"bad","ts":1767225600000}`, url: "u", ms: jan2026, hasTime: true},
	{name: "dup ts last null", in: `{"url":"u","ts":1767225600000,"ts":null}`, url: "u"},
	{name: "dup id last wins", in: `{"url":"u","id":true,"id":"x"}`, url: "u", id: sp("x")},
	{name: "dup key earlier invalid utf8", in: "{\"url\":\"\xff\",\"url\":\"u\"}", reason: ReasonInvalidUTF8},

	// Unknown fields of every type are ignored; keys are case-sensitive.
	{name: "unknown fields", in: `{"a":"s","b":1.5e-3,"c":-0,"d":true,"e":false,"f":null,"g":{},"h":[],"url":"u"}`, url: "u"},
	{name: "nested unknown", in: `{"x":{"url":"no","a":[1,[2,{"b":[null,true,"s\n"]}],{}]},"url":"u","y":[[[]]]}`, url: "u"},
	{name: "case-sensitive URL", in: `{"URL":"u"}`, reason: ReasonMissingURL},
	{name: "case-sensitive TS ID", in: `{"url":"u","TS":"bad","Id":true}`, url: "u"},
	{name: "nested url not used", in: `{"data":{"url":"u"}}`, reason: ReasonMissingURL},

	// invalid_json.
	{name: "empty input", in: ``, reason: ReasonInvalidJSON},
	{name: "whitespace only", in: " \n", reason: ReasonInvalidJSON},
	{name: "top-level array", in: `[{"url":"u"}]`, reason: ReasonInvalidJSON},
	{name: "top-level string", in: `"url"`, reason: ReasonInvalidJSON},
	{name: "top-level null", in: `null`, reason: ReasonInvalidJSON},
	{name: "top-level number", in: `1`, reason: ReasonInvalidJSON},
	{name: "trailing garbage", in: `{"url":"u"}x`, reason: ReasonInvalidJSON},
	{name: "two objects", in: `{"url":"u"}{"url":"u"}`, reason: ReasonInvalidJSON},
	{name: "trailing comma", in: `{"url":"u",}`, reason: ReasonInvalidJSON},
	{name: "trailing comma in array", in: `{"url":"u","a":[1,]}`, reason: ReasonInvalidJSON},
	{name: "missing colon", in: `{"url" "u"}`, reason: ReasonInvalidJSON},
	{name: "missing value", in: `{"url":}`, reason: ReasonInvalidJSON},
	{name: "unterminated object", in: `{"url":"u"`, reason: ReasonInvalidJSON},
	{name: "unterminated string", in: `{"url":"u`, reason: ReasonInvalidJSON},
	{name: "unquoted key", in: `{url:"u"}`, reason: ReasonInvalidJSON},
	{name: "single quotes", in: `{'url':'u'}`, reason: ReasonInvalidJSON},
	{name: "raw newline in string", in: "{\"url\":\"a\nb\"}", reason: ReasonInvalidJSON},
	{name: "raw tab in string", in: "{\"url\":\"a\tb\"}", reason: ReasonInvalidJSON},
	{name: "raw NUL in string", in: "{\"url\":\"a\x00b\"}", reason: ReasonInvalidJSON},
	{name: "bad escape", in: `{"url":"\x41"}`, reason: ReasonInvalidJSON},
	{name: "short unicode escape", in: `{"url":"\u00"}`, reason: ReasonInvalidJSON},
	{name: "bad hex in unicode escape", in: `{"url":"\u00g0"}`, reason: ReasonInvalidJSON},
	{name: "leading zero", in: `{"url":"u","ts":01}`, reason: ReasonInvalidJSON},
	{name: "plus sign", in: `{"url":"u","ts":+1}`, reason: ReasonInvalidJSON},
	{name: "bare minus", in: `{"url":"u","ts":-}`, reason: ReasonInvalidJSON},
	{name: "dot without digits", in: `{"url":"u","x":1.}`, reason: ReasonInvalidJSON},
	{name: "exponent without digits", in: `{"url":"u","x":1e+}`, reason: ReasonInvalidJSON},
	{name: "leading dot", in: `{"url":"u","x":.5}`, reason: ReasonInvalidJSON},
	{name: "NaN", in: `{"url":"u","x":NaN}`, reason: ReasonInvalidJSON},
	{name: "bad literal", in: `{"url":"u","x":nul}`, reason: ReasonInvalidJSON},
	{name: "literal with trailing letters", in: `{"url":"u","x":truex}`, reason: ReasonInvalidJSON},
	{name: "capitalised literal", in: `{"url":"u","x":True}`, reason: ReasonInvalidJSON},
	{name: "comment", in: `{"url":"u"/*c*/}`, reason: ReasonInvalidJSON},
	{name: "non-JSON whitespace", in: "{\"url\":\"u\"\v}", reason: ReasonInvalidJSON},
	{name: "BOM", in: "\uFEFF{\"url\":\"u\"}", reason: ReasonInvalidJSON},
	{name: "trailing NUL", in: "{\"url\":\"u\"}\x00", reason: ReasonInvalidJSON},
	{name: "array missing comma", in: `{"url":"u","a":[1 2]}`, reason: ReasonInvalidJSON},
	{name: "array unterminated", in: `{"url":"u","a":[1`, reason: ReasonInvalidJSON},
	{name: "array with colon", in: `{"url":"u","a":[1:2]}`, reason: ReasonInvalidJSON},
	{name: "mismatched brackets", in: `{"url":"u","a":[}`, reason: ReasonInvalidJSON},
	{name: "syntax error beats missing url", in: `{"x":1,}`, reason: ReasonInvalidJSON},
	{name: "syntax error after url beats url error", in: `{"url":5,"x":}`, reason: ReasonInvalidJSON},
	{name: "syntax error after ts beats ts error", in: `{"url":"u","ts":true,"x"}`, reason: ReasonInvalidJSON},

	// invalid_utf8.
	{name: "bad utf8 in url", in: "{\"url\":\"https://e.com/\xff\"}", reason: ReasonInvalidUTF8},
	{name: "truncated utf8 in url", in: "{\"url\":\"caf\xc3\"}", reason: ReasonInvalidUTF8},
	{name: "overlong utf8", in: "{\"url\":\"\xc0\xaf\"}", reason: ReasonInvalidUTF8},
	{name: "utf8-encoded surrogate", in: "{\"url\":\"\xed\xa0\x80\"}", reason: ReasonInvalidUTF8},
	{name: "bad utf8 in key", in: "{\"ur\xfel\":\"u\"}", reason: ReasonInvalidUTF8},
	{name: "bad utf8 in ignored field", in: "{\"url\":\"u\",\"ua\":\"\xff\xfe\"}", reason: ReasonInvalidUTF8},
	{name: "bad utf8 nested", in: "{\"url\":\"u\",\"x\":[{\"k\":\"\x80\"}]}", reason: ReasonInvalidUTF8},
	{name: "bad utf8 in id", in: "{\"url\":\"u\",\"id\":\"\xff\"}", reason: ReasonInvalidUTF8},
	{name: "lone high surrogate", in: `{"url":"a\ud83cb"}`, reason: ReasonInvalidUTF8},
	{name: "lone high surrogate at end", in: `{"url":"a\ud83c"}`, reason: ReasonInvalidUTF8},
	{name: "lone low surrogate", in: `{"url":"a\udf89"}`, reason: ReasonInvalidUTF8},
	{name: "reversed surrogates", in: `{"url":"\udf89\ud83c"}`, reason: ReasonInvalidUTF8},
	{name: "high then non-surrogate escape", in: `{"url":"\ud83c\u0041"}`, reason: ReasonInvalidUTF8},
	{name: "high then other escape", in: `{"url":"\ud83c\n"}`, reason: ReasonInvalidUTF8},
	{name: "two highs", in: `{"url":"\ud83c\ud83c"}`, reason: ReasonInvalidUTF8},
	{name: "lone surrogate in key", in: `{"\ud800":1,"url":"u"}`, reason: ReasonInvalidUTF8},
	{name: "lone surrogate in ignored value", in: `{"url":"u","x":["\udc00"]}`, reason: ReasonInvalidUTF8},
	{name: "bad utf8 beats missing url", in: "{\"x\":\"\xff\"}", reason: ReasonInvalidUTF8},
	{name: "bad utf8 beats bad ts", in: "{\"url\":\"u\",\"ts\":true,\"x\":\"\xff\"}", reason: ReasonInvalidUTF8},

	// url problems, in check order.
	{name: "missing url", in: `{}`, reason: ReasonMissingURL},
	{name: "missing url with others", in: `{"ts":1767225600000,"id":"x"}`, reason: ReasonMissingURL},
	{name: "null url", in: `{"url":null}`, reason: ReasonMissingURL},
	{name: "numeric url", in: `{"url":123}`, reason: ReasonInvalidURL},
	{name: "bool url", in: `{"url":true}`, reason: ReasonInvalidURL},
	{name: "object url", in: `{"url":{"href":"u"}}`, reason: ReasonInvalidURL},
	{name: "array url", in: `{"url":["u"]}`, reason: ReasonInvalidURL},
	{name: "NUL in url", in: `{"url":"https://e.com/\u0000x"}`, reason: ReasonInvalidURL},
	{name: "only NUL in url", in: `{"url":"\u0000"}`, reason: ReasonInvalidURL},
	{name: "empty url", in: `{"url":""}`, reason: ReasonEmptyURL},
	{name: "url beats ts", in: `{"url":"","ts":"bad"}`, reason: ReasonEmptyURL},
	{name: "missing url beats ts and id", in: `{"ts":true,"id":true}`, reason: ReasonMissingURL},
	{name: "url at default limit", in: `{"url":"` + strings.Repeat("a", DefaultMaxURLBytes) + `"}`, url: strings.Repeat("a", DefaultMaxURLBytes)},
	{name: "url over default limit", in: `{"url":"` + strings.Repeat("a", DefaultMaxURLBytes+1) + `"}`, reason: ReasonURLTooLong},
	{name: "custom limit ok", in: `{"url":"0123456789"}`, maxURL: 10, url: "0123456789"},
	{name: "custom limit exceeded", in: `{"url":"0123456789a"}`, maxURL: 10, reason: ReasonURLTooLong},
	{name: "limit counts decoded bytes", in: `{"url":"\/\/\/\/\/\/\/\/\/\/"}`, maxURL: 10, url: "//////////"},
	{name: "limit counts utf8 bytes", in: `{"url":"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"}`, maxURL: 11, reason: ReasonURLTooLong},
	{name: "negative limit means default", in: `{"url":"u"}`, maxURL: -1, url: "u"},

	// ts.
	{name: "ts min edge in range", in: `{"url":"u","ts":946684800000}`, url: "u", ms: MinEventTimeMs, hasTime: true},
	{name: "ts below min", in: `{"url":"u","ts":946684799999}`, reason: ReasonTimestampOutOfRange},
	{name: "ts max edge out of range", in: `{"url":"u","ts":4102444800000}`, reason: ReasonTimestampOutOfRange},
	{name: "ts just below max", in: `{"url":"u","ts":4102444799999}`, url: "u", ms: MaxEventTimeMs - 1, hasTime: true},
	{name: "ts string min edge", in: `{"url":"u","ts":"2000-01-01T00:00:00Z"}`, url: "u", ms: MinEventTimeMs, hasTime: true},
	{name: "ts string just before min", in: `{"url":"u","ts":"1999-12-31T23:59:59.999Z"}`, reason: ReasonTimestampOutOfRange},
	{name: "ts string max edge", in: `{"url":"u","ts":"2100-01-01T00:00:00Z"}`, reason: ReasonTimestampOutOfRange},
	{name: "ts string just before max", in: `{"url":"u","ts":"2099-12-31T23:59:59.999999999Z"}`, url: "u", ms: MaxEventTimeMs - 1, hasTime: true},
	{name: "ts string offset crosses max", in: `{"url":"u","ts":"2100-01-01T00:30:00+01:00"}`, url: "u", ms: MaxEventTimeMs - 30*60*1000, hasTime: true},
	{name: "ts zero", in: `{"url":"u","ts":0}`, reason: ReasonTimestampOutOfRange},
	{name: "ts negative zero", in: `{"url":"u","ts":-0}`, reason: ReasonTimestampOutOfRange},
	{name: "ts negative", in: `{"url":"u","ts":-1767225600000}`, reason: ReasonTimestampOutOfRange},
	{name: "ts seconds not millis", in: `{"url":"u","ts":1767225600}`, reason: ReasonTimestampOutOfRange},
	{name: "ts max int64", in: `{"url":"u","ts":9223372036854775807}`, reason: ReasonTimestampOutOfRange},
	{name: "ts min int64", in: `{"url":"u","ts":-9223372036854775808}`, reason: ReasonTimestampOutOfRange},
	{name: "ts overflow", in: `{"url":"u","ts":9223372036854775808}`, reason: ReasonInvalidTimestamp},
	{name: "ts negative overflow", in: `{"url":"u","ts":-9223372036854775809}`, reason: ReasonInvalidTimestamp},
	{name: "ts huge", in: `{"url":"u","ts":123456789012345678901234567890}`, reason: ReasonInvalidTimestamp},
	{name: "ts fraction", in: `{"url":"u","ts":1767225600000.0}`, reason: ReasonInvalidTimestamp},
	{name: "ts exponent", in: `{"url":"u","ts":1e12}`, reason: ReasonInvalidTimestamp},
	{name: "ts fraction small", in: `{"url":"u","ts":1.5}`, reason: ReasonInvalidTimestamp},
	{name: "ts true", in: `{"url":"u","ts":true}`, reason: ReasonInvalidTimestamp},
	{name: "ts false", in: `{"url":"u","ts":false}`, reason: ReasonInvalidTimestamp},
	{name: "ts object", in: `{"url":"u","ts":{}}`, reason: ReasonInvalidTimestamp},
	{name: "ts array", in: `{"url":"u","ts":[1767225600000]}`, reason: ReasonInvalidTimestamp},
	{name: "ts empty string", in: `{"url":"u","ts":""}`, reason: ReasonInvalidTimestamp},
	{name: "ts numeric string", in: `{"url":"u","ts":"1767225600000"}`, reason: ReasonInvalidTimestamp},
	{name: "ts date only", in: `{"url":"u","ts":"2026-01-01"}`, reason: ReasonInvalidTimestamp},
	{name: "ts no zone", in: `{"url":"u","ts":"2026-01-01T00:00:00"}`, reason: ReasonInvalidTimestamp},
	{name: "ts space separator", in: `{"url":"u","ts":"2026-01-01 00:00:00Z"}`, reason: ReasonInvalidTimestamp},
	{name: "ts lowercase z", in: `{"url":"u","ts":"2026-01-01T00:00:00z"}`, reason: ReasonInvalidTimestamp},
	{name: "ts lowercase t", in: `{"url":"u","ts":"2026-01-01t00:00:00Z"}`, reason: ReasonInvalidTimestamp},
	{name: "ts hour 24", in: `{"url":"u","ts":"2026-01-01T24:00:00Z"}`, reason: ReasonInvalidTimestamp},
	{name: "ts leap second", in: `{"url":"u","ts":"2026-12-31T23:59:60Z"}`, reason: ReasonInvalidTimestamp},
	{name: "ts Feb 29 non-leap", in: `{"url":"u","ts":"2026-02-29T00:00:00Z"}`, reason: ReasonInvalidTimestamp},
	{name: "ts Feb 29 leap", in: `{"url":"u","ts":"2024-02-29T12:00:00Z"}`, url: "u", ms: 1709208000000, hasTime: true},
	{name: "ts month 13", in: `{"url":"u","ts":"2026-13-01T00:00:00Z"}`, reason: ReasonInvalidTimestamp},
	{name: "ts trailing junk", in: `{"url":"u","ts":"2026-01-01T00:00:00Zjunk"}`, reason: ReasonInvalidTimestamp},
	{name: "ts offset no colon", in: `{"url":"u","ts":"2026-01-01T00:00:00+0100"}`, reason: ReasonInvalidTimestamp},
	{name: "ts offset hour 25", in: `{"url":"u","ts":"2026-01-01T00:00:00+25:00"}`, reason: ReasonInvalidTimestamp},
	{name: "ts dot without digits", in: `{"url":"u","ts":"2026-01-01T00:00:00.Z"}`, reason: ReasonInvalidTimestamp},
	{name: "ts positive offset", in: `{"url":"u","ts":"2026-01-01T05:30:00+05:30"}`, url: "u", ms: jan2026, hasTime: true},
	{name: "ts negative offset", in: `{"url":"u","ts":"2025-12-31T16:00:00-08:00"}`, url: "u", ms: jan2026, hasTime: true},
	{name: "ts zero offset", in: `{"url":"u","ts":"2026-01-01T00:00:00+00:00"}`, url: "u", ms: jan2026, hasTime: true},
	{name: "ts negative zero offset", in: `{"url":"u","ts":"2026-01-01T00:00:00-00:00"}`, url: "u", ms: jan2026, hasTime: true},
	{name: "ts fraction 1 digit", in: `{"url":"u","ts":"2026-01-01T00:00:00.1Z"}`, url: "u", ms: jan2026 + 100, hasTime: true},
	{name: "ts fraction 6 digits", in: `{"url":"u","ts":"2026-01-01T00:00:00.123456Z"}`, url: "u", ms: jan2026 + 123, hasTime: true},
	{name: "ts fraction 9 digits truncates", in: `{"url":"u","ts":"2026-01-01T00:00:00.999999999Z"}`, url: "u", ms: jan2026 + 999, hasTime: true},
	{name: "ts fraction 12 digits", in: `{"url":"u","ts":"2026-01-01T00:00:00.123456789999Z"}`, url: "u", ms: jan2026 + 123, hasTime: true},
	{name: "ts fraction with offset", in: `{"url":"u","ts":"2026-01-01T01:00:00.5+01:00"}`, url: "u", ms: jan2026 + 500, hasTime: true},
	{name: "ts comma fraction (time.Parse accepts)", in: `{"url":"u","ts":"2026-01-01T00:00:00,25Z"}`, url: "u", ms: jan2026 + 250, hasTime: true},
	{name: "ts one-digit hour (time.Parse accepts)", in: `{"url":"u","ts":"2026-01-01T1:00:00Z"}`, url: "u", ms: jan2026 + 3600000, hasTime: true},
	{name: "ts offset +24:60 (time.Parse accepts)", in: `{"url":"u","ts":"2026-01-02T01:00:00+24:60"}`, url: "u", ms: jan2026, hasTime: true},
	{name: "ts string out of range", in: `{"url":"u","ts":"1970-01-01T00:00:00Z"}`, reason: ReasonTimestampOutOfRange},
	{name: "ts year 9999", in: `{"url":"u","ts":"9999-12-31T23:59:59Z"}`, reason: ReasonTimestampOutOfRange},
	{name: "ts beats id", in: `{"url":"u","ts":"x","id":true}`, reason: ReasonInvalidTimestamp},
	{name: "ts range beats id", in: `{"url":"u","ts":1,"id":true}`, reason: ReasonTimestampOutOfRange},

	// id.
	{name: "id true", in: `{"url":"u","id":true}`, reason: ReasonInvalidID},
	{name: "id false", in: `{"url":"u","id":false}`, reason: ReasonInvalidID},
	{name: "id object", in: `{"url":"u","id":{"a":1}}`, reason: ReasonInvalidID},
	{name: "id array", in: `{"url":"u","id":["a"]}`, reason: ReasonInvalidID},
	{name: "id float", in: `{"url":"u","id":1.5}`, reason: ReasonInvalidID},
	{name: "id exponent", in: `{"url":"u","id":1e3}`, reason: ReasonInvalidID},
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			orig := bytes.Clone(in)
			d := Decoder{MaxURLBytes: tc.maxURL}
			c, r := d.Decode(in)
			if !bytes.Equal(in, orig) {
				t.Fatalf("Decode modified its input")
			}
			if r != tc.reason {
				t.Fatalf("Decode(%q) reason = %v, want %v", tc.in, r, tc.reason)
			}
			if r != ReasonNone {
				if c.URL != nil || c.ID != nil || c.HasTime || c.TimeMs != 0 {
					t.Fatalf("rejected record returned non-zero Click %+v", c)
				}
				return
			}
			checkClick(t, c, tc)
		})
	}
}

func checkClick(t *testing.T, c Click, tc decodeCase) {
	t.Helper()
	if string(c.URL) != tc.url {
		t.Errorf("URL = %q, want %q", c.URL, tc.url)
	}
	if c.HasTime != tc.hasTime || c.TimeMs != tc.ms {
		t.Errorf("time = (%d, %v), want (%d, %v)", c.TimeMs, c.HasTime, tc.ms, tc.hasTime)
	}
	switch {
	case tc.id == nil && c.ID != nil:
		t.Errorf("ID = %q, want nil", c.ID)
	case tc.id != nil && c.ID == nil:
		t.Errorf("ID = nil, want %q", *tc.id)
	case tc.id != nil && string(c.ID) != *tc.id:
		t.Errorf("ID = %q, want %q", c.ID, *tc.id)
	}
}

// TestDecodeReuse runs every case through one Decoder, so scratch-buffer
// reuse between records (and leftovers from rejected records) is exercised.
func TestDecodeReuse(t *testing.T) {
	var d Decoder
	for round := 0; round < 2; round++ {
		for _, tc := range decodeCases {
			d.MaxURLBytes = tc.maxURL
			c, r := d.Decode([]byte(tc.in))
			if r != tc.reason {
				t.Fatalf("%s: reason = %v, want %v", tc.name, r, tc.reason)
			}
			if r == ReasonNone {
				checkClick(t, c, tc)
			}
		}
	}
}

func TestDecodeSubslices(t *testing.T) {
	var d Decoder
	in := []byte(typical)
	c, r := d.Decode(in)
	if r != ReasonNone {
		t.Fatal(r)
	}
	// Unescaped url and id alias the input.
	if &c.URL[0] != &in[8] {
		t.Errorf("URL does not alias the input")
	}
	// Appending to returned slices must not clobber the input or each other.
	_ = append(c.URL, "XXXXXXXX"...)
	_ = append(c.ID, "XXXXXXXX"...)
	if string(in) != typical {
		t.Errorf("append to URL/ID modified the input: %s", in)
	}

	c, r = d.Decode([]byte(`{"url":"\/a\/b","id":"\/c"}`))
	if r != ReasonNone {
		t.Fatal(r)
	}
	_ = append(c.URL, "XXXXXXXX"...)
	if string(c.URL) != "/a/b" || string(c.ID) != "/c" {
		t.Errorf("escaped URL/ID clobbered: %q %q", c.URL, c.ID)
	}
}

func TestDecodeScratchRetention(t *testing.T) {
	var d Decoder
	big := `{"url":"\/` + strings.Repeat("a", 1<<20) + `","id":"\/x"}`
	d.MaxURLBytes = 2 << 20
	if c, r := d.Decode([]byte(big)); r != ReasonNone || len(c.URL) != 1<<20+1 || string(c.ID) != "/x" {
		t.Fatalf("big record: reason %v, len(URL) %d, ID %q", r, len(c.URL), c.ID)
	}
	if _, r := d.Decode([]byte(typical)); r != ReasonNone {
		t.Fatal(r)
	}
	if cap(d.scratch) > maxRetainedScratch {
		t.Errorf("scratch of cap %d retained after a big record", cap(d.scratch))
	}
}

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
// TestSpecialBytes checks the eight-at-a-time string scan: the lowest
// flagged byte is always the first byte plainByte rejects, and a word of
// plain bytes flags nothing. Words mix plain bytes with every other byte
// value at every position.
func TestSpecialBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	plain := make([]byte, 0, 256)
	for c := range 256 {
		if plainByte[c] {
			plain = append(plain, byte(c))
		}
	}
	check := func(w [8]byte) {
		m := specialBytes(binary.LittleEndian.Uint64(w[:]))
		want := 8
		for i, c := range w {
			if !plainByte[c] {
				want = i
				break
			}
		}
		got := 8
		if m != 0 {
			got = bits.TrailingZeros64(m) >> 3
		}
		if got != want {
			t.Fatalf("specialBytes(%q): first special byte at %d, want %d", w[:], got, want)
		}
	}
	for range 200_000 {
		var w [8]byte
		for i := range w {
			w[i] = plain[rng.IntN(len(plain))]
		}
		check(w)
		// one or two arbitrary bytes anywhere
		w[rng.IntN(8)] = byte(rng.IntN(256))
		check(w)
		w[rng.IntN(8)] = byte(rng.IntN(256))
		check(w)
	}
	for c := range 256 {
		for pos := range 8 {
			w := [8]byte{'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'}
			w[pos] = byte(c)
			check(w)
		}
	}
}

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

func TestReasons(t *testing.T) {
	want := []string{
		"invalid_json", "missing_url", "invalid_url", "empty_url", "url_too_long", "invalid_utf8",
		"invalid_timestamp", "timestamp_out_of_range", "invalid_id",
		"timestamp_ahead_of_record", "timestamp_behind_record",
	}
	rs := Reasons()
	if len(rs) != len(want) {
		t.Fatalf("Reasons() has %d entries, want %d", len(rs), len(want))
	}
	for i, r := range rs {
		if r != Reason(i+1) || r.String() != want[i] {
			t.Errorf("Reasons()[%d] = %d %q, want %d %q", i, r, r, i+1, want[i])
		}
	}
	if s := ReasonNone.String(); s != "none" {
		t.Errorf("ReasonNone.String() = %q", s)
	}
	if s := reasonCount.String(); s != fmt.Sprintf("reason(%d)", int(reasonCount)) {
		t.Errorf("out-of-range String() = %q", s)
	}
	rs[0] = ReasonNone // callers may modify their copy
	if Reasons()[0] != ReasonInvalidJSON {
		t.Errorf("Reasons() shares its backing array")
	}
}

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

func TestDecodeAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation changes allocation behaviour")
	}
	records := []string{
		typical,
		typicalTS,
		`{"url":"https://example.com/","ts":"2026-01-01T05:30:00.123456+05:30","id":42}`,
		`{"ua":"Mozilla/5.0","url":"https://example.com/x","meta":{"a":[1,2,{"b":null}]},"ts":1767225600000}`,
		`{"url":"https:\/\/example.com\/caf\u00e9","ts":"2026-01-01T00:00:00\u002e5Z","id":"e\u002d1"}`,
		`{"u\u0072l":"u","ts":true}`, // rejected
		"{\"url\":\"\xff\"}",         // rejected
	}
	var d Decoder
	for _, rec := range records {
		in := []byte(rec)
		d.Decode(in) // warm up the scratch buffer
		allocs := testing.AllocsPerRun(100, func() { d.Decode(in) })
		if allocs != 0 {
			t.Errorf("Decode(%s): %v allocs/op, want 0", rec, allocs)
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

var benchRecords = []struct {
	name string
	in   string
}{
	{"num_ts", typical},
	{"rfc3339_ts", typicalTS},
	{"url_only", `{"url":"https://example.com/"}`},
	{"escaped", `{"url":"https:\/\/example.com\/caf\u00e9?q=\"x\"","ts":1767225600000,"id":12345}`},
	{"extra_fields", `{"event":"click","url":"https://shop.example.com/products/12345?utm_source=newsletter&utm_medium=email","ts":"2026-01-01T12:34:56.789+02:00","id":"7f9c2ba4-e88f-4b6a-9c1d-3e5f7a9b0c2d","user":{"id":98765,"agent":"Mozilla/5.0 (X11; Linux x86_64)","tags":["a","b"]},"ref":null,"bot":false}`},
}

func BenchmarkDecode(b *testing.B) {
	for _, br := range benchRecords {
		b.Run(br.name, func(b *testing.B) {
			in := []byte(br.in)
			var d Decoder
			if _, r := d.Decode(in); r != ReasonNone {
				b.Fatal(r)
			}
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				d.Decode(in)
			}
		})
	}
}

// jsonClick is what a straightforward encoding/json consumer would decode
// into. ts and id are kept raw (they may be strings or numbers), so this
// does less work than Decode: no timestamp parsing, no id type checks.
type jsonClick struct {
	URL string          `json:"url"`
	TS  json.RawMessage `json:"ts"`
	ID  json.RawMessage `json:"id"`
}

func BenchmarkDecodeEncodingJSON(b *testing.B) {
	for _, br := range benchRecords {
		b.Run(br.name, func(b *testing.B) {
			in := []byte(br.in)
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				var c jsonClick
				if err := json.Unmarshal(in, &c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
