#!/bin/bash
# storm-client.sh MODE SERVER BASEURL IMAGE DIR — one simulated machine of
# the boot storm (storm_test.go), run inside its own network namespace with
# its MAC on eth0. MODE "boot" does what a PXE-booting machine does: DHCP
# (busybox udhcpc), its loader over TFTP (atftp), then kernel, initrd and
# squashfs of IMAGE over HTTP (curl) from BASEURL. MODE "http" does only the
# three HTTP fetches, from a machine that already has its address. DIR is
# scratch space for the TFTP download.
#
# It prints one line per step, "OK STEP START END DETAIL" (times in
# microseconds since the epoch; DETAIL is the leased address or the sha256
# of what arrived), or "FAIL STEP REASON" and stops at the first failure.
# Every step is bounded in time; the caller bounds the whole.
#
# udhcpc runs this same file as its event script (first argument "bound").
set -uo pipefail
export LC_ALL=C

case ${1:-} in
bound | renew)
	# shellcheck disable=SC2154 # udhcpc sets ip, mask, interface
	ip addr add "$ip/$mask" dev "$interface" && echo "LEASE $ip"
	exit
	;;
deconfig | leasefail | nak) exit 0 ;;
esac

mode=$1 server=$2 base=$3 image=$4 dir=$5
now() { echo "${EPOCHREALTIME/./}"; }
fail() { echo "FAIL $1 $2"; exit 1; }

if [ "$mode" = boot ]; then
	t0=$(now)
	# Up to 30 DISCOVERs 2 s apart, as a PXE ROM retries: the replies
	# to clients without an address are broadcasts, copied to every
	# namespace, and veth drops copies when the HTTP flood fills the
	# kernel's backlog (counted by the test).
	out=$(timeout 90 busybox udhcpc -i eth0 -f -q -n -t 30 -T 2 -s "$0" 2>&1) || fail dhcp "udhcpc: $(echo "$out" | tail -n 1)"
	lease=$(echo "$out" | sed -n 's/^LEASE //p')
	[ -n "$lease" ] || fail dhcp "no lease: $(echo "$out" | tail -n 1)"
	echo "OK dhcp $t0 $(now) $lease"

	t0=$(now)
	out=$(timeout 60 atftp --option "blksize 1468" -g -r undionly.kpxe -l "$dir/loader" "$server" 2>&1) ||
		fail tftp "atftp: $(echo "$out" | tail -n 1)"
	echo "OK tftp $t0 $(now) $(sha256sum <"$dir/loader" | cut -d' ' -f1)"
	rm -f "$dir/loader"
fi

for f in vmlinuz initrd.img filesystem.squashfs; do
	t0=$(now)
	sum=$(curl -sS --fail --connect-timeout 10 --max-time 180 "$base/images/$image/$f" | sha256sum) ||
		fail "$f" "curl failed"
	echo "OK $f $t0 $(now) ${sum%% *}"
done
