package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clickagg/clickagg/checkpoint"
	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/stream"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"
)

// Config is every setting of `clickagg run` (and the subset other commands
// use). Precedence: YAML file < environment < flags. Zero values never
// survive load: defaults fills them.
type Config struct {
	Brokers            []string `yaml:"brokers"`             // Kafka bootstrap brokers; default localhost:9092
	Topic              string   `yaml:"topic"`               // default clicks
	Group              string   `yaml:"group"`               // consumer group; default clickagg
	Postgres           string   `yaml:"postgres"`            // DSN; required by run, migrate, query
	PostgresSchema     string   `yaml:"postgres_schema"`     // default clickagg
	StateDir           string   `yaml:"state_dir"`           // default ./clickagg-state
	Windows            []string `yaml:"windows"`             // window sizes; default [1m]
	CheckpointInterval Duration `yaml:"checkpoint_interval"` // default 1s
	OutOfOrderness     Duration `yaml:"out_of_orderness"`    // default 5s
	IdleTimeout        Duration `yaml:"idle_timeout"`        // default 30s; 0 disables
	HTTPAddr           string   `yaml:"http_addr"`           // default :8080; empty disables
	SessionTimeout     Duration `yaml:"session_timeout"`     // default 10s
	InstanceID         string   `yaml:"instance_id"`         // static membership; default none
	ExitWhenIdle       Duration `yaml:"exit_when_idle"`      // default 0 (run until stopped)
	StartOffset        string   `yaml:"start_offset"`        // earliest (default) | latest
	MaxURLBytes        int      `yaml:"max_url_bytes"`       // default 2048
	MaxFutureSkew      Duration `yaml:"max_future_skew"`     // default 1h; 0 disables
	MaxPastSkew        Duration `yaml:"max_past_skew"`       // default 0 (off)
	ShutdownTimeout    Duration `yaml:"shutdown_timeout"`    // default 30s
	HoldWindows        Duration `yaml:"hold_windows"`        // default 10m; 0 disables
	AlignWatermarks    bool     `yaml:"align_watermarks"`    // default true
	Takeover           bool     `yaml:"takeover"`            // move the schema's ownership to this group; default false
	// Retention: per window size (key, like 1m), how much of url_clicks to
	// keep behind the watermark; default none (forever).
	Retention map[string]Duration `yaml:"retention"`
	Storage   struct {
		MaintenanceInterval Duration `yaml:"maintenance_interval"` // default 30s
		TotalsFoldPeriod    Duration `yaml:"totals_fold_period"`   // default 1h; 0: fold at every maintenance run
	} `yaml:"storage"`
	Late struct {
		Policy string `yaml:"policy"` // count (default) | drop
	} `yaml:"late"`
	Emit struct {
		EarlyInterval Duration `yaml:"early_interval"` // default 0 (off)
	} `yaml:"emit"`
	URL struct {
		Normalize bool `yaml:"normalize"` // default false: byte-exact
	} `yaml:"url"`
	// Input maps each JSON event to url, ts and id (README, Event format).
	Input struct {
		URL      string     `yaml:"url"`       // path of the URL; default url
		TS       string     `yaml:"ts"`        // path of the event time; default ts
		ID       string     `yaml:"id"`        // path of the event id; default id
		TSFormat string     `yaml:"ts_format"` // auto (default) | rfc3339 | unix_s | unix_ms | unix_us | unix_ns
		TSSource string     `yaml:"ts_source"` // event (default) | record
		Filter   conditions `yaml:"filter"`    // conditions path==value / path!=value; default none
	} `yaml:"input"`
	DeadLetter struct {
		Topic string `yaml:"topic"` // default none
	} `yaml:"dead_letter"`
	Dedup struct {
		Window Duration `yaml:"window"` // default 0 (off)
		Scope  string   `yaml:"scope"`  // partition (default) | global
	} `yaml:"dedup"`
	Log struct {
		Level  string `yaml:"level"`  // debug | info (default) | warn | error
		Format string `yaml:"format"` // auto (default: console on a terminal, else json) | json | console
	} `yaml:"log"`
	Kafka struct {
		TLS struct {
			Enabled            bool   `yaml:"enabled"`
			CAFile             string `yaml:"ca_file"`
			CertFile           string `yaml:"cert_file"`
			KeyFile            string `yaml:"key_file"`
			ServerName         string `yaml:"server_name"`
			InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
		} `yaml:"tls"`
		SASL struct {
			Mechanism string `yaml:"mechanism"` // PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
			Username  string `yaml:"username"`
			Password  string `yaml:"password"` // prefer CLICKAGG_KAFKA_SASL_PASSWORD
		} `yaml:"sasl"`
	} `yaml:"kafka"`
	HTTPPprof bool `yaml:"http_pprof"` // serve /debug/pprof/ (not cmdline) on http_addr; default false
	// HTTPStatusPage serves the status page and its JSON on http_addr;
	// default true.
	HTTPStatusPage bool `yaml:"http_status_page"`

	// StallTimeout: /readyz is 503 after this long without a successful
	// checkpoint; default 0: 10 checkpoint intervals, at least 30s.
	StallTimeout Duration `yaml:"checkpoint_stall_timeout"`

	windows   []time.Duration                 // parsed Windows
	retention map[time.Duration]time.Duration // parsed Retention
	late      stream.LatePolicy
	explicit  map[string]bool // keys set by the file, the environment or a flag
	// envConflicts say which settings had two environment variables set to
	// different values (names only: values may be secrets); run warns.
	envConflicts []string
}

