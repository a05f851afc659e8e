#!/usr/bin/env bash
# images/debian/build.sh OUT_DIR — the seed's own example as a real image:
# a Debian bookworm root filesystem with systemd, the Debian kernel,
# openssh-server and nginx, built by `livebootp image build` into
# OUT_DIR/images/nginx-web-server/test with the VOLUMEs of the seed's
# Dockerfile (/etc/nginx, /var/www) kept on persistent storage.
#
# The root filesystem comes from Debian's packages (mmdebstrap, Debian
# package mmdebstrap) through the mirror this machine's apt uses; the
# tarball is cached under build/debian/ and rebuilt only when this script
# changes. The image itself is rebuilt only when the rootfs, livebootp or
# livebootp-init changed. Nothing outside OUT_DIR and the cache is written.
#
# Environment: LIVEBOOTP (default bin/livebootp), LIVEBOOTP_INIT (default
# bin/livebootp-init), LIVEBOOTP_DEBIAN_CACHE (default build/debian),
# DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR (default: from apt's sources),
# IMAGE_NAME (nginx-web-server), IMAGE_VERSION (test).
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 OUT_DIR   (the image goes to OUT_DIR/images/nginx-web-server/test)" >&2
	exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$1
name=${IMAGE_NAME:-nginx-web-server}
version=${IMAGE_VERSION:-test}
cache=${LIVEBOOTP_DEBIAN_CACHE:-$repo/build/debian}
lb=${LIVEBOOTP:-$repo/bin/livebootp}
init=${LIVEBOOTP_INIT:-$repo/bin/livebootp-init}
suite=bookworm

die() {
	echo "images/debian: $*" >&2
	exit 1
}
[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap makes device nodes and chowns; image build unpacks them)"
command -v mmdebstrap >/dev/null || die "needs mmdebstrap: apt-get install mmdebstrap"
[ -x "$lb" ] || die "no livebootp at $lb: run 'make build' or set LIVEBOOTP"
[ -x "$init" ] || die "no livebootp-init at $init: run 'CGO_ENABLED=0 go build -o bin/livebootp-init ./cmds/livebootp-init' or set LIVEBOOTP_INIT"

