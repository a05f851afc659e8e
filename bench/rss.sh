#!/bin/bash
# bench/rss.sh [BINARY] — the registry's resident memory (VmRSS and its
# peak, VmHWM, from /proc/PID/status) with 10k and 100k hosts loaded, idle,
# serving from a network namespace. The peak during a boot storm is in
# bench/storm.sh's output.
#
# The work is TestRegistryRSS (bootp/registry/storm_test.go), which also
# fails above a ceiling; this script runs it on BINARY. Needs root, go, ip.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

BIN=$(realpath "${1:-bin/livebootp}")
need_root "network namespaces"
need_tools "make deps" go ip
[ -x "$BIN" ] || die "$BIN is not an executable; build it with make, or pass its path as the first argument"

go_test_report '^TestRegistryRSS$' rss