// Duration is a time.Duration that YAML reads as "1s", "5m", ...
type Duration time.Duration

// UnmarshalYAML parses a duration string (parseDuration).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (%s)", n.Line, n.Value, durationExamples)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML prints the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// durationExamples ends the error about a duration that does not parse.
const durationExamples = "like 500ms, 10s, 1m, 1h30m, 7d"

// parseDuration is time.ParseDuration plus a leading number of days:
// 7d, 1.5d, 1d12h.
func parseDuration(s string) (time.Duration, error) {
	i := strings.IndexByte(s, 'd')
	if i <= 0 {
		return time.ParseDuration(s)
	}
	days, err := strconv.ParseFloat(s[:i], 64)
	if err != nil || days < 0 || strings.ContainsAny(s[:i], "eEInfinfaAN+-_") || days > 100_000 {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	d := time.Duration(days * float64(24*time.Hour))
	if rest := s[i+1:]; rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 {
			return 0, fmt.Errorf("%q is not a duration", s)
		}
		d += r
	}
	return d, nil
}

// parseRetention parses the flag and environment form of retention:
// size=keep pairs, comma-separated (1m=7d,1h=90d).
func parseRetention(v string) (map[string]Duration, error) {
	out := map[string]Duration{}
	for _, pair := range splitList(v) {
		size, keep, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want size=duration pairs, like 1m=7d,1h=90d", pair)
		}
		d, err := parseDuration(strings.TrimSpace(keep))
		if err != nil {
			return nil, fmt.Errorf("%q: %q is not a duration (%s)", pair, keep, durationExamples)
		}
		out[strings.TrimSpace(size)] = Duration(d)
	}
	return out, nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// conditions is input.filter: in YAML a list of strings, since a
// condition may hold a comma.
type conditions []string

// UnmarshalYAML reads a sequence of strings, and refuses a single string
// with a message naming the setting.
func (c *conditions) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d: input.filter must be a list of conditions, like [type==track]", n.Line)
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return fmt.Errorf("line %d: input.filter must be a list of conditions, like [type==track]", n.Line)
	}
	*c = l
	return nil
}

// configError is a bad setting: main prints it on one line and exits 2.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func badConfig(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

// setting is one configuration key with its three spellings.
type setting struct {
	key  string // YAML key path, e.g. late.policy
	env  string // environment variable(s), first wins
	flag string
	help string
	set  func(c *Config, v string) error
	// secret settings are redacted when the configuration is printed.
	secret bool
	// boolean settings are flags without a value (--kafka-tls), or
	// --kafka-tls=false.
	boolean bool
}

func durationSetter(f func(*Config) *Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := parseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration (%s)", v, durationExamples)
		}
		*f(c) = Duration(d)
		return nil
	}
}

func stringSetter(f func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *f(c) = v; return nil }
}

func boolSetter(f func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%q is not true or false", v)
		}
		*f(c) = b
		return nil
	}
}

