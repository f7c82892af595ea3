package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/clickagg/clickagg/internal/gen"
)

// WriteArchive writes w's records (the ones Preload produces with the same
// seed, in the same order) to a file of JSON lines, as an archive of the
// topic would hold them: a valid record without "ts" (its Kafka timestamp
// was its event time) gets its event time written into the line, so that
// every record counts as in the topic.
func WriteArchive(env Env, w Workload, seed uint64) (string, error) {
	g, err := gen.New(genOptions(w, seed))
	if err != nil {
		return "", err
	}
	path := filepath.Join(env.Dir, "archive-"+w.Name+".jsonl")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	for range w.Records {
		ev := g.Next()
		v := ev.Value
		if ev.Valid() && w.Shape != "tracker" && !bytes.Contains(v, []byte(`"ts":`)) {
			bw.WriteString(`{"ts":`)
			bw.WriteString(strconv.FormatInt(ev.Time.UnixMilli(), 10))
			bw.WriteByte(',')
			v = v[1:]
		}
		bw.Write(v)
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return "", err
	}
	return path, f.Close()
}

// RunBackfill runs `clickagg backfill` over path and measures it as
// RunAggregator measures run.
func RunBackfill(ctx context.Context, env Env, path string, w Workload, extraArgs ...string) (Result, error) {
	sizes := make([]string, len(w.Windows))
	for i, d := range w.Windows {
		sizes[i] = shortDuration(d)
	}
	args := append([]string{"backfill", "--state-dir", filepath.Join(env.Dir, "state-backfill-"+w.Name),
		"--windows", strings.Join(sizes, ","), "--log-format", "json"}, ShapeArgs(w.Shape)...)
	args = append(append(args, extraArgs...), path)
	cmd := exec.CommandContext(ctx, env.Binary, args...)
	cmd.Env = append(append(os.Environ(), "DATABASE_URL="+env.DSN), w.Env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	marks, err := markServers(env)
	if err != nil {
		return Result{}, err
	}
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return Result{}, fmt.Errorf("clickagg backfill: %w\n%s", err, lastLines(stderr.String(), 20))
	}
	wall := time.Since(t0)
	r := Result{Workload: "backfill (" + w.Name + ")", Shape: w.Shape, Records: w.Records, Windows: sizes,
		WallSeconds: wall.Seconds(), CPUSeconds: (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.PeakRSSMiB = float64(ru.Maxrss) / 1024
	}
	r.RecordsPerSec = float64(w.Records) / r.WallSeconds
	r.RecordsPerCPU = float64(w.Records) / r.CPUSeconds
	return r, marks.finish(env, &r)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
