package oracle

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/stream"
	"github.com/twmb/franz-go/pkg/kgo"
)

// recTS is the Kafka record timestamp of the table's records: 2026-01-01.
var recTS = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

func TestMappingDecode(t *testing.T) {
	const ms = "1767225600123" // 2026-01-01T00:00:00.123Z
	const msT = int64(1767225600123)
	cases := []struct {
		name  string
		in    stream.InputOptions
		value string
		want  Result
		url   string
		ts    int64 // 0: recTS
		id    string
	}{
		// The default mapping: today's format.
		{name: "default", value: `{"url":"u","ts":` + ms + `,"id":"e1"}`, want: Valid, url: "u", ts: msT, id: "e1"},
		{name: "default rfc3339", value: `{"url":"u","ts":"2026-01-01T02:00:00.123+02:00"}`, want: Valid, url: "u", ts: msT},
		{name: "default no ts", value: `{"url":"u"}`, want: Valid, url: "u"},
		{name: "default numeric id", value: `{"url":"u","id":7}`, want: Valid, url: "u", id: "7"},
		{name: "default bad id", value: `{"url":"u","id":7.5}`, want: Invalid},
		{name: "not an object", value: `["u"]`, want: Invalid},
		{name: "trailing data", value: `{"url":"u"} {}`, want: Invalid},
		{name: "trailing brace", value: `{"url":"u"}}`, want: Invalid},
		{name: "null record", value: `null`, want: Invalid},
		{name: "invalid utf8", value: "{\"url\":\"u\xff\"}", want: Invalid},

		// Paths.
		{name: "nested", in: stream.InputOptions{URL: "context.page.url"}, value: `{"context":{"page":{"url":"https://e/x"}}}`, want: Valid, url: "https://e/x"},
		{name: "nested absent", in: stream.InputOptions{URL: "context.page.url"}, value: `{"url":"u","context":{"page":{}}}`, want: Invalid},
		{name: "parent not an object", in: stream.InputOptions{URL: "context.page.url"}, value: `{"context":{"page":"x"}}`, want: Invalid},
		{name: "escaped dot", in: stream.InputOptions{URL: `a\.b`}, value: `{"a.b":"dot","a":{"b":"nested"}}`, want: Valid, url: "dot"},
		{name: "unescaped dot", in: stream.InputOptions{URL: `a.b`}, value: `{"a.b":"dot","a":{"b":"nested"}}`, want: Valid, url: "nested"},
		{name: "escaped backslash", in: stream.InputOptions{URL: `a\\.b`}, value: `{"a\\":{"b":"bs"}}`, want: Valid, url: "bs"},
		{name: "escaped key in JSON", in: stream.InputOptions{URL: "pa\u00e9ge.url"}, value: `{"pa\u00e9ge":{"url":"x"}}`, want: Valid, url: "x"},
		{name: "arrays are not descended", in: stream.InputOptions{URL: "items.0"}, value: `{"items":["u"]}`, want: Invalid},
		{name: "array at the path", in: stream.InputOptions{URL: "items"}, value: `{"items":["u"]}`, want: Invalid},
		{name: "duplicate key: last wins", in: stream.InputOptions{URL: "page.url"}, value: `{"page":{"url":"a","url":"b"}}`, want: Valid, url: "b"},
		{name: "duplicate ancestor: last wins whole", in: stream.InputOptions{URL: "page.url"}, value: `{"page":{"url":"a"},"page":{"title":"t"}}`, want: Invalid},
		{name: "duplicate ancestor: last wins", in: stream.InputOptions{URL: "page.url"}, value: `{"page":{"title":"t"},"page":{"url":"b"}}`, want: Valid, url: "b"},
		{name: "id path", in: stream.InputOptions{ID: "messageId"}, value: `{"url":"u","id":"x","messageId":"m"}`, want: Valid, url: "u", id: "m"},
		{name: "ts path", in: stream.InputOptions{TS: "timestamp"}, value: `{"url":"u","ts":"bad","timestamp":` + ms + `}`, want: Valid, url: "u", ts: msT},

		// ts formats.
		{name: "auto: 10 digits are ms (1970)", in: stream.InputOptions{TS: "t"}, value: `{"url":"u","t":1767225600}`, want: Invalid},
		{name: "unix_s", in: stream.InputOptions{TS: "t", TSFormat: "unix_s"}, value: `{"url":"u","t":1767225600}`, want: Valid, url: "u", ts: 1767225600000},
		{name: "unix_s in a string", in: stream.InputOptions{TS: "t", TSFormat: "unix_s"}, value: `{"url":"u","t":"1767225600"}`, want: Valid, url: "u", ts: 1767225600000},
		{name: "unix_s leading zero in a string", in: stream.InputOptions{TS: "t", TSFormat: "unix_s"}, value: `{"url":"u","t":"01767225600"}`, want: Valid, url: "u", ts: 1767225600000},
		{name: "unix_s signed string", in: stream.InputOptions{TS: "t", TSFormat: "unix_s"}, value: `{"url":"u","t":"+1767225600"}`, want: Invalid},
		{name: "unix_s spaces in a string", in: stream.InputOptions{TS: "t", TSFormat: "unix_s"}, value: `{"url":"u","t":" 1767225600"}`, want: Invalid},
		{name: "unix_s not an integer", in: stream.InputOptions{TS: "t", TSFormat: "unix_s"}, value: `{"url":"u","t":1767225600.5}`, want: Invalid},
		{name: "unix_s RFC 3339", in: stream.InputOptions{TS: "t", TSFormat: "unix_s"}, value: `{"url":"u","t":"2026-01-01T00:00:00Z"}`, want: Invalid},
		{name: "unix_s overflow", in: stream.InputOptions{TS: "t", TSFormat: "unix_s"}, value: `{"url":"u","t":9223372036854775}`, want: Invalid},
		{name: "unix_ms string", in: stream.InputOptions{TSFormat: "unix_ms"}, value: `{"url":"u","ts":"` + ms + `"}`, want: Valid, url: "u", ts: msT},
		{name: "unix_us floor", in: stream.InputOptions{TSFormat: "unix_us"}, value: `{"url":"u","ts":1767225600123999}`, want: Valid, url: "u", ts: msT},
		{name: "unix_ns floor", in: stream.InputOptions{TSFormat: "unix_ns"}, value: `{"url":"u","ts":"1767225600123999999"}`, want: Valid, url: "u", ts: msT},
		{name: "unix_ns boolean", in: stream.InputOptions{TSFormat: "unix_ns"}, value: `{"url":"u","ts":true}`, want: Invalid},
		{name: "rfc3339 refuses integers", in: stream.InputOptions{TSFormat: "rfc3339"}, value: `{"url":"u","ts":` + ms + `}`, want: Invalid},
		{name: "rfc3339", in: stream.InputOptions{TSFormat: "rfc3339"}, value: `{"url":"u","ts":"2026-01-01T00:00:00.123Z"}`, want: Valid, url: "u", ts: msT},
		{name: "null ts: record time", in: stream.InputOptions{TSFormat: "unix_s"}, value: `{"url":"u","ts":null}`, want: Valid, url: "u"},
		{name: "ts_source record ignores ts", in: stream.InputOptions{TSSource: "record"}, value: `{"url":"u","ts":"yesterday"}`, want: Valid, url: "u"},
		{name: "ts_source record ignores skew", in: stream.InputOptions{TSSource: "record"}, value: `{"url":"u","ts":4102444700000}`, want: Valid, url: "u"},
		{name: "skew", value: `{"url":"u","ts":` + "1767232800124" + `}`, want: Invalid},

		// Filters.
		{name: "filter holds", in: stream.InputOptions{Filter: []string{"type==track"}}, value: `{"type":"track","url":"u"}`, want: Valid, url: "u"},
		{name: "filter fails", in: stream.InputOptions{Filter: []string{"type==track"}}, value: `{"type":"page","url":"u"}`, want: Filtered},
		{name: "filter before url checks", in: stream.InputOptions{Filter: []string{"type==track"}}, value: `{"type":"identify"}`, want: Filtered},
		{name: "filter after JSON checks", in: stream.InputOptions{Filter: []string{"type==track"}}, value: `{"type":"identify"`, want: Invalid},
		{name: "filter absent ==", in: stream.InputOptions{Filter: []string{"type==track"}}, value: `{"url":"u"}`, want: Filtered},
		{name: "filter absent !=", in: stream.InputOptions{Filter: []string{"type!=track"}}, value: `{"url":"u"}`, want: Valid, url: "u"},
		{name: "filter escaped string", in: stream.InputOptions{Filter: []string{"event==Link Clicked"}}, value: `{"event":"Link\u0020Clicked","url":"u"}`, want: Valid, url: "u"},
		{name: "filter number literal", in: stream.InputOptions{Filter: []string{"n==1"}}, value: `{"n":1,"url":"u"}`, want: Valid, url: "u"},
		{name: "filter number literal text", in: stream.InputOptions{Filter: []string{"n==1"}}, value: `{"n":1.0,"url":"u"}`, want: Filtered},
		{name: "filter number as string", in: stream.InputOptions{Filter: []string{"n==1"}}, value: `{"n":"1","url":"u"}`, want: Valid, url: "u"},
		{name: "filter true", in: stream.InputOptions{Filter: []string{"bot==false"}}, value: `{"bot":false,"url":"u"}`, want: Valid, url: "u"},
		{name: "filter null", in: stream.InputOptions{Filter: []string{"userId!=null"}}, value: `{"userId":null,"url":"u"}`, want: Filtered},
		{name: "filter object never equal", in: stream.InputOptions{Filter: []string{"o=={}"}}, value: `{"o":{},"url":"u"}`, want: Filtered},
		{name: "filter object never equal !=", in: stream.InputOptions{Filter: []string{"o!=[]"}}, value: `{"o":[],"url":"u"}`, want: Valid, url: "u"},
		{name: "filter all must hold", in: stream.InputOptions{Filter: []string{"type==track", "event==Link Clicked"}}, value: `{"type":"track","event":"Signed Up","url":"u"}`, want: Filtered},
		{name: "filter nested, value with ==", in: stream.InputOptions{Filter: []string{"a.b==x==y"}}, value: `{"a":{"b":"x==y"},"url":"u"}`, want: Valid, url: "u"},
		{name: "filter empty value", in: stream.InputOptions{Filter: []string{"a=="}}, value: `{"a":"","url":"u"}`, want: Valid, url: "u"},
		{name: "filter on a duplicate key", in: stream.InputOptions{Filter: []string{"type==track"}}, value: `{"type":"track","type":"page","url":"u"}`, want: Filtered},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := NewMapping(c.in)
			if err != nil {
				t.Fatal(err)
			}
			url, ts, id, res := m.Decode([]byte(c.value), recTS, 2048)
			if res != c.want {
				t.Fatalf("%s: %v, want %v", c.value, res, c.want)
			}
			wantTS := c.ts
			if wantTS == 0 {
				wantTS = recTS
			}
			if res == Valid && (url != c.url || ts != wantTS || id != c.id) {
				t.Fatalf("%s: url %q ts %d id %q, want %q %d %q", c.value, url, ts, id, c.url, wantTS, c.id)
			}
		})
	}
}