func listSetter(f func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error { *f(c) = splitList(v); return nil }
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// settings lists every setting; the README's configuration table mirrors it.
var settings = []setting{
	{key: "brokers", env: "KAFKA_BROKERS,CLICKAGG_BROKERS", flag: "brokers", help: "Kafka bootstrap brokers, comma-separated",
		set: listSetter(func(c *Config) *[]string { return &c.Brokers })},
	{key: "topic", env: "CLICKAGG_TOPIC", flag: "topic", help: "topic of click events",
		set: stringSetter(func(c *Config) *string { return &c.Topic })},
	{key: "group", env: "CLICKAGG_GROUP", flag: "group", help: "Kafka consumer group (also the checkpoints key)",
		set: stringSetter(func(c *Config) *string { return &c.Group })},
	{key: "postgres", env: "DATABASE_URL,CLICKAGG_POSTGRES", flag: "postgres", help: "PostgreSQL connection string (postgres://user:pass@host/db?sslmode=verify-full)", secret: true,
		set: stringSetter(func(c *Config) *string { return &c.Postgres })},
	{key: "postgres_schema", env: "CLICKAGG_POSTGRES_SCHEMA", flag: "postgres-schema", help: "PostgreSQL schema of the tables",
		set: stringSetter(func(c *Config) *string { return &c.PostgresSchema })},
	{key: "state_dir", env: "CLICKAGG_STATE_DIR", flag: "state-dir", help: "folder of the local state store (a cache of PostgreSQL)",
		set: stringSetter(func(c *Config) *string { return &c.StateDir })},
	{key: "windows", env: "CLICKAGG_WINDOWS", flag: "windows", help: "tumbling window sizes, comma-separated (e.g. 1m,1h)",
		set: listSetter(func(c *Config) *[]string { return &c.Windows })},
	{key: "checkpoint_interval", env: "CLICKAGG_CHECKPOINT_INTERVAL", flag: "checkpoint-interval", help: "time between checkpoints",
		set: durationSetter(func(c *Config) *Duration { return &c.CheckpointInterval })},
	{key: "checkpoint_stall_timeout", env: "CLICKAGG_CHECKPOINT_STALL_TIMEOUT", flag: "checkpoint-stall-timeout", help: "/readyz is 503 (checkpoint_stalled) after this long without a successful checkpoint (0: 10 checkpoint intervals, at least 30s)",
		set: durationSetter(func(c *Config) *Duration { return &c.StallTimeout })},
	{key: "out_of_orderness", env: "CLICKAGG_OUT_OF_ORDERNESS", flag: "out-of-orderness", help: "how late behind the newest event a record may be and still be on time",
		set: durationSetter(func(c *Config) *Duration { return &c.OutOfOrderness })},
	{key: "idle_timeout", env: "CLICKAGG_IDLE_TIMEOUT", flag: "idle-timeout", help: "after this long without records a caught-up partition's watermark follows the clock (0: never)",
		set: durationSetter(func(c *Config) *Duration { return &c.IdleTimeout })},
	{key: "http_addr", env: "CLICKAGG_HTTP_ADDR", flag: "http-addr", help: "listen address of /metrics, /healthz, /readyz and the status page (off or empty: none)",
		set: stringSetter(func(c *Config) *string { return &c.HTTPAddr })},
	{key: "session_timeout", env: "CLICKAGG_SESSION_TIMEOUT", flag: "session-timeout", help: "Kafka group session timeout",
		set: durationSetter(func(c *Config) *Duration { return &c.SessionTimeout })},
	{key: "instance_id", env: "CLICKAGG_INSTANCE_ID", flag: "instance-id", help: "static group membership id (e.g. the pod name)",
		set: stringSetter(func(c *Config) *string { return &c.InstanceID })},
	{key: "exit_when_idle", env: "CLICKAGG_EXIT_WHEN_IDLE", flag: "exit-when-idle", help: "exit 0 after a final checkpoint once caught up and idle this long (0: run until stopped)",
		set: durationSetter(func(c *Config) *Duration { return &c.ExitWhenIdle })},
	{key: "start_offset", env: "CLICKAGG_START_OFFSET", flag: "start-offset", help: "where a partition PostgreSQL has never seen starts: earliest or latest",
		set: stringSetter(func(c *Config) *string { return &c.StartOffset })},
	{key: "max_url_bytes", env: "CLICKAGG_MAX_URL_BYTES", flag: "max-url-bytes", help: "longest accepted URL in bytes",
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%q is not a whole number", v)
			}
			c.MaxURLBytes = n
			return nil
		}},
	{key: "max_future_skew", env: "CLICKAGG_MAX_FUTURE_SKEW", flag: "max-future-skew", help: "reject events whose ts is further ahead of their Kafka record timestamp (0: off)",
		set: durationSetter(func(c *Config) *Duration { return &c.MaxFutureSkew })},
	{key: "max_past_skew", env: "CLICKAGG_MAX_PAST_SKEW", flag: "max-past-skew", help: "reject events whose ts is further behind their Kafka record timestamp (0: off)",
		set: durationSetter(func(c *Config) *Duration { return &c.MaxPastSkew })},
	{key: "shutdown_timeout", env: "CLICKAGG_SHUTDOWN_TIMEOUT", flag: "shutdown-timeout", help: "bound on the final checkpoint at SIGTERM",
		set: durationSetter(func(c *Config) *Duration { return &c.ShutdownTimeout })},
	{key: "hold_windows", env: "CLICKAGG_HOLD_WINDOWS", flag: "hold-windows", help: "keep the newest counts of open windows up to this size in memory between checkpoints, not in the state store; a restart replays them (0: off)",
		set: durationSetter(func(c *Config) *Duration { return &c.HoldWindows })},
	{key: "retention", env: "CLICKAGG_RETENTION", flag: "retention", help: "how much of url_clicks to keep per window size behind the watermark, e.g. 1m=7d,1h=90d; older partitions are dropped (default: keep forever)",
		set: func(c *Config, v string) error {
			m, err := parseRetention(v)
			c.Retention = m
			return err
		}},
	{key: "storage.maintenance_interval", env: "CLICKAGG_STORAGE_MAINTENANCE_INTERVAL", flag: "storage-maintenance-interval", help: "how often to create url_clicks partitions ahead, fold url_totals and apply retention",
		set: durationSetter(func(c *Config) *Duration { return &c.Storage.MaintenanceInterval })},
	{key: "storage.totals_fold_period", env: "CLICKAGG_STORAGE_TOTALS_FOLD_PERIOD", flag: "storage-totals-fold-period", help: "fold url_totals in whole periods of event time, so a URL's folded total is written once per period (0: up to the watermark at every maintenance run)",
		set: durationSetter(func(c *Config) *Duration { return &c.Storage.TotalsFoldPeriod })},
	{key: "align_watermarks", env: "CLICKAGG_ALIGN_WATERMARKS", flag: "align-watermarks", help: "while partitions catch up, close a window on each only once the slowest passed it, so its rows are written once (default true)",
		boolean: true,
		set:     boolSetter(func(c *Config) *bool { return &c.AlignWatermarks })},
	{key: "takeover", env: "CLICKAGG_TAKEOVER", flag: "takeover", help: "make this group the owner of postgres_schema's counts (another group's, or made under other settings that change counts); counts continue from this group's own checkpoints",
		boolean: true,
		set:     boolSetter(func(c *Config) *bool { return &c.Takeover })},
	{key: "url.normalize", env: "CLICKAGG_URL_NORMALIZE", flag: "url-normalize", help: "lowercase each URL's scheme and host and drop its #fragment before counting (default: byte-exact)",
		boolean: true,
		set:     boolSetter(func(c *Config) *bool { return &c.URL.Normalize })},
	{key: "input.url", env: "CLICKAGG_INPUT_URL", flag: "input-url", help: "dotted path of the event's URL in the JSON object (a key with a dot or backslash: escape it, a\\.b)",
		set: stringSetter(func(c *Config) *string { return &c.Input.URL })},
	{key: "input.ts", env: "CLICKAGG_INPUT_TS", flag: "input-ts", help: "dotted path of the event time",
		set: stringSetter(func(c *Config) *string { return &c.Input.TS })},
	{key: "input.id", env: "CLICKAGG_INPUT_ID", flag: "input-id", help: "dotted path of the event id (dedup)",
		set: stringSetter(func(c *Config) *string { return &c.Input.ID })},
	{key: "input.ts_format", env: "CLICKAGG_INPUT_TS_FORMAT", flag: "input-ts-format", help: "auto (integer epoch ms or RFC 3339 string), rfc3339, unix_s, unix_ms, unix_us or unix_ns",
		set: stringSetter(func(c *Config) *string { return &c.Input.TSFormat })},
	{key: "input.ts_source", env: "CLICKAGG_INPUT_TS_SOURCE", flag: "input-ts-source", help: "event (the payload's time, else the Kafka record timestamp) or record (always the Kafka record timestamp)",
		set: stringSetter(func(c *Config) *string { return &c.Input.TSSource })},
	{key: "input.filter", env: "CLICKAGG_INPUT_FILTER", flag: "input-filter", help: "count only events meeting every condition path==value or path!=value, comma-separated (up to 8)",
		set: func(c *Config, v string) error { c.Input.Filter = splitList(v); return nil }},
	{key: "dead_letter.topic", env: "CLICKAGG_DEAD_LETTER_TOPIC", flag: "dead-letter-topic", help: "produce invalid (and, with late policy dead-letter, late) records here, unchanged plus headers",
		set: stringSetter(func(c *Config) *string { return &c.DeadLetter.Topic })},
	{key: "late.policy", env: "CLICKAGG_LATE_POLICY", flag: "late-policy", help: "late records: count (into clicks and late_clicks), drop, or dead-letter",
		set: stringSetter(func(c *Config) *string { return &c.Late.Policy })},
	{key: "emit.early_interval", env: "CLICKAGG_EMIT_EARLY_INTERVAL", flag: "early-interval", help: "emit partial counts of open windows at this interval (0: only when windows close)",
		set: durationSetter(func(c *Config) *Duration { return &c.Emit.EarlyInterval })},
	{key: "dedup.window", env: "CLICKAGG_DEDUP_WINDOW", flag: "dedup-window", help: "count a record whose event id was seen within this span of event time only once (0: off)",
		set: durationSetter(func(c *Config) *Duration { return &c.Dedup.Window })},
	{key: "dedup.scope", env: "CLICKAGG_DEDUP_SCOPE", flag: "dedup-scope", help: "partition (duplicates are caught within a partition) or global (producers key records by event id or URL; others are counted as misrouted)",
		set: stringSetter(func(c *Config) *string { return &c.Dedup.Scope })},
	{key: "kafka.tls.enabled", env: "CLICKAGG_KAFKA_TLS_ENABLED", flag: "kafka-tls", help: "connect to the brokers with TLS",
		boolean: true,
		set:     boolSetter(func(c *Config) *bool { return &c.Kafka.TLS.Enabled })},
	{key: "kafka.tls.ca_file", env: "CLICKAGG_KAFKA_TLS_CA_FILE", flag: "kafka-tls-ca-file", help: "PEM file of the CAs to trust (default: the system's)",
		set: stringSetter(func(c *Config) *string { return &c.Kafka.TLS.CAFile })},
	{key: "kafka.tls.cert_file", env: "CLICKAGG_KAFKA_TLS_CERT_FILE", flag: "kafka-tls-cert-file", help: "PEM client certificate (mutual TLS)",
		set: stringSetter(func(c *Config) *string { return &c.Kafka.TLS.CertFile })},
	{key: "kafka.tls.key_file", env: "CLICKAGG_KAFKA_TLS_KEY_FILE", flag: "kafka-tls-key-file", help: "PEM client key (mutual TLS)",
		set: stringSetter(func(c *Config) *string { return &c.Kafka.TLS.KeyFile })},
	{key: "kafka.tls.server_name", env: "CLICKAGG_KAFKA_TLS_SERVER_NAME", flag: "kafka-tls-server-name", help: "name to verify in the broker certificates",
		set: stringSetter(func(c *Config) *string { return &c.Kafka.TLS.ServerName })},
	{key: "kafka.tls.insecure_skip_verify", env: "CLICKAGG_KAFKA_TLS_INSECURE_SKIP_VERIFY", flag: "kafka-tls-insecure-skip-verify", help: "do not verify broker certificates (tests only)",
		boolean: true,
		set:     boolSetter(func(c *Config) *bool { return &c.Kafka.TLS.InsecureSkipVerify })},
	{key: "kafka.sasl.mechanism", env: "CLICKAGG_KAFKA_SASL_MECHANISM", flag: "kafka-sasl-mechanism", help: "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
		set: stringSetter(func(c *Config) *string { return &c.Kafka.SASL.Mechanism })},
	{key: "kafka.sasl.username", env: "CLICKAGG_KAFKA_SASL_USERNAME", flag: "kafka-sasl-username", help: "SASL user",
		set: stringSetter(func(c *Config) *string { return &c.Kafka.SASL.Username })},
	{key: "kafka.sasl.password", env: "CLICKAGG_KAFKA_SASL_PASSWORD", flag: "kafka-sasl-password", help: "SASL password (prefer the environment variable)", secret: true,
		set: stringSetter(func(c *Config) *string { return &c.Kafka.SASL.Password })},
	{key: "http_pprof", env: "CLICKAGG_HTTP_PPROF", flag: "http-pprof", help: "serve /debug/pprof/ on http_addr (profiles; never the command line)",
		boolean: true,
		set:     boolSetter(func(c *Config) *bool { return &c.HTTPPprof })},
	{key: "http_status_page", env: "CLICKAGG_HTTP_STATUS_PAGE", flag: "http-status-page", help: "serve the status page and its JSON (/, /status, /api/top, /api/url: top URLs and counts) on http_addr (default true)",
		boolean: true,
		set:     boolSetter(func(c *Config) *bool { return &c.HTTPStatusPage })},
	{key: "log.level", env: "CLICKAGG_LOG_LEVEL", flag: "log-level", help: "debug, info, warn or error",
		set: stringSetter(func(c *Config) *string { return &c.Log.Level })},
	{key: "log.format", env: "CLICKAGG_LOG_FORMAT", flag: "log-format", help: "auto, json or console",
		set: stringSetter(func(c *Config) *string { return &c.Log.Format })},
}

