#!/bin/sh
# LTP's memcg_limit_in_bytes, the part that needs no helper binary: tests 9 to 15 of
# testcases/kernel/controllers/memcg/functional/memcg_limit_in_bytes.sh, with
# test_limit_in_bytes() of memcg_lib.sh in the same directory. Each test runs in a
# fresh group below TEST_DIR (LTP makes one per test and removes it afterwards):
#   9-11  write PAGESIZE-1, PAGESIZE+1 and 1 to memory.limit_in_bytes and read it back;
#         LTP passes a value rounded down (3.19+) or up (before) to a page
#   12    "-1" must be accepted (LTP expects a failure only before 2.6.31)
#   13-15 "1.0", "1xx" and "xx" must be refused
# Not reproduced: tests 1-8, which start LTP's memcg_process to allocate past the
# limit and run `swapoff -a` on the host.
# Usage: ltp_memcg_limit_in_bytes.sh [TEST_DIR]  (default /sys/fs/cgroup/memory/diff)
TCID=memcg_limit_in_bytes
PAGESIZE=$(getconf PAGESIZE)
TEST_DIR=${1:-/sys/fs/cgroup/memory/diff}
n=8

say() { echo "$TCID $n $1: $2"; }

expect_pass() {
    if (eval "$1") 2>/dev/null; then say TPASS "$1 passed as expected"
    else say TFAIL "$1 failed unexpectedly"; fi
}

expect_fail() {
    if (eval "$1") 2>/dev/null; then say TFAIL "$1 passed unexpectedly"
    else say TPASS "$1 failed as expected"; fi
}

limit_in_bytes() {
    echo "$1" > memory.limit_in_bytes
    limit=$(cat memory.limit_in_bytes)
    down=$((PAGESIZE * ($1 / PAGESIZE)))
    up=$((PAGESIZE * (($1 + PAGESIZE - 1) / PAGESIZE)))
    if [ "$limit" = "$down" ] || [ "$limit" = "$up" ]; then
        say TPASS "input=$1, limit_in_bytes=$limit"
    else
        say TFAIL "input=$1, limit_in_bytes=$limit"
    fi
}

run_test() {
    n=$((n + 1))
    if ! mkdir "$TEST_DIR/ltp_$n" || ! cd "$TEST_DIR/ltp_$n"; then
        say TBROK "cannot make a group in $TEST_DIR"
        return
    fi
    "$@"
    cd "$TEST_DIR" && rmdir "ltp_$n"
}

run_test limit_in_bytes $((PAGESIZE - 1))
run_test limit_in_bytes $((PAGESIZE + 1))
run_test limit_in_bytes 1
run_test expect_pass "echo -1 > memory.limit_in_bytes"
run_test expect_fail "echo 1.0 > memory.limit_in_bytes"
run_test expect_fail "echo 1xx > memory.limit_in_bytes"
run_test expect_fail "echo xx > memory.limit_in_bytes"
