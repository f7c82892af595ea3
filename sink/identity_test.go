package sink

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

func ident(group string, normalize string, windows ...time.Duration) Identity {
	return Identity{Group: group, Topic: "clicks", Windows: windows,
		Settings: map[string]string{"url.normalize": normalize, "late.policy": "count"}}
}

// TestClaimPipeline: the first pipeline claims the schema; the same one
// again is fine and may add or remove window sizes; another group, or a
// setting that changes counts, is refused naming the owner or the change,
// unless it takes over, which moves the row.
func TestClaimPipeline(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	claim := func(id Identity, takeover bool) (Claim, error) {
		t.Helper()
		return ClaimPipeline(ctx, pool, DefaultSchema, id, takeover)
	}
	a := ident("a", "false", time.Minute)
	if c, err := claim(a, false); err != nil || !c.Created || !slices.Equal(c.Added, a.Windows) {
		t.Fatalf("first claim = %+v, %v; want created", c, err)
	}
	if c, err := claim(a, false); err != nil || c.Created || c.Previous != nil || len(c.Added)+len(c.Removed)+len(c.Changes) != 0 {
		t.Fatalf("same pipeline again = %+v, %v; want nothing to do", c, err)
	}
	// Another group is refused, the row unchanged.
	var oe *OwnerError
	_, err := claim(ident("b", "false", time.Minute), false)
	if !errors.As(err, &oe) || !errors.Is(err, ErrNotOwner) || oe.Owner.Group != "a" || len(oe.Changes) != 0 {
		t.Fatalf("other group: err = %v, want OwnerError naming group a", err)
	}
	if got, _, _ := ReadPipeline(ctx, pool, DefaultSchema); got.Group != "a" {
		t.Fatalf("after a refusal the owner is %q", got.Group)
	}
	// Another topic too.
	other := a
	other.Topic = "views"
	if _, err := claim(other, false); !errors.As(err, &oe) || oe.Owner.Topic != "clicks" {
		t.Fatalf("other topic: err = %v, want OwnerError", err)
	}
	// A setting that changes counts: refused, naming old and new.
	_, err = claim(ident("a", "true", time.Minute), false)
	if !errors.As(err, &oe) || len(oe.Changes) != 1 || oe.Changes[0] != (Change{"url.normalize", "false", "true"}) {
		t.Fatalf("changed setting: err = %v, want url.normalize false → true", err)
	}
	if want := "schema clickagg was counted with other settings: url.normalize false → true"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	// Window sizes: added, then removed; recorded.
	if c, err := claim(ident("a", "false", time.Minute, time.Hour), false); err != nil || !slices.Equal(c.Added, []time.Duration{time.Hour}) {
		t.Fatalf("add 1h = %+v, %v", c, err)
	}
	if c, err := claim(ident("a", "false", time.Hour), false); err != nil || !slices.Equal(c.Removed, []time.Duration{time.Minute}) || len(c.Added) != 0 {
		t.Fatalf("remove 1m = %+v, %v", c, err)
	}
	if got, _, _ := ReadPipeline(ctx, pool, DefaultSchema); !slices.Equal(got.Windows, []time.Duration{time.Hour}) || got.Since.IsZero() {
		t.Fatalf("recorded %+v, want windows [1h]", got)
	}
	// Takeover by group b with new settings.
	b := ident("b", "true", time.Hour)
	c, err := claim(b, true)
	if err != nil || c.Previous == nil || c.Previous.Group != "a" || len(c.Changes) != 1 {
		t.Fatalf("takeover = %+v, %v; want previous owner a and one change", c, err)
	}
	if _, err := claim(a, false); !errors.As(err, &oe) || oe.Owner.Group != "b" {
		t.Fatalf("the old owner after the takeover: err = %v, want refused by owner b", err)
	}
}

