package kafkalocal

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLibDirDefault(t *testing.T) {
	t.Setenv(LibEnv, "")
	d := LibDir()
	if !strings.HasSuffix(d, filepath.Join("kafka", "lib")) {
		t.Fatalf("LibDir() = %q", d)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(d)), "go.mod")); err != nil {
		t.Fatalf("LibDir() = %q is not under the repository root: %v", d, err)
	}
}

func TestRandomClusterID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id, err := randomClusterID()
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != 22 || id[0] == '-' || seen[id] {
			t.Fatalf("bad cluster id %q", id)
		}
		if b, err := base64.RawURLEncoding.DecodeString(id); err != nil || len(b) != 16 {
			t.Fatalf("cluster id %q does not decode to 16 bytes: %v", id, err)
		}
		seen[id] = true
	}
}

func TestLastLines(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc", 5, "a\nb\nc\n"},
		{"a\nb\n", 0, ""},
	} {
		if got := lastLines(c.in, c.n); got != c.want {
			t.Errorf("lastLines(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