func TestNewMappingRefuses(t *testing.T) {
	for _, in := range []stream.InputOptions{
		{URL: "a..b"}, {TS: ".ts"}, {ID: "id."}, {URL: `a\b`}, {URL: `a\`},
		{TSFormat: "unix"}, {TSSource: "kafka"}, {Filter: []string{"type=track"}}, {Filter: []string{"==x"}},
		{Filter: []string{"a==1", "a==1", "a==1", "a==1", "a==1", "a==1", "a==1", "a==1", "a==1"}},
	} {
		if _, err := NewMapping(in); err == nil {
			t.Errorf("%+v: no error", in)
		}
	}
}

// oldDecode is the oracle's decoder from before input mapping, kept here
// to show the default mapping changes nothing.
func oldDecode(v []byte, recordTS int64, maxURL int) (string, int64, string, bool) {
	if !utf8.Valid(v) {
		return "", 0, "", false
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(v))
	if err := dec.Decode(&m); err != nil || m == nil || dec.More() {
		return "", 0, "", false
	}
	var url string
	raw, ok := m["url"]
	if !ok || json.Unmarshal(raw, &url) != nil || url == "" || len(url) > maxURL || strings.ContainsRune(url, 0) {
		return "", 0, "", false
	}
	ts := recordTS
	if raw, ok := m["ts"]; ok && string(raw) != "null" {
		var s string
		var n json.Number
		switch {
		case json.Unmarshal(raw, &s) == nil:
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return "", 0, "", false
			}
			ts = t.UnixMilli()
		case json.Unmarshal(raw, &n) == nil:
			i, err := n.Int64()
			if err != nil || strings.ContainsAny(string(raw), ".eE") {
				return "", 0, "", false
			}
			ts = i
		default:
			return "", 0, "", false
		}
	}
	if ts < minTS || ts >= maxTS {
		return "", 0, "", false
	}
	if ts-recordTS > time.Hour.Milliseconds() {
		return "", 0, "", false
	}
	var id string
	if raw, ok := m["id"]; ok && string(raw) != "null" {
		var n json.Number
		switch {
		case json.Unmarshal(raw, &id) == nil:
		case json.Unmarshal(raw, &n) == nil && !strings.ContainsAny(string(raw), ".eE"):
			id = n.String()
		default:
			return "", 0, "", false
		}
	}
	return url, ts, id, true
}

// TestDefaultMappingIsTheOldFormat: over the clicks shape (every invalid
// kind, late, out of order, duplicates) and edge cases, the default
// mapping decides as the oracle did before input mapping.
func TestDefaultMappingIsTheOldFormat(t *testing.T) {
	g, err := gen.New(gen.Options{URLs: 200, Seed: 5, StartTime: time.Unix(1780000000, 0), InvalidFraction: 0.2,
		LateFraction: 0.05, OutOfOrderFraction: 0.1, DuplicateFraction: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	values := [][]byte{[]byte(`{"url":"u","ts":null,"id":null}`), []byte(`{"url":"u","ts":1e3}`), []byte(`{"url":"u","id":-0}`),
		[]byte(`{"url":"u","ts":true}`), []byte(`{"url":1}`), []byte(`{"url":"a\u0000b"}`), []byte(`{"url":"u","id":{}}`),
		[]byte(`{"url":"u","ts":99999999999999999999}`), []byte(`{"url":"u","id":[1]}`)}
	stamps := []int64{recTS, recTS, recTS, recTS, recTS, recTS, recTS, recTS, recTS}
	for range 20_000 {
		ev := g.Next()
		values = append(values, ev.Value)
		stamps = append(stamps, ev.Time.UnixMilli())
	}
	for i, v := range values {
		u1, ts1, id1, ok1 := oldDecode(v, stamps[i], 2048)
		u2, ts2, id2, res := DefaultMapping.Decode(v, stamps[i], 2048)
		if ok1 != (res == Valid) || u1 != u2 || ts1 != ts2 || id1 != id2 {
			t.Fatalf("%s: before %q %d %q %v, now %q %d %q %v", v, u1, ts1, id1, ok1, u2, ts2, id2, res)
		}
	}
}

// TestTrackerShapeUnderItsMapping: every tracker-shaped record decodes,
// under the mapping of gen.TrackerInputFlags, as the generator made it:
// clicks (late, out-of-order, duplicate ones too) to their URL and time,
// page and identify events filtered, every invalid kind rejected. Without
// the filter the page views would count and the identify calls be
// rejected (no URL): the filter decides before the URL checks.
func TestTrackerShapeUnderItsMapping(t *testing.T) {
	in := stream.InputOptions{URL: "context.page.url", TS: "timestamp", ID: "messageId", Filter: []string{"type==track"}}
	if got := mappingOfFlags(t, gen.TrackerInputFlags); !equalInput(got, in) {
		t.Fatalf("gen.TrackerInputFlags %v is not the mapping %+v", gen.TrackerInputFlags, in)
	}
	m, err := NewMapping(in)
	if err != nil {
		t.Fatal(err)
	}
	noFilter := in
	noFilter.Filter = nil
	mNoFilter, err := NewMapping(noFilter)
	if err != nil {
		t.Fatal(err)
	}
	g, err := gen.New(gen.Options{Shape: "tracker", URLs: 300, Zipf: 1.1, Seed: 11, StartTime: time.Unix(1780000000, 0),
		InvalidFraction: 0.1, LateFraction: 0.05, OutOfOrderFraction: 0.1, DuplicateFraction: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	var recs []*kgo.Record
	var size int
	for range 20_000 {
		ev := g.Next()
		kinds[ev.Kind]++
		recs = append(recs, &kgo.Record{Value: ev.Value, Timestamp: ev.Time})
		url, ts, id, res := m.Decode(ev.Value, ev.Time.UnixMilli(), 2048)
		switch {
		case ev.Valid():
			size += len(ev.Value)
			if res != Valid || url != ev.URL || ts != ev.Time.UnixMilli() || len(id) != 36 {
				t.Fatalf("%s %s: %v %q %d %q, want valid %q %d", ev.Kind, ev.Value, res, url, ts, id, ev.URL, ev.Time.UnixMilli())
			}
		case ev.Kind == "filtered":
			if res != Filtered {
				t.Fatalf("%s: %v, want filtered", ev.Value, res)
			}
			_, _, _, res := mNoFilter.Decode(ev.Value, ev.Time.UnixMilli(), 2048)
			isPage := bytes.HasPrefix(ev.Value, []byte(`{"type":"page"`))
			if (isPage && res != Valid) || (!isPage && res != Invalid) {
				t.Fatalf("%s without the filter: %v", ev.Value, res)
			}
		default:
			if res != Invalid {
				t.Fatalf("%s %s: %v, want invalid", ev.Kind, ev.Value, res)
			}
		}
	}
	for _, k := range append([]string{"valid", "late", "out_of_order", "duplicate", "filtered"}, gen.InvalidKinds...) {
		if kinds[k] == 0 {
			t.Errorf("no %s event in 20,000", k)
		}
	}
	if avg := size / (kinds["valid"] + kinds["late"] + kinds["out_of_order"] + kinds["duplicate"]); avg < 500 || avg > 750 {
		t.Errorf("clicks average %d bytes, want about 600", avg)
	}
	exp, err := ComputeWith(recs, Options{Windows: []time.Duration{time.Minute}, MaxURLBytes: 2048, Input: in})
	if err != nil {
		t.Fatal(err)
	}
	valid := int64(kinds["valid"] + kinds["late"] + kinds["out_of_order"] + kinds["duplicate"])
	if exp.Valid != valid || exp.Filtered != int64(kinds["filtered"]) || exp.Valid+exp.Invalid+exp.Filtered != int64(len(recs)) {
		t.Fatalf("expected %d valid %d invalid %d filtered; generated %v", exp.Valid, exp.Invalid, exp.Filtered, kinds)
	}
	t.Logf("%v; clicks %d bytes on average", kinds, size/int(valid))
}

// mappingOfFlags reads --input-* flags as clickagg run does (comma lists).
func mappingOfFlags(t *testing.T, args []string) stream.InputOptions {
	var in stream.InputOptions
	for i := 0; i+1 < len(args); i += 2 {
		switch v := args[i+1]; args[i] {
		case "--input-url":
			in.URL = v
		case "--input-ts":
			in.TS = v
		case "--input-id":
			in.ID = v
		case "--input-ts-format":
			in.TSFormat = v
		case "--input-ts-source":
			in.TSSource = v
		case "--input-filter":
			in.Filter = strings.Split(v, ",")
		default:
			t.Fatalf("unknown flag %s", args[i])
		}
	}
	return in
}

func equalInput(a, b stream.InputOptions) bool {
	return a.URL == b.URL && a.TS == b.TS && a.ID == b.ID && a.TSFormat == b.TSFormat && a.TSSource == b.TSSource &&
		strings.Join(a.Filter, "\x00") == strings.Join(b.Filter, "\x00")
}

// TestReadmeExamples: the README's three input mapping examples decode as
// it says.
func TestReadmeExamples(t *testing.T) {
	cases := []struct {
		value string
		in    stream.InputOptions
		url   string
		ts    int64
		id    string
	}{
		{`{"type":"track","event":"Link Clicked","messageId":"3f1c9a52-8d4e-4b1a-9c2e-5a7b0e6d4f21",
 "timestamp":"2026-01-01T00:00:00.123Z","sentAt":"2026-01-01T00:00:00.512Z",
 "context":{"page":{"url":"https://example.com/pricing","path":"/pricing"},"userAgent":"Mozilla/5.0 …"},
 "properties":{"href":"https://example.com/pricing"},"userId":"user-42"}`,
			stream.InputOptions{URL: "context.page.url", TS: "timestamp", ID: "messageId", Filter: []string{"type==track"}},
			"https://example.com/pricing", 1767225600123, "3f1c9a52-8d4e-4b1a-9c2e-5a7b0e6d4f21"},
		{`{"app_id":"site","event":"page_view","event_id":"c6ef3124-b53a-4b13-a233-0088f79dcbcb",
 "page_url":"https://example.com/pricing","dvce_created_tstamp":1767225600123,"derived_tstamp":1767225600101}`,
			stream.InputOptions{URL: "page_url", TS: "dvce_created_tstamp", TSFormat: "unix_ms", ID: "event_id", Filter: []string{"event==page_view"}},
			"https://example.com/pricing", 1767225600123, "c6ef3124-b53a-4b13-a233-0088f79dcbcb"},
		{`{"page":{"url":"https://example.com/pricing"},"event_time":1767225600}`,
			stream.InputOptions{URL: "page.url", TS: "event_time", TSFormat: "unix_s"},
			"https://example.com/pricing", 1767225600000, ""},
	}
	for _, c := range cases {
		m, err := NewMapping(c.in)
		if err != nil {
			t.Fatal(err)
		}
		url, ts, id, res := m.Decode([]byte(c.value), recTS, 2048)
		if res != Valid || url != c.url || ts != c.ts || id != c.id {
			t.Errorf("%s: %v %q %d %q", c.value, res, url, ts, id)
		}
	}
	// The plain event under ts_format auto: milliseconds, 1970, rejected.
	m, _ := NewMapping(stream.InputOptions{URL: "page.url", TS: "event_time"})
	if _, _, _, res := m.Decode([]byte(cases[2].value), recTS, 2048); res != Invalid {
		t.Errorf("10-digit time under auto: %v, want invalid", res)
	}
}

// TestDecodeLine: a line of a file has no record timestamp: without a time
// it is invalid, and no skew applies to a time far from any record's.
func TestDecodeLine(t *testing.T) {
	for _, c := range []struct {
		value string
		want  Result
	}{
		{`{"url":"u","ts":1767225600123}`, Valid},
		{`{"url":"u","ts":"2099-12-31T23:59:59Z"}`, Valid},
		{`{"url":"u"}`, Invalid},
		{`{"url":"u","ts":null}`, Invalid},
		{`{"url":"u","ts":12345}`, Invalid},
	} {
		if _, _, _, got := DefaultMapping.DecodeLine([]byte(c.value), 0); got != c.want {
			t.Errorf("%s: %v, want %v", c.value, got, c.want)
		}
	}
	if _, _, _, got := DefaultMapping.Decode([]byte(`{"url":"u","ts":"2099-12-31T23:59:59Z"}`), 1767225600123, 0); got != Invalid {
		t.Errorf("a record's skew limit should still apply: %v", got)
	}
}
