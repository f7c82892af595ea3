package checkpoint

import (
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
