// Package child runs the helper servers of tests and tools (PostgreSQL,
// the Kafka broker JVM) as child processes that never outlive their parent
// or leave folders behind: each runs in its own process group with a
// parent-death signal, is reaped in the background, and the folders of
// parents that died anyway are removed by the next run (RemoveStale).
// Product runtime: pglocal and kafkalocal start their servers with it, so
// it is part of the binary.
package child

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a started child.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been reaped
	err  error         // Wait result, valid after done is closed
}

// Start starts cmd in its own process group with parent-death signal sig
// (where the platform has one), keeping the rest of cmd.SysProcAttr (say,
// a Credential), and reaps it in the background.
func Start(cmd *exec.Cmd, sig syscall.Signal) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setPdeathsig(cmd.SysProcAttr, sig)
	if err := startOnSpawnThread(cmd); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id (also its process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns how the process ended; valid once Done is closed.
func (p *Process) Err() error { return p.err }

// Exited reports whether the process has exited and been reaped.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process and reports whether it exited within
// wait.
func (p *Process) Signal(sig syscall.Signal, wait time.Duration) bool {
	if p.Exited() {
		return true
	}
	_ = syscall.Kill(p.Pid(), sig)
	return p.wait(wait)
}

// Kill SIGKILLs the process group and reports whether the process was
// reaped within wait.
func (p *Process) Kill(wait time.Duration) bool {
	if !p.Exited() {
		// NB: not reaped yet, so its pid (the group id) cannot have been
		// reused.
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	}
	return p.wait(wait)
}

func (p *Process) wait(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
		return true
	case <-timer.C:
		return false
	}
}

// setPdeathsig sets SysProcAttr.Pdeathsig where the platform has it (Linux,
// FreeBSD).
func setPdeathsig(attr *syscall.SysProcAttr, sig syscall.Signal) {
	if f := reflect.ValueOf(attr).Elem().FieldByName("Pdeathsig"); f.IsValid() && f.CanSet() {
		f.Set(reflect.ValueOf(sig))
	}
}

// The parent-death signal is delivered when the thread that forked the child
// exits, not the process. Goroutines can end up on threads that exit (a
// goroutine that returns while locked to its thread takes the thread down),
// so all children are started from one goroutine locked to a thread that
// lives as long as the process.
var (
	spawnOnce sync.Once
	spawnReqs chan func()
)

func startOnSpawnThread(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives until exit
			for f := range spawnReqs {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnReqs <- func() { errc <- cmd.Start() }
	return <-errc
}

// RemoveStale removes the folders in parent whose names start with prefix
// and that were left behind by processes that died without cleaning up:
// those whose owner (the pid in the folder's ownerFile) and child (the pid
// on the first line of childPidFile, relative to the folder) are both gone.
// Folders without an owner file (being created right now, or not ours) are
// left alone. It returns the folders removed.
func RemoveStale(parent, prefix, ownerFile, childPidFile string) []string {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		owner, ok := readPid(filepath.Join(dir, ownerFile))
		if !ok || owner == os.Getpid() || alive(owner) {
			continue
		}
		if pid, ok := readPid(filepath.Join(dir, childPidFile)); ok && alive(pid) {
			continue
		}
		if os.RemoveAll(dir) == nil {
			removed = append(removed, dir)
		}
	}
	return removed
}

// readPid reads the pid on the first line of a file.
func readPid(path string) (int, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 64))
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// alive reports whether a process with this pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
