package persist

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/livebootp/livebootp/startup/mount"
	"github.com/livebootp/livebootp/startup/safefile"
)

// Paths on the persistent filesystem, relative to its mount point.
const (
	DirSSH      = "livebootp/ssh"
	DirCache    = "livebootp/cache"
	DirVolumes  = "livebootp/volumes"
	DirOverlays = "livebootp/overlays"
)

// Volume is one directory of the image made persistent, as LiveBOOTP's
// add_persistent_storage DIR [bind|unionfs] [copy|none].
type Volume struct {
	Path string // absolute path in the image, e.g. /var/www
	Mode string // "bind" (default) or "unionfs"
	Init string // for bind: "copy" (default: the image's content on first use) or "none"
}

// Escape turns an absolute path into one directory name: the leading slash
// is dropped, '%' becomes %25 and '/' becomes %2F. It is reversible and the
// shell library (functions.sh) computes the same name with sed.
func Escape(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	p = strings.ReplaceAll(p, "%", "%25")
	return strings.ReplaceAll(p, "/", "%2F")
}

func (v *Volume) check() error {
	if v.Mode == "" {
		v.Mode = "bind"
	}
	if v.Init == "" {
		v.Init = "copy"
	}
	clean := path.Clean(v.Path)
	switch {
	case !strings.HasPrefix(v.Path, "/") || clean != v.Path:
		return fmt.Errorf("persistent volume %q: want a clean absolute path such as /var/www", v.Path)
	case clean == "/":
		return fmt.Errorf("persistent volume %q: the root directory cannot be a volume", v.Path)
	case strings.ContainsAny(v.Path, ",:\\\n"):
		return fmt.Errorf("persistent volume %q: ',', ':', '\\' and newlines cannot be passed to mount options", v.Path)
	case v.Mode != "bind" && v.Mode != "unionfs":
		return fmt.Errorf("persistent volume %s: mode %q, want bind or unionfs", v.Path, v.Mode)
	case v.Init != "copy" && v.Init != "none":
		return fmt.Errorf("persistent volume %s: initialisation %q, want copy or none", v.Path, v.Init)
	}
	for _, top := range []string{"/proc", "/sys", "/dev", "/run"} {
		if clean == top || strings.HasPrefix(clean, top+"/") {
			return fmt.Errorf("persistent volume %s: %s is an API filesystem, not image content", v.Path, top)
		}
	}
	return nil
}

// Apply makes v persistent: data is the mounted persistent filesystem,
// newRoot the image's root (the overlay). It reports whether the volume
// was created (first use) by this call.
//
// bind: data/livebootp/volumes/<escaped> is bind-mounted over the
// directory; on first use it is filled with a copy of the image's directory
// (init copy), built under a temporary name and renamed, so a reset during
// the copy starts over instead of leaving half a volume.
// unionfs: an overlay whose lower layer is the image's directory and whose
// upper layer lives on data, so changes persist and image updates show
// through where not overridden.
func Apply(m mount.Mounter, data, newRoot string, v Volume) (created bool, err error) {
	if err := v.check(); err != nil {
		return false, err
	}
	target := filepath.Join(newRoot, v.Path)
	if err := ensureDir(target); err != nil {
		return false, fmt.Errorf("persistent volume %s: %w", v.Path, err)
	}
	switch v.Mode {
	case "bind":
		src := filepath.Join(data, DirVolumes, Escape(v.Path))
		if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
			tmp := src + ".new"
			if err := os.RemoveAll(tmp); err != nil {
				return false, fmt.Errorf("persistent volume %s: %w", v.Path, err)
			}
			if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
				return false, fmt.Errorf("persistent volume %s: %w", v.Path, err)
			}
			if v.Init == "copy" {
				err = CopyTree(target, tmp)
			} else {
				err = os.Mkdir(tmp, 0o755)
				if err == nil {
					err = copyMeta(target, tmp)
				}
			}
			if err == nil {
				err = syncTree(tmp)
			}
			if err == nil {
				err = safefile.Rename(tmp, src)
			}
			if err != nil {
				return false, fmt.Errorf("persistent volume %s: first use: %w", v.Path, err)
			}
			created = true
		} else if err != nil {
			return false, fmt.Errorf("persistent volume %s: %w", v.Path, err)
		}
		if err := m.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
			return created, fmt.Errorf("persistent volume %s: %w", v.Path, err)
		}
	case "unionfs":
		base := filepath.Join(data, DirOverlays, Escape(v.Path))
		upper, work := filepath.Join(base, "upper"), filepath.Join(base, "work")
		if _, err := os.Stat(upper); errors.Is(err, fs.ErrNotExist) {
			created = true
		}
		for _, d := range []string{upper, work} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return false, fmt.Errorf("persistent volume %s: %w", v.Path, err)
			}
		}
		opts := "lowerdir=" + target + ",upperdir=" + upper + ",workdir=" + work
		if err := m.Mount("overlay", target, "overlay", 0, opts); err != nil {
			return created, fmt.Errorf("persistent volume %s (unionfs): %w", v.Path, err)
		}
	}
	return created, nil
}