// configFlags registers the settings named in keys (all when keys is nil)
// and --config on fs, and returns a loader to call after fs.Parse.
func configFlags(fs *flag.FlagSet, keys ...string) func() (*Config, error) {
	raw := make(map[string]string)
	var order []string
	var configPath string
	fs.StringVar(&configPath, "config", "", "YAML configuration file (settings: see README)")
	var used []setting
	defaults := settingDefaults()
	for _, s := range settings {
		if keys != nil && !slices.Contains(keys, s.key) {
			continue
		}
		used = append(used, s)
		record := func(v string) error {
			if _, seen := raw[s.key]; !seen {
				order = append(order, s.key)
			}
			raw[s.key] = v
			return nil
		}
		usage := s.help
		if d := defaults[s.key]; d != "" && !strings.Contains(usage, "(default") {
			usage += " (default " + d + ")"
		}
		usage += " [env " + strings.ReplaceAll(s.env, ",", ", ") + "]"
		if s.boolean {
			fs.BoolFunc(s.flag, usage, record)
		} else {
			fs.Func(s.flag, usage, record)
		}
	}
	return func() (*Config, error) {
		var c Config
		if configPath == "" {
			configPath = os.Getenv("CLICKAGG_CONFIG")
		}
		if configPath != "" {
			if err := loadYAML(&c, configPath); err != nil {
				return nil, err
			}
		}
		for _, s := range used {
			envs := strings.Split(s.env, ",")
			for i, env := range envs {
				if v, ok := os.LookupEnv(env); ok && v != "" {
					if err := s.set(&c, v); err != nil {
						return nil, badConfig("%s (environment %s): %v", s.key, env, err)
					}
					c.markExplicit(s.key)
					for _, other := range envs[i+1:] {
						if w := os.Getenv(other); w != "" && w != v {
							c.envConflicts = append(c.envConflicts, fmt.Sprintf("%s and %s are both set and differ; %s wins for %s", env, other, env, s.key))
						}
					}
					break
				}
			}
		}
		for _, k := range order {
			i := slices.IndexFunc(used, func(s setting) bool { return s.key == k })
			if err := used[i].set(&c, raw[k]); err != nil {
				return nil, badConfig("%s (flag --%s): %v", k, used[i].flag, err)
			}
			c.markExplicit(k)
		}
		if err := c.finish(); err != nil {
			return nil, err
		}
		return &c, nil
	}
}

