#!/bin/bash
# bench/http.sh [BINARY] — HTTP download throughput of `livebootp serve` against
# nginx (sendfile on), on the same veth pair between two network namespaces
# this script creates (10.84.200.0/24) and removes again.
#
# Both servers serve the same 256 MiB file from the same directory. Each is
# pinned to CPU $SERVER_CPU, the curl clients to CPU $CLIENT_CPU, so neither
# side steals the other's core. For 1 and 32 parallel clients it takes the
# median of $RUNS runs and prints MiB/s, the ratio ours/nginx (target:
# >= 0.95) and the servers' CPU time per GiB sent (user+sys of all their
# processes, including the softirq work the kernel bills them), which other
# load on the machine disturbs less than MiB/s. One client fetches the file
# $SINGLE_FETCHES times over one keep-alive connection so a run lasts long
# enough to measure; each of the 32 fetches it once. Single-flow numbers
# swing with the kernel's congestion control (printed) and with whatever else
# runs on the machine: compare ratios from one run, not runs from different
# days.
#
# Needs root, ip, taskset, curl, nginx (Debian: nginx-light).
# Environment: SIZE_MIB (256), RUNS (3), CLIENTS ("1 32"), SINGLE_FETCHES (8),
# SERVER_CPU (0), CLIENT_CPU (1), KEEP (1: keep the temp dir for a look).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

BIN=${1:-bin/livebootp}
SIZE_MIB=${SIZE_MIB:-256}
RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-"1 32"}
SINGLE_FETCHES=${SINGLE_FETCHES:-8}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

need_root "network namespaces"
need_tools "apt-get install nginx-light curl iproute2 util-linux" ip taskset curl nginx
[ -x "$BIN" ] || die "$BIN is not an executable; build it with make, or pass its path as the first argument"
BIN=$(realpath "$BIN")

NET=10.84.200
SRV=$NET.1
CLI=$NET.2
TAG=$$
NS_S=lbhb${TAG}s NS_C=lbhb${TAG}c
workdir livebootp-bench-http
TMP=$WORK
chmod 755 "$TMP" # nginx's worker runs as an unprivileged user

# Two namespaces joined by a veth pair: nothing reaches the host's network.
netns_add "$NS_S" "$NS_C"
veth_pair "$NS_S" "lbhb${TAG}a" "$SRV/24" "$NS_C" "lbhb${TAG}b" "$CLI/24"
CC=$(ip netns exec "$NS_S" cat /proc/sys/net/ipv4/tcp_congestion_control) # single-flow results depend on it

# The data: one image whose squashfs is the file both servers send.
DATA=$TMP/data
IMG=$DATA/images/bench/1
mkdir -p "$IMG" "$TMP/keys" "$TMP/tftp" "$TMP/nginx"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$IMG/filesystem.squashfs"
echo kernel >"$IMG/vmlinuz"
echo initrd >"$IMG/initrd.img"
echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJlbmNoYmVuY2hiZW5jaGJlbmNoYmVuY2hiZW5jaA bench" >"$TMP/keys/default"
URLPATH=/images/bench/1/filesystem.squashfs

cat >"$TMP/config.yml" <<EOF
# written by bench/http.sh
bootp-registry:
  interface: lbhb${TAG}a
  server-address: $SRV
  subnet: $NET.0/24
  routers: [$SRV]
  domain-name-servers: [$SRV]
  tftp-root: $TMP/tftp
  images-dir: $DATA/images
  ssh-authorized-keys-dir: $TMP/keys
  http-listen: "$SRV:8080"
  admin-socket: $TMP/admin.sock
hosts:
  bench-client:
    hardware-ethernet: "52:54:00:84:00:02"
    fixed-address: "$CLI"
    image-name: bench/1
    ssh-authorized-keys: default
EOF

# nginx with its own prefix, temp paths and logs; one worker, as ours has one
# CPU to run on.
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_timeout 65;
	default_type application/octet-stream;
	client_body_temp_path $TMP/nginx/body;
	proxy_temp_path $TMP/nginx/proxy;
	fastcgi_temp_path $TMP/nginx/fastcgi;
	uwsgi_temp_path $TMP/nginx/uwsgi;
	scgi_temp_path $TMP/nginx/scgi;
	server {
		listen $SRV:8081;
		root $DATA;
	}
}
EOF

