# bench/lib.sh — sourced by the bench scripts, after `set -euo pipefail`:
# the checks each one starts with and the clean-up each one ends with.
#
# A script records what it starts and creates: PIDS (processes, killed by
# PID), NETNS (network namespaces, deleted by name; netns_add records them)
# and WORK (its scratch directory, from workdir; removed unless KEEP=1).
# cleanup runs on exit, however the script ends, and undoes exactly that.
# shellcheck shell=bash

PATH=$PATH:/usr/sbin:/sbin
PIDS=()
NETNS=()
WORK=

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# need_root WHY
need_root() { [ "$(id -u)" = 0 ] || die "needs root ($1)"; }

# need_tools HINT TOOL...: dies naming the first TOOL missing from PATH and
# HINT, what to install.
need_tools() {
	local hint=$1 t
	shift
	for t in "$@"; do
		command -v "$t" >/dev/null || die "needs $t ($hint)"
	done
}

# workdir PREFIX: a fresh scratch directory /tmp/PREFIX.XXXXXX in WORK.
workdir() { WORK=$(mktemp -d "/tmp/$1.XXXXXX"); }

# netns_add NAME...: new network namespaces with loopback up.
netns_add() {
	local ns
	for ns in "$@"; do
		ip netns del "$ns" 2>/dev/null || true # a leftover of a killed run
		ip netns add "$ns"
		NETNS+=("$ns")
		ip -n "$ns" link set lo up
	done
}

# veth_pair NS_A IF_A ADDR_A NS_B IF_B ADDR_B: joins two namespaces by a
# veth pair, each end addressed (ADDR as a.b.c.d/len) and up.
veth_pair() {
	ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
	ip -n "$1" addr add "$3" dev "$2"
	ip -n "$4" addr add "$6" dev "$5"
	ip -n "$1" link set "$2" up
	ip -n "$4" link set "$5" up
}

cleanup() {
	local p ns
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	for ns in "${NETNS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
	if [ -n "$WORK" ]; then
		if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# go_test_report PATTERN PREFIX [ENV=VALUE...]: runs the bootp/registry
# tests matching PATTERN as root with the livebootp binary in $BIN and
# prints the lines they log that start with PREFIX, without the test's
# file:line. The tests set up, measure and clean up themselves.
go_test_report() {
	local pattern=$1 prefix=$2 out
	shift 2
	out=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." &&
		env LIVEBOOTP_BINARY="$BIN" "$@" go test -count=1 -v -timeout 20m -run "$pattern" ./bootp/registry 2>&1) || {
		echo "$out" | tail -n 40 >&2
		die "go test -run '$pattern' failed"
	}
	echo "$out" | sed -n "s/^ *[a-z_]*\.go:[0-9]*: $prefix/$prefix/p"
}
