package kafkalocal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clickagg/clickagg/internal/child"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadyTimeout bounds a start or restart until the broker answers.
const ReadyTimeout = readyTimeout

// LibEnv names the environment variable that overrides [LibDir].
const LibEnv = "CLICKAGG_KAFKA_LIB"

const (
	readyTimeout    = 90 * time.Second // start-up or restart until ready
	stopTimeout     = 30 * time.Second // SIGTERM until SIGKILL
	killWait        = 10 * time.Second // SIGKILL until reaped
	portWait        = 15 * time.Second // Restart: wait for the old ports to be free
	pollInterval    = 100 * time.Millisecond
	probeTimeout    = 5 * time.Second // one readiness probe
	startAttempts   = 3               // fresh ports when the chosen ones were taken
	dirPrefix       = "clickagg-kafka-"
	ownerFile       = "owner.pid"
	jvmPidFile      = "jvm.pid"
	brokerLogName   = "broker.log"
	jvmOutName      = "jvm.out"
	mainClass       = "kafka.Kafka"
	storageToolMain = "kafka.tools.StorageTool"
)

// jvmOpts are the JVM options for the broker: a small heap and a serial
// collector, since test machines have few cores.
var jvmOpts = []string{
	"-Xms256m", "-Xmx512m",
	"-XX:+UseSerialGC",
	"-XX:+ExitOnOutOfMemoryError",
	"-XX:-UsePerfData",
	"-Djava.awt.headless=true",
}

// toolOpts are the JVM options for the short-lived storage tool.
var toolOpts = []string{
	"-Xms64m", "-Xmx256m",
	"-XX:+UseSerialGC",
	"-XX:TieredStopAtLevel=1",
	"-XX:-UsePerfData",
	"-Djava.awt.headless=true",
}

// ---------------------------------------------------------------------------
// locating the jars

// LibDir returns the folder with the broker jars: $CLICKAGG_KAFKA_LIB if set,
// else <repo root>/kafka/lib, the repository root being located from this
// source file's path (tests run from package folders), or, when the binary
// was built with -trimpath, by walking up from the working directory to the
// go.mod of this module.
func LibDir() string {
	if d := os.Getenv(LibEnv); d != "" {
		return d
	}
	return filepath.Join(repoRoot(), "kafka", "lib")
}

const modulePath = "github.com/clickagg/clickagg"