// TestClaimPipelineConcurrent: replicas of two groups start at once on an
// empty schema: exactly one group owns it, every replica of the other is
// refused.
func TestClaimPipelineConcurrent(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = ClaimPipeline(ctx, pool, DefaultSchema, ident([]string{"a", "b"}[i%2], "false", time.Minute), false)
		}()
	}
	wg.Wait()
	owner, found, err := ReadPipeline(ctx, pool, DefaultSchema)
	if err != nil || !found {
		t.Fatalf("no owner: %v", err)
	}
	for i, err := range errs {
		mine := []string{"a", "b"}[i%2] == owner.Group
		if mine && err != nil || !mine && !errors.Is(err, ErrNotOwner) {
			t.Errorf("replica %d of group %s: err = %v (owner %s)", i, []string{"a", "b"}[i%2], err, owner.Group)
		}
	}
}

// TestClaimPipelineFromCheckpoints: a schema from before the pipeline row
// (checkpoints rows, no row) belongs to the group its checkpoints name:
// another group is refused, that group claims it.
func TestClaimPipelineFromCheckpoints(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	w, err := NewWriter(pool, Options{Group: "old", Topic: "clicks"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.InitRow(ctx, 0, pos(0, NoWatermark, 0)); err != nil {
		t.Fatal(err)
	}
	var oe *OwnerError
	if _, err := ClaimPipeline(ctx, pool, DefaultSchema, ident("new", "false", time.Minute), false); !errors.As(err, &oe) ||
		oe.Owner.Group != "old" || !oe.FromCheckpoints {
		t.Fatalf("err = %v, want refused: owned by group old (from checkpoints)", err)
	}
	if c, err := ClaimPipeline(ctx, pool, DefaultSchema, ident("old", "false", time.Minute), false); err != nil || !c.Created {
		t.Fatalf("the checkpoints' group = %+v, %v; want it claims the schema", c, err)
	}
}

// TestReset: the data tables are empty after it (url_clicks' span tables
// gone), the pipeline row too; the schema still takes checkpoints.
func TestReset(t *testing.T) {
	pool := newPool(t)
	ctx := context.Background()
	if _, err := ClaimPipeline(ctx, pool, DefaultSchema, ident("a", "false", time.Minute), false); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(pool, Options{Group: "a", Topic: "clicks"})
	if err != nil {
		t.Fatal(err)
	}
	commitOne := func() {
		t.Helper()
		start := pos(0, NoWatermark, 0)
		if _, err := w.InitRow(ctx, 0, start); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(ctx, &Checkpoint{Partitions: []PartitionUpdate{{Partition: 0, Expect: start, Next: pos(1, t0, 1)}},
			Clicks: []ClickDelta{{URL: "/a", WindowStart: t0, WindowEnd: t0 + m1, Clicks: 1}}, TotalsWindow: m1}); err != nil {
			t.Fatal(err)
		}
	}
	commitOne()
	count := func() (n int64) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM clickagg.url_clicks) + (SELECT count(*) FROM clickagg.url_totals)
	+ (SELECT count(*) FROM clickagg.checkpoints) + (SELECT count(*) FROM clickagg.pipeline)
	+ (SELECT count(*) FROM pg_class WHERE relnamespace = 'clickagg'::regnamespace AND relkind = 'r' AND relname LIKE 'url\_clicks\_%\_p%')`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n < 5 {
		t.Fatalf("before the reset: %d rows and span tables, want at least 5", n)
	}
	if err := Reset(ctx, pool, DefaultSchema); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("after the reset: %d rows and span tables, want 0", n)
	}
	w, err = NewWriter(pool, Options{Group: "a", Topic: "clicks"}) // NB: a new process: no partitions known
	if err != nil {
		t.Fatal(err)
	}
	commitOne()
	var clicks int64
	if err := pool.QueryRow(ctx, `SELECT clicks FROM clickagg.url_totals WHERE url = '/a'`).Scan(&clicks); err != nil || clicks != 1 {
		t.Fatalf("after the reset a checkpoint counts %d, %v; want 1", clicks, err)
	}
}
