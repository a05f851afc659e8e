// Package initramfs writes Linux initramfs archives: newc cpio, optionally
// compressed, with deterministic headers (fixed mtimes, uid/gid 0, inode
// numbers in write order) so the same inputs give byte-identical archives.
// It never reads the host's files unless it is handed their paths.
package initramfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Writer appends entries to a newc cpio archive. Parent directories of an
// entry are created on demand, once each.
type Writer struct {
	w     *bufio.Writer
	off   int64
	ino   uint32
	dirs  map[string]bool
	err   error
	Mtime int64 // mtime written in every header (default 0: reproducible)
}

// NewWriter starts an archive on w. Close writes the trailer.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 1<<16), dirs: map[string]bool{"": true, ".": true}}
}

func (cw *Writer) header(name string, mode uint32, size int64, nlink uint32) {
	if cw.err != nil {
		return
	}
	cw.ino++
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		cw.ino, mode, 0, 0, nlink, uint32(cw.Mtime), uint32(size), 0, 0, 0, 0, len(name)+1, 0)
	cw.write([]byte(hdr))
	cw.write([]byte(name + "\x00"))
	cw.pad()
}

func (cw *Writer) write(b []byte) {
	if cw.err != nil {
		return
	}
	n, err := cw.w.Write(b)
	cw.off += int64(n)
	cw.err = err
}

func (cw *Writer) pad() {
	if r := cw.off % 4; r != 0 {
		cw.write(make([]byte, 4-r))
	}
}

func clean(name string) (string, error) {
	n := path.Clean(strings.TrimPrefix(name, "/"))
	if n == "." || n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("initramfs: bad entry name %q", name)
	}
	return n, nil
}

func (cw *Writer) parents(name string) {
	dir := path.Dir(name)
	if cw.dirs[dir] {
		return
	}
	cw.parents(dir)
	cw.dirs[dir] = true
	cw.header(dir, 0o040755, 0, 2)
}

// Dir adds a directory.
func (cw *Writer) Dir(name string, perm fs.FileMode) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	if cw.dirs[n] {
		return cw.err
	}
	cw.parents(n)
	cw.dirs[n] = true
	cw.header(n, 0o040000|uint32(perm.Perm()), 0, 2)
	return cw.err
}

// File adds a regular file with the given content.
func (cw *Writer) File(name string, perm fs.FileMode, data []byte) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	cw.parents(n)
	cw.header(n, 0o100000|uint32(perm.Perm()), int64(len(data)), 1)
	cw.write(data)
	cw.pad()
	return cw.err
}

// CopyFile adds the file at src (read now) as name.
func (cw *Writer) CopyFile(name string, perm fs.FileMode, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	n, err := clean(name)
	if err != nil {
		return err
	}
	cw.parents(n)
	cw.header(n, 0o100000|uint32(perm.Perm()), fi.Size(), 1)
	if cw.err == nil {
		var m int64
		m, cw.err = io.Copy(cw.w, f)
		cw.off += m
		if cw.err == nil && m != fi.Size() {
			cw.err = fmt.Errorf("initramfs: %s changed size while being copied", src)
		}
	}
	cw.pad()
	return cw.err
}

// Symlink adds a symbolic link.
func (cw *Writer) Symlink(name, target string) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	cw.parents(n)
	cw.header(n, 0o120777, int64(len(target)), 1)
	cw.write([]byte(target))
	cw.pad()
	return cw.err
}

// CharDev adds a character device node (e.g. dev/console 5:1, which the
// kernel needs before /init runs to give it a console).
func (cw *Writer) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	n, err := clean(name)
	if err != nil {
		return err
	}
	cw.parents(n)
	if cw.err != nil {
		return cw.err
	}
	cw.ino++
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		cw.ino, 0o020000|uint32(perm.Perm()), 0, 0, 1, uint32(cw.Mtime), 0, 0, 0, major, minor, len(n)+1, 0)
	cw.write([]byte(hdr))
	cw.write([]byte(n + "\x00"))
	cw.pad()
	return cw.err
}

// Close writes the trailer and flushes. It does not close the underlying
// writer.
func (cw *Writer) Close() error {
	if cw.err != nil {
		return cw.err
	}
	cw.ino = ^uint32(0) // the trailer has inode 0
	cw.header("TRAILER!!!", 0, 0, 1)
	if cw.err != nil {
		return cw.err
	}
	return errors.Join(cw.err, cw.w.Flush())
}
