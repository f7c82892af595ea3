package bench

import (
	"bufio"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// burnEnv makes the test binary a helper that burns CPU (burnHelper).
const burnEnv = "CLICKAGG_BENCH_TEST_BURN"

func TestMain(m *testing.M) {
	if os.Getenv(burnEnv) != "" {
		burnHelper()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// burnHelper burns CPU until its rusage reaches half of $burnEnv, writes
// "half", reads a line from stdin, burns the rest and exits: its CPU is at
// least the amounts asked, measured by the kernel, not by a clock.
func burnHelper() {
	total, err := time.ParseDuration(os.Getenv(burnEnv))
	if err != nil {
		panic(err)
	}
	burnUntil(total / 2)
	os.Stdout.WriteString("half\n")
	var b [1]byte
	for {
		if n, err := os.Stdin.Read(b[:]); err != nil || (n == 1 && b[0] == '\n') {
			break // NB: byte by byte, to leave the next line to the shell
		}
	}
	burnUntil(total)
}

func burnUntil(d time.Duration) {
	x := uint64(1)
	for {
		for range 100_000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
		if selfCPU() >= d && x != 0 {
			return
		}
	}
}

// selfStat parses /proc/self/stat (the reading process: this one).
func selfStat(t *testing.T) procStat {
	t.Helper()
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip(err)
	}
	st, err := parseStat(b)
	if err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return st
}

func TestParseStatSelf(t *testing.T) {
	st := selfStat(t)
	if st.pid != os.Getpid() || st.ppid != os.Getppid() || st.start == 0 {
		t.Fatalf("parsed %+v; pid %d ppid %d", st, os.Getpid(), os.Getppid())
	}
	if st.utime < 0 || st.stime < 0 || st.cutime < 0 || st.cstime < 0 {
		t.Fatalf("negative times %+v", st)
	}
}

func TestParseStatOddComm(t *testing.T) {
	// Fields 3..22, then the rest; comm with spaces and parentheses.
	tail := "S 42 7 7 0 -1 4194560 100 0 0 0 1234 56 78 9 20 0 3 0 987654 1000 20 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
	for _, comm := range []string{"postgres", "a b", "x) S 1 2 (y", "))", "(", ""} {
		st, err := parseStat([]byte("4321 (" + comm + ") " + tail + "\n"))
		if err != nil {
			t.Fatalf("comm %q: %v", comm, err)
		}
		want := procStat{pid: 4321, ppid: 42, start: 987654, utime: 1234, stime: 56, cutime: 78, cstime: 9}
		if st != want {
			t.Errorf("comm %q: got %+v, want %+v", comm, st, want)
		}
	}
	for _, bad := range []string{"", "12 no comm", "12 (x) S 1 2", "x (y) " + tail, "12 (x) S a " + tail[4:]} {
		if st, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) = %+v, want an error", bad, st)
		}
	}
}

func TestClockTicks(t *testing.T) {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		t.Skip("getconf:", err)
	}
	if got := strings.TrimSpace(string(out)); got != strconv.Itoa(clockTicks) {
		t.Fatalf("getconf CLK_TCK = %s, the code assumes %d", got, clockTicks)
	}
}

// TestReapedChildCPU: a child's CPU moves into its parent's cutime+cstime
// when the parent reaps it (here, this process).
func TestReapedChildCPU(t *testing.T) {
	before := selfStat(t)
	cmd := exec.Command("sh", "-c", `i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done`)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	after := selfStat(t)
	child := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	got := time.Duration(after.cutime+after.cstime-before.cutime-before.cstime) * time.Second / clockTicks
	t.Logf("child used %v (rusage); this process's cutime+cstime grew by %v", child, got)
	if child < 50*time.Millisecond {
		t.Fatalf("the busy child used only %v", child)
	}
	// NB: /proc rounds down to ticks; other tests of this package reap no
	// children meanwhile.
	if d := got - child; d < -2*time.Second/clockTicks || d > 2*time.Second/clockTicks {
		t.Fatalf("cutime+cstime grew by %v, the child used %v", got, child)
	}
}

