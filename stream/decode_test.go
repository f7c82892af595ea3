package stream

// Tests of the Decoder as a whole: the decodeCases table
// (decode_cases_test.go), scratch-buffer reuse and aliasing of the returned
// slices, the Reason names, zero allocations per record, and the Decode
// benchmarks (against encoding/json as a baseline). Scanner, string and
// timestamp tests are in decode_scan_test.go, decode_string_test.go and
// decode_ts_test.go; fuzzing is in decode_fuzz_test.go.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

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
