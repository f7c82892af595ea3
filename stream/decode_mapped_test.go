package stream

// Tests of Decode with an input mapping (NewDecoder): the mappedCases table
// of paths, timestamp formats, ts_source record and filters; zero
// allocations per record; and BenchmarkDecodeTracker, which compares the
// default mapping with a nested one on a tracker event. The differential
// fuzz test against encoding/json is in decode_mapped_fuzz_test.go.

import (
	"bytes"
	"testing"
)

type mappedCase struct {
	name   string
	in     InputOptions
	rec    string
	reason Reason // reasonFiltered for a filtered record
	// Expected result when reason is ReasonNone.
	url     string
	ms      int64
	hasTime bool
	id      *string
}

var (
	pageURL = InputOptions{URL: "page.url"}
	tsT     = func(format string) InputOptions { return InputOptions{TS: "t", TSFormat: format} }
	filter  = func(conds ...string) InputOptions { return InputOptions{Filter: conds} }
)

var mappedCases = []mappedCase{
	// Paths.
	{name: "nested", in: pageURL, rec: `{"page":{"url":"u"}}`, url: "u"},
	{name: "deep", in: InputOptions{URL: "a.b.c.d.e"}, rec: `{"a":{"b":{"c":{"d":{"e":"u"}}}}}`, url: "u"},
	{name: "top-level url ignored", in: pageURL, rec: `{"url":"top"}`, reason: ReasonMissingURL},
	{name: "top-level url beside", in: pageURL, rec: `{"url":"top","page":{"url":"u"},"x":{"url":"y"}}`, url: "u"},
	{name: "same keys elsewhere", in: pageURL, rec: `{"other":{"page":{"url":"x"}},"list":[{"page":{"url":"y"}}]}`, reason: ReasonMissingURL},
	{name: "escaped keys in JSON", in: pageURL, rec: `{"p\u0061ge":{"u\u0072\u006c":"u"}}`, url: "u"},
	{name: "escaped key no match", in: pageURL, rec: `{"p\u0061ges":{"url":"u"}}`, reason: ReasonMissingURL},
	{name: "escaped slash key", in: InputOptions{URL: "a/b"}, rec: `{"a\/b":"u"}`, url: "u"},
	{name: "dotted key", in: InputOptions{URL: `a\.b`}, rec: `{"a.b":"u","a":{"b":"x"}}`, url: "u"},
	{name: "dotted key absent", in: InputOptions{URL: `a\.b`}, rec: `{"a":{"b":"x"}}`, reason: ReasonMissingURL},
	{name: "path is not a dotted key", in: InputOptions{URL: "a.b"}, rec: `{"a.b":"x"}`, reason: ReasonMissingURL},
	{name: "backslash key", in: InputOptions{URL: `a\\b`}, rec: `{"a\\b":"u"}`, url: "u"},
	{name: "dotted then nested", in: InputOptions{URL: `a\.b.c`}, rec: `{"a.b":{"c":"u"}}`, url: "u"},
	{name: "unicode key", in: InputOptions{URL: "页面.url"}, rec: `{"页面":{"url":"u"}}`, url: "u"},
	{name: "unicode key escaped", in: InputOptions{URL: "页面.url"}, rec: `{"\u9875\u9762":{"url":"u"}}`, url: "u"},
	{name: "surrogate pair key", in: InputOptions{URL: "😀"}, rec: `{"\ud83d\ude00":"u"}`, url: "u"},
	{name: "case-sensitive", in: pageURL, rec: `{"Page":{"url":"u"},"page":{"URL":"v"}}`, reason: ReasonMissingURL},
	{name: "long keys", in: InputOptions{URL: "averyverylongkey.url"}, rec: `{"averyverylongkez":{"url":"x"},"averyverylongkey1":{"url":"y"},"averyver":{"url":"z"},"averyverylongkey":{"url":"u"}}`, url: "u"},
	{name: "long key differs past 8 bytes", in: InputOptions{URL: "averylongkeyname.url"}, rec: `{"averylongkeynamf":{"url":"x"}}`, reason: ReasonMissingURL},
	{name: "near keys", in: InputOptions{URL: "context.page.url"}, rec: `{"context":{"pag":{"url":"x"},"pages":{"url":"y"},"page":{"url":"u"},"pagf":{"url":"z"}}}`, url: "u"},
	{name: "empty key in record", in: pageURL, rec: `{"":{"url":"x"},"page":{"":"y","url":"u"}}`, url: "u"},
	{name: "through an array", in: pageURL, rec: `{"page":[{"url":"u"}]}`, reason: ReasonMissingURL},
	{name: "through a string", in: pageURL, rec: `{"page":"url"}`, reason: ReasonMissingURL},
	{name: "through a number", in: pageURL, rec: `{"page":5}`, reason: ReasonMissingURL},
	{name: "through null", in: pageURL, rec: `{"page":null}`, reason: ReasonMissingURL},
	{name: "through true", in: pageURL, rec: `{"page":true}`, reason: ReasonMissingURL},
	{name: "url is an object", in: pageURL, rec: `{"page":{"url":{"x":"u"}}}`, reason: ReasonInvalidURL},
	{name: "url null", in: pageURL, rec: `{"page":{"url":null}}`, reason: ReasonMissingURL},
	{name: "url empty", in: pageURL, rec: `{"page":{"url":""}}`, reason: ReasonEmptyURL},
	{name: "url NUL", in: pageURL, rec: `{"page":{"url":"a\u0000"}}`, reason: ReasonInvalidURL},
	{name: "url number", in: pageURL, rec: `{"page":{"url":1}}`, reason: ReasonInvalidURL},
	{name: "duplicate leaf", in: pageURL, rec: `{"page":{"url":"a","url":"b"}}`, url: "b"},
	{name: "duplicate leaf null last", in: pageURL, rec: `{"page":{"url":"a","url":null}}`, reason: ReasonMissingURL},
	{name: "duplicate ancestor", in: pageURL, rec: `{"page":{"url":"a"},"page":{"title":"x"}}`, reason: ReasonMissingURL},
	{name: "duplicate ancestor both", in: pageURL, rec: `{"page":{"url":"a"},"page":{"url":"b"}}`, url: "b"},
	{name: "duplicate ancestor not an object", in: pageURL, rec: `{"page":{"url":"a"},"page":"x"}`, reason: ReasonMissingURL},
	{name: "duplicate ancestor then object", in: pageURL, rec: `{"page":"x","page":{"url":"b"}}`, url: "b"},
	{name: "duplicate grandparent", in: InputOptions{URL: "a.b.c", ID: "a.d"}, rec: `{"a":{"b":{"c":"u"},"d":"i"},"a":{"b":{"c":"v"}}}`, url: "v"},
	{name: "duplicate sibling kept", in: InputOptions{URL: "a.b", ID: "a.c"}, rec: `{"a":{"c":"i","b":"x","b":"u"}}`, url: "u", id: sp("i")},
	{name: "node both value and ancestor", in: InputOptions{URL: "c.url", TS: "c"}, rec: `{"c":{"url":"u"}}`, reason: ReasonInvalidTimestamp},
	{name: "node both value and ancestor, scalar", in: InputOptions{URL: "c.url", ID: "c"}, rec: `{"c":{"url":"u"},"c":7}`, reason: ReasonMissingURL},
	{name: "url and id one path", in: InputOptions{URL: "x", ID: "x"}, rec: `{"x":"u"}`, url: "u", id: sp("u")},
	{name: "nested id and ts", in: InputOptions{URL: "p.u", TS: "p.t", ID: "p.i"}, rec: `{"p":{"i":"e-1","t":1767225600000,"u":"u"}}`, url: "u", ms: jan2026, hasTime: true, id: sp("e-1")},
	{name: "id invalid at path", in: InputOptions{ID: "a.id"}, rec: `{"url":"u","a":{"id":1.5}}`, reason: ReasonInvalidID},
	{name: "id numeric at path", in: InputOptions{ID: "a.id"}, rec: `{"url":"u","a":{"id":-12}}`, url: "u", id: sp("-12")},
	{name: "id escaped at path", in: InputOptions{ID: "a.id"}, rec: `{"url":"u","a":{"id":"\u0041"}}`, url: "u", id: sp("A")},
	{name: "invalid JSON still rejected", in: pageURL, rec: `{"page":{"url":"u"}`, reason: ReasonInvalidJSON},
	{name: "invalid UTF-8 still rejected", in: pageURL, rec: "{\"page\":{\"url\":\"u\"},\"x\":\"\xff\"}", reason: ReasonInvalidUTF8},
	{name: "deep untracked", in: pageURL, rec: `{"page":{"x":{"y":{"z":[1,{"url":"no"}]}},"url":"u"}}`, url: "u"},

	// Timestamp formats.
	{name: "auto int", in: tsT("auto"), rec: `{"url":"u","t":1767225600000}`, url: "u", ms: jan2026, hasTime: true},
	{name: "auto rfc3339", in: tsT(""), rec: `{"url":"u","t":"2026-01-01T00:00:00.5Z"}`, url: "u", ms: jan2026 + 500, hasTime: true},
	{name: "auto seconds are 1970", in: tsT("auto"), rec: `{"url":"u","t":1767225600}`, reason: ReasonTimestampOutOfRange},
	{name: "auto digit string", in: tsT("auto"), rec: `{"url":"u","t":"1767225600000"}`, reason: ReasonInvalidTimestamp},
	{name: "auto float", in: tsT("auto"), rec: `{"url":"u","t":1767225600000.0}`, reason: ReasonInvalidTimestamp},
	{name: "rfc3339", in: tsT("rfc3339"), rec: `{"url":"u","t":"2026-01-01T01:00:00+01:00"}`, url: "u", ms: jan2026, hasTime: true},
	{name: "rfc3339 escaped", in: tsT("rfc3339"), rec: `{"url":"u","t":"2026-01-01T00:00:00\u005a"}`, url: "u", ms: jan2026, hasTime: true},
	{name: "rfc3339 int", in: tsT("rfc3339"), rec: `{"url":"u","t":1767225600000}`, reason: ReasonInvalidTimestamp},
	{name: "rfc3339 null", in: tsT("rfc3339"), rec: `{"url":"u","t":null}`, url: "u"},
	{name: "rfc3339 absent", in: tsT("rfc3339"), rec: `{"url":"u","ts":"garbage"}`, url: "u"},
	{name: "rfc3339 out of range", in: tsT("rfc3339"), rec: `{"url":"u","t":"1999-12-31T23:59:59.999Z"}`, reason: ReasonTimestampOutOfRange},
	{name: "unix_s", in: tsT("unix_s"), rec: `{"url":"u","t":1767225600}`, url: "u", ms: jan2026, hasTime: true},
	{name: "unix_s string", in: tsT("unix_s"), rec: `{"url":"u","t":"1767225600"}`, url: "u", ms: jan2026, hasTime: true},
	{name: "unix_s string leading zeros", in: tsT("unix_s"), rec: `{"url":"u","t":"000000000000001767225600"}`, url: "u", ms: jan2026, hasTime: true},
	{name: "unix_s escaped string", in: tsT("unix_s"), rec: `{"url":"u","t":"\u0031767225600"}`, url: "u", ms: jan2026, hasTime: true},
	{name: "unix_s negative", in: tsT("unix_s"), rec: `{"url":"u","t":-1}`, reason: ReasonTimestampOutOfRange},
	{name: "unix_s negative string", in: tsT("unix_s"), rec: `{"url":"u","t":"-1"}`, reason: ReasonTimestampOutOfRange},
	{name: "unix_s float", in: tsT("unix_s"), rec: `{"url":"u","t":1767225600.5}`, reason: ReasonInvalidTimestamp},
	{name: "unix_s exponent", in: tsT("unix_s"), rec: `{"url":"u","t":1.7672256e9}`, reason: ReasonInvalidTimestamp},
	{name: "unix_s float string", in: tsT("unix_s"), rec: `{"url":"u","t":"1767225600.0"}`, reason: ReasonInvalidTimestamp},
	{name: "unix_s plus", in: tsT("unix_s"), rec: `{"url":"u","t":"+1767225600"}`, reason: ReasonInvalidTimestamp},
	{name: "unix_s space", in: tsT("unix_s"), rec: `{"url":"u","t":" 1767225600"}`, reason: ReasonInvalidTimestamp},
	{name: "unix_s empty string", in: tsT("unix_s"), rec: `{"url":"u","t":""}`, reason: ReasonInvalidTimestamp},
	{name: "unix_s minus only", in: tsT("unix_s"), rec: `{"url":"u","t":"-"}`, reason: ReasonInvalidTimestamp},
	{name: "unix_s rfc3339 string", in: tsT("unix_s"), rec: `{"url":"u","t":"2026-01-01T00:00:00Z"}`, reason: ReasonInvalidTimestamp},
	{name: "unix_s bool", in: tsT("unix_s"), rec: `{"url":"u","t":true}`, reason: ReasonInvalidTimestamp},
	{name: "unix_s overflow on scaling", in: tsT("unix_s"), rec: `{"url":"u","t":9223372036854776}`, reason: ReasonInvalidTimestamp},
	{name: "unix_s largest scalable", in: tsT("unix_s"), rec: `{"url":"u","t":9223372036854775}`, reason: ReasonTimestampOutOfRange},
	{name: "unix_s overflow", in: tsT("unix_s"), rec: `{"url":"u","t":"99999999999999999999"}`, reason: ReasonInvalidTimestamp},
	{name: "unix_ms", in: tsT("unix_ms"), rec: `{"url":"u","t":1767225600123}`, url: "u", ms: jan2026 + 123, hasTime: true},
	{name: "unix_ms string", in: tsT("unix_ms"), rec: `{"url":"u","t":"1767225600123"}`, url: "u", ms: jan2026 + 123, hasTime: true},
	{name: "unix_us", in: tsT("unix_us"), rec: `{"url":"u","t":1767225600123999}`, url: "u", ms: jan2026 + 123, hasTime: true},
	{name: "unix_us string", in: tsT("unix_us"), rec: `{"url":"u","t":"1767225600123999"}`, url: "u", ms: jan2026 + 123, hasTime: true},
	{name: "unix_us max", in: tsT("unix_us"), rec: `{"url":"u","t":9223372036854775807}`, reason: ReasonTimestampOutOfRange},
	{name: "unix_us overflow", in: tsT("unix_us"), rec: `{"url":"u","t":9223372036854775808}`, reason: ReasonInvalidTimestamp},
	{name: "unix_ns", in: tsT("unix_ns"), rec: `{"url":"u","t":1767225600123456789}`, url: "u", ms: jan2026 + 123, hasTime: true},
	{name: "unix_ns string", in: tsT("unix_ns"), rec: `{"url":"u","t":"1767225600123456789"}`, url: "u", ms: jan2026 + 123, hasTime: true},
	{name: "unix_ns min", in: tsT("unix_ns"), rec: `{"url":"u","t":"-9223372036854775808"}`, reason: ReasonTimestampOutOfRange},
	{name: "unix_ns below min", in: tsT("unix_ns"), rec: `{"url":"u","t":"-9223372036854775809"}`, reason: ReasonInvalidTimestamp},
	{name: "unix_ns null", in: tsT("unix_ns"), rec: `{"url":"u","t":null}`, url: "u"},
	{name: "record source", in: InputOptions{TSSource: "record"}, rec: `{"url":"u","ts":1767225600000}`, url: "u"},
	{name: "record source ignores malformed", in: InputOptions{TSSource: "record"}, rec: `{"url":"u","ts":"garbage"}`, url: "u"},
	{name: "record source ignores object", in: InputOptions{TSSource: "record", TSFormat: "unix_s", TS: "a.b"}, rec: `{"url":"u","a":{"b":{}},"ts":1.5}`, url: "u"},
	{name: "record source still checks JSON", in: InputOptions{TSSource: "record"}, rec: "{\"url\":\"u\",\"ts\":\"\xff\"}", reason: ReasonInvalidUTF8},

	// Filters.
	{name: "filter ==", in: filter("type==track"), rec: `{"type":"track","url":"u"}`, url: "u"},
	{name: "filter == other", in: filter("type==track"), rec: `{"type":"page","url":"u"}`, reason: reasonFiltered},
	{name: "filter == absent", in: filter("type==track"), rec: `{"url":"u"}`, reason: reasonFiltered},
	{name: "filter before url", in: filter("type==track"), rec: `{"type":"identify"}`, reason: reasonFiltered},
	{name: "filter passed then url", in: filter("type==track"), rec: `{"type":"track"}`, reason: ReasonMissingURL},
	{name: "filter after JSON", in: filter("type==track"), rec: `{"type":"page",}`, reason: ReasonInvalidJSON},
	{name: "filter after UTF-8", in: filter("type==track"), rec: "{\"type\":\"page\",\"x\":\"\xff\"}", reason: ReasonInvalidUTF8},
	{name: "filter before ts", in: filter("type==track"), rec: `{"type":"page","url":"u","ts":"bad"}`, reason: reasonFiltered},
	{name: "filter !=", in: filter("type!=identify"), rec: `{"type":"track","url":"u"}`, url: "u"},
	{name: "filter != same", in: filter("type!=identify"), rec: `{"type":"identify","url":"u"}`, reason: reasonFiltered},
	{name: "filter != absent", in: filter("type!=identify"), rec: `{"url":"u"}`, url: "u"},
	{name: "filter number", in: filter("n==1"), rec: `{"n":1,"url":"u"}`, url: "u"},
	{name: "filter number as string", in: filter("n==1"), rec: `{"n":"1","url":"u"}`, url: "u"},
	{name: "filter number 1.0", in: filter("n==1"), rec: `{"n":1.0,"url":"u"}`, reason: reasonFiltered},
	{name: "filter number 1e0", in: filter("n==1"), rec: `{"n":1e0,"url":"u"}`, reason: reasonFiltered},
	{name: "filter negative", in: filter("n==-1.5e3"), rec: `{"n":-1.5e3,"url":"u"}`, url: "u"},
	{name: "filter true", in: filter("b==true"), rec: `{"b":true,"url":"u"}`, url: "u"},
	{name: "filter true string", in: filter("b==true"), rec: `{"b":"true","url":"u"}`, url: "u"},
	{name: "filter false", in: filter("b==true"), rec: `{"b":false,"url":"u"}`, reason: reasonFiltered},
	{name: "filter null", in: filter("x==null"), rec: `{"x":null,"url":"u"}`, url: "u"},
	{name: "filter null absent", in: filter("x==null"), rec: `{"url":"u"}`, reason: reasonFiltered},
	{name: "filter not null", in: filter("x!=null"), rec: `{"x":null,"url":"u"}`, reason: reasonFiltered},
	{name: "filter not null absent", in: filter("x!=null"), rec: `{"url":"u"}`, url: "u"},
	{name: "filter escaped", in: filter("type==track"), rec: `{"type":"tr\u0061ck","url":"u"}`, url: "u"},
	{name: "filter escaped quote", in: filter(`type==tr"ack`), rec: `{"type":"tr\"ack","url":"u"}`, url: "u"},
	{name: "filter escaped backslash", in: filter(`type==a\b`), rec: `{"type":"a\\b","url":"u"}`, url: "u"},
	{name: "filter escaped raw differs", in: filter(`type==tr\u0061ck`), rec: `{"type":"tr\u0061ck","url":"u"}`, reason: reasonFiltered},
	{name: "filter unicode", in: filter("type==café"), rec: `{"type":"caf\u00e9","url":"u"}`, url: "u"},
	{name: "filter escaped longer", in: filter("type==track"), rec: `{"type":"track\u0021","url":"u"}`, reason: reasonFiltered},
	{name: "filter escaped shorter", in: filter("type==track!"), rec: `{"type":"tr\u0061ck","url":"u"}`, reason: reasonFiltered},
	{name: "filter empty value", in: filter("x=="), rec: `{"x":"","url":"u"}`, url: "u"},
	{name: "filter empty value absent", in: filter("x=="), rec: `{"url":"u"}`, reason: reasonFiltered},
	{name: "filter object never equal", in: filter("o=={}"), rec: `{"o":{},"url":"u"}`, reason: reasonFiltered},
	{name: "filter object not equal", in: filter("o!={}"), rec: `{"o":{},"url":"u"}`, url: "u"},
	{name: "filter array never equal", in: filter("o==[]"), rec: `{"o":[],"url":"u"}`, reason: reasonFiltered},
	{name: "filter nested", in: filter("context.page.type==x"), rec: `{"context":{"page":{"type":"x"}},"url":"u"}`, url: "u"},
	{name: "filter nested ancestor dup", in: filter("ctx.type==t"), rec: `{"ctx":{"type":"t"},"ctx":{},"url":"u"}`, reason: reasonFiltered},
	{name: "filter and", in: filter("a==1", "b!=2"), rec: `{"a":1,"b":3,"url":"u"}`, url: "u"},
	{name: "filter and fails", in: filter("a==1", "b!=2"), rec: `{"a":1,"b":2,"url":"u"}`, reason: reasonFiltered},
	{name: "filter on url path", in: filter("url!="), rec: `{"url":""}`, reason: reasonFiltered},
	{name: "filter split at first", in: filter("a!==b"), rec: `{"a":"=b","url":"u"}`, reason: reasonFiltered},
	{name: "filter split at first holds", in: filter("a!==b"), rec: `{"a":"b","url":"u"}`, url: "u"},
	{name: "filter spaces not trimmed", in: filter("type == track"), rec: `{"type":"track","url":"u"}`, reason: reasonFiltered},
	{name: "filter duplicate key last", in: filter("type==track"), rec: `{"type":"track","type":"page","url":"u"}`, reason: reasonFiltered},
}

