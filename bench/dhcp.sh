#!/bin/bash
# DHCP benchmark: DORA exchanges per second, loss and latency of livebootp
# against ISC Kea (kea-dhcp4) and dnsmasq, on the same veth pair between two
# network namespaces, with the same 1000 reserved hosts. perfdhcp (Debian's
# kea packages) plays a relay agent (giaddr set, replies to giaddr:67) and
# steps its rate up until the server saturates. The server runs on core 0,
# perfdhcp on core 1.
#
#   sudo bench/dhcp.sh
#
# Each rate step runs against every server in turn, so background load on
# the machine falls on all of them alike; still, run it on a quiet machine.
#
# Settings (environment):
#   SERVERS="livebootp kea dnsmasq"  which servers to measure
#   RATES="1000 2000 ..."            DORA/s steps (stops after saturation)
#   STEP_SECONDS=5                   length of each step
#   ZERO_LOSS=0.01                   loss (%) still counted as "zero loss"
#   LIVEBOOTP=path                   livebootp binary (default: built from this tree)
#   NICE=-10                         nice level of servers and perfdhcp alike, so
#                                    background work on the machine skews less
#   KEEP=1                           keep the work directory (logs, perfdhcp output)
#
# Uses only the namespaces it creates (lbdhcp-bench-PID-*) and 10.83.0.0/16
# inside them.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

SERVERS=${SERVERS:-"livebootp kea dnsmasq"}
RATES=${RATES:-"1000 2000 4000 6000 8000 10000 12000 14000 16000 18000 20000 24000 28000 32000"}
STEP_SECONDS=${STEP_SECONDS:-5}
ZERO_LOSS=${ZERO_LOSS:-0.01}
NICE=${NICE:--10}
HOSTS=1000
SRV_ADDR=10.83.0.1
CLI_ADDR=10.83.0.2

need_root "network namespaces, port 67"
need_tools "Debian: iproute2 util-linux kea-dhcp4-server kea-admin dnsmasq-base golang" ip nice taskset perfdhcp kea-dhcp4 dnsmasq ss go awk sort
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs: server on core 0, perfdhcp on core 1"

repo=$(cd "$(dirname "$0")/.." && pwd)
workdir lbdhcp-bench
work=$WORK
srv_ns=lbdhcp-bench-$$-srv
cli_ns=lbdhcp-bench-$$-cli
srv_if=lbb$$s
cli_if=lbb$$c
server_pid=

load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load" 'BEGIN{exit !(l > 0.5)}'; then
	echo "warning: load average is $load: other work on this machine will skew the numbers" >&2
fi

# --- network: two namespaces, one veth pair -------------------------------
netns_add "$srv_ns" "$cli_ns"
veth_pair "$srv_ns" "$srv_if" $SRV_ADDR/16 "$cli_ns" "$cli_if" $CLI_ADDR/16

# --- the same 1000 hosts for every server ----------------------------------
: >"$work/hosts.csv"
: >"$work/macs"
for ((i = 0; i < HOSTS; i++)); do
	mac=$(printf "02:83:00:00:%02x:%02x" $((i / 256)) $((i % 256)))
	printf "%s,10.83.%d.%d,h%04d\n" "$mac" $((4 + i / 200)) $((10 + i % 200)) "$i" >>"$work/hosts.csv"
	echo "$mac" >>"$work/macs"
done

mkdir -p "$work/tftp" "$work/images/bench/v1" "$work/keys" "$work/run"
touch "$work/tftp/undionly.kpxe" "$work/tftp/ipxe.efi"
for f in vmlinuz initrd.img filesystem.squashfs; do touch "$work/images/bench/v1/$f"; done

{
	cat <<EOF
bootp-registry:
  interface: $srv_if
  server-address: $SRV_ADDR
  subnet: 10.83.0.0/16
  routers: [10.83.0.254]
  domain-name: bench.example
  domain-name-servers: [10.83.0.53]
  lease-time: 1h
  tftp-root: $work/tftp
  images-dir: $work/images
  ssh-authorized-keys-dir: $work/keys
  tftp-listen: 127.0.0.1:69      # inside the bench namespace; unused
  http-listen: 127.0.0.1:8080
  http-url: http://$SRV_ADDR
  admin-socket: "off"
  router-advertisements: false
hosts:
EOF
	while IFS=, read -r mac ip name; do
		printf '  %s:\n    hardware-ethernet: "%s"\n    fixed-address: %s\n    image-name: bench/v1\n' "$name" "$mac" "$ip"
	done <"$work/hosts.csv"
} >"$work/livebootp.yml"

