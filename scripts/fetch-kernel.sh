#!/usr/bin/env bash
# Fetch the Debian kernel the tests and the demo boot: the package that
# linux-image-<arch> depends on, unpacked with its modules and a modules.dep
# (dpkg -x leaves none, so depmod -b builds it).
# For another architecture than the machine's (arm64 for the appliance), it
# enables that architecture in apt and also unpacks that architecture's
# systemd-boot EFI binary into DIR.
# Usage: scripts/fetch-kernel.sh [DIR] [ARCH]   (default build/kernel, amd64)
# Prints the kernel path on success. Re-running with the kernel present is a no-op.
set -euo pipefail
dir=${1:-build/kernel}
arch=${2:-amd64}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ -f "$dir/vmlinuz" ] && [ -f "$dir/version" ] && [ -f "$dir/lib/modules/$(cat "$dir/version")/modules.dep" ]; then
	echo "$dir/vmlinuz"
	exit 0
fi
meta=linux-image-$arch
if [ "$arch" != "$(dpkg --print-architecture)" ] && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
	dpkg --add-architecture "$arch"
	apt-get update -qq
fi
pkg=$(apt-cache depends "$meta:$arch" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
	echo "fetch-kernel: cannot find the kernel package $meta depends on; run 'apt-get update' first" >&2
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download "$pkg:$arch" >/dev/null 2>&1 || apt-get download "$pkg" >/dev/null)
dpkg -x "$tmp"/*.deb "$tmp/root"
version=$(ls "$tmp/root/lib/modules" | head -n1)
rm -rf "$dir/lib"
mkdir -p "$dir/lib/modules"
mv "$tmp/root/lib/modules/$version" "$dir/lib/modules/"
cp "$tmp/root/boot/vmlinuz-$version" "$dir/vmlinuz"
cp "$tmp/root/boot/config-$version" "$dir/config" 2>/dev/null || true
depmod -b "$dir" "$version"
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
	# The appliance's UEFI loader for that architecture (Debian's
	# systemd-boot-efi of that architecture, unpacked, not installed).
	(cd "$tmp" && apt-get download "systemd-boot-efi:$arch" >/dev/null 2>&1) &&
		dpkg -x "$tmp"/systemd-boot-efi_*.deb "$tmp/sdboot" &&
		cp "$tmp"/sdboot/usr/lib/systemd/boot/efi/systemd-boot*.efi "$dir/" || echo "fetch-kernel: no systemd-boot-efi:$arch (UEFI boot of the arm64 appliance needs it)" >&2
fi
echo "$version" > "$dir/version"
echo "$dir/vmlinuz"
