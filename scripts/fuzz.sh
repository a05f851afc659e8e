#!/usr/bin/env bash
# Run every fuzz target for a bounded time each (default 10s; `make fuzz
# FUZZTIME=1m`). New crashers land in the package's testdata/fuzz and fail
# the run; commit them with the fix as regression tests.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
fail=0
for pkg in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
		echo "== $pkg $f ($t)"
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" || fail=1
	done
done
exit $fail
