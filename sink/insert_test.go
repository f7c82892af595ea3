package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// TestNewRowsInsertedThenUpsertedWhenTheyExist: a checkpoint of new rows
// copies them into url_clicks (no upsert); a late delta in the same
// checkpoint is summed with its row's on-time ones and upserted; a
// checkpoint whose on-time delta finds its row
// written by another partition's earlier checkpoint falls back to the
// upsert, with nothing of the failed insert left, and the next
// checkpoints upsert straight away. Every count stays exact.
func TestNewRowsInsertedThenUpsertedWhenTheyExist(t *testing.T) {
	pool := newPool(t)
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	a, b := newCommitter(t, w, 0, 2), newCommitter(t, w, 1, 2)
	late := func(url string, start, n int64) ClickDelta {
		return ClickDelta{URL: url, WindowStart: start, WindowEnd: start + m1, Clicks: n, LateClicks: n}
	}
	res := a.mustCommit(t0+m1, click("/x", t0, m1, 3), click("/y", t0, m1, 1), late("/x", t0, 2), late("/z", t0-m1, 1))
	if res.UpsertedAll || res.ClickRows != 3 { // NB: /y copied, /x and /z upserted
		t.Fatalf("first checkpoint: upserted all %v, %d rows; want copied, 3 rows written", res.UpsertedAll, res.ClickRows)
	}
	// Partition 1 emits the same window later (unaligned): /x exists.
	res = b.mustCommit(t0+m1, click("/x", t0, m1, 4), click("/w", t0, m1, 5))
	if !res.UpsertedAll || res.ClickRows != 2 {
		t.Fatalf("second checkpoint: upserted all %v, %d rows; want the upsert, 2 rows", res.UpsertedAll, res.ClickRows)
	}
	// The next one upserts without trying (it would have succeeded).
	if res = a.mustCommit(t0+2*m1, click("/v", t0+m1, m1, 1)); !res.UpsertedAll {
		t.Fatal("the checkpoint after a failed insert tried the insert again")
	}
	want := map[string]int64{
		fmt.Sprintf("/x@%d/%d", t0, m1): 9, fmt.Sprintf("/y@%d/%d", t0, m1): 1, fmt.Sprintf("/z@%d/%d", t0-m1, m1): 1,
		fmt.Sprintf("/w@%d/%d", t0, m1): 5, fmt.Sprintf("/v@%d/%d", t0+m1, m1): 1,
	}
	if got := windowClicks(t, pool); !mapsEqual(got, want) {
		t.Fatalf("url_clicks = %v, want %v", got, want)
	}
	var lateX int64
	if err := pool.QueryRow(context.Background(), `SELECT late_clicks FROM clickagg.url_clicks WHERE url = '/x'`).Scan(&lateX); err != nil || lateX != 2 {
		t.Fatalf("late_clicks of /x = %d, %v; want 2", lateX, err)
	}
	// After the backoff the insert is tried again, and works for new rows.
	// NB: a checkpoint without url_clicks deltas does not count.
	for i := range 7 {
		a.mustCommit(t0+2*m1, click(fmt.Sprintf("/s%d", i), t0+m1, m1, 1))
	}
	if res = a.mustCommit(t0+3*m1, click("/u", t0+2*m1, m1, 1)); res.UpsertedAll {
		t.Fatal("the insert was not tried again after the backoff")
	}
}

// TestCopiedRowsMatchUpsertedRows: a row copied straight into url_clicks
// and one written by the upsert store the same window_size (whole days as
// days, as window_end - window_start computes it) and the same final flag,
// for every kind of size; and deltas of one row from several partitions in
// one checkpoint are summed into one row.
func TestCopiedRowsMatchUpsertedRows(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	c := newCommitter(t, w, 0, 1)
	sizes := []int64{m1, h1, d1, 36 * h1, 7 * d1}
	var clicks []ClickDelta
	for _, size := range sizes {
		start := t0 - t0%size
		clicks = append(clicks, click("/copied", start, size, 2), click("/copied", start, size, 3),
			ClickDelta{URL: "/upserted", WindowStart: start, WindowEnd: start + size, Clicks: 1, LateClicks: 1})
	}
	// NB: a watermark past every window: all rows final at once.
	res := c.mustCommit(t0+8*d1, clicks...)
	if res.UpsertedAll || res.ClickRows != int64(2*len(sizes)) {
		t.Fatalf("commit: upserted all %v, %d rows; want copied, %d rows", res.UpsertedAll, res.ClickRows, 2*len(sizes))
	}
	rows, err := pool.Query(ctx, `SELECT c.window_size::text, u.window_size::text, c.window_size = c.window_end - c.window_start,
	c.final, u.final, c.clicks, c.late_clicks, c.updated_at = u.updated_at
FROM clickagg.url_clicks c JOIN clickagg.url_clicks u USING (window_start, window_end)
WHERE c.url = '/copied' AND u.url = '/upserted' ORDER BY c.window_size`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var cs, us string
		var sizeOK, cf, uf, sameTime bool
		var cn, cl int64
		if err := rows.Scan(&cs, &us, &sizeOK, &cf, &uf, &cn, &cl, &sameTime); err != nil {
			t.Fatal(err)
		}
		n++
		if cs != us || !sizeOK || !cf || !uf || cn != 5 || cl != 0 || !sameTime {
			t.Errorf("copied row: size %s (= end - start %v), final %v, clicks %d, late %d; upserted row: size %s, final %v; same updated_at %v",
				cs, sizeOK, cf, cn, cl, us, uf, sameTime)
		}
	}
	if err := rows.Err(); err != nil || n != len(sizes) {
		t.Fatalf("%d pairs of rows (%v), want %d", n, err, len(sizes))
	}
}

