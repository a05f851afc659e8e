package disk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
)

// maxFATFile is the largest file FAT32 can hold: its size field is 32 bits.
const maxFATFile = 1<<32 - 1

// entry is one file or directory to put on a FAT filesystem.
type entry struct {
	path  string // slash-separated, relative to the filesystem's root
	dir   bool
	size  int64
	mtime time.Time
	open  func() (io.ReadCloser, error) // files only
}

// copyAtFunc copies n bytes from r to byte offset off of the disk. Build
// writes to an image file; Flash writes to a device with aligned, direct I/O.
type copyAtFunc func(ctx context.Context, r io.Reader, off, n int64) error

// fileEntry is an entry for a file on the host.
func fileEntry(dest, src string) (entry, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return entry{}, err
	}
	if !fi.Mode().IsRegular() {
		return entry{}, fmt.Errorf("%s: not a regular file", src)
	}
	return entry{path: dest, size: fi.Size(), mtime: fi.ModTime(), open: func() (io.ReadCloser, error) { return os.Open(src) }}, nil
}

// bytesEntry is an entry for a file generated in memory (loader configs).
func bytesEntry(dest string, b []byte, mtime time.Time) entry {
	return entry{path: dest, size: int64(len(b)), mtime: mtime,
		open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
}

// scanDir lists the tree under root as entries below dest ("" = the
// filesystem's root), parents before children. Symbolic links to files are
// followed; anything FAT cannot hold is refused, naming the file.
func scanDir(root, dest string) ([]entry, error) {
	// WalkDir would list a link to a directory as one entry.
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	var out []entry
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		fatPath := path.Join(dest, filepath.ToSlash(rel))
		if err := checkFATName(d.Name()); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		switch {
		case d.IsDir():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			out = append(out, entry{path: fatPath, dir: true, mtime: fi.ModTime()})
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			fi, err := os.Stat(p)
			if err != nil {
				return fmt.Errorf("%s: broken symbolic link: %w", p, err)
			}
			if fi.IsDir() {
				return fmt.Errorf("%s: a symbolic link to a directory; FAT has no links: copy the directory in instead", p)
			}
		}
		e, err := fileEntry(fatPath, p)
		if err != nil {
			return fmt.Errorf("%w (FAT holds only files and directories)", err)
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// checkEntries refuses what FAT32 cannot store: files of 4 GiB and more, and
// names that differ only in case (FAT compares names case-insensitively).
func checkEntries(entries []entry) error {
	seen := make(map[string]string, len(entries))
	for _, e := range entries {
		if !e.dir && e.size > maxFATFile {
			return fmt.Errorf("%s is %s: FAT32 holds files smaller than 4 GiB; make the image smaller (e.g. a higher squashfs compression) or serve it from a registry on a Linux host", e.path, humanBytes(e.size))
		}
		key := strings.ToUpper(e.path)
		if other, ok := seen[key]; ok {
			return fmt.Errorf("%s and %s differ only in case, which FAT cannot tell apart: rename one", other, e.path)
		}
		seen[key] = e.path
	}
	return nil
}

// checkFATName refuses names FAT long file names cannot hold or that Windows
// would not open. Only printable ASCII is allowed: that is what config, image
// and key names use, and it keeps the short-name generation unsurprising.
func checkFATName(name string) error {
	if len(name) > 255 {
		return fmt.Errorf("name longer than 255 characters")
	}
	for _, r := range name {
		if r < 0x20 || r > 0x7e || strings.ContainsRune(`"*/:<>?\|`, r) {
			return fmt.Errorf("name %q: FAT allows printable ASCII except \" * / : < > ? \\ |; rename it", name)
		}
	}
	if strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") {
		return fmt.Errorf("name %q ends in a dot or space, which Windows drops; rename it", name)
	}
	return nil
}

// treeBytes is an upper bound of the space entries take on FAT32: each file
// rounded up to a 4 KiB cluster (the cluster size below 8 GiB), each
// directory one cluster plus its 32-byte slots.
func treeBytes(entries []entry) int64 {
	const cluster = 4096
	var n int64
	for _, e := range entries {
		n += int64(32 * (2 + len(path.Base(e.path))/13)) // short entry + long-name slots
		if e.dir {
			n += cluster
			continue
		}
		n += (e.size + cluster - 1) / cluster * cluster
	}
	return n
}

// fill writes entries onto a fresh FAT32 filesystem that starts at byte
// partStart of the disk. go-diskfs makes the directories and allocates each
// file's clusters; the contents are then copied straight to the clusters'
// places on the disk with copyAt. Writing contents through go-diskfs would
// rewrite the whole FAT on every Write call and issue one write per cluster.
func fill(ctx context.Context, fsys filesystem.FileSystem, b backend.Storage, partStart int64, entries []entry, copyAt copyAtFunc) error {
	var empty []string
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := "/" + e.path
		if !e.dir && e.size == 0 {
			empty = append(empty, p)
		}
		if e.dir {
			if err := fsys.Mkdir(p); err != nil {
				return fmt.Errorf("making directory %s: %w", p, err)
			}
			if !strings.Contains(e.path, "/") {
				if err := fixDotDot(fsys, b, partStart, p); err != nil {
					return fmt.Errorf("making directory %s: %w", p, err)
				}
			}
			continue
		}
		if err := writeFATFile(ctx, fsys, partStart, e, copyAt); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return finishFAT(fsys, b, partStart, empty)
}

func writeFATFile(ctx context.Context, fsys filesystem.FileSystem, partStart int64, e entry, copyAt copyAtFunc) error {
	p := "/" + e.path
	f, err := fsys.OpenFile(p, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return err
	}
	defer f.Close()
	if e.size > 0 {
		// One write of the last byte allocates every cluster at once and
		// records the size in the directory entry.
		if _, err := f.Seek(e.size-1, io.SeekStart); err != nil {
			return err
		}
		if _, err := f.Write([]byte{0}); err != nil {
			return err
		}
		ranges, err := diskRanges(fsys, p)
		if err != nil {
			return err
		}
		src, err := e.open()
		if err != nil {
			return err
		}
		defer src.Close()
		left := e.size
		for _, r := range ranges {
			n := min(int64(r.Length), left)
			if err := copyAt(ctx, src, partStart+int64(r.Offset), n); err != nil {
				return err
			}
			left -= n
		}
		if left != 0 {
			return fmt.Errorf("go-diskfs allocated %d bytes too few", left)
		}
	}
	if !e.mtime.IsZero() {
		if err := fsys.Chtimes(p, e.mtime, e.mtime, e.mtime); err != nil {
			return err
		}
	}
	return nil
}

// fatEntries lists the tree of a FAT filesystem (read from the image file
// img, the filesystem starting at byte partStart) as entries whose contents
// are read straight from the file's clusters.
func fatEntries(fsys filesystem.FileSystem, img io.ReaderAt, partStart int64) ([]entry, error) {
	var out []entry
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		if depth > 64 {
			return fmt.Errorf("%s: directories nested more than 64 deep", dir)
		}
		des, err := fsys.ReadDir(dir)
		if err != nil {
			return err
		}
		sort.Slice(des, func(i, j int) bool { return des[i].Name() < des[j].Name() })
		for _, de := range des {
			p := path.Join(dir, de.Name()) // io/fs style: "." is the root
			fi, err := de.Info()
			if err != nil {
				return err
			}
			e := entry{path: p, dir: de.IsDir(), size: fi.Size(), mtime: fi.ModTime()}
			if e.dir {
				e.size = 0
				out = append(out, e)
				if err := walk(p, depth+1); err != nil {
					return err
				}
				continue
			}
			e.open = func() (io.ReadCloser, error) { return openFATFile(fsys, img, partStart, "/"+p, e.size) }
			out = append(out, e)
		}
		return nil
	}
	if err := walk(".", 0); err != nil {
		return nil, err
	}
	return out, nil
}

func openFATFile(fsys filesystem.FileSystem, img io.ReaderAt, partStart int64, p string, size int64) (io.ReadCloser, error) {
	if size == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	ranges, err := diskRanges(fsys, p)
	if err != nil {
		return nil, err
	}
	readers := make([]io.Reader, 0, len(ranges))
	for _, r := range ranges {
		readers = append(readers, io.NewSectionReader(img, partStart+int64(r.Offset), int64(r.Length)))
	}
	return io.NopCloser(io.LimitReader(io.MultiReader(readers...), size)), nil
}

// humanBytes prints n in binary units, e.g. "14.9 GiB".
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

type diskRanger interface {
	GetDiskRanges() ([]fat12.DiskRange, error)
}

// diskRanges are where the clusters of file or directory p lie, relative to
// the filesystem's start.
func diskRanges(fsys filesystem.FileSystem, p string) ([]fat12.DiskRange, error) {
	f, err := fsys.OpenFile(p, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dr, ok := f.(diskRanger)
	if !ok {
		return nil, fmt.Errorf("go-diskfs file %T does not report its disk ranges", f)
	}
	ranges, err := dr.GetDiskRanges()
	if err != nil {
		return nil, err
	}
	if len(ranges) == 0 {
		return nil, errors.New("no clusters")
	}
	return ranges, nil
}
