package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/statuspage"
	"github.com/clickagg/clickagg/internal/testutil"
	"github.com/clickagg/clickagg/internal/testutil/pgtest"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// chromiumPath is Debian's Chromium, which scripts/ensure-chromium.sh
// installs (make test runs it).
const chromiumPath = "/usr/bin/chromium"

// xssURL is a clicked URL that would run script if the page ever put a
// value from the server into HTML instead of text.
const xssURL = `/x"><img src=x onerror="document.title='pwned'">`

// TestStatusPageInBrowser runs the real pipeline (kfake broker, real
// PostgreSQL) with its HTTP server, produces clicks, and drives the status
// page in headless Chromium: it loads, shows the two owned partitions and
// the top URLs (as text: one of them is HTML), its records-consumed number
// moves, a selected URL gets its chart of the last half hour; the screenshot is saved as a test artefact (bin/status-page.png,
// or $CLICKAGG_ARTIFACTS/status-page.png).
func TestStatusPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the pipeline and a browser")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("Chromium not found at %s (%v): run scripts/ensure-chromium.sh (make test does) to run the browser test", chromiumPath, err)
	}
	dsn := pgtest.DSN(t)
	broker, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "clicks"), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()

	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	load := configFlags(fs)
	if err := parseFlags(fs, []string{"--brokers", strings.Join(broker.ListenAddrs(), ","), "--topic", "clicks",
		"--group", "status-page", "--postgres", dsn, "--state-dir", t.TempDir(), "--http-addr", "127.0.0.1:0",
		"--windows", "1m,1h", "--checkpoint-interval", "200ms", "--early-interval", "1s", "--session-timeout", "6s"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- runPipeline(ctx, cfg, zaptest.NewLogger(t).Named("run"), &runHooks{listening: func(a string) { addr <- a }})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var page string
	select {
	case a := <-addr:
		page = "http://" + a + "/"
	case err := <-done:
		t.Fatalf("run stopped before listening: %v", err)
	}

	// Half an hour of clicks first (the chart's history), then the XSS URL
	// (a burst, so it makes the top list), then a steady Zipf stream that
	// goes on while the page is watched.
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker.ListenAddrs()...), kgo.DefaultProduceTopic("clicks"),
		kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	history, err := gen.New(gen.Options{Count: 3000, URLs: 40, Zipf: 1.2, Seed: 10,
		StartTime: time.Now().Add(-30 * time.Minute), EventRate: 3000.0 / (30 * 60)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gen.Produce(ctx, cl, "clicks", history, nil); err != nil {
		t.Fatal(err)
	}
	var burst []*kgo.Record
	for range 300 {
		burst = append(burst, &kgo.Record{Value: fmt.Appendf(nil, `{"url":%q,"ts":%d}`, xssURL, time.Now().UnixMilli())})
	}
	if err := cl.ProduceSync(ctx, burst...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	gn, err := gen.New(gen.Options{Rate: 200, URLs: 40, Zipf: 1.2, Seed: 11, InvalidFraction: 0.02})
	if err != nil {
		t.Fatal(err)
	}
	produced := make(chan error, 1)
	go func() {
		_, err := gen.Produce(ctx, cl, "clicks", gn, nil)
		if ctx.Err() != nil {
			err = nil
		}
		produced <- err
	}()
	defer func() {
		stop()
		if err := <-produced; err != nil {
			t.Errorf("produce: %v", err)
		}
	}()

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.WindowSize(1280, 1100))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	// NB: the first call starts the browser, which lives as long as its
	// context: no timeout on that one; each later call gets its own.
	if err := chromedp.Do(browser, chromedp.Navigate(page)); err != nil {
		t.Fatalf("open %s: %v", page, err)
	}
	bounded := func() (context.Context, context.CancelFunc) { return context.WithTimeout(browser, 20*time.Second) }
	eval := func(js string, out any) bool {
		actx, cancel := bounded()
		defer cancel()
		v, err := chromedp.Run(actx, chromedp.Evaluate[json.RawMessage](js))
		if err == nil {
			err = json.Unmarshal(v, out)
		}
		if err != nil {
			t.Logf("evaluate %s: %v", js, err)
			return false
		}
		return true
	}

	var title, phase string
	testutil.WaitFor(t, 2*time.Minute, "the page to say ready", func() bool {
		return eval(`document.title`, &title) && eval(`document.getElementById('phase').textContent`, &phase) && phase == "ready"
	})
	if title != "clickagg status" {
		t.Errorf("title %q", title)
	}
	var parts []string
	testutil.WaitFor(t, time.Minute, "both partitions listed with a watermark", func() bool {
		return eval(`[...document.querySelectorAll('#partitions tbody tr[data-partition]')]
			.filter(tr => tr.cells[4].textContent !== '—').map(tr => tr.dataset.partition + ' ' + tr.cells[1].textContent)`, &parts) &&
			len(parts) == 2
	})
	host, _ := os.Hostname()
	if parts[0] != "0 "+host || parts[1] != "1 "+host {
		t.Errorf("partitions and owners %q, want 0 and 1 owned by %s", parts, host)
	}
	var urls []string
	testutil.WaitFor(t, time.Minute, "top URLs, the XSS URL among them", func() bool {
		return eval(`[...document.querySelectorAll('#top tbody tr[data-url]')].map(tr => tr.dataset.url)`, &urls) &&
			len(urls) >= 5 && strings.Contains(strings.Join(urls, "\n"), xssURL)
	})
	var injected int
	if !eval(`document.querySelectorAll('img').length`, &injected) || injected != 0 {
		t.Errorf("a URL was rendered as HTML: %d <img> elements on the page", injected)
	}
	if eval(`document.title`, &title); title != "clickagg status" {
		t.Errorf("title %q after the XSS URL was shown", title)
	}

	consumed := func() int64 {
		var s string
		if !eval(`document.getElementById('consumed').textContent`, &s) {
			return -1
		}
		var n int64
		if _, err := fmt.Sscan(strings.ReplaceAll(s, ",", ""), &n); err != nil {
			return -1
		}
		return n
	}
	first := consumed()
	testutil.WaitFor(t, time.Minute, fmt.Sprintf("records consumed to grow past %d on the page", first), func() bool {
		return first > 0 && consumed() > first
	})

	// Select the most clicked URL but the XSS one: its chart appears.
	var pick string
	for _, u := range urls {
		if u != xssURL {
			pick = u
			break
		}
	}
	sel := fmt.Sprintf(`#top tbody tr[data-url=%q]`, pick)
	actx, cancel := bounded()
	defer cancel()
	if err := chromedp.Do(actx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
	var chart struct {
		Title string
		Bars  int
	}
	testutil.WaitFor(t, time.Minute, "the chart of "+pick+" with its half hour of windows", func() bool {
		return eval(`({Title: document.getElementById('chart-title').textContent,
			Bars: document.querySelectorAll('#chart svg rect.bar').length})`, &chart) && chart.Title == pick && chart.Bars >= 10
	})

	// The JSON behind the page, from the same process.
	resp, err := http.Get(page + "status")
	if err != nil {
		t.Fatal(err)
	}
	var doc statuspage.Document
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil || doc.Phase != "running" || len(doc.Partitions) != 2 || doc.Counters.Consumed < first || doc.Counters.Rejected == 0 {
		t.Errorf("/status: %v %+v", err, doc)
	}

	sctx, cancel := bounded()
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("CLICKAGG_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "bin")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "status-page.png")
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(out)
	t.Logf("screenshot of the status page: %s", abs)
}
