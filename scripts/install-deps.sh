#!/usr/bin/env bash
# Install the Debian packages the build, the tests, the demo and the
# benchmarks use. Safe to run again: it installs only what is missing.
set -euo pipefail
pkgs=(
	qemu-system-x86 qemu-utils ovmf        # VM tests and the demo (TCG)
	ipxe ipxe-qemu pxelinux syslinux-common # boot loaders served, and qemu's iPXE ROM
	iproute2 nftables kmod cpio zstd e2fsprogs # namespaces, loss injection, modules, initrds, disk checks
	busybox-static atftp curl               # real DHCP/TFTP/HTTP clients in tests
	squashfs-tools cryptsetup-bin mmdebstrap openssh-client # image builds, the Debian demo image
	systemd-boot-efi dosfstools mtools gdisk # the appliance image (systemd-boot on its ESP) and its checks
	qemu-system-arm qemu-efi-aarch64     # the arm64 appliance under AAVMF
	tftpd-hpa dnsmasq-base kea-dhcp4-server kea-admin nginx-light # benchmark peers (perfdhcp is in kea-admin)
)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}; run as root (sudo make deps)" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The package starts a TFTP daemon on port 69; the benchmarks start their own.
systemctl disable --now tftpd-hpa >/dev/null 2>&1 || service tftpd-hpa stop >/dev/null 2>&1 || true