# The mirror apt uses here (one-line or deb822 sources), so the build goes
# where this machine is allowed to go.
apt_uri() { # $1: regexp the URI path must end with
	cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -v '^[[:space:]]*#' | grep -oE "https?://[^[:space:]]*$1/?([[:space:]]|$)" | head -n1 | tr -d '[:space:]' || true
}
mirror=${DEBIAN_MIRROR:-$(apt_uri '/debian')}
mirror=${mirror:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-$(apt_uri '/debian-security')}
security=${security:-http://deb.debian.org/debian-security}

mkdir -p "$cache"
tarball=$cache/rootfs-$suite.tar
key=$(sha256sum "$0" | cut -d' ' -f1)
if [ ! -f "$tarball" ] || [ "$(cat "$tarball.key" 2>/dev/null)" != "$key" ]; then
	echo "images/debian: mmdebstrap $suite from $mirror (about a minute) -> $tarball" >&2
	rm -f "$tarball" "$tarball.key" "$tarball.tmp"
	# Essential hook: update-initramfs is diverted to true while packages
	# install (a livebootp target never boots the distribution's initramfs:
	# the registry serves the initrd `image build` makes), and restored in
	# the customize hook, so the image's own tools stay intact.
	# Customize hook: the SSH host keys the openssh-server postinst made
	# are removed (livebootp-init installs each host's own, kept on its
	# persistent storage); /etc/machine-id is left empty so every host makes
	# its own at boot without being a "first boot" (no systemd-firstboot
	# prompt on the console); ssh and nginx are enabled; nothing that
	# manages the NIC is installed (no ifupdown, systemd-networkd stays
	# off), so the address livebootp-init configured stays as it is; and
	# udev keeps the kernel's NIC name (99-default.link masked): the NIC is
	# up with its address before systemd starts, so a rename to enp0s1
	# only fails with "device is renaming" noise, or, where the kernel
	# allows renaming a running NIC, changes the name under the address.
	# Off as well, because a live image has no use for them and under TCG
	# they compete with sshd and nginx for the one CPU at boot (measured:
	# e2scrub_reap 26 s, getty-static 9 s): e2scrub (reaps LVM snapshots;
	# no LVM here), apt's daily timers (package lists would land in RAM and
	# vanish at reboot), getty-static (gettys on tty2-6 when logind is
	# missing; tty1 and the serial console keep theirs).
	# Merged /usr is set up by mmdebstrap's hook rather than by the usrmerge
	# package, which would pull in perl (55 MB the image has no use for).
	# Kernel modules: the ones a headless server in a rack never loads are
	# left out by dpkg, so the kernel's postinst depmod indexes only what is
	# there (no entry points at a missing file): sound, the big desktop GPU
	# drivers (amdgpu, nouveau, i915, radeon; server BMC consoles such as
	# ast and mgag200 stay), TV and camera drivers (media, but cec and rc
	# that display drivers use), Wi-Fi, Bluetooth, industrial sensors (iio),
	# staging, comedi, ISDN, USB gadget side, SoundWire, batman-adv. That is
	# 155 of the kernel's 390 MB of modules; with perl and /boot's kernel
	# (below) the squashfs every first boot downloads and hashes goes from
	# 159 to 101 MB.
	mods=/lib/modules/*/kernel
	excl=()
	for d in sound drivers/gpu/drm/amd drivers/gpu/drm/nouveau drivers/gpu/drm/i915 drivers/gpu/drm/radeon \
		drivers/media/usb drivers/media/pci drivers/media/dvb-frontends drivers/media/dvb-core drivers/media/tuners \
		drivers/media/i2c drivers/media/platform drivers/media/radio drivers/media/common drivers/media/test-drivers \
		drivers/media/firewire drivers/media/spi drivers/media/mmc drivers/media/v4l2-core drivers/media/mc \
		drivers/net/wireless net/wireless net/mac80211 drivers/bluetooth net/bluetooth drivers/iio drivers/staging \
		drivers/comedi drivers/isdn drivers/usb/gadget drivers/soundwire net/batman-adv; do
		# Both spellings: bookworm's packages ship /lib/modules, later ones /usr/lib/modules.
		excl+=("--dpkgopt=path-exclude=$mods/$d/*" "--dpkgopt=path-exclude=/usr$mods/$d/*")
	done
	mmdebstrap --variant=minbase --mode=root --format=tar \
		--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
		--include=systemd-sysv,udev,linux-image-amd64,openssh-server,nginx,iproute2,e2fsprogs,kmod,procps \
		"${excl[@]}" \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs' \
		--essential-hook='ln -sf /bin/true "$1/usr/sbin/update-initramfs"' \
		--customize-hook='rm -f "$1/usr/sbin/update-initramfs"' \
		--customize-hook='chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs' \
		--customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
		--customize-hook=': > "$1/etc/machine-id"; rm -f "$1/var/lib/dbus/machine-id"' \
		--customize-hook='chroot "$1" systemctl enable ssh.service nginx.service' \
		--customize-hook='chroot "$1" systemctl mask systemd-firstboot.service getty-static.service' \
		--customize-hook='chroot "$1" systemctl disable e2scrub_reap.service e2scrub_all.timer apt-daily.timer apt-daily-upgrade.timer' \
		--customize-hook='if [ -e "$1/lib/systemd/system/networking.service" ]; then chroot "$1" systemctl mask networking.service; fi' \
		--customize-hook='mkdir -p "$1/etc/systemd/network" && ln -sf /dev/null "$1/etc/systemd/network/99-default.link"' \
		"$suite" "$tarball.tmp" \
		"deb $mirror $suite main" \
		"deb $mirror $suite-updates main" \
		"deb $security $suite-security main" </dev/null
	mv "$tarball.tmp" "$tarball"
	echo "$key" >"$tarball.key"
fi

# The image: rebuilt when the rootfs or one of the two programs changed.
dir=$out/images/$name/$version
stamp=$out/images/$name/.$version.inputs
inputs=$(printf '%s\n' "$key" "$(sha256sum "$lb" | cut -d' ' -f1)" "$(sha256sum "$init" | cut -d' ' -f1)" \
	"$(stat -c %s.%Y "$tarball")")
if [ -f "$dir/manifest.json" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
	echo "images/debian: $dir is up to date" >&2
	exit 0
fi
mkdir -p "$out"
rm -f "$stamp"
# The squashfs leaves out /boot's kernel as well as the distribution's
# initramfs: the registry serves the kernel image build copies out, and
# every first boot would download and hash its 8 MB for nothing.
"$lb" image build --name "$name" --version "$version" --from "$tarball" --out "$out" --init "$init" \
	--volume /etc/nginx,/var/www --exclude 'boot/initrd.img*,boot/vmlinuz*' --force -q
echo "$inputs" >"$stamp"
