# livebootp shell library for /etc/livebootp/startup.d scripts.
#
#   . "${LIVEBOOTP_FUNCTIONS:-/usr/lib/livebootp/functions.sh}"
#
# LiveBOOTP's helpers: die error note info fetch get_cmdline_param
# is_mounted same_content add_persistent_storage (and its historical
# spelling add_pertistant_storage). POSIX sh plus `local` (dash, busybox
# ash, bash). Installed by livebootp-init on every boot; do not edit.
#
# Environment set by livebootp-init for the scripts:
#   LIVEBOOTP_PERSISTENT  mount point of persistent storage ("" when none)
#   LIVEBOOTP_CMDLINE     the kernel command line, one NAME or NAME=VALUE a line
#   LIVEBOOTP_DEBUG       1 with the `debug` kernel argument
#   LIVEBOOTP_INSECURE    1 with livebootp.insecure (fetch skips HTTPS checks)
#   LIVEBOOTP_REGISTRY LIVEBOOTP_IMAGE LIVEBOOTP_HOSTNAME LIVEBOOTP_MAC

_livebootp_say() {
	printf 'livebootp: %s: %s\n' "$1" "$2" >&2
}

# error MESSAGE: print an error and carry on.
error() { _livebootp_say ERROR "$*"; }
# note MESSAGE: print something worth noticing.
note() { _livebootp_say NOTE "$*"; }
# info MESSAGE: print progress.
info() { _livebootp_say INFO "$*"; }
# die MESSAGE: print an error and end the script with status 1.
die() {
	error "$*"
	exit 1
}

# fetch URL FILE: download URL into FILE (replaced only when the download
# succeeds). Uses curl or wget from the image.
fetch() {
	local url=$1 dst=$2 tmp k
	if [ -z "$url" ] || [ -z "$dst" ]; then
		error "usage: fetch URL FILE"
		return 2
	fi
	tmp=$dst.livebootp-tmp.$$
	if command -v curl >/dev/null 2>&1; then
		k=
		[ -n "$LIVEBOOTP_INSECURE" ] && k=-k
		curl -fsSL $k --retry 3 --connect-timeout 10 -o "$tmp" "$url"
	elif command -v wget >/dev/null 2>&1; then
		k=
		[ -n "$LIVEBOOTP_INSECURE" ] && k=--no-check-certificate
		wget -q $k -T 30 -O "$tmp" "$url"
	else
		error "fetch $url: the image has neither curl nor wget"
		return 1
	fi
	if [ $? -ne 0 ]; then
		rm -f "$tmp"
		error "fetch $url: download failed"
		return 1
	fi
	mv -f "$tmp" "$dst"
}

# get_cmdline_param NAME: print the value of kernel argument NAME (the last
# one when repeated; empty for a flag such as `debug`). Status 1 when absent.
get_cmdline_param() (
	set -f
	name=$1
	found=
	value=
	if [ -n "$LIVEBOOTP_CMDLINE" ] && [ -r "$LIVEBOOTP_CMDLINE" ]; then
		# Split by livebootp-init the way the kernel splits (quotes removed).
		while IFS= read -r w || [ -n "$w" ]; do
			case $w in
			"$name") found=1 value= ;;
			"$name"=*) found=1 value=${w#*=} ;;
			esac
		done <"$LIVEBOOTP_CMDLINE"
	else
		for w in $(cat /proc/cmdline); do
			case $w in
			"$name") found=1 value= ;;
			"$name"=*) found=1 value=${w#*=} ;;
			esac
		done
	fi
	[ -n "$found" ] || exit 1
	printf '%s\n' "$value"
)
# cmdline_param NAME: the same, LiveBOOTP's other name for it.
cmdline_param() { get_cmdline_param "$@"; }