// ensureDir creates a volume's mount point when the image lacks it.
func ensureDir(p string) error {
	st, err := os.Stat(p)
	if err == nil {
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory in the image", p)
		}
		return nil
	}
	return os.MkdirAll(p, 0o755)
}

// CopyTree copies the directory src to dst (which must not exist) keeping
// modes, owners, modification times, symlinks, hard links, device nodes,
// FIFOs and sockets as they are. It does not cross into other mounts.
// Extended attributes (ACLs, capabilities, SELinux labels) are not copied.
func CopyTree(src, dst string) error {
	st, err := os.Lstat(src)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// The image has no such directory: the volume starts empty.
			return os.Mkdir(dst, 0o755)
		}
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", src)
	}
	c := copier{links: map[[2]uint64]string{}}
	if sys := statT(st); sys != nil {
		c.dev = sys.Dev
	}
	return c.dir(src, dst)
}

type copier struct {
	links map[[2]uint64]string // (dev, ino) of multiply-linked files → first copy
	dev   uint64
}

func statT(fi fs.FileInfo) *syscall.Stat_t {
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		return s
	}
	return nil
}

func (c *copier) dir(src, dst string) error {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		s, d := filepath.Join(src, n), filepath.Join(dst, n)
		fi, err := os.Lstat(s)
		if err != nil {
			return err
		}
		if err := c.entry(s, d, fi); err != nil {
			return err
		}
	}
	return copyMeta(src, dst) // last: the mtime must survive the entries created inside
}

func (c *copier) entry(src, dst string, fi fs.FileInfo) error {
	sys := statT(fi)
	if sys != nil && fi.Mode().IsRegular() && sys.Nlink > 1 {
		key := [2]uint64{sys.Dev, sys.Ino}
		if first, ok := c.links[key]; ok {
			return os.Link(first, dst)
		}
		c.links[key] = dst
	}
	switch m := fi.Mode(); {
	case m.IsDir():
		if sys != nil && sys.Dev != c.dev {
			// Another filesystem mounted inside: copy the mount point only.
			if err := os.Mkdir(dst, 0o700); err != nil {
				return err
			}
			return copyMeta(src, dst)
		}
		return c.dir(src, dst)
	case m.IsRegular():
		if err := copyFile(src, dst); err != nil {
			return err
		}
	case m&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	default:
		if sys == nil {
			return fmt.Errorf("%s: cannot copy file type %v", src, m)
		}
		if err := unix.Mknod(dst, sys.Mode, int(sys.Rdev)); err != nil {
			return fmt.Errorf("%s: %w", dst, err)
		}
	}
	return copyMeta(src, dst)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// copyMeta copies owner, mode and times from src to dst without following
// symlinks.
func copyMeta(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	sys := statT(fi)
	if sys == nil {
		return nil
	}
	if err := os.Lchown(dst, int(sys.Uid), int(sys.Gid)); err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		// chmod after chown: chown clears setuid/setgid bits.
		if err := unix.Chmod(dst, sys.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", dst, err)
		}
	}
	ts := []unix.Timespec{{Sec: sys.Atim.Sec, Nsec: sys.Atim.Nsec}, {Sec: sys.Mtim.Sec, Nsec: sys.Mtim.Nsec}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", dst, err)
	}
	return nil
}

// syncTree flushes a freshly copied tree before it is renamed into place.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}

// CachePath is where the verified squashfs with this sha256 is kept.
func CachePath(data, sha string) string {
	return filepath.Join(data, DirCache, sha+".squashfs")
}

// PruneCache removes cached images other than keep (a sha256) and leftover
// partial downloads, so the cache holds one image and never fills the disk.
func PruneCache(data, keep string) ([]string, error) {
	d, err := os.Open(filepath.Join(data, DirCache))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return PruneCacheDir(d, keep)
}

// PruneCacheDir is PruneCache given the open cache directory: it works by
// descriptor alone, so a process whose paths are gone (after switch_root)
// can use it.
func PruneCacheDir(dir *os.File, keep string) ([]string, error) {
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("read the cache directory %s: %w", dir.Name(), err)
	}
	d := os.NewFile(uintptr(fd), dir.Name())
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("read the cache directory %s: %w", dir.Name(), err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	var removed []string
	for _, e := range ents {
		if e.Name() == keep+".squashfs" {
			continue
		}
		flags := 0
		if e.IsDir() {
			flags = unix.AT_REMOVEDIR // only ever empty: the cache holds files
		}
		if err := unix.Unlinkat(fd, e.Name(), flags); err != nil {
			return removed, fmt.Errorf("remove %s from the cache: %w", filepath.Join(dir.Name(), e.Name()), err)
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}
