package main

import (
	"debug/elf"
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
	out := filepath.Join(t.TempDir(), "clickagg")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=test", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
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