# is_mounted DIR: status 0 when DIR is a mount point.
is_mounted() (
	d=$1
	while [ "${d%/}" != "$d" ] && [ "$d" != / ]; do d=${d%/}; done
	# /proc/mounts writes space, tab, newline and backslash in octal.
	e=$(printf '%s' "$d" | sed -e 's/\\/\\134/g' -e 's/ /\\040/g' -e 's/	/\\011/g')
	while read -r _src mp _rest; do
		[ "$mp" = "$e" ] && exit 0
	done <"${LIVEBOOTP_MOUNTS:-/proc/mounts}"
	exit 1
)

# same_content FILE1 FILE2: status 0 when both files exist with equal bytes.
same_content() {
	[ -f "$1" ] && [ -f "$2" ] || return 1
	if command -v cmp >/dev/null 2>&1; then
		cmp -s "$1" "$2"
		return
	fi
	[ "$(sha256sum <"$1")" = "$(sha256sum <"$2")" ]
}

# The directory name of a volume on persistent storage: no leading '/',
# '%' -> %25, '/' -> %2F (livebootp-init computes the same in Go).
_livebootp_escape() {
	printf '%s' "$1" | sed -e 's|//*|/|g' -e 's|^/||' -e 's|/$||' -e 's|%|%25|g' -e 's|/|%2F|g'
}

# add_persistent_storage DIR [bind|unionfs] [copy|none]: keep DIR on
# persistent storage. bind (default) mounts a directory of the persistent
# disk over DIR, filled on first use with a copy of the image's DIR (copy,
# default) or empty (none); unionfs overlays DIR with an upper layer on the
# persistent disk. Nothing happens when DIR is already a mount point (the
# image's VOLUMEs are mounted by livebootp-init before the scripts run).
add_persistent_storage() {
	local dir=$1 mode=${2:-bind} init=${3:-copy} esc base
	case $dir in
	/*) ;;
	*)
		error "usage: add_persistent_storage DIR [bind|unionfs] [copy|none] (DIR absolute; got '$dir')"
		return 2
		;;
	esac
	case /$dir/ in
	*/../* | */./*)
		error "add_persistent_storage $dir: '.' and '..' are not allowed in the path"
		return 2
		;;
	esac
	if [ -z "$LIVEBOOTP_PERSISTENT" ] || [ ! -d "$LIVEBOOTP_PERSISTENT" ]; then
		error "add_persistent_storage $dir: no persistent storage on this boot; $dir stays in RAM"
		return 1
	fi
	if is_mounted "$dir"; then
		note "add_persistent_storage $dir: already persistent (mounted)"
		return 0
	fi
	esc=$(_livebootp_escape "$dir")
	mkdir -p "$dir" || return 1
	case $mode in
	bind)
		base=$LIVEBOOTP_PERSISTENT/livebootp/volumes/$esc
		if [ ! -d "$base" ]; then
			rm -rf "$base.new"
			mkdir -p "$base.new" || return 1
			case $init in
			copy)
				if ! cp -a "$dir/." "$base.new/"; then
					rm -rf "$base.new"
					error "add_persistent_storage $dir: copy into $base failed (disk full?)"
					return 1
				fi
				;;
			none) ;;
			*)
				rm -rf "$base.new"
				error "add_persistent_storage $dir: initialisation '$init', want copy or none"
				return 2
				;;
			esac
			sync
			mv "$base.new" "$base" || return 1
		fi
		mount -o bind "$base" "$dir" || {
			error "add_persistent_storage $dir: mount -o bind $base failed"
			return 1
		}
		;;
	unionfs)
		base=$LIVEBOOTP_PERSISTENT/livebootp/overlays/$esc
		mkdir -p "$base/upper" "$base/work" || return 1
		mount -t overlay overlay -o "lowerdir=$dir,upperdir=$base/upper,workdir=$base/work" "$dir" || {
			error "add_persistent_storage $dir: overlay mount failed"
			return 1
		}
		;;
	*)
		error "add_persistent_storage $dir: format '$mode', want bind or unionfs"
		return 2
		;;
	esac
	info "persistent storage: $dir ($mode)"
}

# The spelling LiveBOOTP's scripts used.
add_pertistant_storage() { add_persistent_storage "$@"; }
