package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/testutil/pgtest"
	"github.com/clickagg/clickagg/sink"
)

// TestStorageStatus: `clickagg storage status` shows each window size's
// retention and partitions, as a table, with --partitions, and as JSON.
func TestStorageStatus(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	run := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := realMain(append(args, "--postgres", dsn), &stdout, &stderr); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, stderr.String())
		}
		return stdout.String()
	}
	run("migrate")
	if out := run("storage", "status"); !strings.Contains(out, "no window size written yet") {
		t.Fatalf("empty schema: %q", out)
	}
	pool, err := sink.NewPool(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	w, err := sink.NewWriter(pool, sink.Options{Group: "g", Topic: "clicks"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	_, err = w.Maintain(ctx, sink.MaintainOptions{Sizes: []int64{60_000, 3_600_000},
		Retention: map[int64]int64{60_000: 7 * 24 * 3_600_000}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	out := run("storage", "status", "--partitions")
	for _, want := range []string{"1m ", "7d", "forever", "url_clicks_1m_p20261130", "url_clicks_1m_p20261201", "url_clicks_1h_p20261126", "attached"} {
		if !strings.Contains(out, want) {
			t.Errorf("storage status lacks %q:\n%s", want, out)
		}
	}
	var doc struct {
		Schema string `json:"schema"`
		Sizes  []struct {
			Window     string `json:"window"`
			Retention  string `json:"retention"`
			Span       string `json:"span"`
			Partitions []struct {
				Name  string    `json:"name"`
				Start time.Time `json:"start"`
			} `json:"partitions"`
		} `json:"window_sizes"`
	}
	if err := json.Unmarshal([]byte(run("storage", "status", "--json")), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Sizes) != 2 || doc.Sizes[0].Window != "1m" || doc.Sizes[0].Retention != "7d" || doc.Sizes[0].Span != "1d" ||
		len(doc.Sizes[0].Partitions) != 2 || !doc.Sizes[0].Partitions[0].Start.Equal(now.Truncate(24*time.Hour)) ||
		doc.Sizes[1].Window != "1h" || doc.Sizes[1].Retention != "" || doc.Sizes[1].Span != "7d" {
		t.Fatalf("storage status --json = %+v", doc)
	}
}
