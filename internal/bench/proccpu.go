package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Process-tree CPU from /proc (Linux), for the servers the harness starts:
// PostgreSQL (the postmaster and every process under it) and the broker.
//
// Method. A process's CPU is in its own utime+stime (fields 14 and 15 of
// /proc/PID/stat, all its threads, exited ones included) while it exists,
// zombies included; when its parent reaps it, the kernel adds its
// utime+stime and its own cutime+cstime (the children it reaped) to the
// parent's cutime+cstime (fields 16 and 17), and it leaves /proc. So at any
// instant the CPU ever used by the processes of a tree — live ones and
// those that exited and were reaped inside the tree — is
//
//	sum over the processes now in the tree of utime+stime+cutime+cstime
//
// and each exited process is counted exactly once, in the nearest ancestor
// that was alive to reap it. The tree is found by scanning every
// /proc/PID/stat for its parent pid (field 4). A reap while a scan is under
// way could count a process twice (read before, and in its parent after)
// or not at all, so a mark takes scans until two in a row agree on the
// members (pid and start time, field 22) and on each member's
// cutime+cstime — which change only at reaps — and takes the second.
// A run's CPU is the difference between a mark before and one after; the
// tree's root must be the same process (pid and start time) at both.
//
// Limits: a process that leaves the tree without being reaped in it (a
// daemon re-parented to init) is lost; the postmaster, a JVM and kfake do
// not do that. The resolution is one clock tick per process and mark.
// Work the servers do after the after-mark (an autovacuum that starts once
// the run is over) is not counted.

// clockTicks is USER_HZ, the unit of the /proc/PID/stat times: 100 on
// Linux for every architecture Go supports (what sysconf(_SC_CLK_TCK) and
// `getconf CLK_TCK` report; the test checks it against getconf).
const clockTicks = 100

// procStat is what CPU accounting needs from one /proc/PID/stat.
type procStat struct {
	pid, ppid                    int
	start                        uint64 // starttime, ticks after boot
	utime, stime, cutime, cstime int64  // ticks
}

// parseStat parses the contents of /proc/PID/stat. The command name (field
// 2) is in parentheses and may itself hold spaces and parentheses, so the
// fields after it are counted from its last ')'.
func parseStat(b []byte) (procStat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("stat %.40q: no (comm)", b)
	}
	var st procStat
	var err error
	if st.pid, err = strconv.Atoi(string(bytes.TrimSpace(b[:open]))); err != nil {
		return procStat{}, fmt.Errorf("stat %.40q: pid: %w", b, err)
	}
	f := bytes.Fields(b[end+1:]) // f[0] is field 3 (state): field n is f[n-3]
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("stat %.40q: %d fields after comm, want ≥ 20", b, len(f))
	}
	if st.ppid, err = strconv.Atoi(string(f[4-3])); err != nil {
		return procStat{}, fmt.Errorf("stat of %d: ppid: %w", st.pid, err)
	}
	for i, p := range []*int64{&st.utime, &st.stime, &st.cutime, &st.cstime} {
		if *p, err = strconv.ParseInt(string(f[14-3+i]), 10, 64); err != nil {
			return procStat{}, fmt.Errorf("stat of %d: field %d: %w", st.pid, 14+i, err)
		}
	}
	if st.start, err = strconv.ParseUint(string(f[22-3]), 10, 64); err != nil {
		return procStat{}, fmt.Errorf("stat of %d: starttime: %w", st.pid, err)
	}
	return st, nil
}

// procKey names a process across pid reuse.
type procKey struct {
	pid   int
	start uint64
}

// scanTree reads every /proc/PID/stat and returns the processes under root
// (root included), or an error if root does not exist.
func scanTree(root int) (map[procKey]procStat, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	all := map[int]procStat{}
	kids := map[int][]int{}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // exited since the listing
		}
		st, err := parseStat(b)
		if err != nil {
			return nil, err
		}
		all[pid] = st
		kids[st.ppid] = append(kids[st.ppid], pid)
	}
	if _, ok := all[root]; !ok {
		return nil, fmt.Errorf("process %d: not in /proc", root)
	}
	tree := map[procKey]procStat{}
	for todo := []int{root}; len(todo) > 0; {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		st := all[pid]
		tree[procKey{pid, st.start}] = st
		todo = append(todo, kids[pid]...)
	}
	return tree, nil
}

