package main

import (
	"bytes"
	"context"
	"errors"
	"github.com/clickagg/clickagg/internal/testutil"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// TestPprofNeverServesCmdline: with pprof on, the profiles are served but
// not the command line, which may carry a DSN with its password, under any
// spelling of the path.
func TestPprofNeverServesCmdline(t *testing.T) {
	const secret = "pprof-Secret-4321"
	args := os.Args
	os.Args = append(slices.Clone(args), "--postgres", "postgres://clickagg:"+secret+"@localhost/clickagg")
	defer func() { os.Args = args }()

	srv, ln, err := newHTTPServer("127.0.0.1:0", prometheus.NewRegistry(), &startup{}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln) //nolint:errcheck
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("GET %s: %v", path, err)
		}
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/debug/pprof/cmdline", "/debug/pprof/cmdline?debug=1", "/debug/pprof/cmdline/",
		"/debug/pprof//cmdline", "/debug/pprof/./cmdline", "/debug/pprof/%63mdline"} {
		code, body := get(path)
		if code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, code)
		}
		if strings.Contains(body, secret) {
			t.Errorf("GET %s served the command line: %q", path, body)
		}
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1", "/debug/pprof/symbol"} {
		if code, body := get(path); code != http.StatusOK || strings.Contains(body, secret) {
			t.Errorf("GET %s = %d (secret served: %v), want 200 without the command line", path, code, strings.Contains(body, secret))
		}
	}
}

// TestHelpExitsZero: -h (and --help) of every command, and of the
// subcommands, prints its usage and exits 0, like the flag package's
// commands do; a missing subcommand is still a usage error (2).
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"help"}, {"run", "-h"}, {"migrate", "-h"}, {"query", "-h"}, {"query", "--help"},
		{"query", "top", "-h"}, {"query", "url", "-h"}, {"gen", "-h"}, {"dlq", "-h"}, {"dlq", "inspect", "-h"},
		{"demo", "-h"}, {"bench", "-h"}, {"storage", "-h"}, {"storage", "status", "-h"}, {"audit", "-h"}, {"reset", "-h"}, {"reprocess", "-h"},
		{"backfill", "-h"},
	} {
		var stdout, stderr bytes.Buffer
		if code := realMain(args, &stdout, &stderr); code != exitOK {
			t.Errorf("%v: exit %d, want 0; stderr %q", args, code, stderr.String())
		}
		if stdout.Len()+stderr.Len() == 0 {
			t.Errorf("%v: printed no usage", args)
		}
	}
	for _, args := range [][]string{{"query"}, {"dlq"}, {"query", "nope"}, {"storage"}, {"storage", "nope"}, {"backfill"}} {
		var stdout, stderr bytes.Buffer
		if code := realMain(args, &stdout, &stderr); code != exitConfig {
			t.Errorf("%v: exit %d, want %d", args, code, exitConfig)
		}
	}
}

// TestHTTPAddrEmptyMeansOff: as the help says, an explicitly empty
// --http-addr turns the HTTP server off, like "off"; left unset it is :8080.
// And -h shows each setting's default.
func TestHTTPAddrEmptyMeansOff(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, `http_addr: :8080`},
		{[]string{"--http-addr", ""}, `http_addr: ""`},
		{[]string{"--http-addr", "off"}, `http_addr: ""`},
		{[]string{"--http-addr", "127.0.0.1:9"}, `http_addr: 127.0.0.1:9`},
	} {
		var stdout, stderr bytes.Buffer
		if code := realMain(append([]string{"run", "--print-config"}, tc.args...), &stdout, &stderr); code != exitOK {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr.String())
		}
		if !strings.Contains(stdout.String(), tc.want+"\n") {
			t.Errorf("%v: want %q in:\n%s", tc.args, tc.want, stdout.String())
		}
	}
	var stdout, stderr bytes.Buffer
	realMain([]string{"run", "-h"}, &stdout, &stderr)
	help := stdout.String() + stderr.String()
	for _, want := range []string{"(default 1s) [env CLICKAGG_CHECKPOINT_INTERVAL]", "(default clicks) [env CLICKAGG_TOPIC]",
		"(default :8080) [env CLICKAGG_HTTP_ADDR]", "(default localhost:9092) [env KAFKA_BROKERS, CLICKAGG_BROKERS]"} {
		if !strings.Contains(help, want) {
			t.Errorf("run -h lacks %q", want)
		}
	}
}

