package configs

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// requireToolsEnv turns a missing helm or promtool from a skip into a
// failure. It is the variable CI sets for the real Kafka broker
// (kafkatest.RequireEnv): `make test` installs all of them, so CI must have
// them.
const requireToolsEnv = "CLICKAGG_REQUIRE_KAFKA"

// findTool returns the first executable of paths, else name on PATH. When
// there is none it skips t, saying how to install it, or fails t when
// $CLICKAGG_REQUIRE_KAFKA is set.
func findTool(t *testing.T, name, install string, paths ...string) string {
	t.Helper()
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found: %s", name, install)
	if os.Getenv(requireToolsEnv) != "" {
		t.Fatalf("%s (%s is set: a missing tool is a failure)", msg, requireToolsEnv)
	}
	t.Skip(msg)
	return ""
}

// run runs a command and returns its combined output.
func run(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}
