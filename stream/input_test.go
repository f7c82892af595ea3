package stream

// Tests of the input mapping's configuration (input.go): Validate's errors,
// path parsing and formatting, filter condition splitting, the canonical
// String, and how NewDecoder and NewOperator take the mapping. What a
// mapping decodes is tested in decode_mapped_test.go and
// decode_mapped_fuzz_test.go.

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestInputValidate(t *testing.T) {
	ok := []InputOptions{
		{},
		{URL: "url", TS: "ts", ID: "id", TSFormat: "auto", TSSource: "event"},
		{URL: "context.page.url", TS: "timestamp", ID: "messageId", TSFormat: "rfc3339", Filter: []string{"type==track"}},
		{URL: `a\.b`, TS: `a\\b`, ID: `x.y\.z.\\`, TSFormat: "unix_ns", TSSource: "record"},
		{TSFormat: "unix_s"}, {TSFormat: "unix_ms"}, {TSFormat: "unix_us"},
		{URL: "页面.url", Filter: []string{"a==", "b!=", "c===", "d!==x", "e==!=", "f.g==h i", "é==é", "x==y"}},
	}
	for _, o := range ok {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	bad := []struct {
		o    InputOptions
		want string
	}{
		{InputOptions{URL: "a..b"}, `input.url "a..b": empty key in path`},
		{InputOptions{URL: ".a"}, `input.url ".a": empty key in path`},
		{InputOptions{URL: "a."}, `input.url "a.": empty key in path`},
		{InputOptions{URL: "."}, `input.url ".": empty key in path`},
		{InputOptions{TS: `a\`}, `input.ts "a\\": trailing backslash in path`},
		{InputOptions{ID: `a\b`}, `input.id "a\\b": bad escape \b in path: only \. and \\ are escapes`},
		{InputOptions{ID: `a\é`}, `bad escape \é in path`},
		{InputOptions{URL: "a\xffb"}, `input.url "a\xffb": path is not valid UTF-8`},
		{InputOptions{TSFormat: "unix"}, `input.ts_format "unix": must be auto, rfc3339, unix_s, unix_ms, unix_us or unix_ns`},
		{InputOptions{TSFormat: "RFC3339"}, `input.ts_format "RFC3339"`},
		{InputOptions{TSSource: "kafka"}, `input.ts_source "kafka": must be event or record`},
		{InputOptions{Filter: []string{"type=click"}}, `input.filter "type=click": must be path==value or path!=value`},
		{InputOptions{Filter: []string{"type"}}, `input.filter "type": must be path==value or path!=value`},
		{InputOptions{Filter: []string{"==x"}}, `input.filter "==x": empty path`},
		{InputOptions{Filter: []string{"a..b==1"}}, `input.filter "a..b==1": empty key in path`},
		{InputOptions{Filter: []string{"a==\xff"}}, `input.filter "a==\xff": not valid UTF-8`},
		{InputOptions{Filter: strings.Split("a==1,b==1,c==1,d==1,e==1,f==1,g==1,h==1,i==1", ",")}, `input.filter: at most 8 conditions, got 9`},
		// The first bad setting is reported, in field order.
		{InputOptions{URL: "a..", TSFormat: "x"}, `input.url`},
		{InputOptions{TSFormat: "x", Filter: []string{"y"}}, `input.ts_format`},
		// A ts path is checked even when ts_source record ignores it.
		{InputOptions{TS: "a..b", TSSource: "record"}, `input.ts "a..b"`},
	}
	for _, c := range bad {
		err := c.o.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: Validate() = %v, want %q", c.o, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: error spans lines: %q", c.o, err)
		}
		if _, err2 := NewDecoder(c.o, 0); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("%+v: NewDecoder error %v, Validate %v", c.o, err2, err)
		}
		opts := OperatorOptions{Windows: []time.Duration{time.Minute}, Input: c.o}
		if err2 := opts.Validate(); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("%+v: OperatorOptions.Validate() = %v, want %v", c.o, err2, err)
		}
		if _, err2 := NewOperator(opts); err2 == nil {
			t.Errorf("%+v: NewOperator accepted it", c.o)
		}
	}
	eight := strings.Split("a==1,b==1,c==1,d==1,e==1,f==1,g==1,h==1", ",")
	if err := (InputOptions{URL: "u.v", TS: "t.u", ID: "i.d", Filter: eight}).Validate(); err != nil {
		t.Errorf("8 filters on distinct paths: %v", err)
	}
}

func TestParsePath(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"url", []string{"url"}},
		{"context.page.url", []string{"context", "page", "url"}},
		{`a\.b`, []string{"a.b"}},
		{`a\.b.c`, []string{"a.b", "c"}},
		{`a\\b`, []string{`a\b`}},
		{`a\\.b`, []string{`a\`, "b"}},
		{`\\\.`, []string{`\.`}},
		{`\.`, []string{"."}},
		{"页面.url", []string{"页面", "url"}},
		{"a b. c", []string{"a b", " c"}},
	}
	for _, c := range cases {
		got, err := parsePath(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("parsePath(%q) = %q, %v; want %q", c.in, got, err, c.want)
			continue
		}
		if back := formatPath(got); back != c.in {
			t.Errorf("formatPath(parsePath(%q)) = %q", c.in, back)
		}
	}
}

func TestParseCondition(t *testing.T) {
	cases := []struct {
		in    string
		path  []string
		neg   bool
		value string
	}{
		{"type==track", []string{"type"}, false, "track"},
		{"type!=track", []string{"type"}, true, "track"},
		{"a==", []string{"a"}, false, ""},
		{"a===b", []string{"a"}, false, "=b"},
		{"a!==b", []string{"a"}, true, "=b"},
		{"a==!=b", []string{"a"}, false, "!=b"},
		{"a=!=b", []string{"a="}, true, "b"},
		{"a!b==c", []string{"a!b"}, false, "c"},
		{`x\.y.z==a.b`, []string{"x.y", "z"}, false, "a.b"},
		{"type == track", []string{"type "}, false, " track"}, // nothing is trimmed
	}
	for _, c := range cases {
		got, err := parseCondition(c.in)
		if err != nil || !slices.Equal(got.path, c.path) || got.neg != c.neg || got.value != c.value {
			t.Errorf("parseCondition(%q) = %+v, %v; want path %q neg %v value %q", c.in, got, err, c.path, c.neg, c.value)
		}
	}
}

func TestInputString(t *testing.T) {
	def := InputOptions{}.String()
	if want := `url="url" ts="ts" ts_format=auto ts_source=event id="id"`; def != want {
		t.Errorf("zero String() = %s, want %s", def, want)
	}
	same := []InputOptions{
		{URL: "url", TS: "ts", ID: "id"},
		{TSFormat: "auto", TSSource: "event"},
		{URL: "url", TS: "ts", ID: "id", TSFormat: "auto", TSSource: "event", Filter: []string{}},
	}
	for _, o := range same {
		if s := o.String(); s != def {
			t.Errorf("%+v: String() = %s, want the zero value's %s", o, s, def)
		}
	}
	// Options that map alike give the same text.
	equal := [][2]InputOptions{
		{{Filter: []string{"a==1", "b!=2"}}, {Filter: []string{"b!=2", "a==1"}}},
		{{Filter: []string{"a==1"}}, {Filter: []string{"a==1", "a==1"}}},
		{{TSSource: "record", TS: "x", TSFormat: "unix_s"}, {TSSource: "record"}},
	}
	for _, p := range equal {
		if p[0].String() != p[1].String() {
			t.Errorf("%+v and %+v: %s != %s", p[0], p[1], p[0].String(), p[1].String())
		}
	}
	// Every change to the mapping changes the text, and no two of these
	// collide.
	distinct := []InputOptions{
		{},
		{URL: "page.url"},
		{URL: `page\.url`},
		{URL: "page", ID: "url"},
		{URL: "page url"},
		{URL: `a\\b`},
		{TS: "timestamp"},
		{ID: "messageId"},
		{TSFormat: "rfc3339"},
		{TSFormat: "unix_s"},
		{TSFormat: "unix_ms"},
		{TSFormat: "unix_us"},
		{TSFormat: "unix_ns"},
		{TSSource: "record"},
		{Filter: []string{"type==track"}},
		{Filter: []string{"type!=track"}},
		{Filter: []string{"type==track "}},
		{Filter: []string{"type==track", "a==1"}},
		{Filter: []string{`type==track" filter="a==1`}},
		{Filter: []string{"type==="}},
		{Filter: []string{"type=="}},
		{URL: `x" ts="y`},
	}
	seen := map[string]int{}
	for i, o := range distinct {
		s := o.String()
		if j, dup := seen[s]; dup {
			t.Errorf("%+v and %+v both give %s", distinct[j], o, s)
		}
		seen[s] = i
		if strings.ContainsAny(s, "\n") {
			t.Errorf("%+v: String() spans lines: %q", o, s)
		}
	}
	if s, want := (InputOptions{URL: "context.page.url", TS: "timestamp", TSFormat: "rfc3339", ID: "messageId", Filter: []string{"type==track"}}).String(),
		`url="context.page.url" ts="timestamp" ts_format=rfc3339 ts_source=event id="messageId" filter="type==track"`; s != want {
		t.Errorf("String() = %s, want %s", s, want)
	}
	if s, want := (InputOptions{TSSource: "record"}).String(), `url="url" ts_source=record id="id"`; s != want {
		t.Errorf("String() = %s, want %s", s, want)
	}
}

// TestDefaultInputHasNoMapping checks that the zero InputOptions, spelled
// any way, decode with the default (mapping-free) path, as the zero Decoder
// does.
func TestDefaultInputHasNoMapping(t *testing.T) {
	for _, o := range []InputOptions{{}, {URL: "url", TS: "ts", ID: "id", TSFormat: "auto", TSSource: "event"}} {
		d, err := NewDecoder(o, 0)
		if err != nil || d.m != nil {
			t.Errorf("%+v: NewDecoder = %v, %v; want no mapping", o, d, err)
		}
		op, err := NewOperator(OperatorOptions{Windows: []time.Duration{time.Minute}, Input: o})
		if err != nil || op.dec.m != nil {
			t.Errorf("%+v: NewOperator = %v; mapping %v", o, err, op.dec.m)
		}
	}
	for _, o := range []InputOptions{{TSSource: "record"}, {URL: "u"}, {TSFormat: "rfc3339"}, {Filter: []string{"a==1"}}} {
		if d, err := NewDecoder(o, 0); err != nil || d.m == nil {
			t.Errorf("%+v: NewDecoder = %v, %v; want a mapping", o, d, err)
		}
	}
}

// TestCompileMappingTrie checks the trie's shape: children contiguous,
// slots numbered so that each subtree's are contiguous, paths shared.
func TestCompileMappingTrie(t *testing.T) {
	m, err := InputOptions{
		URL: "context.page.url", TS: "context.ts", ID: "id",
		Filter: []string{"context.page.type==x", "context==y", "id!=z"},
	}.compile()
	if err != nil {
		t.Fatal(err)
	}
	// Distinct paths: context.page.url, context.ts, id, context.page.type, context.
	if m.nslots != 5 {
		t.Errorf("nslots = %d, want 5", m.nslots)
	}
	if m.id != m.filters[2].slot {
		t.Errorf("id and the id filter do not share a slot")
	}
	var walk func(n int32, path string)
	walk = func(n int32, path string) {
		nd := m.nodes[n]
		if nd.slot >= 0 && (nd.slot < nd.lo || nd.slot >= nd.hi) {
			t.Errorf("%s: slot %d outside [%d, %d)", path, nd.slot, nd.lo, nd.hi)
		}
		lo := nd.lo
		if nd.slot >= 0 {
			lo++
		}
		for c := nd.first; c < nd.end; c++ {
			ch := m.nodes[c]
			if ch.lo != lo {
				t.Errorf("%s.%s: slots start at %d, want %d", path, ch.key, ch.lo, lo)
			}
			lo = ch.hi
			walk(c, path+"."+ch.key)
		}
		if lo != nd.hi {
			t.Errorf("%s: children's slots end at %d, node's at %d", path, lo, nd.hi)
		}
		if (nd.sub >= 0) != (nd.end > nd.first) {
			t.Errorf("%s: sub %d with %d children", path, nd.sub, nd.end-nd.first)
		}
	}
	walk(0, "")
	if m.nodes[0].lo != 0 || int(m.nodes[0].hi) != m.nslots {
		t.Errorf("root slots [%d, %d), want [0, %d)", m.nodes[0].lo, m.nodes[0].hi, m.nslots)
	}
}
