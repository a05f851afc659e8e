package imagebuild

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// An image's root filesystem is read through fs.FS implementations whose
// Open resolves symbolic links inside the root, as a chroot would: an
// absolute link to /usr/lib means ROOT/usr/lib, never the build host's.
// Merged-/usr images reach their modules through lib -> usr/lib.

// maxLinks bounds symlink resolution, as the kernel's 40.
const maxLinks = 40

// resolve returns name with every symbolic link along it followed inside
// the root; readlink reports whether a path (with no links before its last
// element) is a link and its target.
func resolve(name string, readlink func(string) (string, bool, error)) (string, error) {
	if !fs.ValidPath(name) {
		return "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	todo := strings.Split(name, "/")
	cur := ""
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if cur != "" {
				cur = path.Dir(cur)
				if cur == "." {
					cur = ""
				}
			}
			continue
		}
		next := path.Join(cur, c)
		target, isLink, err := readlink(next)
		if err != nil {
			return "", err
		}
		if !isLink {
			cur = next
			continue
		}
		if hops++; hops > maxLinks {
			return "", &fs.PathError{Op: "open", Path: name, Err: errors.New("too many levels of symbolic links")}
		}
		if strings.HasPrefix(target, "/") {
			cur = ""
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	if cur == "" {
		return ".", nil
	}
	return cur, nil
}

// dirFS is a root filesystem directory on disk.
type dirFS string

func (d dirFS) Open(name string) (fs.File, error) {
	p, err := resolve(name, func(p string) (string, bool, error) {
		full := filepath.Join(string(d), filepath.FromSlash(p))
		fi, err := os.Lstat(full)
		if err != nil {
			return "", false, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return "", false, nil
		}
		t, err := os.Readlink(full)
		return t, true, err
	})
	if err != nil {
		return nil, err
	}
	return os.Open(filepath.Join(string(d), filepath.FromSlash(p)))
}

// flattener normalises a merged tar stream, in stream order (a lower
// layer's directory may come after what an upper layer put in it), so the
// squashfs depends only on the content: clean relative names, no leftover
// whiteouts, one entry per name, nothing written through a symlink, and
// directories only implied by their contents owned by root at the epoch.
type flattener struct {
	out     *dirSink
	put     map[string]bool // names passed on
	parents map[string]bool // directories something was put in
	nondirs map[string]bool // names put as something else than a directory
	epoch   time.Time
	files   int
	dups    []string
}

func newFlattener(out *dirSink, epoch time.Time) *flattener {
	return &flattener{out: out, put: map[string]bool{}, parents: map[string]bool{}, nondirs: map[string]bool{}, epoch: epoch}
}

// cleanName makes a tar member name relative and clean; "" for the root.
// Names climbing out of the root are refused, not clamped.
func cleanName(name string) (string, error) {
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("member %q climbs out of the root", name)
		}
	}
	return strings.TrimPrefix(path.Clean("/"+name), "/"), nil
}

func (f *flattener) add(h *tar.Header, r io.Reader) error {
	name, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeXGlobalHeader, tar.TypeXHeader:
		return nil
	case tar.TypeRegA, tar.TypeGNUSparse: // archive/tar expands sparse files
		h.Typeflag = tar.TypeReg
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return nil // GNU volume labels and the like: not files
	}
	// The root's attributes come from mksquashfs -root-* options;
	// whiteouts left here (in a rootfs tarball) would become stray files.
	if name == "" || strings.HasPrefix(path.Base(name), ".wh.") {
		return nil
	}
	if h.Typeflag == tar.TypeLink {
		if h.Linkname, err = cleanName(h.Linkname); err != nil {
			return err
		}
	}
	if f.put[name] || (f.parents[name] && h.Typeflag != tar.TypeDir) {
		// A second copy, or a file where the stream already made a
		// directory: the first stays (as in mksquashfs -tar), and we say so.
		f.dups = append(f.dups, name)
		_, err := io.Copy(io.Discard, r)
		return err
	}
	// Under a name an upper layer made a file or link, a lower layer's
	// directory contents are hidden (as overlayfs shows them).
	for p := path.Dir(name); p != "."; p = path.Dir(p) {
		if f.nondirs[p] {
			_, err := io.Copy(io.Discard, r)
			return err
		}
	}
	f.put[name] = true
	if h.Typeflag != tar.TypeDir {
		f.nondirs[name] = true
	}
	for p := path.Dir(name); p != "." && !f.parents[p]; p = path.Dir(p) {
		f.parents[p] = true
	}
	h.Name = name
	if err := f.out.put(h, r); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	f.files++
	return nil
}

func (f *flattener) finish() error {
	var implied []string
	for name := range f.parents {
		if !f.put[name] {
			implied = append(implied, name)
		}
	}
	slices.Sort(implied)
	return f.out.done(implied, f.epoch)
}
