package kafkatest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/clickagg/clickagg/internal/kafkalocal"
)

// The broker itself lives in package kafkalocal (so that commands such as
// `clickagg bench` can start one too); this package adds the per-test-binary
// shared broker and the skip-or-fail rule.
type (
	// Broker is a running single-node Kafka broker.
	Broker = kafkalocal.Broker
	// Options configure Start.
	Options = kafkalocal.Options
)

// Re-exports of package kafkalocal.
var (
	Start     = kafkalocal.Start
	Available = kafkalocal.Available
)

// RequireEnv is the environment variable that turns "no real broker" into a
// test failure (CI sets it).
const RequireEnv = "CLICKAGG_REQUIRE_KAFKA"

// LibEnv names the folder of the broker jars (see kafkalocal.LibDir).
const LibEnv = kafkalocal.LibEnv

// ---------------------------------------------------------------------------
// shared broker

var (
	sharedMu   sync.Mutex
	sharedDone bool
	shared     *Broker
	sharedErr  error
)

// Require skips t when the real broker cannot run here ([Available] is
// false), or fails it when $CLICKAGG_REQUIRE_KAFKA is set.
func Require(t testing.TB) {
	t.Helper()
	if ok, why := Available(); !ok {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("kafkatest: %s (and %s is set)", why, RequireEnv)
		}
		t.Skipf("kafkatest: real-broker test skipped: %s", why)
	}
}

// Shared returns one broker per test binary, started on first use; [Main]
// stops it. When [Available] is false, Shared calls t.Skip with the reason,
// or t.Fatal when $CLICKAGG_REQUIRE_KAFKA is set; when the broker fails to
// start, every caller fails.
//
// Tests that Restart or Kill the shared broker disturb every other test
// using it at the same time: they must not run in parallel with them.
func Shared(t testing.TB) *Broker {
	t.Helper()
	Require(t)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if !sharedDone {
		sharedDone = true
		ctx, cancel := context.WithTimeout(context.Background(), 2*kafkalocal.ReadyTimeout)
		shared, sharedErr = Start(ctx, Options{})
		cancel()
	}
	if sharedErr != nil {
		t.Fatalf("kafkatest: starting the shared broker: %v", sharedErr)
	}
	return shared
}

// StopShared stops the shared broker, if one was started. [Main] calls it;
// a TestMain that cannot use Main (say, because it also needs
// pgtest.Main) calls it after m.Run, or uses [Wrap].
func StopShared() error {
	sharedMu.Lock()
	b := shared
	shared = nil
	sharedMu.Unlock()
	if b == nil {
		return nil
	}
	return b.Stop()
}

// Main runs the tests, stops the shared broker and exits:
//
//	func TestMain(m *testing.M) { kafkatest.Main(m) }
//
// m is usually the *testing.M.
func Main(m interface{ Run() int }) {
	os.Exit(Wrap(m).Run())
}

// Wrap returns a runner whose Run runs m and then stops the shared broker,
// for composing with another package's Main, e.g.
//
//	func TestMain(m *testing.M) { pgtest.Main(kafkatest.Wrap(m)) }
func Wrap(m interface{ Run() int }) interface{ Run() int } {
	return runner{m}
}

type runner struct{ m interface{ Run() int } }

func (r runner) Run() int {
	code := r.m.Run()
	if err := StopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "kafkatest: stopping the shared broker: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