func repoRoot() string {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		// file is <root>/internal/kafkalocal/kafkalocal.go
		return filepath.Dir(filepath.Dir(filepath.Dir(file)))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
				regexp.MustCompile(`(?m)^module\s+`+regexp.QuoteMeta(modulePath)+`\s*$`).Match(b) {
				return d
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "."
}

var (
	javaOnce sync.Once
	javaPath string
	javaWhy  string
)

// findJava locates java on PATH and checks that it is version 17 or newer
// (once per process).
func findJava() (string, string) {
	javaOnce.Do(func() {
		p, err := exec.LookPath("java")
		if err != nil {
			javaWhy = "java not found on PATH (install Java 17 or newer, e.g. apt-get install openjdk-17-jre-headless)"
			return
		}
		out, err := exec.Command(p, "-version").CombinedOutput()
		if err != nil {
			javaWhy = fmt.Sprintf("%s -version failed: %v: %s", p, err, bytes.TrimSpace(out))
			return
		}
		if m := regexp.MustCompile(`version "(\d+)(?:\.(\d+))?`).FindSubmatch(out); m != nil {
			major, _ := strconv.Atoi(string(m[1]))
			if major == 1 && len(m[2]) > 0 { // "1.8.0_x"
				major, _ = strconv.Atoi(string(m[2]))
			}
			if major < 17 {
				javaWhy = fmt.Sprintf("%s is Java %d; Kafka 4 needs Java 17 or newer (e.g. apt-get install openjdk-17-jre-headless)", p, major)
				return
			}
		}
		javaPath = p
	})
	return javaPath, javaWhy
}

// Available reports whether a real broker can be started here (java 17+ on
// PATH, LibDir holds the kafka_2.13 jar and a .complete-* marker written by
// scripts/ensure-kafka.sh) and, if not, why.
func Available() (ok bool, why string) {
	if _, why := findJava(); why != "" {
		return false, why
	}
	lib := LibDir()
	markers, _ := filepath.Glob(filepath.Join(lib, ".complete-*"))
	jars, _ := filepath.Glob(filepath.Join(lib, "kafka_2.13-*.jar"))
	if len(markers) == 0 || len(jars) == 0 {
		return false, fmt.Sprintf("the Kafka broker jars are not in %s (run scripts/ensure-kafka.sh; it needs java and mvn: apt-get install openjdk-17-jre-headless maven)", lib)
	}
	return true, ""
}

// ---------------------------------------------------------------------------
// Broker

// Options configure [Start].
type Options struct {
	Dir    string               // parent of the temporary data folder; "" = os.TempDir()
	Logf   func(string, ...any) // progress messages; nil = none
	Config map[string]string    // extra server.properties entries, overriding the defaults
}

// Broker is a running (or stopped) single-node KRaft broker+controller.
type Broker struct {
	dir      string // the temporary folder; data in dir/data
	port     int    // client listener
	ctrlPort int    // controller listener
	java     string
	lib      string
	config   map[string]string
	logf     func(string, ...any)

	mu      sync.Mutex // serialises Stop, Restart, Kill
	proc    *child.Process
	stopped bool

	tailMu    sync.Mutex
	finalTail string // the log tail saved by Stop before removing dir
}

// Start formats KRaft storage in a fresh temporary folder (clickagg-kafka-*
// under opts.Dir), picks free loopback ports for the client and controller
// listeners, starts the broker JVM and waits until it is really ready (a
// kadm client can list the brokers and create and delete a probe topic), at
// most ~90 s or until ctx ends. A failed Start leaves no process and no
// folder behind; its error includes the tail of the broker log. ctx bounds
// the start-up only, never the broker.
func Start(ctx context.Context, opts Options) (*Broker, error) {
	if ok, why := Available(); !ok {
		return nil, errors.New("kafkalocal: " + why)
	}
	java, _ := findJava()
	parent := opts.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	child.RemoveStale(parent, dirPrefix, ownerFile, jvmPidFile)
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		b := &Broker{java: java, lib: LibDir(), config: opts.Config, logf: logf}
		err := b.start(ctx, parent)
		if err == nil {
			return b, nil
		}
		lastErr = err
		retry := errors.Is(err, errPortTaken) && ctx.Err() == nil
		_ = b.Stop()
		if !retry {
			break
		}
		logf("kafkalocal: %v; retrying with other ports", err)
	}
	return nil, lastErr
}

func (b *Broker) start(ctx context.Context, parent string) error {
	t0 := time.Now()
	dir, err := os.MkdirTemp(parent, dirPrefix)
	if err != nil {
		return fmt.Errorf("kafkalocal: %w", err)
	}
	b.dir = dir
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("kafkalocal: %w", err)
	}
	ports, err := freePorts(2)
	if err != nil {
		return fmt.Errorf("kafkalocal: picking ports: %w", err)
	}
	b.port, b.ctrlPort = ports[0], ports[1]
	if err := b.writeConfig(); err != nil {
		return err
	}
	if err := b.format(ctx); err != nil {
		return err
	}
	t1 := time.Now()
	if err := b.launch(); err != nil {
		return err
	}
	if err := b.waitReady(ctx, t0); err != nil {
		return err
	}
	b.logf("kafkalocal: broker ready at %s in %v (format %v), data in %s",
		b.Addr(), time.Since(t0).Round(time.Millisecond), t1.Sub(t0).Round(time.Millisecond), dir)
	return nil
}

// Addr returns host:port of the client listener.
func (b *Broker) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
}

// Pid returns the process id of the broker JVM, 0 when it is not running
// (stopped, or killed and not restarted). A Restart changes it.
func (b *Broker) Pid() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc == nil || b.proc.Exited() {
		return 0
	}
	return b.proc.Pid()
}

// Dir returns the broker's temporary folder (data in Dir/data, log in
// Dir/broker.log). It is removed by Stop.
func (b *Broker) Dir() string { return b.dir }

func (b *Broker) dataDir() string    { return filepath.Join(b.dir, "data") }
func (b *Broker) logPath() string    { return filepath.Join(b.dir, brokerLogName) }
func (b *Broker) jvmOutPath() string { return filepath.Join(b.dir, jvmOutName) }
func (b *Broker) propsPath() string  { return filepath.Join(b.dir, "server.properties") }
func (b *Broker) log4jPath() string  { return filepath.Join(b.dir, "log4j2.properties") }