// TestStatusPageCanBeTurnedOff: the status page is on by default; with
// http_status_page false the server serves neither the page nor its JSON
// (they show URLs), but still /metrics and the probes.
func TestStatusPageCanBeTurnedOff(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "http_status_page: true\n"},
		{[]string{"--http-status-page=false"}, "http_status_page: false\n"},
	} {
		var stdout, stderr bytes.Buffer
		if code := realMain(append([]string{"run", "--print-config"}, tc.args...), &stdout, &stderr); code != exitOK {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr.String())
		}
		if !strings.Contains(stdout.String(), tc.want) {
			t.Errorf("%v: want %q in:\n%s", tc.args, tc.want, stdout.String())
		}
	}
	for _, on := range []bool{true, false} {
		st := &startup{}
		st.set("test")
		reg := prometheus.NewRegistry()
		page := statusPage(&Config{HTTPStatusPage: on, windows: []time.Duration{time.Minute}}, reg, st, zap.NewNop())
		srv, ln, err := newHTTPServer("127.0.0.1:0", reg, st, false, page)
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln) //nolint:errcheck
		served, api := 404, 404
		if on {
			served, api = 200, 503 // NB: 503: no database yet
		}
		for path, want := range map[string]int{"/": served, "/status": served, "/assets/app.js": served,
			"/api/top?window=1m": api, "/metrics": 200, "/healthz": 200} {
			resp, err := http.Get("http://" + ln.Addr().String() + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("http_status_page %v: GET %s = %d, want %d", on, path, resp.StatusCode, want)
			}
		}
		srv.Close()
	}
}

// TestStopWhileWaitingForPostgres: while run waits for an unreachable
// PostgreSQL, /healthz answers 200 (a startup probe does not kill the pod),
// /readyz 503 saying what it waits for, and the status page its phase; a SIGTERM (the context ending)
// then is a clean stop: no error (exit 0), not "context canceled" (exit 1).
func TestStopWhileWaitingForPostgres(t *testing.T) {
	freeAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close() // NB: nobody listens there once the test uses it
		return ln.Addr().String()
	}
	pgAddr, httpAddr := freeAddr(), freeAddr()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testutil.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdRun(ctx, []string{"--postgres", "postgres://u@" + pgAddr + "/db?connect_timeout=1", "--http-addr", httpAddr,
			"--state-dir", t.TempDir(), "--log-format", "json"}, &out, &out)
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var body string
	testutil.WaitFor(t, 30*time.Second, "/readyz saying it waits for postgres", func() bool {
		var code int
		code, body = get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "starting: waiting for postgres")
	})
	if code, b := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while waiting: %d %s", code, b)
	}
	// The status page answers too: /status with the phase, its PostgreSQL
	// queries 503 with the reason.
	if code, b := get("/status"); code != http.StatusOK || !strings.Contains(b, `"phase": "starting"`) ||
		!strings.Contains(b, `"starting": "waiting for postgres`) {
		t.Errorf("/status while waiting: %d %s", code, b)
	}
	if code, b := get("/api/top?window=1m"); code != http.StatusServiceUnavailable ||
		!strings.Contains(b, "postgres not available yet: starting: waiting for postgres") {
		t.Errorf("/api/top while waiting: %d %s", code, b)
	}
	if code, b := get("/"); code != http.StatusOK || !strings.Contains(b, "clickagg status") {
		t.Errorf("/ while waiting: %d %.100s", code, b)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after the stop, want nil (exit 0)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop")
	}
}
