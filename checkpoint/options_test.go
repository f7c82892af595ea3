package checkpoint

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/clickagg/clickagg/stream"
)

// TestStateIdentityInputMapping: a changed input mapping changes the state
// store's identity (the stored counts meant other records), the default
// mapping, zero or spelled out, does not, and leaves the identity as it
// was before input mapping existed.
func TestStateIdentityInputMapping(t *testing.T) {
	opts := func(in stream.InputOptions) Options {
		return Options{
			Consumer: stream.ConsumerOptions{Topic: "clicks", Group: "clickagg"},
			Operator: stream.OperatorOptions{Windows: []time.Duration{time.Minute}, OutOfOrder: 5 * time.Second, Input: in},
		}
	}
	zero := StateIdentity(opts(stream.InputOptions{}))
	explicit := StateIdentity(opts(stream.InputOptions{URL: "url", TS: "ts", ID: "id", TSFormat: "auto", TSSource: "event"}))
	if zero != explicit {
		t.Errorf("zero and explicit default mappings differ:\n%q\n%q", zero, explicit)
	}
	if strings.Contains(zero, "input") {
		t.Errorf("default mapping %q: want the identity of before input mapping", zero)
	}
	mappings := []stream.InputOptions{
		{URL: "context.page.url"},
		{URL: "context.page.url", TS: "timestamp"},
		{URL: "context.page.url", TS: "timestamp", ID: "messageId"},
		{TSFormat: "unix_s"},
		{TSFormat: "unix_ms"},
		{TSSource: "record"},
		{Filter: []string{"type==track"}},
		{Filter: []string{"type!=track"}},
		{Filter: []string{"type==track", "event==Link Clicked"}},
		{URL: `a\.b`},
		{URL: "a.b"},
	}
	seen := map[string]int{zero: -1}
	for i, in := range mappings {
		id := StateIdentity(opts(in))
		if j, dup := seen[id]; dup {
			t.Errorf("mappings %d %+v and %d give the same identity %q", i, in, j, id)
		}
		seen[id] = i
	}
}

// TestPipelineIdentityCoversStateIdentity: every setting that changes the
// state store's identity, but the window sizes, changes the pipeline
// identity's settings too (a schema must refuse counts made under it), and
// the window sizes change only the identity's windows.
func TestPipelineIdentityCoversStateIdentity(t *testing.T) {
	base := Options{
		Consumer: stream.ConsumerOptions{Topic: "clicks", Group: "clickagg"},
		Operator: stream.OperatorOptions{Windows: []time.Duration{time.Minute}, OutOfOrder: 5 * time.Second,
			Late: stream.LateCount, MaxURLBytes: 2048, MaxFutureSkew: time.Hour},
	}
	changes := map[string]func(o *Options){
		"out_of_orderness": func(o *Options) { o.Operator.OutOfOrder = time.Second },
		"late.policy":      func(o *Options) { o.Operator.Late = stream.LateDrop },
		"max_url_bytes":    func(o *Options) { o.Operator.MaxURLBytes = 1024 },
		"max_future_skew":  func(o *Options) { o.Operator.MaxFutureSkew = 0 },
		"max_past_skew":    func(o *Options) { o.Operator.MaxPastSkew = time.Hour },
		"dedup.window":     func(o *Options) { o.Operator.DedupWindow = time.Minute },
		"url.normalize":    func(o *Options) { o.Operator.NormalizeURLs = true },
		"input":            func(o *Options) { o.Operator.Input.URL = "page.url" },
	}
	ref := PipelineIdentity(base)
	for key, change := range changes {
		o := base
		change(&o)
		if StateIdentity(o) == StateIdentity(base) {
			t.Errorf("%s: the state identity does not change: not a setting that changes counts", key)
		}
		got := PipelineIdentity(o)
		if got.Settings[key] == ref.Settings[key] {
			t.Errorf("%s: the pipeline identity's settings do not change (%q)", key, got.Settings[key])
		}
	}
	// NB: StateIdentity spells each field name=value: windows= and
	// skew= (both skews) among them, input= only when not the default.
	// A new field of StateIdentity needs a case above.
	if n := strings.Count(StateIdentity(base), "="); n != len(changes)-1 {
		t.Errorf("StateIdentity has %d fields; the cases above cover %d: add the new one", n, len(changes)-1)
	}
	o := base
	o.Operator.Windows = []time.Duration{time.Minute, time.Hour}
	if got := PipelineIdentity(o); !maps.Equal(got.Settings, ref.Settings) || len(got.Windows) != 2 {
		t.Errorf("another window size: settings %v, windows %v; want the same settings, two windows", got.Settings, got.Windows)
	}
	o = base
	o.Operator.DedupWindow = time.Minute
	d := PipelineIdentity(o)
	o.Operator.DedupKeyed = true
	if g := PipelineIdentity(o); g.Settings["dedup.scope"] == d.Settings["dedup.scope"] {
		t.Errorf("dedup.scope with dedup on does not change the identity: %v", g.Settings)
	}
}
