package stream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/zap"
)

// KafkaOptions are the connection settings shared by every Kafka client of
// the process (consumer, generator, admin).
type KafkaOptions struct {
	Brokers  []string
	ClientID string
	Logger   *zap.Logger // nil: no client logs
	TLS      TLSOptions
	SASL     SASLOptions
}

// TLSOptions configure TLS to the brokers.
type TLSOptions struct {
	Enabled bool
	// CAFile is a PEM bundle of the CAs to trust; empty: the system pool.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and key (mutual
	// TLS); both or neither.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the broker certificates.
	ServerName string
	// InsecureSkipVerify disables certificate checks: for tests only.
	InsecureSkipVerify bool
}

// SASLOptions configure SASL authentication. Password is a secret: it is
// never logged or put in an error.
type SASLOptions struct {
	Mechanism string // PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL
	Username  string
	Password  string
}

// tlsConfig builds the TLS configuration, reading the files.
func (o TLSOptions) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName, InsecureSkipVerify: o.InsecureSkipVerify} //nolint:gosec // opt-in, documented as test-only
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file %s: no PEM certificate found", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("kafka.tls.cert_file and kafka.tls.key_file: set both or neither")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// mechanism returns the SASL mechanism, or nil without SASL.
func (o SASLOptions) mechanism() (sasl.Mechanism, error) {
	if o.Mechanism == "" {
		if o.Username != "" || o.Password != "" {
			return nil, errors.New("kafka.sasl.mechanism: required when a SASL username or password is set (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
		}
		return nil, nil
	}
	if o.Username == "" || o.Password == "" {
		return nil, fmt.Errorf("kafka.sasl: mechanism %s needs a username and a password (CLICKAGG_KAFKA_SASL_PASSWORD)", o.Mechanism)
	}
	switch strings.ToUpper(o.Mechanism) {
	case "PLAIN":
		return plain.Auth{User: o.Username, Pass: o.Password}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: o.Username, Pass: o.Password}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: o.Username, Pass: o.Password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("kafka.sasl.mechanism %q: must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", o.Mechanism)
}

// ClientOpts returns the kgo options for o.
func (o KafkaOptions) ClientOpts() ([]kgo.Opt, error) {
	if len(o.Brokers) == 0 {
		return nil, errors.New("brokers: at least one Kafka broker address is required")
	}
	for _, b := range o.Brokers {
		if strings.TrimSpace(b) == "" {
			return nil, fmt.Errorf("brokers %q: empty address", strings.Join(o.Brokers, ","))
		}
	}
	id := o.ClientID
	if id == "" {
		id = "clickagg"
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.ClientID(id),
	}
	if o.Logger != nil {
		opts = append(opts, kgo.WithLogger(kgoLogger{o.Logger.Named("kafka")}))
	}
	if o.TLS.Enabled {
		cfg, err := o.TLS.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	} else if o.TLS.CAFile != "" || o.TLS.CertFile != "" {
		return nil, errors.New("kafka.tls: files are set but kafka.tls.enabled is false")
	}
	mech, err := o.SASL.mechanism()
	if err != nil {
		return nil, err
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// ConsumerOptions are the consumer-group settings of the aggregator.
type ConsumerOptions struct {
	Topic            string
	Group            string
	SessionTimeout   time.Duration // zero: the client's default (45s)
	RebalanceTimeout time.Duration // zero: the client's default (60s)
	InstanceID       string        // static membership; empty: dynamic
}

// ConsumerOpts returns the kgo options of a group consumer that reads
// committed records only, sees transaction markers (so that its next offset
// can pass them, see Record.Control), never commits by itself and lets
// rebalances happen only between polls. The topic is not among them: the
// caller adds it with AddConsumeTopics once the client is wired up, since
// group callbacks can run as soon as consumption starts.
func (o ConsumerOptions) ConsumerOpts() []kgo.Opt {
	opts := []kgo.Opt{
		kgo.ConsumerGroup(o.Group),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		// NB: never reset silently. When a fetch offset is out of range
		// (retention deleted records not yet processed), the error reaches
		// the poll loop, which counts and logs the loss and seeks on.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		// NB: partitions added to the topic are found at the next metadata
		// refresh; the default (5 min) would leave them unconsumed, and
		// windows unfinalized, for that long.
		kgo.MetadataMaxAge(15 * time.Second),
		// NB: the limits are on compressed bytes; a 50 MiB fetch (the
		// default) of well-compressed clicks holds hundreds of MiB of
		// decoded records, kept until the loop has processed them all.
		// 128 KiB per partition (about one producer batch) still fills a
		// poll from a dozen partitions; against 1 MiB it took the
		// benchmarks' peak RSS from 405-414 to 341-386 MiB (uniform,
		// under GOMEMLIMIT=400MiB, where it also saved 12% of the CPU:
		// fewer collections) and from 559-611 to 260-340 MiB (zipf).
		kgo.FetchMaxBytes(8 << 20),
		kgo.FetchMaxPartitionBytes(128 << 10),
	}
	if o.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(o.SessionTimeout))
		// NB: heartbeat well within the session so a live member is
		// never mistaken for a dead one.
		opts = append(opts, kgo.HeartbeatInterval(min(3*time.Second, o.SessionTimeout/3)))
	}
	if o.RebalanceTimeout > 0 {
		opts = append(opts, kgo.RebalanceTimeout(o.RebalanceTimeout))
	}
	if o.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(o.InstanceID))
	}
	return opts
}

// kgoLogger adapts zap to kgo.Logger. kgo logs broker addresses and
// protocol events, never credentials.
type kgoLogger struct{ l *zap.Logger }

func (k kgoLogger) Level() kgo.LogLevel {
	switch {
	case k.l.Core().Enabled(zap.DebugLevel):
		return kgo.LogLevelDebug
	case k.l.Core().Enabled(zap.InfoLevel):
		// NB: kgo's info level is chatty (every join and fetch session);
		// keep warnings and errors.
		return kgo.LogLevelWarn
	}
	return kgo.LogLevelError
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	fields := make([]zap.Field, 0, len(keyvals)/2)
	for i := 0; i+1 < len(keyvals); i += 2 {
		fields = append(fields, zap.Any(fmt.Sprint(keyvals[i]), keyvals[i+1]))
	}
	switch level {
	case kgo.LogLevelError:
		k.l.Error(msg, fields...)
	case kgo.LogLevelWarn:
		k.l.Warn(msg, fields...)
	case kgo.LogLevelInfo:
		k.l.Info(msg, fields...)
	default:
		k.l.Debug(msg, fields...)
	}
}
