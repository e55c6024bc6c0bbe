package v1check

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/runc/libcontainer/cgroups"
	"github.com/opencontainers/runc/libcontainer/cgroups/fs"
	"github.com/opencontainers/runc/libcontainer/configs"
)

// TestRuncDiscovery: how runc, cAdvisor and the kubelet's v1 code find the memory
// hierarchy (libcontainer/cgroups v1_utils.go, utils.go, fs/paths.go at runc 1.1.5).
func TestRuncDiscovery(t *testing.T) {
	// statfs("/sys/fs/cgroup"): a tmpfs, not CGROUP2_SUPER_MAGIC
	if cgroups.IsCgroup2UnifiedMode() {
		t.Fatal("IsCgroup2UnifiedMode() = true on a v1 hierarchy")
	}
	// tryDefaultPath: /sys/fs/cgroup/memory is a mount point with CGROUP_SUPER_MAGIC
	mnt, err := cgroups.FindCgroupMountpoint("", "memory")
	if err != nil {
		t.Fatalf("FindCgroupMountpoint: %v", err)
	}
	if mnt != "/sys/fs/cgroup/memory" {
		t.Fatalf("FindCgroupMountpoint = %q", mnt)
	}
	// /proc/self/mountinfo: a line of type "cgroup" with "memory" in its super options
	mnt, root, err := cgroups.FindCgroupMountpointAndRoot("", "memory")
	if err != nil || mnt != "/sys/fs/cgroup/memory" || root != "/" {
		t.Fatalf("FindCgroupMountpointAndRoot = %q, %q, %v", mnt, root, err)
	}
	// /proc/self/cgroup
	own, err := cgroups.GetOwnCgroup("memory")
	if err != nil {
		t.Fatalf("GetOwnCgroup: %v", err)
	}
	checkOwnGroup(t, "runc", own)
	path, err := cgroups.GetOwnCgroupPath("memory")
	if err != nil || path != filepath.Join("/sys/fs/cgroup/memory", own) {
		t.Fatalf("GetOwnCgroupPath = %q, %v", path, err)
	}
	// fs.NewManager finds its root by tryDefaultCgroupRoot (a tmpfs mount point whose
	// first entry is CGROUP_SUPER_MAGIC). A relative Path is placed below our own group.
	m, err := fs.NewManager(&configs.Cgroup{
		Path:      "probe",
		Resources: &configs.Resources{SkipDevices: true},
	}, nil)
	if err != nil {
		t.Fatalf("fs.NewManager: %v", err)
	}
	paths := m.GetPaths()
	if len(paths) != 1 || paths["memory"] != filepath.Join(path, "probe") {
		t.Fatalf("fs.NewManager paths = %v, want only memory at %s/probe", paths, path)
	}
}

// TestRuncFsManager: the fs manager's Apply, Set, GetStats and Destroy on a child
// group, with a real process in it.
//
// What a v1 host with only the memory controller needs: SkipDevices (without it the
// manager refuses to start when the devices controller is missing, "for security
// reasons", fs/paths.go initPaths). Every other missing controller is left out of the
// paths; Set skips them because this configuration asks nothing of them.
func TestRuncFsManager(t *testing.T) {
	const limit = 64 * mib
	own, err := cgroups.GetOwnCgroupPath("memory")
	if err != nil {
		t.Fatalf("GetOwnCgroupPath: %v", err)
	}
	cg := &configs.Cgroup{
		Path:      childName("runc"),
		Resources: &configs.Resources{SkipDevices: true, Memory: limit},
	}
	m, err := fs.NewManager(cg, nil)
	if err != nil {
		t.Fatalf("fs.NewManager: %v", err)
	}
	dir := m.Path("memory")
	if dir != filepath.Join(own, cg.Path) {
		t.Fatalf("memory path %q is not below our own group %q", dir, own)
	}
	defer func() {
		if _, err := os.Stat(dir); err == nil {
			_ = m.Destroy()
		}
	}()

	hog := startHog(t)
	if err := m.Apply(hog.pid()); err != nil {
		t.Fatalf("Apply(%d): %v", hog.pid(), err)
	}
	pids, err := cgroups.GetPids(dir)
	if err != nil || len(pids) != 1 || pids[0] != hog.pid() {
		t.Fatalf("cgroup.procs of %s = %v, %v; want [%d]", dir, pids, err, hog.pid())
	}
	if err := m.Set(cg.Resources); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if !hog.touch(16) {
		t.Fatal("the hog died touching 16 MiB under a 64 MiB limit")
	}
	usageReaches(t, "runc", limit, 16*mib, func() (uint64, uint64, uint64, error) {
		st, err := m.GetStats()
		if err != nil {
			return 0, 0, 0, err
		}
		u := st.MemoryStats.Usage
		return u.Limit, u.Usage, u.MaxUsage, nil
	})
	hog.stop()
	if err := m.Destroy(); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still there after Destroy (%v)", dir, err)
	}
}