func TestDecodeMapped(t *testing.T) {
	for _, tc := range mappedCases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := NewDecoder(tc.in, 0)
			if err != nil {
				t.Fatal(err)
			}
			in := []byte(tc.rec)
			orig := bytes.Clone(in)
			c, r := d.Decode(in)
			if !bytes.Equal(in, orig) {
				t.Fatalf("Decode modified its input")
			}
			if r != tc.reason {
				t.Fatalf("Decode(%s) with %s: reason = %v, want %v", tc.rec, tc.in, r, tc.reason)
			}
			if r != ReasonNone {
				if c.URL != nil || c.ID != nil || c.HasTime || c.TimeMs != 0 {
					t.Fatalf("rejected record returned non-zero Click %+v", c)
				}
				return
			}
			checkClick(t, c, decodeCase{url: tc.url, ms: tc.ms, hasTime: tc.hasTime, id: tc.id})
		})
	}
}

// TestDecodeMappedReuse runs every case through one Decoder per mapping
// twice, so slots left by one record (and by rejected ones) must not leak
// into the next.
func TestDecodeMappedReuse(t *testing.T) {
	decs := map[string]*Decoder{}
	for round := 0; round < 2; round++ {
		for _, tc := range mappedCases {
			d := decs[tc.in.String()]
			if d == nil {
				var err error
				if d, err = NewDecoder(tc.in, 0); err != nil {
					t.Fatal(err)
				}
				decs[tc.in.String()] = d
			}
			c, r := d.Decode([]byte(tc.rec))
			if r != tc.reason {
				t.Fatalf("%s: reason = %v, want %v", tc.name, r, tc.reason)
			}
			if r == ReasonNone {
				checkClick(t, c, decodeCase{url: tc.url, ms: tc.ms, hasTime: tc.hasTime, id: tc.id})
			}
		}
	}
}