{
	cat <<EOF
{"Dhcp4": {
  "interfaces-config": {"interfaces": ["$srv_if"], "dhcp-socket-type": "udp"},
  "lease-database": {"type": "memfile", "persist": true, "name": "$work/kea-leases4.csv", "lfc-interval": 0},
  "valid-lifetime": 3600,
  "host-reservation-identifiers": ["hw-address"],
  "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "$work/kea.log"}], "severity": "INFO"}],
  "subnet4": [{"id": 1, "subnet": "10.83.0.0/16",
    "option-data": [{"name": "routers", "data": "10.83.0.254"}, {"name": "domain-name-servers", "data": "10.83.0.53"},
                    {"name": "domain-name", "data": "bench.example"}],
    "reservations": [
EOF
	sep=
	while IFS=, read -r mac ip name; do
		printf '%s      {"hw-address": "%s", "ip-address": "%s", "hostname": "%s"}' "$sep" "$mac" "$ip" "$name"
		sep=$',\n'
	done <"$work/hosts.csv"
	printf '\n    ]}]\n}}\n'
} >"$work/kea.json"

# --- the livebootp binary ---------------------------------------------------
livebootp_cmd=()
if [[ " $SERVERS " == *" livebootp "* ]]; then
	bin=${LIVEBOOTP:-}
	if [ -z "$bin" ]; then
		bin=$work/livebootp
		(cd "$repo" && go build -o "$bin" ./cmds/livebootp) || bin=
	fi
	if [ -n "$bin" ] && ip netns exec "$srv_ns" "$bin" check -config "$work/livebootp.yml" >"$work/check.out" 2>&1; then
		livebootp_cmd=("$bin" serve -config "$work/livebootp.yml")
	else
		# The registry does not build or does not take this config: measure
		# the DHCP handler alone, as the registry would run it.
		echo "warning: livebootp serve unavailable (see below); measuring bootp/dhcp through its harness" >&2
		cat "$work/check.out" >&2 2>/dev/null || true
		(cd "$repo" && go build -o "$work/dhcpserve" ./bootp/dhcp/internal/dhcpserve)
		livebootp_cmd=("$work/dhcpserve" -iface "$srv_if" -server $SRV_ADDR -subnet 10.83.0.0/16 -router 10.83.0.254
			-dns 10.83.0.53 -hosts "$work/hosts.csv" -tftp-root "$work/tftp")
	fi
fi

start_server() { # name
	local log=$work/$1.log
	case $1 in
	livebootp)
		ip netns exec "$srv_ns" nice -n "$NICE" taskset -c 0 "${livebootp_cmd[@]}" >"$log" 2>&1 &
		;;
	kea)
		rm -f "$work"/kea-leases4.csv*
		KEA_PIDFILE_DIR=$work/run KEA_LOCKFILE_DIR=$work/run \
			ip netns exec "$srv_ns" nice -n "$NICE" taskset -c 0 kea-dhcp4 -c "$work/kea.json" >"$log" 2>&1 &
		;;
	dnsmasq)
		rm -f "$work/dnsmasq.leases"
		ip netns exec "$srv_ns" nice -n "$NICE" taskset -c 0 dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 \
			--interface="$srv_if" --bind-interfaces --dhcp-range=10.83.0.0,static,255.255.0.0 \
			--dhcp-option=option:router,10.83.0.254 --dhcp-option=option:dns-server,10.83.0.53 \
			--domain=bench.example --dhcp-hostsfile="$work/hosts.csv" --dhcp-leasefile="$work/dnsmasq.leases" \
			--dhcp-authoritative --log-facility="$work/dnsmasq-syslog.log" --pid-file= --user=root >"$log" 2>&1 &
		;;
	esac
	server_pid=$!
	PIDS=("$server_pid") # for cleanup, should the script stop here
	for ((t = 0; t < 100; t++)); do
		if ip netns exec "$srv_ns" ss -Hlun 'sport = :67' | grep -q .; then return 0; fi
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	tail -20 "$log" >&2
	die "$1 did not start listening on port 67; its log is above"
}

stop_server() {
	kill "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=
	PIDS=()
}

# cpu_ticks PID: user+system CPU time of a process, in clock ticks.
cpu_ticks() {
	awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# step NAME RATE: one perfdhcp run; prints
# "rate dora_per_s loss_pct cpu_us_per_dora client_cpu_pct p50_ms p99_ms".
# The server's CPU time per completed exchange is the figure background
# load disturbs least.
step() {
	local out=$work/perfdhcp-$1-$2.out t0 t1 pid c=0 c0 w0 w1
	t0=$(cpu_ticks "$server_pid")
	ip netns exec "$cli_ns" nice -n "$NICE" taskset -c 1 perfdhcp -4 -l $CLI_ADDR -r "$2" -p "$STEP_SECONDS" \
		-M "$work/macs" -R $HOSTS -W 300000 -x t $SRV_ADDR >"$out" 2>&1 &
	pid=$!
	w0=$(date +%s%N)
	# perfdhcp's own CPU (sampled until it exits): near 100% means the
	# client, not the server, sets the ceiling.
	c0=$(cpu_ticks "$pid")
	while kill -0 "$pid" 2>/dev/null; do
		c=$(cpu_ticks "$pid")
		sleep 0.1
	done
	wait "$pid" || true
	w1=$(date +%s%N)
	t1=$(cpu_ticks "$server_pid")
	awk -v rate="$2" -v secs="$STEP_SECONDS" -v ticks=$((t1 - t0)) -v cticks=$((c - c0)) -v wall=$(((w1 - w0) / 1000000)) -v hz="$(getconf CLK_TCK)" '
		/^\*\*\*Statistics for: DISCOVER-OFFER/ { sec = "DO" }
		/^\*\*\*Statistics for: REQUEST-ACK/ { sec = "RA" }
		/^sent packets:/ { if (sec == "DO") sent = $3 }
		/^received packets:/ { if (sec == "RA") acked = $3 }
		/^sent \/ received:/ { printf "%.6f\n", ($6 - $4) * 1000 > "/dev/stderr" }
		END {
			loss = sent > 0 ? 100 * (sent - acked) / sent : 100
			if (loss < 0) loss = 0
			cpu = acked > 0 ? ticks * 1e6 / hz / acked : 0
			printf "%s %.0f %.4f %.1f %.0f", rate, acked / secs, loss, cpu, 100 * cticks / hz / (wall / 1000)
		}' "$out" 2>"$out.lat"
	sort -n "$out.lat" | awk '{ v[NR] = $1 } END {
		if (NR == 0) { print " - -"; exit }
		i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
		i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
		printf " %.3f %.3f\n", v[i50], v[i99] }'
	rm -f "$out.lat"
}

# Steps are interleaved (each rate against every server in turn, each server
# started fresh for its step) so that whatever else the machine does falls
# on all servers alike.
declare -A zero max saturated short
for s in $SERVERS; do zero[$s]=0; max[$s]=0; : >"$work/rows-$s"; : >"$work/cpu-$s"; done
printf "%-10s %8s %10s %8s %9s %9s %12s %11s\n" server rate "DORA/s" "loss%" "p50 ms" "p99 ms" "cpu us/DORA" "perfdhcp %"
for r in $RATES; do
	for s in $SERVERS; do
		[ -z "${saturated[$s]:-}" ] || continue
		start_server "$s"
		sleep "${SETTLE:-0.3}"
		read -r rate dora loss cpu ccpu p50 p99 < <(step "$s" "$r")
		stop_server
		printf "%-10s %8s %10s %8s %9s %9s %12s %11s\n" "$s" "$rate" "$dora" "$loss" "$p50" "$p99" "$cpu" "$ccpu" | tee -a "$work/rows-$s"
		if awk -v l="$loss" 'BEGIN{exit !(l <= 1)}'; then echo "$cpu" >>"$work/cpu-$s"; fi
		if awk -v l="$loss" -v z="$ZERO_LOSS" 'BEGIN{exit !(l <= z)}' && ((dora > zero[$s])); then zero[$s]=$dora; fi
		if ((dora > max[$s])); then max[$s]=$dora; fi
		# Saturated: more than 10% lost or well short of the asked rate,
		# twice in a row (once may be a hiccup of the machine).
		if awk -v l="$loss" -v d="$dora" -v r="$r" 'BEGIN{exit !(l > 10 || d < 0.8 * r)}'; then
			if [ -n "${short[$s]:-}" ]; then saturated[$s]=1; fi
			short[$s]=1
		else
			short[$s]=
		fi
	done
done
for s in $SERVERS; do
	echo
	echo "== $s =="
	printf "%-10s %8s %10s %8s %9s %9s %12s %11s\n" server rate "DORA/s" "loss%" "p50 ms" "p99 ms" "cpu us/DORA" "perfdhcp %"
	cat "$work/rows-$s"
done

echo
echo "== summary (1000 reserved hosts, perfdhcp as relay, server pinned to core 0) =="
# median CPU per exchange over the steps with at most 1% loss
declare -A cpu
for s in $SERVERS; do
	cpu[$s]=$(sort -n "$work/cpu-$s" 2>/dev/null | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : 0 }')
done
printf "%-10s %16s %10s %16s\n" server "zero-loss DORA/s" "max DORA/s" "cpu us/DORA"
for s in $SERVERS; do printf "%-10s %16s %10s %16s\n" "$s" "${zero[$s]}" "${max[$s]}" "${cpu[$s]}"; done
if [[ " $SERVERS " == *" livebootp "* ]]; then
	for peer in kea dnsmasq; do
		[[ " $SERVERS " == *" $peer "* ]] || continue
		awk -v a="${zero[livebootp]}" -v b="${zero[$peer]}" -v c="${max[livebootp]}" -v d="${max[$peer]}" -v p="$peer" \
			-v e="${cpu[livebootp]}" -v f="${cpu[$peer]}" \
			'BEGIN { printf "livebootp vs %-8s zero-loss %.2fx, max %.2fx, CPU per DORA %.2fx less\n", p,
				(b > 0 ? a / b : 0), (d > 0 ? c / d : 0), (e > 0 ? f / e : 0) }'
	done
fi