// TestDeltasMerge: deltas in memory are sorted by URL in byte order (the
// staging table's COLLATE "C"), then window, and summed per row; sorting
// twice (a retried transaction) changes nothing, and a delta added after a
// sort still adds to its row.
func TestDeltasMerge(t *testing.T) {
	var d Deltas
	for _, c := range []ClickDelta{
		{"/z", t0, t0 + m1, 1, 0}, {"/é", t0, t0 + m1, 1, 0}, {"/B", t0, t0 + m1, 1, 0},
		{"/a", t0 + m1, t0 + 2*m1, 1, 0}, {"/a", t0, t0 + h1, 4, 0}, {"/a", t0, t0 + m1, 2, 1},
		{"/z", t0, t0 + m1, 3, 3}, {"/a", t0, t0 + m1, 5, 0},
	} {
		d.AddClick(c.URL, c.WindowStart, c.WindowEnd, c.Clicks, c.LateClicks)
	}
	want := []delta{
		{"/B", t0, t0 + m1, 1, 0}, {"/a", t0, t0 + m1, 7, 1}, {"/a", t0, t0 + h1, 4, 0},
		{"/a", t0 + m1, t0 + 2*m1, 1, 0}, {"/z", t0, t0 + m1, 4, 3}, {"/é", t0, t0 + m1, 1, 0},
	}
	for range 2 {
		if got := d.sorted(); !slices.Equal(got, want) {
			t.Fatalf("sorted = %v\nwant    %v", got, want)
		}
	}
	if d.Clicks() != 8 {
		t.Fatalf("Clicks() = %d, want 8 (every delta added)", d.Clicks())
	}
	d.AddClick("/a", t0, t0+m1, 1, 0)
	want[1].clicks++
	if got := d.sorted(); !slices.Equal(got, want) {
		t.Fatalf("after one more delta: sorted = %v\nwant    %v", got, want)
	}
}

// TestDeltasMergeMatchesStringOrder: the sort's integer keys order
// URLs as a byte-wise string compare does, whatever their shared prefix
// and length (ties within the 16 key bytes, one URL a prefix of another,
// zero bytes); checked against a plain sort and sum.
func TestDeltasMergeMatchesStringOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		var d Deltas
		prefix := []string{"", "h", "https://example.com/page/"}[round%3]
		want := map[delta]int64{} // NB: key fields only, clicks summed
		for range 1 + rng.IntN(500) {
			b := []byte(prefix)
			for range rng.IntN(30) {
				b = append(b, "ab\x00\xffz"[rng.IntN(5)])
			}
			start := t0 + int64(rng.IntN(3))*m1
			n := int64(1 + rng.IntN(5))
			d.AddClick(string(b), start, start+m1, n, 0)
			want[delta{url: string(b), start: start, end: start + m1}] += n
		}
		got := d.sorted()
		if len(got) != len(want) {
			t.Fatalf("round %d: %d rows, want %d", round, len(got), len(want))
		}
		for i, r := range got {
			if k := (delta{url: r.url, start: r.start, end: r.end}); want[k] != r.clicks {
				t.Fatalf("round %d: %q@%d: %d clicks, want %d", round, r.url, r.start, r.clicks, want[k])
			}
			if i > 0 {
				p := got[i-1]
				if c := strings.Compare(p.url, r.url); c > 0 || (c == 0 && p.start >= r.start) {
					t.Fatalf("round %d: %q@%d before %q@%d", round, p.url, p.start, r.url, r.start)
				}
			}
		}
	}
}