// defaultConfig returns the server.properties of a fast single-node test
// broker (before Options.Config is applied).
func (b *Broker) defaultConfig() map[string]string {
	ctrl := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.ctrlPort))
	return map[string]string{
		"process.roles":                                    "broker,controller",
		"node.id":                                          "1",
		"controller.quorum.voters":                         "1@" + ctrl,
		"listeners":                                        "PLAINTEXT://" + b.Addr() + ",CONTROLLER://" + ctrl,
		"advertised.listeners":                             "PLAINTEXT://" + b.Addr(),
		"controller.listener.names":                        "CONTROLLER",
		"inter.broker.listener.name":                       "PLAINTEXT",
		"listener.security.protocol.map":                   "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"log.dirs":                                         b.dataDir(),
		"num.partitions":                                   "1",
		"default.replication.factor":                       "1",
		"min.insync.replicas":                              "1",
		"auto.create.topics.enable":                        "false",
		"offsets.topic.replication.factor":                 "1",
		"offsets.topic.num.partitions":                     "4",
		"transaction.state.log.replication.factor":         "1",
		"transaction.state.log.min.isr":                    "1",
		"transaction.state.log.num.partitions":             "4",
		"share.coordinator.state.topic.replication.factor": "1",
		"share.coordinator.state.topic.min.isr":            "1",
		"share.coordinator.state.topic.num.partitions":     "1",
		"group.initial.rebalance.delay.ms":                 "0",
		"group.min.session.timeout.ms":                     "1000",
		// Tests and benchmarks produce records with event times in the
		// past as their timestamps: time-based retention would delete
		// whole segments of them minutes after they were written.
		"log.retention.ms": "-1",
		// After a crash (Kill) the restarted broker cannot register until
		// the controller has expired the old registration's session (9 s by
		// default): keep that short.
		"broker.heartbeat.interval.ms": "500",
		"broker.session.timeout.ms":    "3000",
		// Few threads and little memory: test machines have 2 cores.
		"num.network.threads":               "2",
		"num.io.threads":                    "2",
		"num.recovery.threads.per.data.dir": "1",
		"background.threads":                "2",
		"log.cleaner.dedupe.buffer.size":    "16777216",
		"group.coordinator.threads":         "1",
		"share.coordinator.threads":         "1",
	}
}

func (b *Broker) writeConfig() error {
	cfg := b.defaultConfig()
	for k, v := range b.config {
		cfg[k] = v
	}
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var props strings.Builder
	props.WriteString("# written by internal/kafkalocal\n")
	for _, k := range keys {
		fmt.Fprintf(&props, "%s=%s\n", k, escapeProp(cfg[k]))
	}
	if err := os.WriteFile(b.propsPath(), []byte(props.String()), 0o644); err != nil {
		return fmt.Errorf("kafkalocal: %w", err)
	}
	log4j := strings.Join([]string{
		"status = warn",
		"appender.file.type = File",
		"appender.file.name = file",
		"appender.file.fileName = " + escapeProp(b.logPath()),
		"appender.file.append = true",
		"appender.file.layout.type = PatternLayout",
		"appender.file.layout.pattern = [%d] %p %m (%c)%n",
		"rootLogger.level = INFO",
		"rootLogger.appenderRef.file.ref = file",
		// The full configuration dumps are most of an INFO log.
		"logger.config.name = org.apache.kafka.common.config.AbstractConfig",
		"logger.config.level = WARN",
		"logger.request.name = kafka.request.logger",
		"logger.request.level = WARN",
		"",
	}, "\n")
	if err := os.WriteFile(b.log4jPath(), []byte(log4j), 0o644); err != nil {
		return fmt.Errorf("kafkalocal: %w", err)
	}
	return nil
}

