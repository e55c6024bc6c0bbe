package v1check

import (
	"errors"
	"path"
	"testing"

	"github.com/containerd/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestContainerdMode: containerd/cgroups utils.go Mode() statfs's /sys/fs/cgroup.
func TestContainerdMode(t *testing.T) {
	if m := cgroups.Mode(); m != cgroups.Legacy {
		t.Fatalf("Mode() = %v, want Legacy (%v)", m, cgroups.Legacy)
	}
}

// memoryOnly is cgroups.V1, unmodified: it finds the hierarchies' root from the first
// mountinfo line of type "cgroup" (v1.go v1MountPoint) and keeps the controllers whose
// directory exists there -- here memory alone.
func memoryOnly(t *testing.T) {
	t.Helper()
	subs, err := cgroups.V1()
	if err != nil {
		t.Fatalf("V1(): %v", err)
	}
	var names []cgroups.Name
	for _, s := range subs {
		names = append(names, s.Name())
	}
	if len(names) != 1 || names[0] != cgroups.Memory {
		t.Fatalf("V1() controllers = %v, want [memory]", names)
	}
}

// ownGroup: our memory group from /proc/self/cgroup, parsed by containerd's own code.
func ownGroup(t *testing.T) string {
	t.Helper()
	groups, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		t.Fatalf("ParseCgroupFile: %v", err)
	}
	checkOwnGroup(t, "containerd", groups["memory"])
	return groups["memory"]
}

// TestContainerdLifecycle: New, Add, Stat, Load, OOMEventFD and Delete on a child of
// our own group, with a real process in it that first fits its limit, then exceeds it.
//
// The path is StaticPath(own group + child). NestedPath would do the same on a cgroup
// v2 runner, but it needs a mount for every v1 hierarchy /proc/self/cgroup names
// (paths.go existingPath), and on a host that has other v1 hierarchies (cpu, pids, ...)
// the view shows only memory.
func TestContainerdLifecycle(t *testing.T) {
	memoryOnly(t)
	const limit = 32 * mib
	p := path.Join(ownGroup(t), childName("containerd"))
	lim := int64(limit)
	cg, err := cgroups.New(cgroups.V1, cgroups.StaticPath(p), &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &lim},
	})
	if err != nil {
		t.Fatalf("New(V1, %s): %v", p, err)
	}
	defer func() { _ = cg.Delete() }()

	hog := startHog(t)
	if err := cg.Add(cgroups.Process{Pid: hog.pid()}); err != nil {
		t.Fatalf("Add(%d): %v", hog.pid(), err)
	}
	efd, err := cg.OOMEventFD()
	if err != nil {
		t.Fatalf("OOMEventFD: %v", err)
	}
	defer unix.Close(int(efd))

	// Load finds the same group and its process
	loaded, err := cgroups.Load(cgroups.V1, cgroups.StaticPath(p))
	if err != nil {
		t.Fatalf("Load(V1, %s): %v", p, err)
	}
	procs, err := loaded.Processes(cgroups.Memory, false)
	if err != nil || len(procs) != 1 || procs[0].Pid != hog.pid() {
		t.Fatalf("Load(...).Processes = %v, %v; want the hog %d", procs, err, hog.pid())
	}

	if !hog.touch(8) {
		t.Fatal("the hog died touching 8 MiB under a 32 MiB limit")
	}
	usageReaches(t, "containerd", limit, 8*mib, func() (uint64, uint64, uint64, error) {
		st, err := cg.Stat()
		if err != nil {
			return 0, 0, 0, err
		}
		u := st.Memory.Usage
		return u.Limit, u.Usage, u.Max, nil
	})

	// past the limit: the group's OOM killer ends the hog and the eventfd fires. The
	// emulator samples the hog's growth, so it may be killed just after its answer.
	hog.touch(2 * limit / mib)
	if sig := hog.killedBy(); sig != unix.SIGKILL {
		t.Fatalf("the hog ended by signal %v, want SIGKILL from the OOM killer", sig)
	}
	fds := []unix.PollFd{{Fd: int32(efd), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 10000); n != 1 || err != nil {
		t.Fatalf("OOM eventfd not readable 10 s after the kill (%d, %v)", n, err)
	}
	buf := make([]byte, 8)
	if _, err := unix.Read(int(efd), buf); err != nil {
		t.Fatalf("reading the OOM eventfd: %v", err)
	}
	st, err := cg.Stat()
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	t.Logf("containerd: failcnt %d, oom_kill %d", st.Memory.Usage.Failcnt, st.MemoryOomControl.OomKill)
	if st.Memory.Usage.Failcnt == 0 {
		t.Fatal("failcnt 0 after an OOM")
	}

	if err := cg.Delete(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := cgroups.Load(cgroups.V1, cgroups.StaticPath(p)); !errors.Is(err, cgroups.ErrCgroupDeleted) {
		t.Fatalf("Load after Delete: %v, want ErrCgroupDeleted", err)
	}
}
