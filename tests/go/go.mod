// The project under test of examples/ci: a Go module with cgroup v1 tests for runc's
// and containerd's cgroup libraries. The suite builds it offline in GOPATH mode
// (GO111MODULE=off) against Debian's packages of these versions; in module mode, run
// `go mod tidy` first (no go.sum is shipped, as nothing here fetches modules).
module example.com/v1check

go 1.19

require (
	github.com/containerd/cgroups v1.0.4
	github.com/opencontainers/runc v1.1.5
)
