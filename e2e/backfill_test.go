package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
	"github.com/clickagg/clickagg/internal/oracle"
	"github.com/clickagg/clickagg/sink"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/klauspost/compress/zstd"
)

// archive is a set of generated input files and their lines (the records
// the oracle counts).
type archive struct {
	paths []string
	lines [][][]byte
}

// writeArchive writes one file per name (".gz": gzip, ".zst": zstd, else
// plain) of n generated records each, starting an hour of event time apart
// but overlapping (a URL's windows get clicks from several files). The
// plain files also hold blank lines, CRLF line ends and no newline after
// the last line.
func writeArchive(t *testing.T, dir string, n int64, urls int, zipf float64, seed uint64, names ...string) *archive {
	t.Helper()
	a := &archive{}
	for i, name := range names {
		g, err := gen.New(gen.Options{Count: n, URLs: urls, Zipf: zipf, Seed: seed + uint64(i),
			StartTime: time.Date(2026, 3, 1, i, 30*i, 0, 0, time.UTC), EventRate: 500,
			LateFraction: 0.01, OutOfOrderFraction: 0.05, InvalidFraction: 0.01})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		var lines [][]byte
		plain := !strings.HasSuffix(name, ".gz") && !strings.HasSuffix(name, ".zst")
		for j := range n {
			v := g.Next().Value
			lines = append(lines, v)
			buf.Write(v)
			switch {
			case j == n-1 && plain:
			case plain && j%997 == 0:
				buf.WriteString("\r\n\n  \n")
			default:
				buf.WriteByte('\n')
			}
		}
		data := buf.Bytes()
		switch {
		case strings.HasSuffix(name, ".gz"):
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			_, _ = zw.Write(data)
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			data = z.Bytes()
		case strings.HasSuffix(name, ".zst"):
			zw, err := zstd.NewWriter(nil)
			if err != nil {
				t.Fatal(err)
			}
			data = zw.EncodeAll(data, nil)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		a.paths, a.lines = append(a.paths, path), append(a.lines, lines)
	}
	return a
}

// backfill runs `clickagg backfill` to its end and returns its exit code
// and stdout.
func backfill(t *testing.T, dsn string, stdin []byte, args ...string) (int, string, *proc) {
	t.Helper()
	var out bytes.Buffer
	var in *bytes.Reader
	base := []string{"backfill", "--windows", "1m,1h", "--checkpoint-interval", "50ms", "--log-format", "json"}
	var p *proc
	if stdin != nil {
		in = bytes.NewReader(stdin)
		p = start(t, dsn, in, &out, append(base, args...)...)
	} else {
		p = start(t, dsn, nil, &out, append(base, args...)...)
	}
	code := p.wait(t, 3*time.Minute)
	return code, out.String(), p
}

func expectFiles(t *testing.T, pool *pgxpool.Pool, files [][][]byte) oracle.Expected {
	t.Helper()
	exp, err := oracle.ComputeFiles(files, oracle.Options{Windows: windows, MaxURLBytes: 2048})
	if err != nil {
		t.Fatal(err)
	}
	if err := oracle.Compare(context.Background(), pool, sink.DefaultSchema, exp); err != nil {
		t.Fatal(err)
	}
	return exp
}

// TestBackfillFiles counts a plain, a gzip and a zstd file exactly, then
// checks that a rerun (also with a copy of a file under another name)
// adds nothing, that a changed file is refused with nothing counted, and
// that stdin is counted once and refused the second time.
func TestBackfillFiles(t *testing.T) {
	dsn, pool := newDB(t)
	dir := t.TempDir()
	a := writeArchive(t, dir, 20_000, 2000, 1.1, 7, "a.jsonl", "b.jsonl.gz", "c.jsonl.zst")
	state := "--state-dir=" + filepath.Join(dir, "state")

	code, out, p := backfill(t, dsn, nil, append([]string{state}, a.paths...)...)
	if code != 0 {
		t.Fatalf("backfill exit %d, want 0; stdout:\n%s\nlogs:\n%s", code, out, p.tail(30))
	}
	exp := expectFiles(t, pool, a.lines)
	if exp.Valid < 50_000 || exp.Invalid < 500 {
		t.Fatalf("the archive should hold valid and invalid records: %d valid, %d invalid", exp.Valid, exp.Invalid)
	}
	if !strings.Contains(out, "60000 records read") {
		t.Errorf("summary should count every line once:\n%s", out)
	}

	// The same files again, by a glob, plus a copy of one of them under
	// another name: nothing is counted.
	cp := filepath.Join(t.TempDir(), "copy-of-b.gz")
	b, err := os.ReadFile(a.paths[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, p = backfill(t, dsn, nil, state, filepath.Join(dir, "*.jsonl*"), cp)
	if code != 0 {
		t.Fatalf("rerun exit %d, want 0; logs:\n%s", code, p.tail(30))
	}
	if !strings.Contains(out, " 0 records read (0 read again)") || !strings.Contains(out, "skipped (same content as") {
		t.Errorf("a rerun should read nothing and skip the copy:\n%s", out)
	}
	expectFiles(t, pool, a.lines)

	// A changed file (one more line): refused, nothing counted, exit 2.
	f, err := os.OpenFile(a.paths[0], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString("\n{\"url\":\"https://example.com/new\",\"ts\":1772323200000}\n")
	_ = f.Close()
	code, _, p = backfill(t, dsn, nil, state, a.paths[2], a.paths[0])
	if code != 2 || !strings.Contains(p.tail(5), "changed since an earlier backfill") {
		t.Fatalf("a changed file: exit %d, want 2 naming the change; logs:\n%s", code, p.tail(10))
	}
	expectFiles(t, pool, a.lines)

	// stdin: counted once; the same input again is refused.
	s := writeArchive(t, t.TempDir(), 3000, 500, 1.1, 99, "stdin.jsonl")
	data, err := os.ReadFile(s.paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if code, _, p = backfill(t, dsn, data, state, "-"); code != 0 {
		t.Fatalf("stdin: exit %d; logs:\n%s", code, p.tail(20))
	}
	all := append(a.lines[:3:3], s.lines...)
	expectFiles(t, pool, all)
	if code, _, p = backfill(t, dsn, data, state, "-"); code != 2 || !strings.Contains(p.tail(5), "stdin cannot be resumed") {
		t.Fatalf("stdin again: exit %d, want 2; logs:\n%s", code, p.tail(10))
	}
	expectFiles(t, pool, all)
}

// TestBackfillSIGKILL kills a backfill of three files (plain, gzip, zstd)
// at random moments after checkpoints, sometimes with its state folder
// deleted, resumes it each time, and compares the tables with the oracle
// once a run finishes.
func TestBackfillSIGKILL(t *testing.T) {
	dsn, pool := newDB(t)
	dir := t.TempDir()
	// NB: uniform over many URLs: nearly every click is a row of its own,
	// so checkpoints take long enough for kills to land mid-file.
	a := writeArchive(t, dir, 150_000, 300_000, 0, 11, "a.jsonl", "b.jsonl.gz", "c.jsonl.zst")
	stateDir := filepath.Join(dir, "state")
	args := append([]string{"backfill", "--windows", "1m,1h", "--checkpoint-interval", "20ms", "--log-format", "json",
		"--state-dir", stateDir}, a.paths...)
	ctx := context.Background()
	progress := func() int64 {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT coalesce(sum(next_offset), 0) FROM clickagg.checkpoints
			WHERE consumer_group LIKE 'backfill:%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var total int64 // the three files' line bytes, about what next_offset sums to at the end
	for _, lines := range a.lines {
		for _, l := range lines {
			total += int64(len(l)) + 1
		}
	}
	rng := rand.New(rand.NewPCG(42, 7))
	kills, restored := 0, 0
	// NB: go on past five kills until a restart with its state deleted
	// has rebuilt open windows: a deletion can land between two files,
	// where there is nothing to rebuild.
	for round := 0; (kills < 5 || restored == 0) && round < 30; round++ {
		if round%3 == 2 || (kills >= 5 && restored == 0) {
			if err := os.RemoveAll(stateDir); err != nil {
				t.Fatal(err)
			}
		}
		// NB: kill after a random share of what is left, so that kills
		// land in every file, compressed ones included.
		before := progress()
		target := before + 1 + rng.Int64N(max((total-before)/8, 1))
		p := start(t, dsn, nil, nil, args...)
		exited := false
		waitFor(t, 2*time.Minute, "checkpoints after restart", func() bool {
			select {
			case <-p.done:
				exited = true
				return true
			default:
			}
			return progress() >= target
		})
		if exited {
			if code := p.wait(t, time.Second); code != 0 {
				t.Fatalf("backfill exit %d; logs:\n%s", code, p.tail(30))
			}
			break
		}
		time.Sleep(time.Duration(rng.Int64N(int64(50 * time.Millisecond)))) // a random kill point, not a wait for a result
		p.kill(syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Fatal("killed backfill did not exit")
		}
		if p.err != nil {
			kills++ // NB: killed mid-run, not finished before the signal
		}
		restored += len(p.logEntries("partition restored"))
	}
	if restored == 0 {
		t.Error("no restart rebuilt open windows by reading a file again from its restart offset")
	}
	if kills < 3 {
		t.Fatalf("only %d kills landed mid-run: make the archive larger", kills)
	}
	code, out, p := backfill(t, dsn, nil, args[1:]...)
	if code != 0 {
		t.Fatalf("final backfill exit %d; logs:\n%s", code, p.tail(30))
	}
	t.Logf("%d kills; final run:\n%s", kills, out)
	expectFiles(t, pool, a.lines)
}
