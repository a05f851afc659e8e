#!/usr/bin/env bash
# bench/run.sh [BINARY] — every benchmark in one run, against the peers a
# user would pick instead, on a quiet machine: DHCP (perfdhcp vs ISC Kea and
# dnsmasq), TFTP (atftp vs tftpd-hpa and dnsmasq), HTTP (curl vs nginx), a
# boot storm of 100 clients (HTTP part vs nginx), the registry's memory with
# 10k/100k hosts, and loading 10k/100k-host configurations. Each writes its full output to
# bench/out/; a summary with the date and the machine goes to
# bench/results.md, which the README links to.
# Needs root (network namespaces, ports 67/69). Run `make deps` first.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-bin/livebootp}
[ -x "$bin" ] || { echo "bench: $bin missing: run make build" >&2; exit 1; }
mkdir -p bench/out
{
	echo "# livebootp benchmark results"
	echo
	echo "Date: $(date -u +%Y-%m-%dT%H:%MZ). Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r), load before: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo "Commit: $(git describe --always --dirty 2>/dev/null || echo unknown). Regenerate with \`sudo bench/run.sh\`."
	echo
	for b in dhcp tftp http storm rss; do
		echo "## $b"
		echo
		echo '```'
		if ! bench/$b.sh "$bin" > "bench/out/$b.txt" 2>&1; then
			echo "($b benchmark failed; see bench/out/$b.txt)"
		fi
		tail -n "${TAIL:-40}" "bench/out/$b.txt"
		echo '```'
		echo
	done
	echo "## config load"
	echo
	echo '```'
	go test -run '^$' -bench 'BenchmarkLoad(10k|100k)$' -benchmem -count 3 ./bootp/config | grep -E '^Benchmark'
	echo '```'
} | tee bench/results.md
bench/readme.sh bench/results.md