// escapeProp escapes a value for a Java .properties file.
func escapeProp(v string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`).Replace(v)
}

// format runs the storage tool on the data folder with a fresh cluster id.
func (b *Broker) format(ctx context.Context) error {
	id, err := randomClusterID()
	if err != nil {
		return fmt.Errorf("kafkalocal: %w", err)
	}
	args := slices.Concat(toolOpts, []string{
		"-Dlog4j2.configurationFile=" + b.log4jPath(),
		"-cp", filepath.Join(b.lib, "*"),
		storageToolMain, "format", "--cluster-id", id, "--config", b.propsPath(),
	})
	fctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	cmd := exec.CommandContext(fctx, b.java, args...)
	cmd.Dir = b.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kafkalocal: formatting the storage (%s format): %v\n%s%s", storageToolMain, err,
			bytes.TrimSpace(out), b.tailSuffix())
	}
	return nil
}

// randomClusterID returns a random Kafka Uuid in its base64 form (URL
// alphabet, no padding, 22 characters), never starting with '-' and never
// the zero Uuid or the metadata topic id (1), like Uuid.randomUuid.
func randomClusterID() (string, error) {
	for {
		var u [16]byte
		if _, err := rand.Read(u[:]); err != nil {
			return "", err
		}
		allZero := true
		for _, c := range u[:15] {
			if c != 0 {
				allZero = false
				break
			}
		}
		if allZero && u[15] <= 1 {
			continue
		}
		s := base64.RawURLEncoding.EncodeToString(u[:])
		if s[0] == '-' {
			continue
		}
		return s, nil
	}
}

var errPortTaken = errors.New("a listener port is already in use")

// launch starts the JVM on the configured ports (the data folder is already
// formatted) and returns at once.
func (b *Broker) launch() error {
	out, err := os.OpenFile(b.jvmOutPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("kafkalocal: %w", err)
	}
	defer out.Close() // the child has its own copy
	args := slices.Concat(jvmOpts, []string{
		"-Dlog4j2.configurationFile=" + b.log4jPath(),
		"-cp", filepath.Join(b.lib, "*"),
		mainClass, b.propsPath(),
	})
	cmd := exec.Command(b.java, args...)
	cmd.Dir = b.dir
	cmd.Stdout = out
	cmd.Stderr = out
	p, err := child.Start(cmd, syscall.SIGKILL)
	if err != nil {
		return fmt.Errorf("kafkalocal: starting java: %w", err)
	}
	b.proc = p
	_ = os.WriteFile(filepath.Join(b.dir, jvmPidFile), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	return nil
}

// waitReady polls until the broker lists itself and can create and delete a
// probe topic, the JVM exits, ctx ends or readyTimeout passes since t0.
func (b *Broker) waitReady(ctx context.Context, t0 time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, t0.Add(readyTimeout))
	defer cancel()
	p := b.proc
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(b.Addr()),
		kgo.DialTimeout(2*time.Second),
		kgo.RetryBackoffFn(func(int) time.Duration { return pollInterval }),
		kgo.MetadataMinAge(pollInterval),
	)
	if err != nil {
		return fmt.Errorf("kafkalocal: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	probe := fmt.Sprintf("__kafkatest_probe_%d", time.Now().UnixNano())
	created := false
	var last error
	for {
		last = b.probe(ctx, adm, probe, &created)
		if last == nil {
			return nil
		}
		select {
		case <-p.Done():
			return b.exitError(p)
		case <-ctx.Done():
			if p.Exited() {
				return b.exitError(p)
			}
			return fmt.Errorf("kafkalocal: broker at %s not ready after %v: %v (last probe: %v)%s",
				b.Addr(), time.Since(t0).Round(time.Millisecond), ctx.Err(), last, b.tailSuffix())
		case <-time.After(pollInterval):
		}
	}
}

func (b *Broker) probe(ctx context.Context, adm *kadm.Client, topic string, created *bool) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	brokers, err := adm.ListBrokers(ctx)
	if err != nil {
		return fmt.Errorf("listing brokers: %w", err)
	}
	if len(brokers) == 0 {
		return errors.New("no brokers listed")
	}
	if !*created {
		_, err := adm.CreateTopic(ctx, 1, 1, nil, topic)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating probe topic: %w", err)
		}
		*created = true
	}
	_, err = adm.DeleteTopic(ctx, topic)
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("deleting probe topic: %w", err)
	}
	return nil
}

// exitError describes an early JVM exit; it wraps errPortTaken when the log
// says a listener could not bind.
func (b *Broker) exitError(p *child.Process) error {
	tail := b.tailSuffix()
	err := fmt.Errorf("kafkalocal: the broker JVM exited during start-up (%v)%s", p.Err(), tail)
	if strings.Contains(tail, "Address already in use") || strings.Contains(tail, "failed to bind") {
		return fmt.Errorf("%w: %w", errPortTaken, err)
	}
	return err
}

func (b *Broker) tailSuffix() string {
	t := b.LogTail(40)
	if t == "" {
		return ""
	}
	return "\n--- broker log tail ---\n" + t
}

// Stop shuts the broker down (SIGTERM, then SIGKILL if it has not exited
// after 30 s) and removes its folder. It is safe to call more than once.
func (b *Broker) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return nil
	}
	b.stopped = true
	err := b.stopJVM()
	if b.dir != "" {
		b.tailMu.Lock()
		b.finalTail = b.readTail(200)
		b.tailMu.Unlock()
		if rerr := os.RemoveAll(b.dir); rerr != nil && err == nil {
			err = fmt.Errorf("kafkalocal: removing %s: %w", b.dir, rerr)
		}
	}
	return err
}

// stopJVM terminates the JVM gracefully (keeping the data). b.mu is held.
func (b *Broker) stopJVM() error {
	p := b.proc
	b.proc = nil
	if p == nil || p.Exited() {
		return nil
	}
	t0 := time.Now()
	if p.Signal(syscall.SIGTERM, stopTimeout) {
		b.logf("kafkalocal: broker (pid %d) stopped in %v", p.Pid(), time.Since(t0).Round(time.Millisecond))
		return nil
	}
	if p.Kill(killWait) {
		return fmt.Errorf("kafkalocal: broker (pid %d) did not shut down within %v; killed it", p.Pid(), stopTimeout)
	}
	return fmt.Errorf("kafkalocal: broker (pid %d) did not die after SIGKILL", p.Pid())
}

// Kill SIGKILLs the JVM and keeps the data: a crash. Bring the broker back
// with Restart.
func (b *Broker) Kill() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return errors.New("kafkalocal: broker is stopped")
	}
	p := b.proc
	b.proc = nil
	if p == nil || p.Kill(killWait) {
		return nil
	}
	return fmt.Errorf("kafkalocal: broker (pid %d) did not die after SIGKILL", p.Pid())
}

// Restart stops the JVM (keeping the data; a no-op after Kill), starts it
// again on the same ports and waits until it is ready, at most ~90 s or
// until ctx ends. If a port is still held (TIME_WAIT, or the port was taken
// by another process meanwhile), it retries binding for a while.
func (b *Broker) Restart(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return errors.New("kafkalocal: broker is stopped")
	}
	t0 := time.Now()
	if err := b.stopJVM(); err != nil {
		return err
	}
	b.appendLog(fmt.Sprintf("=== kafkalocal: restarting the broker at %s ===\n", time.Now().Format(time.RFC3339Nano)))
	deadline := t0.Add(portWait)
	for {
		if err := b.waitPortsFree(ctx, deadline); err != nil {
			return err
		}
		if err := b.launch(); err != nil {
			return err
		}
		err := b.waitReady(ctx, time.Now())
		if err == nil {
			break
		}
		b.killQuietly()
		if !errors.Is(err, errPortTaken) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		b.logf("kafkalocal: restart: %v; retrying", errPortTaken)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	b.logf("kafkalocal: broker at %s restarted in %v", b.Addr(), time.Since(t0).Round(time.Millisecond))
	return nil
}

func (b *Broker) killQuietly() {
	if p := b.proc; p != nil {
		p.Kill(killWait)
		b.proc = nil
	}
}

// waitPortsFree waits until both listener ports can be bound on 127.0.0.1
// (Go sets SO_REUSEADDR like Kafka, so TIME_WAIT does not count).
func (b *Broker) waitPortsFree(ctx context.Context, deadline time.Time) error {
	for {
		var busy error
		for _, port := range []int{b.port, b.ctrlPort} {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				busy = err
				break
			}
			l.Close()
		}
		if busy == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kafkalocal: restart: %w: %v", errPortTaken, busy)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (b *Broker) appendLog(s string) {
	f, err := os.OpenFile(b.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	_, _ = f.WriteString(s)
	f.Close()
}

// LogTail returns the last n lines of the broker log (plus anything the JVM
// printed to stdout/stderr), for failing tests. After Stop it returns the
// tail saved before the folder was removed.
func (b *Broker) LogTail(n int) string {
	b.tailMu.Lock()
	final := b.finalTail
	b.tailMu.Unlock()
	if final != "" {
		return lastLines(final, n)
	}
	return b.readTail(n)
}

func (b *Broker) readTail(n int) string {
	if b.dir == "" {
		return ""
	}
	s := lastLines(readEnd(b.logPath(), 256<<10), n)
	if out := strings.TrimSpace(lastLines(readEnd(b.jvmOutPath(), 64<<10), n)); out != "" {
		s += "--- JVM output ---\n" + out + "\n"
	}
	return s
}

// readEnd returns at most the last max bytes of a file ("" if unreadable).
func readEnd(path string, max int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

func lastLines(s string, n int) string {
	if n <= 0 {
		return ""
	}
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// ---------------------------------------------------------------------------
// processes

// freePorts returns n distinct free TCP ports of 127.0.0.1 (free when
// checked: another process may take one before the broker binds it).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