// BenchmarkDeltasMerge: one checkpoint's deltas, added and then sorted
// and summed per row. zipf as the zipf benchmark makes them (220 K deltas
// for about 130 K rows, URLs sharing a 25-byte prefix); rowheavy as the
// rowheavy one (243 K deltas for 94 K rows: 12 partitions each counting
// most URLs of the same windows).
func BenchmarkDeltasMerge(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	zipf := rand.NewZipf(rand.New(rand.NewPCG(5, 6)), 1.1, 1, 1_000_000)
	var zipfIn, rowIn []ClickDelta
	for range 220_000 {
		start := t0 + int64(rng.IntN(3))*m1
		zipfIn = append(zipfIn, ClickDelta{URL: fmt.Sprintf("https://example.com/page/%d", zipf.Uint64()), WindowStart: start, WindowEnd: start + m1, Clicks: 1})
	}
	for range 12 {
		for range 243_000 / 12 {
			start := t0 + int64(rng.IntN(2))*m1
			rowIn = append(rowIn, ClickDelta{URL: fmt.Sprintf("https://example.com/page/%d", rng.IntN(125_000)), WindowStart: start, WindowEnd: start + m1, Clicks: 1})
		}
	}
	for _, c := range []struct {
		name string
		in   []ClickDelta
	}{{"zipf", zipfIn}, {"rowheavy", rowIn}} {
		b.Run(c.name, func(b *testing.B) {
			var d Deltas
			b.ReportAllocs()
			for b.Loop() {
				d.Reset()
				for _, c := range c.in {
					d.AddClick(c.URL, c.WindowStart, c.WindowEnd, c.Clicks, 0)
				}
				d.sorted()
			}
			b.ReportMetric(float64(len(c.in)*b.N)/b.Elapsed().Seconds(), "deltas/s")
		})
	}
}

// TestRowStream: the COPY stream encoded as it is read is the header, the
// selected rows and the trailer, however it is read (many buffers' worth,
// a byte at a time); and a checkpoint that large lands whole.
func TestRowStream(t *testing.T) {
	var d Deltas
	for i := range 20_000 {
		d.AddClick(fmt.Sprintf("https://example.com/a/long/path/to/page/%d", i), t0, t0+m1, int64(i%7+1), 0)
	}
	rows := d.sorted()
	odd := func(r *delta) bool { return r.clicks%2 == 1 }
	want := slices.Clone(copyHeader)
	for i := range rows {
		if odd(&rows[i]) {
			want = appendStaged(want, &rows[i])
		}
	}
	want = append(want, copyTrailer...)
	if len(want) < 3*64<<10 {
		t.Fatalf("stream of %d bytes: the test should span several buffers", len(want))
	}
	// NB: a stream closed midway (CopyFrom returned early, its reading
	// goroutine left behind) reads nothing more, and the next stream,
	// reusing the buffer, is whole.
	half := d.stream(odd, appendStaged)
	if _, err := io.ReadFull(half, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	half.close()
	if n, err := half.Read(make([]byte, 10)); n != 0 || !errors.Is(err, errStreamClosed) {
		t.Fatalf("Read after close = %d, %v; want 0, errStreamClosed", n, err)
	}
	for _, wrap := range []func(io.Reader) io.Reader{func(r io.Reader) io.Reader { return r }, iotest.OneByteReader} {
		st := d.stream(odd, appendStaged)
		got, err := io.ReadAll(wrap(st))
		st.close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("stream: %d bytes (%v), want %d", len(got), err, len(want))
		}
	}

	pool := newPool(t)
	w, _ := NewWriter(pool, Options{Group: "g", Topic: "clicks"})
	c := newCommitter(t, w, 0, 1)
	res, err := w.Commit(context.Background(), &Checkpoint{TopicPartitions: 1, TotalsWindow: m1, Deltas: &d,
		Partitions: []PartitionUpdate{{Partition: 0, Expect: c.cur, Next: pos(1, t0+m1, 1)}}})
	if err != nil || res.UpsertedAll || res.ClickRows != 20_000 {
		t.Fatalf("Commit = %+v, %v; want 20,000 rows copied", res, err)
	}
	var n, sum int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*), sum(clicks) FROM clickagg.url_clicks`).Scan(&n, &sum); err != nil || n != 20_000 || sum != 79_997 {
		t.Fatalf("url_clicks: %d rows, %d clicks (%v); want 20,000 and 79,997", n, sum, err)
	}
}
