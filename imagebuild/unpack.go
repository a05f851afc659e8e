package imagebuild

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Why unpack: squashfs-tools 4.5.1 builds the same bytes from the same
// directory every time, on any CPU count, but not from a tar on stdin
// (mksquashfs -tar; measured: 3 different outputs in 6 runs of one tar,
// with or without -processors 1), and it ignores -root-uid and -root-time
// there. Unpacking with the image's owners and device nodes needs root (or
// a user namespace: podman unshare).

// dirSink unpacks an image's tree under a directory through os.Root, so no
// member, and no symlink an image holds, reaches outside it.
type dirSink struct {
	dir      string
	root     *os.Root
	dirTimes map[string]time.Time // applied last: creating children changes them
	n        int64
	xattrErr error // first xattr that could not be set
	nodevErr error // first device node that could not be made (user namespaces forbid mknod)
}

func newDirSink(dir string) (*dirSink, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return &dirSink{dir: dir, root: root, dirTimes: map[string]time.Time{}}, nil
}

func (d *dirSink) put(h *tar.Header, r io.Reader) error {
	name := h.Name
	if err := d.root.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	mode := h.FileInfo().Mode()
	switch h.Typeflag {
	case tar.TypeReg:
		f, err := d.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		n, err := io.Copy(f, r)
		d.n += n
		if err == nil {
			err = d.attrs(f, h)
		}
		if err := errors.Join(err, f.Close()); err != nil {
			return err
		}
		return d.root.Chtimes(name, h.ModTime, h.ModTime)
	case tar.TypeDir:
		if err := d.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		f, err := d.root.Open(name)
		if err != nil {
			return err
		}
		err = d.attrs(f, h)
		if err := errors.Join(err, f.Close()); err != nil {
			return err
		}
		d.dirTimes[name] = h.ModTime
		return nil
	case tar.TypeSymlink:
		if err := d.root.Symlink(h.Linkname, name); err != nil {
			return err
		}
		if err := d.root.Lchown(name, h.Uid, h.Gid); err != nil {
			return err
		}
		return d.lutimes(name, h.ModTime)
	case tar.TypeLink:
		return d.root.Link(h.Linkname, name)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
		err := d.at(path.Dir(name), func(fd int) error {
			return unix.Mknodat(fd, path.Base(name), kind|uint32(mode.Perm()), int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))))
		})
		if errors.Is(err, unix.EPERM) {
			// devtmpfs provides /dev at boot; a missing node is rarely missed.
			if d.nodevErr == nil {
				d.nodevErr = fmt.Errorf("%s: mknod: %w", name, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
		if err := d.root.Lchown(name, h.Uid, h.Gid); err != nil {
			return err
		}
		if err := d.root.Chmod(name, mode); err != nil {
			return err
		}
		return d.lutimes(name, h.ModTime)
	}
	return nil
}

// attrs sets owner, then mode (chown clears set-id bits), then extended
// attributes (file capabilities such as ping's cap_net_raw).
func (d *dirSink) attrs(f *os.File, h *tar.Header) error {
	if err := f.Chown(h.Uid, h.Gid); err != nil {
		return err
	}
	if err := f.Chmod(h.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(h.PAXRecords)) {
		attr, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if err := unix.Fsetxattr(int(f.Fd()), attr, []byte(h.PAXRecords[k]), 0); err != nil && d.xattrErr == nil {
			d.xattrErr = fmt.Errorf("%s: xattr %s: %w", h.Name, attr, err)
		}
	}
	return nil
}

// at runs fn with a descriptor of dir inside the root (os.Root has no
// mknod or lutimes of its own).
func (d *dirSink) at(dir string, fn func(fd int) error) error {
	f, err := d.root.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return fn(int(f.Fd()))
}

func (d *dirSink) lutimes(name string, t time.Time) error {
	ts := []unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	return d.at(path.Dir(name), func(fd int) error {
		return unix.UtimesNanoAt(fd, path.Base(name), ts, unix.AT_SYMLINK_NOFOLLOW)
	})
}

func (d *dirSink) done(implied []string, epoch time.Time) error {
	for _, name := range implied {
		if err := d.root.Lchown(name, 0, 0); err != nil {
			return err
		}
		if err := d.root.Chmod(name, 0o755|fs.ModeDir); err != nil {
			return err
		}
		d.dirTimes[name] = epoch
	}
	// Deepest first, so setting a directory's time does not touch a
	// parent's already set.
	names := slices.Collect(maps.Keys(d.dirTimes))
	slices.SortFunc(names, func(a, b string) int {
		if c := strings.Count(b, "/") - strings.Count(a, "/"); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	for _, n := range names {
		if err := d.root.Chtimes(n, d.dirTimes[n], d.dirTimes[n]); err != nil {
			return err
		}
	}
	return d.root.Close()
}
