#!/bin/bash
# bench/tftp.sh — TFTP throughput of the livebootp registry against tftpd-hpa and dnsmasq.
#
# usage: bench/tftp.sh [path/to/livebootp]        (default: bin/livebootp; needs root)
#        bench/tftp.sh --harness                  (our tftp.Server alone, via its test binary)
#
# Two network namespaces joined by a veth pair (10.82.N.1 server, 10.82.N.2 client); a
# SIZE_MIB file (default 64) fetched with atftp. Server and client are pinned together to one
# core (CPU, default 1) as a PXE client and its server would compete on a small appliance;
# the delay relay (internal/udprelay, DELAY each way, default 100us) runs on another core
# (RELAY_CPU, default 0; DELAYED=0 skips these runs) and gives the link a LAN-like round trip, where lockstep TFTP is
# bound by round trips and windowsize pays off. RUNS (default 3) runs each; the median counts.
# Prints MiB/s per case and the ratios the issue asks for. Cleans up by PID and namespace name.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

BIN=${1:-bin/livebootp}
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-64}
DELAY=${DELAY:-100us}
CPU=${CPU:-1}
RELAY_CPU=${RELAY_CPU:-0}
DELAYED=${DELAYED:-1} # 0: skip the runs through the relay (quick comparison)
REPO=$(cd "$(dirname "$0")/.." && pwd)

need_root "network namespaces"
need_tools "apt-get install iproute2 atftp tftpd-hpa dnsmasq-base util-linux; Go for the relay" ip atftp in.tftpd dnsmasq taskset go
if [ "$BIN" != --harness ]; then
	[ -x "$BIN" ] || die "$BIN is not an executable (run make, or give the livebootp binary's path, or --harness)"
	BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
fi

TAG=$$
NET=10.82.$((200 + TAG % 50))
SRV=$NET.1
CLI=$NET.2
NS_S=lbtftp-s-$TAG
NS_C=lbtftp-c-$TAG
workdir lbtftp-bench
chmod 755 "$WORK" # tftpd-hpa drops to user tftp and must reach the root

# --- network ---------------------------------------------------------------------------------
netns_add "$NS_S" "$NS_C"
veth_pair "$NS_S" "lbs$TAG" "$SRV/24" "$NS_C" "lbc$TAG" "$CLI/24"

# --- content and tools -----------------------------------------------------------------------
mkdir -p "$WORK/root" "$WORK/images" "$WORK/keys" "$WORK/etc"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$WORK/root/big"
echo ready >"$WORK/root/ready"
chmod 644 "$WORK/root/big" "$WORK/root/ready"
SUM=$(sha256sum <"$WORK/root/big" | cut -d' ' -f1)
(cd "$REPO" && go build -o "$WORK/udprelay" ./internal/udprelay/cmd/udprelay)
if [ "$BIN" = --harness ]; then
	(cd "$REPO" && go test -c -o "$WORK/tftp.test" ./bootp/tftp)
fi
cat >"$WORK/config.yml" <<EOF
bootp-registry:
  interface: lbs$TAG
  server-address: $SRV
  subnet: $NET.0/24
  config-dir: $WORK/etc
  tftp-root: $WORK/root
  images-dir: $WORK/images
  ssh-authorized-keys-dir: $WORK/keys
  tftp-listen: $SRV:69
  dhcp-listen: $SRV:1067 # not measured here; kept off the real ports
  http-listen: $SRV:1080
  admin-socket: $WORK/admin.sock
  router-advertisements: false
hosts: {}
EOF

# --- servers: each on its own address, port 69, all running at once -----------------------------
# Runs are interleaved (ours, tftpd-hpa, dnsmasq, ours, ...) so load from elsewhere on the machine
# drifts into all three alike instead of into whichever ran last.
declare -A ADDR=([ours]=$SRV [tftpd-hpa]=$NET.4 [dnsmasq]=$NET.5)
declare -A RELAY_PORT=([ours]=6969 [tftpd-hpa]=6970 [dnsmasq]=6971)
ip -n "$NS_S" addr add "$NET.4/24" dev "lbs$TAG"
ip -n "$NS_S" addr add "$NET.5/24" dev "lbs$TAG"

