package oracle

import (
	"testing"

	"github.com/clickagg/clickagg/stream"
)

// TestNormalizeURLAgreesWithPipeline: the oracle's rewrite of url.normalize
// gives what the pipeline's gives, on the cases that tell them apart.
func TestNormalizeURLAgreesWithPipeline(t *testing.T) {
	for _, u := range []string{
		"https://Example.COM/Path#Frag", "HTTPS://example.com", "https://User:PW@Host.COM:8080/A?B=C#d",
		"https://Host.com?Q=1", "mailto:Someone@Example.COM", "/relative/Path#x", "a:b://Host/", "1http://Host/",
		"h+t-t.p://HOST/x", "https://a@b@HOST/", "#only", "", "HTTP://",
	} {
		want := string(stream.NormalizeURL(nil, []byte(u)))
		if got := NormalizeURL(u); got != want {
			t.Errorf("NormalizeURL(%q) = %q, the pipeline's %q", u, got, want)
		}
	}
}
