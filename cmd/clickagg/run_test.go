package main

import (
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestPprofNeverServesCmdline: with pprof on, the profiles are served but
// not the command line, which may carry a DSN with its password, under any
// spelling of the path.
func TestPprofNeverServesCmdline(t *testing.T) {
	const secret = "pprof-Secret-4321"
	args := os.Args
	os.Args = append(slices.Clone(args), "--postgres", "postgres://clickagg:"+secret+"@localhost/clickagg")
	defer func() { os.Args = args }()

	srv, ln, err := newHTTPServer("127.0.0.1:0", prometheus.NewRegistry(), nil, nil, true)
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
