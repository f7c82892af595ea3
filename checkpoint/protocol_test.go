package checkpoint

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clickagg/clickagg/internal/testutil/pgtest"
	"github.com/clickagg/clickagg/sink"
	"github.com/clickagg/clickagg/state"
	"github.com/clickagg/clickagg/stream"
	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The checkpoint protocol as readable scripts (testdata/protocol/*): one
// process's coordinator fed by the memory source, over a real PostgreSQL
// and a real state store (Pebble on an in-memory file system), with
// crashes at every step of a checkpoint and restores after them. Rewrite
// the expected output with `go test ./checkpoint -run TestProtocol -rewrite`
// and read the diff.
//
// Commands:
//
//	new windows=1m[,1h] [ooo=5s] [dedup=1m] [hold=1m] [partitions=N]
//	produce p=P            input: one record per line, "URL SECONDS [ID]"
//	                       (event time after t0, event id) or "invalid"
//	open p=P[,P...]        the restore decision for newly assigned partitions
//	feed p=P [n=N]         deliver up to N records (all by default)
//	checkpoint [flush] [fault=before|after|lost-ack]
//	crash [lose-state]     the process dies: a new coordinator, the state
//	                       store reopened (or lost), PostgreSQL as it is
//	drop p=P               the process gives P up after a checkpoint (revoke)
//	zombie p=P             a second process opens P (a rebalance the first
//	                       has not noticed); later commands act on it
//	switch                 act on the other process
//	rows | clicks          PostgreSQL's checkpoints rows, url_clicks/url_totals
//	exact                  every row and total against counts computed from
//	                       the produced records
func TestProtocol(t *testing.T) {
	datadriven.Walk(t, "testdata/protocol", func(t *testing.T, path string) {
		h := &protocolHarness{t: t, dsn: pgtest.DSN(t)}
		defer h.close()
		datadriven.RunTest(t, path, h.run)
	})
}

// t0 is the scripts' time origin: 2026-01-01T00:00:00Z.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

func fmtTime(ms int64) string {
	if ms == sink.NoWatermark {
		return "none"
	}
	return fmt.Sprintf("%+ds", (ms-t0)/1000)
}

type process struct {
	c      *Coordinator
	commit *faultyCommitter
	src    *memSource
	store  *state.Store // its own volume: state<i> on the harness's file system
}

type protocolHarness struct {
	t     *testing.T
	dsn   string
	pool  *pgxpool.Pool
	opts  Options
	fs    vfs.FS
	src   *memSource // the logs, shared by both processes
	procs [2]*process
	cur   int
}

func (h *protocolHarness) close() {
	for _, p := range h.procs {
		if p != nil {
			_ = p.c.finishJob(context.Background())
			p.store.Close()
		}
	}
	if h.pool != nil {
		h.pool.Close()
	}
}

func (h *protocolHarness) run(t *testing.T, d *datadriven.TestData) string {
	ctx := context.Background()
	out, err := h.cmd(ctx, d)
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	if out == "" {
		return "ok\n"
	}
	return out
}

func (h *protocolHarness) cmd(ctx context.Context, d *datadriven.TestData) (string, error) {
	cur := h.procs[h.cur]
	switch d.Cmd {
	case "new":
		return "", h.setup(ctx, d)
	case "produce":
		p := int32(h.intArg(d, "p", 0))
		for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
			if line == "invalid" {
				h.src.produce(p, `{"url":""}`, t0)
				continue
			}
			f := strings.Fields(line)
			if len(f) < 2 {
				return "", fmt.Errorf("bad record line %q", line)
			}
			s, err := strconv.Atoi(f[1])
			if err != nil {
				return "", fmt.Errorf("bad record line %q", line)
			}
			v := fmt.Sprintf(`{"url":%q,"ts":%d}`, f[0], t0+int64(s)*1000)
			if len(f) > 2 {
				v = fmt.Sprintf(`{"url":%q,"ts":%d,"id":%q}`, f[0], t0+int64(s)*1000, f[2])
			}
			h.src.produce(p, v, t0)
		}
		return fmt.Sprintf("p%d: %d records\n", p, len(h.src.logs[p])), nil
	case "open":
		parts := h.parts(d)
		if err := cur.src.open(ctx, cur.c, parts); err != nil {
			return "", err
		}
		var b strings.Builder
		for _, p := range parts {
			t := cur.c.task(p)
			start, _ := cur.c.start(p)
			state := "live"
			if t.op.Replaying() {
				state = fmt.Sprintf("replaying until %d", t.op.ReplayUntil())
			}
			fmt.Fprintf(&b, "p%d: start %d, %s\n", p, start, state)
		}
		return b.String(), nil
	case "feed":
		return cur.src.feed(cur.c, int32(h.intArg(d, "p", 0)), h.intArg(d, "n", -1))
	case "checkpoint":
		var fault string
		d.MaybeScanArgs(h.t, "fault", &fault)
		cur.commit.fault = fault
		before, err := cur.c.sink.ReadRows(ctx, slices.Sorted(maps.Keys(cur.c.tasks)))
		if err != nil {
			return "", err
		}
		if err := cur.c.Checkpoint(ctx, d.HasArg("flush"), "script"); err != nil {
			return "", err
		}
		after, err := cur.c.sink.ReadRows(ctx, slices.Sorted(maps.Keys(cur.c.tasks)))
		if err != nil {
			return "", err
		}
		var b strings.Builder
		for _, p := range slices.Sorted(maps.Keys(after)) {
			if b4, now := before[p], after[p]; b4 != now {
				fmt.Fprintf(&b, "p%d: next %d -> %d, restart %d -> %d, watermark %s -> %s\n", p, b4.NextOffset, now.NextOffset,
					b4.RestartOffset, now.RestartOffset, fmtTime(b4.Watermark), fmtTime(now.Watermark))
			}
		}
		if len(cur.src.seeks) > 0 {
			fmt.Fprintf(&b, "re-synced, seek %s\n", strings.Join(cur.src.seeks, " "))
			cur.src.seeks = nil
		}
		return b.String(), nil
	case "crash":
		if cur.c.job != nil {
			panic("crash with a job in flight")
		}
		if err := cur.store.Close(); err != nil {
			return "", err
		}
		if d.HasArg("lose-state") {
			if err := h.fs.RemoveAll(fmt.Sprintf("state%d", h.cur)); err != nil {
				return "", err
			}
		}
		return "", h.newProcess(h.cur)
	case "drop":
		parts := h.parts(d)
		if err := cur.c.Checkpoint(ctx, false, "revoke"); err != nil {
			return "", err
		}
		cur.c.drop(parts)
		return "", nil
	case "zombie":
		if err := h.newProcess(1); err != nil {
			return "", err
		}
		if err := h.procs[1].src.open(ctx, h.procs[1].c, h.parts(d)); err != nil {
			return "", err
		}
		return "", nil
	case "switch":
		h.cur = 1 - h.cur
		return fmt.Sprintf("process %d\n", h.cur), nil
	case "rows":
		rows, err := cur.c.sink.ReadRows(ctx, h.allParts())
		return describeRows(rows), err
	case "clicks":
		return h.clicks(ctx)
	case "exact":
		return h.exact(ctx)
	}
	return "", fmt.Errorf("unknown command %q", d.Cmd)
}

func (h *protocolHarness) setup(ctx context.Context, d *datadriven.TestData) error {
	var windows, ooo, dedup, hold string
	partitions := 1
	d.ScanArgs(h.t, "windows", &windows)
	d.MaybeScanArgs(h.t, "ooo", &ooo)
	d.MaybeScanArgs(h.t, "dedup", &dedup)
	d.MaybeScanArgs(h.t, "hold", &hold)
	d.MaybeScanArgs(h.t, "partitions", &partitions)
	dur := func(s string) time.Duration {
		if s == "" {
			return 0
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			h.t.Fatal(err)
		}
		return v
	}
	h.opts = Options{Consumer: stream.ConsumerOptions{Group: "g", Topic: topic}, MaxPendingKeys: 1000}
	for _, w := range strings.Split(windows, ",") {
		h.opts.Operator.Windows = append(h.opts.Operator.Windows, dur(w))
	}
	h.opts.Operator.OutOfOrder, h.opts.Operator.DedupWindow, h.opts.Operator.HoldWindows = dur(ooo), dur(dedup), dur(hold)
	if err := h.opts.validate(); err != nil {
		return err
	}
	pool, err := sink.NewPool(ctx, h.dsn)
	if err != nil {
		return err
	}
	h.pool = pool
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := sink.Migrate(ctx, conn.Conn(), sink.DefaultSchema); err != nil {
		return err
	}
	h.fs, h.src = vfs.NewMem(), newMemSource()
	for p := range int32(partitions) {
		h.src.logs[p] = nil
	}
	return h.newProcess(0)
}

// newProcess starts process i: a fresh coordinator over its state store
// (re)opened from h.fs.
func (h *protocolHarness) newProcess(i int) error {
	store, err := state.Open(state.Options{Dir: fmt.Sprintf("state%d", i), FS: h.fs}, StateIdentity(h.opts))
	if err != nil {
		return err
	}
	w, err := sink.NewWriter(h.pool, sink.Options{Group: h.opts.Consumer.Group, Topic: h.opts.Consumer.Topic})
	if err != nil {
		return err
	}
	// NB: one log for both processes, each with its own read positions.
	src := &memSource{logs: h.src.logs, start: h.src.start, pos: map[int32]int64{}}
	fc := &faultyCommitter{Committer: w}
	c := newCoordinator(&h.opts, store, fc, src, newBoard(&h.opts))
	c.topicPartitions = len(h.src.logs)
	h.procs[i] = &process{c: c, commit: fc, src: src, store: store}
	h.cur = i
	return nil
}

func (h *protocolHarness) intArg(d *datadriven.TestData, key string, def int) int {
	v := def
	d.MaybeScanArgs(h.t, key, &v)
	return v
}

func (h *protocolHarness) parts(d *datadriven.TestData) []int32 {
	var out []int32
	for _, a := range d.CmdArgs {
		if a.Key != "p" {
			continue
		}
		for _, v := range strings.Split(strings.Join(a.Vals, ","), ",") {
			n, err := strconv.Atoi(v)
			if err != nil {
				h.t.Fatalf("bad partition %q", v)
			}
			out = append(out, int32(n))
		}
	}
	return out
}

func (h *protocolHarness) allParts() []int32 { return slices.Sorted(maps.Keys(h.src.logs)) }

func (h *protocolHarness) clicks(ctx context.Context) (string, error) {
	var b strings.Builder
	rows, err := h.pool.Query(ctx, `SELECT url, window_start, window_end, clicks, late_clicks, final FROM clickagg.url_clicks ORDER BY window_end - window_start, window_start, url`)
	if err != nil {
		return "", err
	}
	for rows.Next() {
		var (
			url          string
			start, end   time.Time
			clicks, late int64
			final        bool
		)
		if err := rows.Scan(&url, &start, &end, &clicks, &late, &final); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s %s@%s clicks %d late %d final %v\n", url, end.Sub(start), fmtTime(start.UnixMilli()), clicks, late, final)
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	trows, err := h.pool.Query(ctx, `SELECT url, clicks FROM clickagg.url_totals ORDER BY url`)
	if err != nil {
		return "", err
	}
	for trows.Next() {
		var url string
		var n int64
		if err := trows.Scan(&url, &n); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "total %s %d\n", url, n)
	}
	return b.String(), trows.Err()
}

// exact compares every url_clicks row and url_totals row with counts
// computed from the produced records (every valid record counts once, late
// ones too: policy count).
func (h *protocolHarness) exact(ctx context.Context) (string, error) {
	want := map[string]int64{}
	for _, log := range h.src.logs {
		for _, r := range log {
			c, reason := (&stream.Decoder{}).Decode(r.Value)
			if reason != stream.ReasonNone {
				continue
			}
			for i, w := range h.opts.Operator.Windows {
				win := stream.Assign(c.TimeMs, w.Milliseconds())
				want[fmt.Sprintf("%s %s@%s", c.URL, w, fmtTime(win.Start))]++
				if i == 0 {
					want["total "+string(c.URL)]++
				}
			}
		}
	}
	got := map[string]int64{}
	rows, err := h.pool.Query(ctx, `SELECT url, window_start, window_end, clicks FROM clickagg.url_clicks
		UNION ALL SELECT 'total ' || url, NULL, NULL, clicks FROM clickagg.url_totals`)
	if err != nil {
		return "", err
	}
	for rows.Next() {
		var url string
		var start, end *time.Time
		var n int64
		if err := rows.Scan(&url, &start, &end, &n); err != nil {
			return "", err
		}
		if start == nil {
			got[url] = n
		} else {
			got[fmt.Sprintf("%s %s@%s", url, end.Sub(*start), fmtTime(start.UnixMilli()))] = n
		}
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(maps.Collect(func(yield func(string, int64) bool) {
		for k, v := range want {
			yield(k, v)
		}
		for k, v := range got {
			yield(k, v)
		}
	}))) {
		if want[k] != got[k] {
			fmt.Fprintf(&b, "%s: postgres %d, input %d\n", k, got[k], want[k])
		}
	}
	if b.Len() == 0 {
		return "exact\n", nil
	}
	return b.String(), nil
}
