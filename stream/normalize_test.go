package stream

import (
	"testing"
)

func TestNormalizeURL(t *testing.T) {
	for in, want := range map[string]string{
		"HTTPS://Example.COM/Path/X?Q=A#Frag":      "https://example.com/Path/X?Q=A",
		"https://example.com":                      "https://example.com",
		"https://EXAMPLE.com:8443/A":               "https://example.com:8443/A",
		"https://User:PaSS@Example.com/A":          "https://User:PaSS@example.com/A",
		"https://Example.com?Q=B":                  "https://example.com?Q=B",
		"https://Example.com#":                     "https://example.com",
		"Mailto:Someone@Example.com":               "Mailto:Someone@Example.com", // no "://": fragment only
		"/Relative/Path#x":                         "/Relative/Path",
		"#only-fragment":                           "",
		"1http://Example.com/":                     "1http://Example.com/", // not a scheme
		"https://ÜNICODE.example/Ä":                "https://Ünicode.example/Ä",
		"HTTP://[2001:DB8::1]:80/P":                "http://[2001:db8::1]:80/P",
		"https://example.com/a%2Fb%3F#c":           "https://example.com/a%2Fb%3F",
		"'; DROP TABLE url_clicks; --":             "'; DROP TABLE url_clicks; --",
		"SVN+SSH://Host.Example/Repo":              "svn+ssh://host.example/Repo",
		"https://example.com/path#frag#more":       "https://example.com/path",
		"https:/Example.com/one-slash":             "https:/Example.com/one-slash",
		"https://Example.com/" + string([]byte{1}): "https://example.com/" + string([]byte{1}),
	} {
		got := string(NormalizeURL(nil, []byte(in)))
		if got != want {
			t.Errorf("NormalizeURL(%q) = %q, want %q", in, got, want)
		}
		if again := string(NormalizeURL(nil, []byte(got))); again != got {
			t.Errorf("not idempotent: %q -> %q -> %q", in, got, again)
		}
	}
	// It appends, and never touches its input.
	in := []byte("HTTPS://A.B/C#D")
	dst := NormalizeURL([]byte("x"), in)
	if string(dst) != "xhttps://a.b/C" || string(in) != "HTTPS://A.B/C#D" {
		t.Fatalf("dst %q, input %q", dst, in)
	}
}

func FuzzNormalizeURL(f *testing.F) {
	for _, s := range []string{"HTTPS://Example.COM/P#F", "a://", "#", "x:y", "A://@@/#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := NormalizeURL(nil, []byte(s))
		if len(got) > len(s) {
			t.Fatalf("grew: %q -> %q", s, got)
		}
		if again := NormalizeURL(nil, got); string(again) != string(got) {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, got, again)
		}
	})
}