func loadYAML(c *Config, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return badConfig("config file: %v", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return badConfig("config file %s: line %s: unknown key %q%s", path, m[1], m[2], suggestKey(keyPath(b, line, m[2])))
		}
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		return badConfig("config file %s: %s", path, strings.TrimPrefix(msg, "yaml: "))
	}
	var keys map[string]any
	if err := yaml.Unmarshal(b, &keys); err == nil {
		for k, v := range keys {
			c.markExplicit(k)
			if sub, ok := v.(map[string]any); ok {
				for k2 := range sub {
					c.markExplicit(k + "." + k2)
				}
			}
		}
	}
	return nil
}

// unknownField matches the YAML decoder's error for a key no setting has.
var unknownField = regexp.MustCompile(`line (\d+): field (\S+) not found in type`)

// keyPath returns the dotted path of the mapping key named key on line
// line of the YAML document b ("input.urll"), or key when not found.
func keyPath(b []byte, line int, key string) string {
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil {
		return key
	}
	var walk func(n *yaml.Node, prefix string) string
	walk = func(n *yaml.Node, prefix string) string {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				if p := walk(c, prefix); p != "" {
					return p
				}
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if k.Line == line && k.Value == key {
					return prefix + key
				}
				if p := walk(v, prefix+k.Value+"."); p != "" {
					return p
				}
			}
		}
		return ""
	}
	if p := walk(&doc, ""); p != "" {
		return p
	}
	return key
}

