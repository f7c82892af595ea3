package child

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestRemoveStale(t *testing.T) {
	parent := t.TempDir()
	// Owners: one surely dead (a pid far beyond pid_max's default is
	// rejected by kill with ESRCH), this process, none; one folder whose
	// owner is dead but whose child (this process, say) lives on; one with
	// another prefix.
	const deadPid = "2147483600"
	mk := func(name, owner, childPid string) string {
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			os.WriteFile(filepath.Join(dir, "owner"), []byte(owner+"\n"), 0o644)
		}
		if childPid != "" {
			os.WriteFile(filepath.Join(dir, "child.pid"), []byte(childPid+"\nmore lines\n"), 0o644)
		}
		return dir
	}
	dead := mk("x-dead", deadPid, deadPid)
	mine := mk("x-mine", fmt.Sprint(os.Getpid()), "")
	noOwner := mk("x-noowner", "", "")
	childLives := mk("x-child", deadPid, fmt.Sprint(os.Getpid()))
	other := mk("y-dead", deadPid, "")
	removed := RemoveStale(parent, "x-", "owner", "child.pid")
	if len(removed) != 1 || removed[0] != dead {
		t.Errorf("removed %v, want only %s", removed, dead)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("leftover of a dead process not removed")
	}
	for _, d := range []string{mine, noOwner, childLives, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s removed: %v", d, err)
		}
	}
}

func TestProcessSignalAndKill(t *testing.T) {
	// A shell that ignores SIGTERM: Signal gives up, Kill ends the group.
	cmd := exec.Command("sh", "-c", `trap "" TERM; echo ready; sleep 60 & wait`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(cmd, syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	// NB: SIGTERM only once the trap is set.
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if p.Exited() {
		t.Fatal("exited at once")
	}
	if p.Signal(syscall.SIGTERM, 200*time.Millisecond) {
		t.Fatal("a shell ignoring SIGTERM exited on it")
	}
	if !p.Kill(10 * time.Second) {
		t.Fatal("not reaped after SIGKILL of its group")
	}
	if !p.Exited() || p.Err() == nil {
		t.Fatalf("after Kill: exited %v, err %v", p.Exited(), p.Err())
	}
}