// TestDecodeDefaultMappingAgrees runs the default-mapping cases through a
// mapping that is the default in all but name (paths spelled out and a
// filter that always holds), so the mapped path must agree with the
// default one everywhere.
func TestDecodeDefaultMappingAgrees(t *testing.T) {
	d, err := NewDecoder(InputOptions{Filter: []string{"no\\.such\\.key!=x"}}, 0)
	if err != nil || d.m == nil {
		t.Fatal(err)
	}
	for _, tc := range decodeCases {
		d.MaxURLBytes = tc.maxURL
		c, r := d.Decode([]byte(tc.in))
		if r != tc.reason {
			t.Errorf("%s: reason = %v, want %v", tc.name, r, tc.reason)
			continue
		}
		if r == ReasonNone {
			checkClick(t, c, tc)
		}
	}
}

func TestDecodeMappedAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation changes allocation behaviour")
	}
	for _, tc := range mappedCases {
		d, err := NewDecoder(tc.in, 0)
		if err != nil {
			t.Fatal(err)
		}
		in := []byte(tc.rec)
		d.Decode(in) // warm up the scratch buffer
		if allocs := testing.AllocsPerRun(50, func() { d.Decode(in) }); allocs != 0 {
			t.Errorf("%s: %v allocs/op, want 0", tc.name, allocs)
		}
	}
}

