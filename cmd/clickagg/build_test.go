package main

import (
	"crypto/sha256"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestStaticBuild builds the binary the way the Dockerfile does and checks
// that it is static (it runs on scratch) and that the Dockerfile still uses
// those flags.
func TestStaticBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	flags := regexp.MustCompile(`CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=\$\{VERSION\}"`)
	if !flags.Match(df) {
		t.Fatal("Dockerfile no longer builds with CGO_ENABLED=0 -trimpath -ldflags \"-s -w ...\"; update this test with it")
	}
	for _, want := range []string{"FROM scratch", "USER 65532:65532", `ENTRYPOINT ["/usr/local/bin/clickagg"]`, `CMD ["run"]`} {
		if !strings.Contains(string(df), want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), "LDFLAGS   := -s -w -X main.version=$(VERSION)") ||
		strings.Count(string(mk), "CGO_ENABLED=0") < 2 || strings.Count(string(mk), "-trimpath -ldflags '$(LDFLAGS)'") < 2 {
		t.Fatal("Makefile's build and release no longer use the Dockerfile's flags (CGO_ENABLED=0 -trimpath -ldflags '-s -w -X main.version=...'); update this test with them")
	}
	build := func() string {
		out := filepath.Join(t.TempDir(), "clickagg")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=test", "-o", out, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build: %v\n%s", err, b)
		}
		return out
	}
	out := build()
	// Reproducible: the same source and flags give the same bytes (no
	// build path, time or random ID in the binary), so a release's
	// SHA256SUMS can be checked by rebuilding.
	a, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(build())
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(a) != sha256.Sum256(b) {
		t.Fatal("two builds of the same source differ: the release is not reproducible")
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("binary has an ELF interpreter: it is dynamically linked and would not run on scratch")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("binary links shared libraries %v", libs)
	}
	v, err := exec.Command(out, "version").Output()
	if err != nil || strings.TrimSpace(string(v)) != "clickagg test" {
		t.Fatalf("version: %q %v", v, err)
	}
}

// TestNoTestCodeInBinary fails when the binary's dependency graph (go list
// -deps, with the Dockerfile's CGO_ENABLED=0 and without) holds the standard
// testing package (or testing/...) or any package under internal/testutil:
// test-only code must stay out of the product.
func TestNoTestCodeInBinary(t *testing.T) {
	mod, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	testutil := strings.TrimSpace(string(mod)) + "/internal/testutil"
	forbidden := func(p string) bool {
		return p == "testing" || strings.HasPrefix(p, "testing/") ||
			p == testutil || strings.HasPrefix(p, testutil+"/")
	}
	for _, cgo := range []string{"0", "1"} {
		cmd := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+cgo)
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("CGO_ENABLED=%s go list -deps: %v\n%s", cgo, err, ee.Stderr)
			}
			t.Fatalf("CGO_ENABLED=%s go list -deps: %v", cgo, err)
		}
		deps := 0
		for line := range strings.Lines(string(out)) {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			deps++
			for _, imp := range f[1:] {
				if forbidden(imp) {
					t.Errorf("CGO_ENABLED=%s: %s imports %s: test-only code is linked into the binary", cgo, f[0], imp)
				}
			}
		}
		if deps < 10 {
			t.Fatalf("CGO_ENABLED=%s go list -deps listed only %d packages:\n%s", cgo, deps, out)
		}
	}
}
