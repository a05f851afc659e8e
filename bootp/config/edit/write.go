package edit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile replaces the file at path with data so that a crash leaves
// either the old file or the new one, never a mix: it writes a temporary
// file in the same directory, syncs it, renames it over path and syncs the
// directory. The new file gets mode perm (on FAT, which has no modes, the
// mount's). Renaming over an existing file works on vfat too, so this is
// safe for the appliance's data partition.
func WriteFile(path string, data []byte, perm fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return fmt.Errorf("cannot write next to %s: %w", path, unwrapPath(err))
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), unwrapPath(err))
	}
	if err := chmod(tmp, perm); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", tmp.Name(), unwrapPath(err))
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", tmp.Name(), unwrapPath(err))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, unwrapPath(err))
	}
	// The rename is durable once the directory is: without this a power
	// cut can bring back the old file (or, on FAT, lose both names).
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("%s was replaced, but syncing its directory failed: %w", path, unwrapPath(err))
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("%s was replaced, but syncing its directory failed: %w", path, unwrapPath(err))
	}
	return nil
}

// chmod sets perm, accepting FAT's refusal when the file already has the
// mode the mount gives every file: there is nothing else it could have.
func chmod(f *os.File, perm fs.FileMode) error {
	err := f.Chmod(perm)
	if err == nil {
		return nil
	}
	if st, serr := f.Stat(); serr == nil && errors.Is(err, fs.ErrPermission) {
		if st.Mode().Perm() == perm || vfat(f) {
			return nil
		}
	}
	return fmt.Errorf("cannot give %s mode %v: %w", f.Name(), perm, unwrapPath(err))
}

// msdosSuperMagic is statfs's f_type of FAT filesystems.
const msdosSuperMagic = 0x4d44

func vfat(f *os.File) bool {
	var st syscall.Statfs_t
	return syscall.Fstatfs(int(f.Fd()), &st) == nil && st.Type == msdosSuperMagic
}