// CPUMark is a process tree's CPU (all its processes, and the ones that
// exited and were reaped in it) at one instant.
type CPUMark struct {
	Root  procKey
	Ticks int64 // utime+stime+cutime+cstime summed over the tree
	Procs int   // processes in the tree
	Scans int   // scans it took to get two that agree
}

// errUnsettled is returned when the tree's reaps never paused for two
// scans in a row.
var errUnsettled = errors.New("the process tree kept changing")

// MarkTree returns the CPU of the tree of processes under pid (see the
// method above).
func MarkTree(pid int) (CPUMark, error) {
	const attempts = 200
	prev, err := scanTree(pid)
	if err != nil {
		return CPUMark{}, err
	}
	for n := 2; n <= attempts+1; n++ {
		cur, err := scanTree(pid)
		if err != nil {
			return CPUMark{}, err
		}
		if settled(prev, cur) {
			m := CPUMark{Procs: len(cur), Scans: n}
			for k, st := range cur {
				if k.pid == pid {
					m.Root = k
				}
				m.Ticks += st.utime + st.stime + st.cutime + st.cstime
			}
			return m, nil
		}
		prev = cur
		time.Sleep(time.Millisecond) // NB: let a burst of exits finish
	}
	return CPUMark{}, fmt.Errorf("process %d: %w over %d scans", pid, errUnsettled, attempts+1)
}

// settled reports whether two scans have the same members and no reap
// between them.
func settled(a, b map[procKey]procStat) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok || x.cutime != y.cutime || x.cstime != y.cstime {
			return false
		}
	}
	return true
}

// SecondsSince returns the CPU seconds the tree used from before to m; an
// error if the root is not the same process (a restart in between).
func (m CPUMark) SecondsSince(before CPUMark) (float64, error) {
	if m.Root != before.Root {
		return 0, fmt.Errorf("process %d (started at tick %d) is now %d (started at %d): restarted in between",
			before.Root.pid, before.Root.start, m.Root.pid, m.Root.start)
	}
	return float64(m.Ticks-before.Ticks) / clockTicks, nil
}

// serverMarks are the servers' CPU marks at the start of a run; nil for a
// server whose process the harness does not know (not started by it).
type serverMarks struct {
	pg, broker *CPUMark
}

// markServers marks the trees of env.PostgresPID and env.BrokerPID.
func markServers(env Env) (serverMarks, error) {
	var m serverMarks
	for _, s := range []struct {
		pid  int
		mark **CPUMark
		name string
	}{{env.PostgresPID, &m.pg, "PostgreSQL"}, {env.BrokerPID, &m.broker, "the broker"}} {
		if s.pid == 0 {
			continue
		}
		mk, err := MarkTree(s.pid)
		if err != nil {
			return m, fmt.Errorf("CPU of %s: %w", s.name, err)
		}
		*s.mark = &mk
	}
	return m, nil
}

// finish marks the servers again and sets r's server and total CPU
// (r.CPUSeconds, the run's own, already set): the total only when both
// servers were measured.
func (m serverMarks) finish(env Env, r *Result) error {
	now, err := markServers(env)
	if err != nil {
		return err
	}
	var sum float64
	for _, s := range []struct {
		before, after *CPUMark
		out           **float64
		name          string
	}{{m.pg, now.pg, &r.PostgresCPUSeconds, "PostgreSQL"}, {m.broker, now.broker, &r.BrokerCPUSeconds, "the broker"}} {
		if s.before == nil || s.after == nil {
			continue
		}
		sec, err := s.after.SecondsSince(*s.before)
		if err != nil {
			return fmt.Errorf("CPU of %s: %w", s.name, err)
		}
		*s.out = &sec
		sum += sec
	}
	if r.PostgresCPUSeconds != nil && r.BrokerCPUSeconds != nil {
		total := r.CPUSeconds + sum
		perCPU := float64(r.Records) / total
		r.TotalCPUSeconds, r.RecordsPerTotalCPU = &total, &perCPU
	}
	return nil
}
