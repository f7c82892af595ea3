package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/clickagg/clickagg/stream"
)

func load(t *testing.T, args []string, env map[string]string, yaml string) (*Config, error) {
	t.Helper()
	for _, s := range settings {
		for _, e := range strings.Split(s.env, ",") {
			t.Setenv(e, "")
		}
	}
	t.Setenv("CLICKAGG_CONFIG", "")
	for k, v := range env {
		t.Setenv(k, v)
	}
	if yaml != "" {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", p}, args...)
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l := configFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return l()
}

func TestConfigDefaults(t *testing.T) {
	c, err := load(t, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Topic != "clicks" || c.Group != "clickagg" || c.Brokers[0] != "localhost:9092" ||
		c.CheckpointInterval.D() != time.Second || c.OutOfOrderness.D() != 5*time.Second ||
		c.IdleTimeout.D() != 30*time.Second || len(c.windows) != 1 || c.windows[0] != time.Minute ||
		c.StartOffset != "earliest" || c.Late.Policy != "count" || c.Emit.EarlyInterval != 0 ||
		c.HTTPAddr != ":8080" || c.PostgresSchema != "clickagg" || !c.AlignWatermarks ||
		c.Storage.TotalsFoldPeriod.D() != time.Hour {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = load(t, []string{"--late-policy", "dead-letter", "--dead-letter-topic", "dl"}, nil, "")
	if err != nil || c.AlignWatermarks {
		t.Fatalf("late policy dead-letter: align_watermarks %v (%v), want false by default", c.AlignWatermarks, err)
	}
}

func TestConfigPrecedenceFileEnvFlag(t *testing.T) {
	yaml := "topic: from-file\ngroup: from-file\nwindows: [1m, 1h]\nlate:\n  policy: drop\nemit:\n  early_interval: 2s\n"
	c, err := load(t, []string{"--group", "from-flag"}, map[string]string{"CLICKAGG_TOPIC": "from-env", "CLICKAGG_GROUP": "from-env",
		"KAFKA_BROKERS": "k1:9092, k2:9092", "DATABASE_URL": "postgres://u:p@h/db"}, yaml)
	if err != nil {
		t.Fatal(err)
	}
	if c.Topic != "from-env" || c.Group != "from-flag" || len(c.Brokers) != 2 || c.Brokers[1] != "k2:9092" ||
		len(c.windows) != 2 || c.windows[1] != time.Hour || c.late.String() != "drop" || c.Emit.EarlyInterval.D() != 2*time.Second ||
		c.Postgres != "postgres://u:p@h/db" {
		t.Fatalf("precedence: %+v", c)
	}
}

func TestConfigExplicitZeroKept(t *testing.T) {
	c, err := load(t, []string{"--out-of-orderness", "0s"}, map[string]string{"CLICKAGG_IDLE_TIMEOUT": "0"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.OutOfOrderness != 0 || c.IdleTimeout != 0 {
		t.Fatalf("explicit zeros replaced by defaults: ooo %s idle %s", c.OutOfOrderness.D(), c.IdleTimeout.D())
	}
	c, err = load(t, nil, nil, "idle_timeout: 0s\nstorage:\n  totals_fold_period: 0s\n")
	if err != nil || c.IdleTimeout != 0 || c.Storage.TotalsFoldPeriod != 0 {
		t.Fatalf("explicit zeros in the file: %v %v %v", c.IdleTimeout.D(), c.Storage.TotalsFoldPeriod.D(), err)
	}
}

func TestConfigErrorsNameTheSetting(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		yaml string
		want string
	}{
		{args: []string{"--windows", "1m,fast"}, want: "windows"},
		{args: []string{"--windows", "1m,1m"}, want: "windows: each size may appear only once"},
		{args: []string{"--windows", "1m,60s"}, want: "windows: each size may appear only once"},
		{args: []string{"--windows", "500ms"}, want: "windows: window 500ms: must be at least 1s"},
		{args: []string{"--windows", "1500500us"}, want: "windows: window 1.5005s: must be a whole number of milliseconds"},
		{args: []string{"--windows", "1s,2s,3s,4s,5s,6s,7s,8s,9s,10s,11s,12s,13s,14s,15s,16s,17s"}, want: "windows: at most 16 sizes"},
		{args: []string{"--checkpoint-interval", "1ms"}, want: "checkpoint_interval 1ms: must be at least 10ms"},
		{args: []string{"--checkpoint-stall-timeout", "-1s"}, want: "checkpoint_stall_timeout -1s: must not be negative"},
		{args: []string{"--session-timeout", "10ms"}, want: "session_timeout"},
		{args: []string{"--start-offset", "now"}, want: `start_offset "now": must be earliest or latest`},
		{args: []string{"--late-policy", "keep"}, want: "late.policy"},
		{args: []string{"--late-policy", "dead-letter"}, want: "needs dead_letter.topic"},
		{args: []string{"--late-policy", "dead-letter", "--dead-letter-topic", "dl", "--align-watermarks"}, want: "align_watermarks"},
		{args: []string{"--dead-letter-topic", "clicks"}, want: "must not be the input topic"},
		{args: []string{"--dedup-window", "-1m"}, want: "dedup.window -1m0s: must not be negative"},
		{args: []string{"--dedup-window", "500us"}, want: "dedup.window 500µs: must be at least 1ms"},
		{args: []string{"--hold-windows", "-1m"}, want: "hold_windows -1m0s: must not be negative"},
		{args: []string{"--storage-totals-fold-period", "-1h"}, want: "storage.totals_fold_period -1h0m0s: must not be negative"},
		{args: []string{"--max-past-skew", "-1m"}, want: "max_future_skew 1h0m0s, max_past_skew -1m0s: must not be negative"},
		{args: []string{"--dedup-scope", "cluster"}, want: "dedup.scope"},
		{yaml: "dedup:\n  window: 1.5ms\n", want: "whole number of milliseconds"},
		{args: []string{"--max-url-bytes", "0x10"}, want: "max_url_bytes"},
		{args: []string{"--max-url-bytes", "4096"}, want: "max_url_bytes 4096: must be at most 2668"},
		{args: []string{"--max-url-bytes", "-1"}, want: "max_url_bytes -1: must not be negative"},
		{args: []string{"--log-level", "chatty"}, want: "log.level"},
		{args: []string{"--brokers", "http://k:9092"}, want: "brokers"},
		{args: []string{"--postgres-schema", "Bad-Name"}, want: "postgres_schema"},
		{env: map[string]string{"CLICKAGG_OUT_OF_ORDERNESS": "-1s"}, want: "out_of_orderness -1s: must not be negative"},
		{args: []string{"--shutdown-timeout", "10ms"}, want: "shutdown_timeout 10ms: must be at least 1s"},
		{args: []string{"--early-interval", "-1s"}, want: "emit.early_interval -1s: must not be negative"},
		{env: map[string]string{"CLICKAGG_EXIT_WHEN_IDLE": "later"}, want: "CLICKAGG_EXIT_WHEN_IDLE"},
		{yaml: "topik: x\n", want: "topik"},
		{yaml: "checkpoint_interval: soon\n", want: "not a duration"},
		{args: []string{"--postgres", "not a dsn at all"}, want: "postgres"},
	}
	for _, c := range cases {
		_, err := load(t, c.args, c.env, c.yaml)
		var ce *configError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v %v %q: err = %v, want a one-line config error naming %q", c.args, c.env, c.yaml, err, c.want)
		}
	}
}

func TestRedactedHidesPasswords(t *testing.T) {
	for _, dsn := range []string{"postgres://app:s3cr3t-pw@db:5432/clicks?sslmode=verify-full", "host=db user=app password=s3cr3t-pw dbname=clicks",
		"postgres://app@db/clicks?password=s3cr3t-pw", "host=db password = s3cr3t-pw", "host=db password='a s3cr3t-pw'"} {
		c, err := load(t, []string{"--postgres", dsn}, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		out := c.Redacted()
		if strings.Contains(out, "s3cr3t-pw") || !strings.Contains(out, "withheld") {
			t.Fatalf("Redacted() = %s", out)
		}
	}
}

func TestRunPrintConfig(t *testing.T) {
	var stdout, stderr bytes.Buffer
	t.Setenv("DATABASE_URL", "postgres://app:s3cr3t-pw@db/clicks")
	code := realMain([]string{"run", "--print-config", "--windows", "1m,1h"}, &stdout, &stderr)
	if code != 0 || strings.Contains(stdout.String(), "s3cr3t-pw") || !strings.Contains(stdout.String(), "- 1h") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

func TestBooleanFlagsTakeNoValue(t *testing.T) {
	c, err := load(t, []string{"--http-pprof", "--kafka-tls", "--topic", "x", "--kafka-tls-insecure-skip-verify=false"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if !c.HTTPPprof || !c.Kafka.TLS.Enabled || c.Kafka.TLS.InsecureSkipVerify || c.Topic != "x" {
		t.Fatalf("pprof %v tls %v insecure %v topic %q", c.HTTPPprof, c.Kafka.TLS.Enabled, c.Kafka.TLS.InsecureSkipVerify, c.Topic)
	}
}

func TestConfigInputMapping(t *testing.T) {
	def := stream.InputOptions{URL: "url", TS: "ts", ID: "id", TSFormat: "auto", TSSource: "event"}
	yaml := "input:\n  url: context.page.url\n  ts: timestamp\n  id: messageId\n  ts_format: rfc3339\n  ts_source: event\n" +
		"  filter:\n    - type==track\n    - event!=Page Viewed, or not\n"
	cases := []struct {
		name string
		args []string
		env  map[string]string
		yaml string
		want stream.InputOptions
	}{
		{name: "defaults", want: def},
		{name: "file", yaml: yaml, want: stream.InputOptions{URL: "context.page.url", TS: "timestamp", ID: "messageId",
			TSFormat: "rfc3339", TSSource: "event", Filter: []string{"type==track", "event!=Page Viewed, or not"}}},
		{name: "environment", env: map[string]string{"CLICKAGG_INPUT_URL": "page_url", "CLICKAGG_INPUT_TS": "dvce_created_tstamp",
			"CLICKAGG_INPUT_ID": "event_id", "CLICKAGG_INPUT_TS_FORMAT": "unix_ms", "CLICKAGG_INPUT_TS_SOURCE": "record",
			"CLICKAGG_INPUT_FILTER": "event==page_view, app_id!=test"},
			want: stream.InputOptions{URL: "page_url", TS: "dvce_created_tstamp", ID: "event_id", TSFormat: "unix_ms",
				TSSource: "record", Filter: []string{"event==page_view", "app_id!=test"}}},
		{name: "flags", args: []string{"--input-url", `page.url`, "--input-ts", "event_time", "--input-id", `a\.b`,
			"--input-ts-format", "unix_s", "--input-ts-source", "event", "--input-filter", "kind==click"},
			want: stream.InputOptions{URL: "page.url", TS: "event_time", ID: `a\.b`, TSFormat: "unix_s", TSSource: "event",
				Filter: []string{"kind==click"}}},
		{name: "precedence", yaml: yaml, env: map[string]string{"CLICKAGG_INPUT_TS": "sentAt", "CLICKAGG_INPUT_FILTER": "type==page",
			"CLICKAGG_INPUT_TS_FORMAT": "auto"},
			args: []string{"--input-filter", "type==identify,userId!=null", "--input-ts-source", "record"},
			want: stream.InputOptions{URL: "context.page.url", TS: "sentAt", ID: "messageId", TSFormat: "auto",
				TSSource: "record", Filter: []string{"type==identify", "userId!=null"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load(t, tc.args, tc.env, tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			got := c.pipelineOptions("test", nil, nil).Operator.Input
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Operator.Input = %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestConfigInputErrors(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		yaml string
		want string
	}{
		{args: []string{"--input-url", "a..b"}, want: "input.url"},
		{args: []string{"--input-url", `trailing\`}, want: "input.url"},
		{env: map[string]string{"CLICKAGG_INPUT_TS": "ts."}, want: "input.ts"},
		{yaml: "input:\n  id: .id\n", want: "input.id"},
		{args: []string{"--input-ts-format", "unix_min"}, want: "input.ts_format"},
		{env: map[string]string{"CLICKAGG_INPUT_TS_FORMAT": "epoch"}, want: "input.ts_format"},
		{args: []string{"--input-ts-source", "kafka"}, want: "input.ts_source"},
		{yaml: "input:\n  ts_source: broker\n", want: "input.ts_source"},
		{args: []string{"--input-filter", "type=track"}, want: "input.filter"},
		{env: map[string]string{"CLICKAGG_INPUT_FILTER": "==track"}, want: "input.filter"},
		{args: []string{"--input-filter", "a==1,b==2,c==3,d==4,e==5,f==6,g==7,h==8,i==9"}, want: "input.filter"},
		{yaml: "input:\n  filter: type==track\n", want: "input"}, // a list, not a string
		{yaml: "input:\n  uri: u\n", want: "uri"},
	}
	for _, c := range cases {
		_, err := load(t, c.args, c.env, c.yaml)
		var ce *configError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v %v %q: err = %v, want a one-line config error naming %q", c.args, c.env, c.yaml, err, c.want)
		}
	}
	// Through main: exit 2 and one line on stderr.
	var stdout, stderr bytes.Buffer
	t.Setenv("DATABASE_URL", "postgres://app@db/clicks")
	code := realMain([]string{"run", "--print-config", "--input-ts-format", "unix_min"}, &stdout, &stderr)
	if msg := strings.TrimSpace(stderr.String()); code != 2 || !strings.Contains(msg, "input.ts_format") || strings.Contains(msg, "\n") {
		t.Fatalf("exit %d, stderr %q: want 2 and one line naming input.ts_format", code, stderr.String())
	}
}

func TestRunPrintConfigShowsInput(t *testing.T) {
	var stdout, stderr bytes.Buffer
	t.Setenv("DATABASE_URL", "postgres://app@db/clicks")
	code := realMain([]string{"run", "--print-config", "--input-url", "context.page.url", "--input-filter", "type==track"}, &stdout, &stderr)
	out := stdout.String()
	if code != 0 || !strings.Contains(out, "url: context.page.url") || !strings.Contains(out, "- type==track") || !strings.Contains(out, "ts_format: auto") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, stderr.String())
	}
}

// TestEnvConflictsNamedNotShown: DATABASE_URL wins over CLICKAGG_POSTGRES
// and KAFKA_BROKERS over CLICKAGG_BROKERS; both set and different is
// reported by name, never with the values (a DSN holds a password).
func TestEnvConflictsNamedNotShown(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://u:first-secret@db1/x")
	t.Setenv("CLICKAGG_POSTGRES", "postgres://u:second-secret@db2/x")
	t.Setenv("KAFKA_BROKERS", "k1:9092")
	t.Setenv("CLICKAGG_BROKERS", "k1:9092") // the same: no conflict
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg, err := configFlags(fs)()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cfg.Postgres, "db1") {
		t.Errorf("DATABASE_URL must win: %s", redactDSN(cfg.Postgres))
	}
	if len(cfg.envConflicts) != 1 || !strings.Contains(cfg.envConflicts[0], "DATABASE_URL and CLICKAGG_POSTGRES") {
		t.Fatalf("conflicts %q, want one naming DATABASE_URL and CLICKAGG_POSTGRES", cfg.envConflicts)
	}
	if strings.Contains(cfg.envConflicts[0], "secret") || strings.Contains(cfg.envConflicts[0], "db2") {
		t.Errorf("a conflict note shows a value: %q", cfg.envConflicts[0])
	}
}

// TestUnknownYAMLKeySuggests: a mistyped key in the file is one line naming
// it and its line, with the setting it most likely meant, or the list of
// settings when nothing is close.
func TestUnknownYAMLKeySuggests(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"topik: clicks\n", `line 1: unknown key "topik"; did you mean "topic"?`},
		{"dedup:\n  windw: 1m\n", `line 2: unknown key "windw"; did you mean "dedup.window"?`},
		{"input:\n  urll: page.url\n", `line 2: unknown key "urll"; did you mean "input.url"?`},
		{"zzzqqq: 1\n", `line 1: unknown key "zzzqqq"; the settings are brokers, topic,`},
	} {
		path := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		code := realMain([]string{"run", "--print-config", "--config", path}, &stdout, &stderr)
		if code != exitConfig || !strings.Contains(stderr.String(), tc.want) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and one line with %q", tc.yaml, code, stderr.String(), tc.want)
		}
	}
}
