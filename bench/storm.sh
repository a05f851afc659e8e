#!/bin/bash
# bench/storm.sh [BINARY] — the boot storm: 100 simulated machines, each in
# a network namespace of its own on the registry's bridge with its own MAC
# in the config, PXE-boot at once from `livebootp serve`: DHCP (busybox
# udhcpc), a 100 KiB loader over TFTP (atftp), then kernel (8 MiB), initrd
# (16 MiB) and squashfs (64 MiB) over HTTP (curl), every file's sha256
# checked. Prints the namespaces' set-up time, the storm's wall time, DHCP
# and TFTP times, the aggregate HTTP throughput and the registry's peak
# memory; then the same clients fetch the same files from the registry's
# HTTP server alone and from nginx alone, RUNS times each, alternating, for
# the ratio.
#
# The work is TestBootStorm (bootp/registry/storm_test.go), which CI runs
# without the nginx part; this script runs it on BINARY with the comparison.
# Needs root, go, ip, busybox, atftp, curl, nginx (make deps).
# Environment: RUNS (3), CLIENTS (100).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

BIN=$(realpath "${1:-bin/livebootp}")
need_root "network namespaces"
need_tools "make deps" go ip busybox atftp curl nginx
[ -x "$BIN" ] || die "$BIN is not an executable; build it with make, or pass its path as the first argument"

echo "boot storm: ${CLIENTS:-100} clients, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
go_test_report '^TestBootStorm$' storm LIVEBOOTP_STORM=1 LIVEBOOTP_STORM_NGINX="${RUNS:-3}" LIVEBOOTP_STORM_CLIENTS="${CLIENTS:-100}"
