// A small Go module that tests cgroup v1 memory handling with the two libraries
// container tooling uses. The suite and the CI recipe build it offline in GOPATH mode
// (GO111MODULE=off) against Debian's packages (docs/ci.md); these requirements are the
// versions Debian ships, for anyone who builds it in module mode.
module example.com/v1check

go 1.19

require (
	github.com/containerd/cgroups v1.0.4
	github.com/opencontainers/runc v1.1.5
	github.com/opencontainers/runtime-spec v1.0.3-0.20210326190908-1c3f411f0417
)