start_servers() {
	if [ "$BIN" = --harness ]; then
		TFTP_HARNESS_ROOT=$WORK/root TFTP_HARNESS_LISTEN=$SRV:69 \
			ip netns exec "$NS_S" taskset -c "$CPU" "$WORK/tftp.test" -test.run "^TestServeHarness$" >"$WORK/ours.log" 2>&1 &
	else
		ip netns exec "$NS_S" taskset -c "$CPU" "$BIN" serve -config "$WORK/config.yml" >"$WORK/ours.log" 2>&1 &
	fi
	PIDS+=($!)
	ip netns exec "$NS_S" taskset -c "$CPU" in.tftpd -L -s "$WORK/root" -a "${ADDR[tftpd-hpa]}:69" >"$WORK/hpa.log" 2>&1 &
	PIDS+=($!)
	ip netns exec "$NS_S" taskset -c "$CPU" dnsmasq -k --conf-file=/dev/null --port=0 --enable-tftp \
		--tftp-root="$WORK/root" --listen-address="${ADDR[dnsmasq]}" --bind-interfaces --user=root \
		--pid-file="$WORK/dnsmasq.pid" --log-facility="$WORK/dnsmasq.log" &
	PIDS+=($!)
	local name
	for name in ours tftpd-hpa dnsmasq; do
		ip netns exec "$NS_C" taskset -c "$RELAY_CPU" "$WORK/udprelay" -listen "$CLI:${RELAY_PORT[$name]}" \
			-target "${ADDR[$name]}:69" -delay "$DELAY" &
		PIDS+=($!)
		# Wait (bounded) until it answers.
		local ok=
		for _ in $(seq 50); do
			if ip netns exec "$NS_C" timeout 2 atftp --tftp-timeout 1 -g -r ready -l /dev/null "${ADDR[$name]}" 69 >/dev/null 2>&1; then
				ok=1
				break
			fi
			sleep 0.2
		done
		[ -n "$ok" ] || die "$name did not serve ${ADDR[$name]}:69; logs in $WORK"
	done
}

# fetch HOST PORT BLKSIZE WINDOW → prints MiB/s of one run (content checked)
fetch() {
	local host=$1 port=$2 bs=$3 win=$4 opts=(--option "blksize $bs" --option "tsize enable")
	if [ "$win" -gt 1 ]; then opts+=(--option "windowsize $win"); fi
	rm -f "$WORK/out"
	local t0 t1
	t0=$(date +%s%N)
	ip netns exec "$NS_C" taskset -c "$CPU" timeout 600 atftp --tftp-timeout 1 "${opts[@]}" -g -r big -l "$WORK/out" "$host" "$port" >/dev/null 2>&1 ||
		{ echo "fail"; return; }
	t1=$(date +%s%N)
	if [ "$(sha256sum <"$WORK/out" | cut -d' ' -f1)" != "$SUM" ]; then
		echo "corrupt"
		return
	fi
	awk -v b="$((SIZE_MIB << 20))" -v ns="$((t1 - t0))" 'BEGIN { printf "%.1f", b / 1048576 / (ns / 1e9) }'
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "n/a") }'; }
label() { if [ "$1" = 1 ]; then echo delay; else echo no-delay; fi; }

declare -A RESULT
measure() { # bs win delay(0|1) servers...
	local bs=$1 win=$2 d=$3 name r
	shift 3
	declare -A runs=()
	for _ in $(seq "$RUNS"); do
		for name in "$@"; do
			if [ "$d" = 1 ]; then
				r=$(fetch "$CLI" "${RELAY_PORT[$name]}" "$bs" "$win")
			else
				r=$(fetch "${ADDR[$name]}" 69 "$bs" "$win")
			fi
			runs[$name]+="$r "
		done
	done
	for name in "$@"; do
		# shellcheck disable=SC2086 # word splitting wanted
		RESULT[$name,$bs,$win,$d]=$(median ${runs[$name]})
		printf '%-10s blksize %-5s window %-3s %-9s %8s MiB/s   (runs: %s)\n' "$name" "$bs" "$win" "$(label "$d")" \
			"${RESULT[$name,$bs,$win,$d]}" "${runs[$name]% }"
	done
}

echo "TFTP bench: ${SIZE_MIB} MiB, $RUNS runs (median), server+client on CPU $CPU, relay delay $DELAY each way on CPU $RELAY_CPU"
echo "ours: $BIN"
start_servers
for d in 0 $([ "$DELAYED" = 1 ] && echo 1); do
	for bs in 512 1468; do
		measure "$bs" 1 "$d" ours tftpd-hpa dnsmasq
	done
	for win in 4 16 64; do
		measure 1468 "$win" "$d" ours
	done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
echo "ratios (ours / peer, same blksize, lockstep):"
for d in 0 $([ "$DELAYED" = 1 ] && echo 1); do
	for bs in 512 1468; do
		o=${RESULT[ours,$bs,1,$d]:-}
		printf '  %-9s blksize %-5s vs tftpd-hpa %sx   vs dnsmasq %sx\n' "$(label "$d")" "$bs" \
			"$(ratio "$o" "${RESULT[tftpd-hpa,$bs,1,$d]:-}")" "$(ratio "$o" "${RESULT[dnsmasq,$bs,1,$d]:-}")"
	done
done
echo "windowsize (ours, blksize 1468) / ours lockstep:"
for d in 0 $([ "$DELAYED" = 1 ] && echo 1); do
	for win in 4 16 64; do
		printf '  %-9s windowsize %-3s %sx\n' "$(label "$d")" "$win" \
			"$(ratio "${RESULT[ours,1468,$win,$d]:-}" "${RESULT[ours,1468,1,$d]:-}")"
	done
done