# `ip netns exec` and taskset exec the server: $! is the server's own PID.
ip netns exec "$NS_S" taskset -c "$SERVER_CPU" "$BIN" serve -config "$TMP/config.yml" >"$TMP/livebootp.log" 2>&1 &
PIDS+=($!)
declare -A SPIDS=([livebootp]=$!)
ip netns exec "$NS_S" taskset -c "$SERVER_CPU" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" >"$TMP/nginx/stdout.log" 2>&1 &
PIDS+=($!)
SPIDS[nginx]=$!

wait_up() { # name url
	for _ in $(seq 100); do
		if ip netns exec "$NS_C" curl -sf -o /dev/null -r 0-0 "$2"; then return 0; fi
		sleep 0.1
	done
	echo "--- $1 log:" >&2
	tail -n 5 "$TMP/livebootp.log" "$TMP/nginx/error.log" >&2 2>/dev/null || true
	die "$1 does not answer at $2"
}
declare -A URL=([livebootp]="http://$SRV:8080$URLPATH" [nginx]="http://$SRV:8081$URLPATH")
wait_up livebootp "${URL[livebootp]}"
wait_up nginx "${URL[nginx]}"
SPIDS[nginx]="${SPIDS[nginx]} $(pgrep -P "${SPIDS[nginx]}" | tr '\n' ' ')" # master and worker
TICK=$(getconf CLK_TCK)

# cputicks PID...: user+sys clock ticks of these processes, all threads.
cputicks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo "$t"; }

# run SERVER CLIENTS: prints "MiB/s CPU-ms-per-GiB" of one run; fails if any
# fetch came up short.
run() {
	local url=${URL[$1]} n=$2 fetches=1 args=() t0 t1
	[ "$n" = 1 ] && fetches=$SINGLE_FETCHES
	for _ in $(seq "$fetches"); do args+=(-o /dev/null "$url"); done
	# shellcheck disable=SC2086 # SPIDS holds a list of PIDs
	t0=$(cputicks ${SPIDS[$1]})
	ip netns exec "$NS_C" taskset -c "$CLIENT_CPU" bash -c '
		n=$1; shift
		start=$(date +%s%N)
		for i in $(seq "$n"); do curl -sS --fail -w "%{size_download}\n" "$@" & done >"$0"
		wait
		end=$(date +%s%N)
		echo $(( end - start ))' "$TMP/sizes" "$n" "${args[@]}" >"$TMP/ns"
	# shellcheck disable=SC2086
	t1=$(cputicks ${SPIDS[$1]})
	local want=$((SIZE_MIB << 20)) got count
	count=$(grep -c "^$want\$" "$TMP/sizes" || true)
	[ "$count" = $((n * fetches)) ] || die "$url with $n clients: only $count of $((n * fetches)) fetches were complete"
	got=$((n * fetches * SIZE_MIB))
	awk -v mib="$got" -v ns="$(cat "$TMP/ns")" -v ticks=$((t1 - t0)) -v hz="$TICK" \
		'BEGIN { printf "%.0f %.0f\n", mib / (ns / 1e9), ticks / hz * 1000 / (mib / 1024) }'
}

median() { tr ' ' '\n' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "HTTP $SIZE_MIB MiB over veth (TCP $CC), server on CPU $SERVER_CPU, curl on CPU $CLIENT_CPU, median of $RUNS runs ($BIN vs $(nginx -v 2>&1 | sed 's/.*: //'))"
printf '%-8s %-10s %-26s %8s %14s\n' clients server "runs (MiB/s)" median "CPU ms/GiB"
for n in $CLIENTS; do
	declare -A res=() cpu=() med=() cmed=()
	for _ in $(seq "$RUNS"); do
		for s in livebootp nginx; do # alternate so drift hits both
			out=$(run "$s" "$n")
			read -r mibs ms <<<"$out"
			res[$s]="${res[$s]:-} $mibs"
			cpu[$s]="${cpu[$s]:-} $ms"
		done
	done
	for s in livebootp nginx; do
		med[$s]=$(echo ${res[$s]} | median)
		cmed[$s]=$(echo ${cpu[$s]} | median)
		printf '%-8s %-10s %-26s %8s %14s\n' "$n" "$s" "$(echo ${res[$s]})" "${med[$s]}" "${cmed[$s]}"
	done
	awk -v a="${med[livebootp]}" -v b="${med[nginx]}" -v n="$n" -v ca="${cmed[livebootp]}" -v cb="${cmed[nginx]}" \
		'BEGIN { printf "%-8s ratio livebootp/nginx: %.2f MiB/s (target >= 0.95), %.2f CPU per byte\n", n, a / b, ca / cb }'
	unset res cpu med cmed
done