// TestMarkTreeCountsExitedDescendant: a shell runs a helper that burns
// 150 ms of CPU, waits at a mark, burns 150 ms more and exits; the shell,
// the tree's root, reaps it and stays. Between a mark taken while the
// helper lives and one after the shell reaped it, the tree used the
// helper's second half (counted once: not lost with the helper, not
// counted both live and reaped), and the after-mark holds all of it.
func TestMarkTreeCountsExitedDescendant(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const total = 300 * time.Millisecond
	cmd := exec.Command("sh", "-c", `"$0"; echo done; read x`, exe)
	cmd.Env = append(os.Environ(), burnEnv+"="+total.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	lines := bufio.NewReader(out)
	expect := func(want string) {
		t.Helper()
		line, err := lines.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != want {
			t.Fatalf("read %q, %v; want %q", line, err, want)
		}
	}
	expect("half")
	before, err := MarkTree(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if before.Procs != 2 {
		t.Fatalf("tree of %d processes while the helper runs, want 2 (the shell and the helper)", before.Procs)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	expect("done")
	after, err := MarkTree(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if after.Procs != 1 {
		t.Fatalf("tree of %d processes after the helper exited, want 1", after.Procs)
	}
	got, err := after.SecondsSince(before)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("before %+v, after %+v: %.2f CPU-s between", before, after, got)
	const tick = 1.0 / clockTicks
	// NB: the shell's own CPU (a fork and an echo) and the rounding to
	// ticks are small against the helper's 150 ms; counted twice or not at
	// all, the half would be ~0.30 or ~0.00.
	if half := (total / 2).Seconds(); got < half-2*tick || got > half+0.06 {
		t.Errorf("the tree used %.2f CPU-s between the marks, want about %.2f", got, half)
	}
	if all := float64(after.Ticks) / clockTicks; all < total.Seconds()-2*tick || all > total.Seconds()+0.1 {
		t.Errorf("the tree used %.2f CPU-s in all, want about %.2f", all, total.Seconds())
	}
	if _, err := after.SecondsSince(CPUMark{Root: procKey{after.Root.pid, after.Root.start + 1}}); err == nil {
		t.Error("SecondsSince accepted marks of two different roots")
	}
}

// TestServerMarks: a run's result gets the servers' CPU and the total, and
// the table shows "-" for what was not measured.
func TestServerMarks(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip(err)
	}
	env := Env{PostgresPID: os.Getpid(), BrokerPID: os.Getppid()}
	marks, err := markServers(env)
	if err != nil {
		t.Fatal(err)
	}
	burnUntil(selfCPU() + 50*time.Millisecond)
	r := Result{Workload: "w", Records: 1000, CPUSeconds: 2}
	if err := marks.finish(env, &r); err != nil {
		t.Fatal(err)
	}
	// NB: the total is a sum of floats: compared up to rounding, not to
	// the order of the additions.
	if r.PostgresCPUSeconds == nil || *r.PostgresCPUSeconds < 0.03 || r.BrokerCPUSeconds == nil || r.TotalCPUSeconds == nil ||
		math.Abs(*r.TotalCPUSeconds-(2+*r.PostgresCPUSeconds+*r.BrokerCPUSeconds)) > 1e-9 || *r.RecordsPerTotalCPU != 1000 / *r.TotalCPUSeconds {
		t.Fatalf("result %+v", r)
	}
	var b strings.Builder
	r.Broker = "x"
	PrintTable(&b, []Result{r, {Workload: "unmeasured", Broker: "x", Records: 1, CPUSeconds: 1}})
	t.Log("\n" + b.String())
	lines := strings.Split(b.String(), "\n")
	if f := strings.Fields(lines[2]); f[7] != "-" || f[8] != "-" || f[9] != "-" || f[10] != "-" {
		t.Errorf("unmeasured row %q", lines[2])
	}
	if strings.Count(lines[1], " - ") != 0 {
		t.Errorf("measured row %q", lines[1])
	}

	// Only one server measured: no total.
	env.BrokerPID = 0
	marks, _ = markServers(env)
	r = Result{Records: 1, CPUSeconds: 1}
	if err := marks.finish(env, &r); err != nil || r.PostgresCPUSeconds == nil || r.BrokerCPUSeconds != nil || r.TotalCPUSeconds != nil {
		t.Fatalf("%v, %+v", err, r)
	}
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
