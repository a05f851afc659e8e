// Package safefile writes files so that a power cut leaves either the old
// content or the new one, never a torn mix: the SSH host keys, the cached
// squashfs and authorized_keys of a target live on its persistent disk across
// boots and must survive a reset in the middle of a write.
//
// It must never write outside the directory of the file it is asked to write
// (the temporary file lives next to the target so rename stays atomic).
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// WriteFile writes data to path atomically: a temporary file in the same
// directory, fsync, chmod to perm, rename over path, fsync of the directory.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write is WriteFile for content produced by fill.
func Write(path string, perm os.FileMode, fill func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := fill(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	return SyncDir(dir)
}

// RemoveStale removes the temporary files that writes of path cut short
// by a power cut left next to it. Only call it when no write of path can
// be running.
func RemoveStale(path string) error {
	dir, base := filepath.Split(path)
	stale, err := filepath.Glob(filepath.Join(dir, "."+globEscape(base)+".tmp*"))
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range stale {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Rename renames old to new and fsyncs the directory of new, so the rename
// itself survives a power cut (the data must already be synced by the caller).
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(newpath))
}

// SyncDir fsyncs a directory so entries created or renamed in it are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// WriteFileAt is WriteFile for dir/name by descriptor alone: for a
// process whose paths are gone (the init's children after switch_root).
func WriteFileAt(dir *os.File, name string, data []byte, perm os.FileMode) error {
	where := filepath.Join(dir.Name(), name)
	if strings.Contains(name, "/") {
		return fmt.Errorf("write %s: not a file name", where)
	}
	dfd := int(dir.Fd())
	tmp := fmt.Sprintf(".%s.tmp%d", name, os.Getpid())
	unix.Unlinkat(dfd, tmp, 0) // a leftover of an earlier process with this PID
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return fmt.Errorf("write %s: %w", where, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm) // past the umask
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dfd, tmp, dfd, name)
	}
	if err == nil {
		err = dir.Sync()
	}
	if err != nil {
		unix.Unlinkat(dfd, tmp, 0)
		return fmt.Errorf("write %s: %w", where, err)
	}
	return nil
}
