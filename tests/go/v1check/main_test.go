// Package v1check is a cgroup v1 test suite of the kind container tooling has: it finds
// the memory hierarchy the way the libraries do (statfs, /proc/self/mountinfo,
// /proc/self/cgroup), makes a child group below its own, runs a real process in it
// and reads the limit and the usage back. Nothing here names a mount point or sets a
// library's TestMode: run it inside `cgemu run -g GROUP` and it finds the emulator
// exactly as it would find the kernel's hierarchy on a cgroup v1 host.
//
// Only the memory controller exists there. The runc and containerd tests show what a
// program needs for that (SkipDevices; the hierarchy V1 returns already holds only the
// controllers that are mounted).
package v1check

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const mib = 1 << 20

// wantGroup: the group `cgemu run -g` put the test in; empty checks only that it is
// not the root (a project's own suite does not know the name its CI chose).
var wantGroup = flag.String("cgroup", "", "the memory cgroup this test must find itself in")

// hogEnv makes the test binary a memory user instead of a test run (see hog).
const hogEnv = "V1CHECK_HOG"

func TestMain(m *testing.M) {
	if os.Getenv(hogEnv) != "" {
		hog()
		return
	}
	flag.Parse()
	os.Exit(m.Run())
}

var held [][]byte // what the hog touched stays referenced until it exits

// hog: after the parent has moved it into a group, it reads sizes in MiB on stdin,
// one a line, touches that much new memory for each and says "done"; it exits when
// stdin closes. Memory touched before the move is not the group's (v1 charges a page
// to the group it is faulted in; move_charge_at_immigrate is off by default), so
// nothing is allocated before the first line.
func hog() {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, err := strconv.Atoi(strings.TrimSpace(in.Text()))
		if err != nil {
			os.Exit(2)
		}
		for i := 0; i < n; i++ {
			b := make([]byte, mib)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			held = append(held, b)
		}
		fmt.Println("done")
	}
}

// child is a hog this test started; stop() kills and reaps it whatever happened.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func startHog(t *testing.T) *child {
	t.Helper()
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), hogEnv+"=1")
	in, err := cmd.StdinPipe()
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
	c := &child{cmd: cmd, in: in, out: bufio.NewReader(out)}
	t.Cleanup(c.stop)
	return c
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// touch asks the hog for n MiB and reports whether it got them (false: it died,
// e.g. killed by the group's OOM killer).
func (c *child) touch(n int) bool {
	fmt.Fprintf(c.in, "%d\n", n)
	line, err := c.out.ReadString('\n')
	return err == nil && line == "done\n"
}

// stop closes the hog's stdin and reaps it (killed after 5 s if it does not go).
func (c *child) stop() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.in.Close()
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = c.cmd.Process.Kill()
		}
	}()
	_ = c.cmd.Wait()
	close(done)
}

// killedBy waits up to 10 s for the hog to end without closing its stdin, and
// returns the signal that ended it (0: it did not end by a signal, or not in time).
func (c *child) killedBy() syscall.Signal {
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
		return 0
	}
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal()
	}
	return 0
}

// usageReaches: the group's limit is *limit* at every read, and its usage reaches
// *least* (within the limit) in a few seconds: the emulator learns a real process's
// growth by sampling it, not at each page fault. *read* gives limit, usage and peak.
func usageReaches(t *testing.T, lib string, limit, least uint64,
	read func() (uint64, uint64, uint64, error)) {
	t.Helper()
	var usage uint64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		got, u, peak, err := read()
		if err != nil {
			t.Fatalf("%s: reading the stats: %v", lib, err)
		}
		if got != limit {
			t.Fatalf("%s: limit %d, want %d", lib, got, limit)
		}
		t.Logf("%s: limit %d usage %d max %d", lib, got, u, peak)
		if usage = u; usage >= least && usage <= limit {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: usage still %d after 10 s, want %d..%d", lib, usage, least, limit)
}

func checkOwnGroup(t *testing.T, lib, got string) {
	t.Helper()
	t.Logf("%s: own memory cgroup %s", lib, got)
	if *wantGroup != "" && got != *wantGroup {
		t.Fatalf("%s: own memory cgroup is %q, want %q", lib, got, *wantGroup)
	}
	if got == "/" || got == "" {
		t.Fatalf("%s: own memory cgroup is %q: not the group the test runs in", lib, got)
	}
}

// childName: a group of this process's own (tests of several packages may share a group).
func childName(lib string) string {
	return fmt.Sprintf("v1check-%s-%d", lib, os.Getpid())
}
