package stream

// The table of Decode cases (decodeCases), shared by TestDecode,
// TestDecodeReuse and FuzzDecode's seed corpus, grouped as accepted shapes,
// escapes, duplicate keys, ignored fields, then each rejection reason in the
// order Decode checks for it; plus the sample records the other decode tests
// and benchmarks reuse.

import "strings"

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