// trackerEvent is a Segment-style track event as a tracker sends it, with a
// top-level url, ts and id added so that the default mapping finds them too.
const trackerEvent = `{"anonymousId":"507f191e810c19729de860ea","context":{"ip":"203.0.113.7",` +
	`"library":{"name":"analytics.js","version":"2.11.1"},"page":{"path":"/p/12345","title":"Blue Shoes",` +
	`"url":"https://shop.example.com/p/12345?utm_source=news"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)"},` +
	`"event":"Product Clicked","messageId":"ajs-f8ca1e4de5024d94","properties":{"sku":"12345","price":49.99,"tags":["shoes"]},` +
	`"timestamp":"2026-01-01T12:34:56.789Z","type":"track","userId":"97980cfea0067",` +
	`"url":"https://shop.example.com/p/12345?utm_source=news","ts":"2026-01-01T12:34:56.789Z","id":"ajs-f8ca1e4de5024d94"}`

var trackerMappings = []struct {
	name string
	in   InputOptions
}{
	{"default", InputOptions{}},
	{"nested", InputOptions{URL: "context.page.url", TS: "timestamp", TSFormat: "rfc3339", ID: "messageId", Filter: []string{"type==track"}}},
}

func TestDecodeTracker(t *testing.T) {
	var want Click
	for i, tm := range trackerMappings {
		d, err := NewDecoder(tm.in, 0)
		if err != nil {
			t.Fatal(err)
		}
		c, r := d.Decode([]byte(trackerEvent))
		if r != ReasonNone || !c.HasTime {
			t.Fatalf("%s: %v %+v", tm.name, r, c)
		}
		if i == 0 {
			want = c
			continue
		}
		if !bytes.Equal(c.URL, want.URL) || c.TimeMs != want.TimeMs || !bytes.Equal(c.ID, want.ID) {
			t.Errorf("%s: %+v, default mapping: %+v", tm.name, c, want)
		}
	}
}