// suggestKey names the setting a mistyped key (a dotted path) most likely
// meant ("; did you mean ..."), or lists the settings when none is close.
func suggestKey(key string) string {
	best, bestD := "", 3 // NB: at most two edits away
	var all []string
	for _, s := range settings {
		all = append(all, s.key)
		if d := editDistance(key, s.key); d < bestD {
			best, bestD = s.key, d
		}
	}
	if best == "" {
		// NB: the last part alone, for a key under the wrong section.
		last := key[strings.LastIndexByte(key, '.')+1:]
		for _, s := range settings {
			parts := strings.Split(s.key, ".")
			for i := range parts {
				if d := editDistance(last, parts[i]); d < bestD {
					best, bestD = strings.Join(parts[:i+1], "."), d
				}
			}
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return "; the settings are " + strings.Join(all, ", ")
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// settingDefaults returns each setting's default as --print-config shows
// it (lists comma-separated), leaving out settings whose default is empty,
// zero or false: what -h prints after each flag.
func settingDefaults() map[string]string {
	var c Config
	_ = c.finish() // NB: the defaults are applied before anything is checked
	b, err := yaml.Marshal(&c)
	if err != nil {
		return nil
	}
	var tree map[string]any
	if err := yaml.Unmarshal(b, &tree); err != nil {
		return nil
	}
	out := make(map[string]string)
	for _, s := range settings {
		var v any = tree
		for _, k := range strings.Split(s.key, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[k]
		}
		switch v := v.(type) {
		case nil, bool:
			if v == true {
				out[s.key] = "true"
			}
		case []any:
			parts := make([]string, 0, len(v))
			for _, e := range v {
				parts = append(parts, fmt.Sprint(e))
			}
			out[s.key] = strings.Join(parts, ",")
		default:
			if t := fmt.Sprint(v); t != "" && t != "0" && t != "0s" {
				out[s.key] = t
			}
		}
	}
	return out
}

// finish applies defaults and validates, with messages that name the setting.
func (c *Config) finish() error {
	if len(c.Brokers) == 0 {
		c.Brokers = []string{"localhost:9092"}
	}
	for _, b := range c.Brokers {
		if strings.Contains(b, "://") || !strings.Contains(b, ":") {
			return badConfig("brokers: %q must be host:port", b)
		}
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defD := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	def(&c.Topic, "clicks")
	def(&c.Group, "clickagg")
	def(&c.PostgresSchema, sink.DefaultSchema)
	def(&c.StateDir, "clickagg-state")
	def(&c.StartOffset, "earliest")
	def(&c.Late.Policy, "count")
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "auto")
	def(&c.Input.URL, "url")
	def(&c.Input.TS, "ts")
	def(&c.Input.ID, "id")
	def(&c.Input.TSFormat, "auto")
	def(&c.Input.TSSource, "event")
	if c.HTTPAddr == "" && !c.setExplicitly("http_addr") {
		c.HTTPAddr = ":8080" // NB: given empty (--http-addr ''), it means off
	}
	if c.HTTPAddr == "off" || c.HTTPAddr == "none" {
		c.HTTPAddr = ""
	}
	defD(&c.CheckpointInterval, time.Second)
	defD(&c.SessionTimeout, 10*time.Second)
	defD(&c.ShutdownTimeout, 30*time.Second)
	defD(&c.Storage.MaintenanceInterval, 30*time.Second)
	if len(c.Windows) == 0 {
		c.Windows = []string{"1m"}
	}
	if c.MaxURLBytes == 0 {
		c.MaxURLBytes = stream.DefaultMaxURLBytes
	}
	if c.OutOfOrderness == 0 && !c.setExplicitly("out_of_orderness") {
		c.OutOfOrderness = Duration(5 * time.Second)
	}
	if c.IdleTimeout == 0 && !c.setExplicitly("idle_timeout") {
		c.IdleTimeout = Duration(30 * time.Second)
	}
	if c.MaxFutureSkew == 0 && !c.setExplicitly("max_future_skew") {
		c.MaxFutureSkew = Duration(time.Hour)
	}
	if c.Storage.TotalsFoldPeriod == 0 && !c.setExplicitly("storage.totals_fold_period") {
		c.Storage.TotalsFoldPeriod = Duration(time.Hour)
	}
	if c.HoldWindows == 0 && !c.setExplicitly("hold_windows") {
		c.HoldWindows = Duration(10 * time.Minute)
	}
	if !c.setExplicitly("align_watermarks") {
		c.AlignWatermarks = c.Late.Policy != "dead-letter"
	}
	if !c.setExplicitly("http_status_page") {
		c.HTTPStatusPage = true
	}

	if strings.TrimSpace(c.Topic) == "" || len(c.Topic) > 249 {
		return badConfig("topic %q: must be 1 to 249 characters", c.Topic)
	}
	if err := sink.ValidateSchemaName(c.PostgresSchema); err != nil {
		return badConfig("postgres_schema: %v", err)
	}
	// Only the syntax here: the rules on windows are the pipeline's (below).
	c.windows = c.windows[:0]
	for _, w := range c.Windows {
		d, err := parseDuration(w)
		if err != nil {
			return badConfig("windows: %q is not a duration (like 1m, 1h, 1d)", w)
		}
		c.windows = append(c.windows, d)
	}
	c.retention = map[time.Duration]time.Duration{}
	for size, keep := range c.Retention {
		d, err := parseDuration(size)
		if err != nil {
			return badConfig("retention: window size %q is not a duration (like 1m, 1h, 1d)", size)
		}
		c.retention[d] = keep.D()
	}
	switch c.Dedup.Scope {
	case "":
		c.Dedup.Scope = "partition"
	case "partition", "global":
	default:
		return badConfig("dedup.scope %q: must be partition or global", c.Dedup.Scope)
	}
	late, err := stream.ParseLatePolicy(c.Late.Policy)
	if err != nil {
		return badConfig("late.policy: %v", err)
	}
	c.late = late

	// The pipeline's own check of its options (windows, intervals,
	// start_offset, max_url_bytes, skews, dedup.window, hold_windows,
	// input.*...): the one source of those rules.
	if err := checkpoint.ValidateOptions(c.pipelineOptions("check", nil, nil)); err != nil {
		return badConfig("%s", c.settingError(err))
	}

	// What the pipeline leaves to its caller.
	checks := []struct {
		name string
		d    Duration
		min  time.Duration
	}{
		// NB: the pipeline takes a negative interval for off and bounds
		// neither the session nor the shutdown timeout.
		{"idle_timeout", c.IdleTimeout, 0},
		{"session_timeout", c.SessionTimeout, time.Second},
		{"exit_when_idle", c.ExitWhenIdle, 0},
		{"emit.early_interval", c.Emit.EarlyInterval, 0},
		{"shutdown_timeout", c.ShutdownTimeout, time.Second},
		{"storage.maintenance_interval", c.Storage.MaintenanceInterval, time.Second},
		{"storage.totals_fold_period", c.Storage.TotalsFoldPeriod, 0},
	}
	for _, ck := range checks {
		if ck.d.D() < ck.min {
			if ck.min == 0 {
				return badConfig("%s %s: must not be negative", ck.name, ck.d.D())
			}
			return badConfig("%s %s: must be at least %s", ck.name, ck.d.D(), ck.min)
		}
	}
	if w := c.Dedup.Window.D(); w > 0 && w%time.Millisecond != 0 {
		// NB: the operator keeps whole milliseconds and would truncate.
		return badConfig("dedup.window %s: must be a whole number of milliseconds", w)
	}
	if late == stream.LateDeadLetter && c.DeadLetter.Topic == "" {
		return badConfig("late.policy dead-letter: needs dead_letter.topic")
	}
	if late == stream.LateDeadLetter && c.AlignWatermarks {
		// NB: reachable only when set explicitly (the default is false
		// then): the pipeline would ignore it silently, see
		// checkpoint.Options.AlignWatermarks.
		return badConfig("align_watermarks: cannot be used with late.policy dead-letter (a late record's fate would depend on other partitions' timing)")
	}
	if c.DeadLetter.Topic != "" && c.DeadLetter.Topic == c.Topic {
		return badConfig("dead_letter.topic %q: must not be the input topic", c.DeadLetter.Topic)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return badConfig("log.level %q: must be debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "json", "console":
	default:
		return badConfig("log.format %q: must be auto, json or console", c.Log.Format)
	}
	if c.Postgres != "" {
		if err := checkDSN(c.Postgres); err != nil {
			return err
		}
	}
	if _, err := c.kafkaOptions("check", nil).ClientOpts(); err != nil {
		return badConfig("%v", err)
	}
	return nil
}

// kafkaKeys are the connection settings every Kafka-using command takes.
var kafkaKeys = []string{"brokers", "kafka.tls.enabled", "kafka.tls.ca_file", "kafka.tls.cert_file", "kafka.tls.key_file",
	"kafka.tls.server_name", "kafka.tls.insecure_skip_verify", "kafka.sasl.mechanism", "kafka.sasl.username", "kafka.sasl.password"}

// kafkaOptions returns the Kafka connection settings.
func (c *Config) kafkaOptions(clientID string, log *zap.Logger) stream.KafkaOptions {
	return stream.KafkaOptions{
		Brokers: c.Brokers, ClientID: clientID, Logger: log,
		TLS: stream.TLSOptions{
			Enabled: c.Kafka.TLS.Enabled, CAFile: c.Kafka.TLS.CAFile, CertFile: c.Kafka.TLS.CertFile,
			KeyFile: c.Kafka.TLS.KeyFile, ServerName: c.Kafka.TLS.ServerName, InsecureSkipVerify: c.Kafka.TLS.InsecureSkipVerify,
		},
		SASL: stream.SASLOptions{Mechanism: c.Kafka.SASL.Mechanism, Username: c.Kafka.SASL.Username, Password: c.Kafka.SASL.Password},
	}
}

// settingNames maps the field names of the pipeline's option errors to
// the configuration keys a user writes.
var settingNames = []struct{ field, key string }{
	{"window ", "windows: window "},
	{"out-of-orderness ", "out_of_orderness "},
	{"max URL bytes ", "max_url_bytes "},
	{"dedup window ", "dedup.window "},
	{"hold windows ", "hold_windows "},
	{"checkpoint interval ", "checkpoint_interval "},
	{"stall timeout ", "checkpoint_stall_timeout "},
	{"start offset ", "start_offset "},
}

// settingError is err, an error of checkpoint.ValidateOptions, on one line
// and naming the setting.
func (c *Config) settingError(err error) string {
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	if rest, ok := strings.CutPrefix(msg, "max future/past skew:"); ok {
		// NB: one error for both: show both values.
		return fmt.Sprintf("max_future_skew %s, max_past_skew %s:%s", c.MaxFutureSkew.D(), c.MaxPastSkew.D(), rest)
	}
	for _, n := range settingNames {
		if rest, ok := strings.CutPrefix(msg, n.field); ok {
			return n.key + rest
		}
	}
	return msg
}

// pipelineOptions returns the options `run` gives the pipeline.
func (c *Config) pipelineOptions(clientID string, log *zap.Logger, metrics *checkpoint.Metrics) checkpoint.Options {
	return checkpoint.Options{
		Kafka: c.kafkaOptions(clientID, log),
		Consumer: stream.ConsumerOptions{
			Topic: c.Topic, Group: c.Group, SessionTimeout: c.SessionTimeout.D(), InstanceID: c.InstanceID,
		},
		Operator: stream.OperatorOptions{
			Windows: c.windows, OutOfOrder: c.OutOfOrderness.D(), Late: c.late, MaxURLBytes: c.MaxURLBytes,
			MaxFutureSkew: c.MaxFutureSkew.D(), MaxPastSkew: c.MaxPastSkew.D(),
			DedupWindow: c.Dedup.Window.D(), DedupKeyed: c.Dedup.Scope == "global",
			NormalizeURLs: c.URL.Normalize, HoldWindows: c.HoldWindows.D(),
			Input: c.inputOptions(),
		},
		CheckpointInterval: c.CheckpointInterval.D(),
		EarlyInterval:      c.Emit.EarlyInterval.D(),
		IdleTimeout:        c.IdleTimeout.D(),
		AlignWatermarks:    c.AlignWatermarks,
		ExitWhenIdle:       c.ExitWhenIdle.D(),
		StartOffset:        c.StartOffset,
		DeadLetterTopic:    c.DeadLetter.Topic,
		ShutdownTimeout:    c.ShutdownTimeout.D(),
		StallTimeout:       c.StallTimeout.D(),
		SpillDir:           c.StateDir,
		Retention:          c.retention,
		MaintainInterval:   c.Storage.MaintenanceInterval.D(),
		TotalsFoldPeriod:   c.Storage.TotalsFoldPeriod.D(),
		Logger:             log,
		Metrics:            metrics,
	}
}

// inputOptions returns the input mapping (input.*).
func (c *Config) inputOptions() stream.InputOptions {
	return stream.InputOptions{
		URL: c.Input.URL, TS: c.Input.TS, ID: c.Input.ID,
		TSFormat: c.Input.TSFormat, TSSource: c.Input.TSSource,
		Filter: slices.Clone(c.Input.Filter),
	}
}

// setExplicitly reports whether key was given in the file, the environment
// or a flag: for "0 means off" settings an explicit zero must not be
// replaced by the default.
func (c *Config) setExplicitly(key string) bool { return c.explicit[key] }

func (c *Config) markExplicit(key string) {
	if c.explicit == nil {
		c.explicit = make(map[string]bool)
	}
	c.explicit[key] = true
}

// checkDSN validates the PostgreSQL connection string without ever echoing
// it: it may hold a password.
func checkDSN(dsn string) error {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if _, err := url.Parse(dsn); err != nil {
			return badConfig("postgres: not a valid URL (value withheld: it may contain a password)")
		}
		return nil
	}
	if strings.Contains(dsn, "=") {
		return nil // key=value form; pgx reports problems at connect
	}
	return badConfig("postgres: must be a postgres:// URL or key=value connection string (value withheld)")
}

// requirePostgres is the error of commands that need a DSN.
func (c *Config) requirePostgres() error {
	if c.Postgres == "" {
		return badConfig("postgres: no connection string; set DATABASE_URL, postgres: in the config file, or --postgres")
	}
	return nil
}

// Redacted returns the configuration as YAML with secrets replaced.
func (c *Config) Redacted() string {
	cp := *c
	if cp.Postgres != "" {
		cp.Postgres = redactDSN(cp.Postgres)
	}
	if cp.Kafka.SASL.Password != "" {
		cp.Kafka.SASL.Password = "REDACTED"
	}
	b, err := yaml.Marshal(&cp)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// redactDSN describes a DSN without its password or any other parameter:
// only host, port, user and database are shown.
func redactDSN(dsn string) string {
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "(unparseable; withheld)"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s (password and other parameters withheld)",
		url.PathEscape(pc.User), pc.Host, pc.Port, url.PathEscape(pc.Database))
}
