package stream

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, and returns the server's TLS config and the file paths.
func testPKI(t *testing.T) (server *tls.Config, caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clickagg test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(cn string, usage x509.ExtKeyUsage, ip bool) (certPEM, keyPEM []byte, pair tls.Certificate) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if ip {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(k)
		certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
		pair, err = tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return certPEM, keyPEM, pair
	}
	_, _, serverPair := issue("broker", x509.ExtKeyUsageServerAuth, true)
	clientCert, clientKey, _ := issue("clickagg", x509.ExtKeyUsageClientAuth, false)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	server = &tls.Config{Certificates: []tls.Certificate{serverPair}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	for f, b := range map[string][]byte{caFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), certFile: clientCert, keyFile: clientKey} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return server, caFile, certFile, keyFile
}

// roundTrip produces one record and reads it back with clients built from o.
func roundTrip(t *testing.T, o KafkaOptions) error {
	t.Helper()
	opts, err := o.ClientOpts()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic("t"), kgo.ConsumeTopics("t"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.RequestRetries(0))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(`{"url":"/x"}`)}).FirstErr(); err != nil {
		return err
	}
	fs := cl.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		return err
	}
	if fs.NumRecords() == 0 {
		return context.DeadlineExceeded
	}
	return nil
}

func TestKafkaTLSAndSASL(t *testing.T) {
	serverTLS, caFile, certFile, keyFile := testPKI(t)
	cases := []struct {
		name    string
		cluster []kfake.Opt
		client  KafkaOptions
		wantErr bool
	}{
		{"tls", []kfake.Opt{kfake.TLS(serverTLS)},
			KafkaOptions{TLS: TLSOptions{Enabled: true, CAFile: caFile}}, false},
		{"mutual-tls", []kfake.Opt{kfake.TLS(serverTLS)},
			KafkaOptions{TLS: TLSOptions{Enabled: true, CAFile: caFile, CertFile: certFile, KeyFile: keyFile}}, false},
		{"tls-untrusted-ca", []kfake.Opt{kfake.TLS(serverTLS)},
			KafkaOptions{TLS: TLSOptions{Enabled: true}}, true},
		{"sasl-plain", []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("PLAIN", "app", "pw-plain")},
			KafkaOptions{SASL: SASLOptions{Mechanism: "PLAIN", Username: "app", Password: "pw-plain"}}, false},
		{"sasl-scram-256", []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "app", "pw-256")},
			KafkaOptions{SASL: SASLOptions{Mechanism: "SCRAM-SHA-256", Username: "app", Password: "pw-256"}}, false},
		{"tls-sasl-scram-512", []kfake.Opt{kfake.TLS(serverTLS), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "app", "pw-512")},
			KafkaOptions{TLS: TLSOptions{Enabled: true, CAFile: caFile}, SASL: SASLOptions{Mechanism: "scram-sha-512", Username: "app", Password: "pw-512"}}, false},
		{"sasl-wrong-password", []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "app", "right")},
			KafkaOptions{SASL: SASLOptions{Mechanism: "SCRAM-SHA-256", Username: "app", Password: "wrong-secret-pw"}}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cluster, err := kfake.NewCluster(append(c.cluster, kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))...)
			if err != nil {
				t.Fatal(err)
			}
			defer cluster.Close()
			c.client.Brokers = cluster.ListenAddrs()
			err = roundTrip(t, c.client)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "wrong-secret-pw") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

func TestKafkaOptionsValidation(t *testing.T) {
	cases := []struct {
		o    KafkaOptions
		want string
	}{
		{KafkaOptions{}, "brokers"},
		{KafkaOptions{Brokers: []string{"k:9092"}, SASL: SASLOptions{Mechanism: "GSSAPI", Username: "u", Password: "p"}}, "mechanism"},
		{KafkaOptions{Brokers: []string{"k:9092"}, SASL: SASLOptions{Mechanism: "PLAIN", Username: "u"}}, "password"},
		{KafkaOptions{Brokers: []string{"k:9092"}, SASL: SASLOptions{Username: "u", Password: "p"}}, "mechanism"},
		{KafkaOptions{Brokers: []string{"k:9092"}, TLS: TLSOptions{CAFile: "ca.pem"}}, "enabled"},
		{KafkaOptions{Brokers: []string{"k:9092"}, TLS: TLSOptions{Enabled: true, CAFile: "/nonexistent.pem"}}, "ca_file"},
		{KafkaOptions{Brokers: []string{"k:9092"}, TLS: TLSOptions{Enabled: true, CertFile: "c.pem"}}, "both or neither"},
	}
	for _, c := range cases {
		_, err := c.o.ClientOpts()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want it to mention %q", c.o, err, c.want)
		}
	}
}