func BenchmarkDecodeTracker(b *testing.B) {
	for _, tm := range trackerMappings {
		b.Run(tm.name, func(b *testing.B) {
			d, err := NewDecoder(tm.in, 0)
			if err != nil {
				b.Fatal(err)
			}
			in := []byte(trackerEvent)
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

// genTrackerEvent is one event of `clickagg gen --shape tracker` (seed 1),
// as the aggregator benchmark's tracker workload sends them: 657 bytes, an
// escaped title, no top-level url.
const genTrackerEvent = `{"type":"track","event":"Link Clicked","messageId":"2ac9b0de-70e3-46b6-a4f9-243384528c5a","timestamp":"2026-11-30T19:39:34.853Z","sentAt":"2026-11-30T19:39:36.166Z","context":{"page":{"url":"https://example.com/page/527","path":"/page/527","title":"Page \u2014 \"0\"","referrer":""},"userAgent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148","ip":"203.0.113.218","library":{"name":"analytics.js","version":"4.1.0"}},"properties":{"href":"https://example.com/page/527","text":"Read more","classes":["nav","cta"],"position":7},"anonymousId":"b0e25b30-eec2-46e0-a6bc-b1f1cf76435c","userId":"user-68243","version":2}`

// BenchmarkDecodeTrackerGen decodes genTrackerEvent with the tracker
// workload's mapping.
func BenchmarkDecodeTrackerGen(b *testing.B) {
	d, err := NewDecoder(trackerMappings[1].in, 0)
	if err != nil {
		b.Fatal(err)
	}
	in := []byte(genTrackerEvent)
	if c, r := d.Decode(in); r != ReasonNone || string(c.URL) != "https://example.com/page/527" {
		b.Fatal(r, c)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		d.Decode(in)
	}
}
