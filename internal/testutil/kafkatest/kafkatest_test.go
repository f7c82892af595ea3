package kafkatest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestMain(m *testing.M) { Main(m) }

func createTopic(t *testing.T, ctx context.Context, addr, topic string, partitions int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, 1, nil, topic); err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
}

func produce(t *testing.T, ctx context.Context, addr string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

// consume reads n records of topic from the start.
func consume(t *testing.T, ctx context.Context, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consuming %s: got %d of %d records: %v", topic, len(out), n, err)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Logf("fetch error %s[%d]: %v", topic, p, err)
		})
		out = append(out, fs.Records()...)
	}
	return out
}

func TestBrokerLifecycle(t *testing.T) {
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	parent := t.TempDir()

	t0 := time.Now()
	b, err := Start(ctx, Options{Dir: parent, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("start-up: %v", time.Since(t0).Round(time.Millisecond))
	defer b.Stop()
	defer func() {
		if t.Failed() {
			t.Logf("broker log tail:\n%s", b.LogTail(60))
		}
	}()
	if !strings.HasPrefix(b.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q, want 127.0.0.1:port", b.Addr())
	}
	dir := b.Dir()
	if filepath.Dir(dir) != parent {
		t.Errorf("data folder %s not under %s", dir, parent)
	}

	const topic = "lifecycle"
	createTopic(t, ctx, b.Addr(), topic, 1)
	produce(t, ctx, b.Addr(), &kgo.Record{Topic: topic, Key: []byte("k1"), Value: []byte("v1")})
	if recs := consume(t, ctx, b.Addr(), topic, 1); string(recs[0].Key) != "k1" || string(recs[0].Value) != "v1" {
		t.Fatalf("got %q=%q, want k1=v1", recs[0].Key, recs[0].Value)
	}

	t1 := time.Now()
	if err := b.Restart(ctx); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	t.Logf("restart (graceful stop + start): %v", time.Since(t1).Round(time.Millisecond))
	produce(t, ctx, b.Addr(), &kgo.Record{Topic: topic, Key: []byte("k2"), Value: []byte("v2")})
	recs := consume(t, ctx, b.Addr(), topic, 2)
	if string(recs[0].Value) != "v1" || string(recs[1].Value) != "v2" {
		t.Fatalf("after restart got %q, %q; want v1, v2", recs[0].Value, recs[1].Value)
	}

	if err := b.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := b.Kill(); err != nil { // no JVM: no-op
		t.Fatalf("second Kill: %v", err)
	}
	t2 := time.Now()
	if err := b.Restart(ctx); err != nil {
		t.Fatalf("Restart after Kill: %v", err)
	}
	t.Logf("restart after SIGKILL: %v", time.Since(t2).Round(time.Millisecond))
	recs = consume(t, ctx, b.Addr(), topic, 2)
	if string(recs[0].Value) != "v1" || string(recs[1].Value) != "v2" {
		t.Fatalf("after kill+restart got %q, %q; want v1, v2", recs[0].Value, recs[1].Value)
	}

	if err := b.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := b.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data folder %s still there after Stop (stat: %v)", dir, err)
	}
	if tail := b.LogTail(20); !strings.Contains(tail, "kafka") {
		t.Errorf("LogTail after Stop = %q, want the saved log tail", tail)
	}
	if err := b.Restart(ctx); err == nil {
		t.Error("Restart after Stop succeeded")
	}
}

func TestShared(t *testing.T) {
	b := Shared(t)
	if b2 := Shared(t); b2 != b {
		t.Fatal("Shared returned two brokers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	createTopic(t, ctx, b.Addr(), "shared-topic", 3)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// NB: metadata of a topic just created may lag behind: poll.
	adm := kadm.NewClient(cl)
	testutil.WaitFor(t, 30*time.Second, "shared-topic with 3 partitions", func() bool {
		td, err := adm.ListTopics(ctx, "shared-topic")
		if err != nil {
			t.Fatal(err)
		}
		return len(td["shared-topic"].Partitions) == 3
	})

	// A consumer group with a short session timeout (the broker allows
	// 1 s), committing its offset: the group coordinator and
	// __consumer_offsets work.
	produce(t, ctx, b.Addr(), &kgo.Record{Topic: "shared-topic", Value: []byte("x")})
	t0 := time.Now()
	gc, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumeTopics("shared-topic"),
		kgo.ConsumerGroup("shared-group"), kgo.SessionTimeout(2*time.Second),
		kgo.HeartbeatInterval(200*time.Millisecond), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	var got []*kgo.Record
	for len(got) == 0 {
		fs := gc.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("group consume: %v", ctx.Err())
		}
		got = append(got, fs.Records()...)
	}
	if err := gc.CommitRecords(ctx, got...); err != nil {
		t.Fatalf("commit: %v", err)
	}
	t.Logf("group join + first record + commit: %v", time.Since(t0).Round(time.Millisecond))
	offs, err := kadm.NewClient(cl).FetchOffsets(ctx, "shared-group")
	if err != nil {
		t.Fatal(err)
	}
	var committed int64
	offs.Each(func(o kadm.OffsetResponse) { committed += o.At })
	if committed != 1 {
		t.Fatalf("committed offsets sum to %d, want 1", committed)
	}
}

// TestKcat checks that the kcat CLI talks to the broker: metadata, producing
// keyed records from a file and consuming them back.
func TestKcat(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if kcat, err = exec.LookPath("kafkacat"); err != nil {
			t.Skip("kcat not installed (scripts/ensure-kcat.sh installs it)")
		}
	}
	b := Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, kcat, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", kcat, strings.Join(args, " "), err, stderr.String())
		}
		return string(out)
	}

	if md := run("-b", b.Addr(), "-L"); !strings.Contains(md, "broker 1 at "+b.Addr()) {
		t.Fatalf("kcat -L output lacks the broker:\n%s", md)
	}

	const topic = "kcat-topic"
	createTopic(t, ctx, b.Addr(), topic, 1)
	file := filepath.Join(t.TempDir(), "records.tsv")
	lines := "k1\tv1\nk2\tvalue with spaces\nk3\t{\"json\":true}\n"
	if err := os.WriteFile(file, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	run("-P", "-b", b.Addr(), "-t", topic, "-K", "\t", "-l", file)

	recs := consume(t, ctx, b.Addr(), topic, 3)
	var got strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&got, "%s\t%s\n", r.Key, r.Value)
	}
	if got.String() != lines {
		t.Fatalf("consumed\n%s\nwant\n%s", got.String(), lines)
	}

	out := run("-C", "-b", b.Addr(), "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n")
	if out != lines {
		t.Fatalf("kcat -C printed\n%q\nwant\n%q", out, lines)
	}
}

func TestAvailableWithoutJars(t *testing.T) {
	t.Setenv(LibEnv, t.TempDir())
	ok, why := Available()
	if ok || why == "" {
		t.Fatalf("Available() = %v, %q with an empty lib folder", ok, why)
	}
	if !strings.Contains(why, "ensure-kafka.sh") && !strings.Contains(why, "java") {
		t.Errorf("reason %q does not say how to fetch the jars", why)
	}
	if _, err := Start(context.Background(), Options{Dir: t.TempDir()}); err == nil {
		t.Fatal("Start succeeded without jars")
	}
}
