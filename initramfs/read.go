package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/klauspost/compress/zstd"
)

// Entry is one member of a cpio archive, as Read returns it.
type Entry struct {
	Name         string
	Mode         uint32 // type and permission bits, as in the header (0o100644)
	UID, GID     uint32
	Nlink        uint32
	Mtime        int64
	Major, Minor uint32 // device number of device nodes
	Data         []byte // file content, or a symlink's target
}

// Type bits of Entry.Mode.
const (
	TypeMask    = 0o170000
	TypeDir     = 0o040000
	TypeRegular = 0o100000
	TypeSymlink = 0o120000
	TypeChar    = 0o020000
)

// Read parses a newc cpio archive, gzip- or zstd-compressed or not, and returns its
// entries in archive order. Concatenated archives (an early-microcode cpio
// before the main one) are read one after the other. It is meant for tests
// and inspection: it holds every file in memory.
func Read(r io.Reader) ([]Entry, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(4)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
		br = bufio.NewReader(zr)
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	var out []Entry
	var off int64
	read := func(n int64) ([]byte, error) {
		b := make([]byte, n)
		_, err := io.ReadFull(br, b)
		off += n
		return b, err
	}
	skipPad := func() error {
		if r := off % 4; r != 0 {
			_, err := read(4 - r)
			return err
		}
		return nil
	}
	for {
		// Between concatenated archives there may be zero padding.
		for {
			b, err := br.Peek(1)
			if err == io.EOF || (err == nil && b[0] != 0) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("initramfs: at byte %d: %w", off, err)
			}
			br.ReadByte()
			off++
		}
		if _, err := br.Peek(1); err == io.EOF {
			return out, nil
		}
		hdr, err := read(110)
		if err != nil {
			return nil, fmt.Errorf("initramfs: header at byte %d: %w", off-110, err)
		}
		if !bytes.Equal(hdr[:6], []byte("070701")) && !bytes.Equal(hdr[:6], []byte("070702")) {
			return nil, fmt.Errorf("initramfs: byte %d: not a newc cpio header (magic %q)", off-110, hdr[:6])
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return nil, fmt.Errorf("initramfs: byte %d: bad header field %d: %w", off-110, i, err)
			}
			f[i] = uint32(v)
		}
		// Fields: ino mode uid gid nlink mtime filesize devmajor devminor
		// rdevmajor rdevminor namesize check.
		name, err := read(int64(f[11]))
		if err != nil {
			return nil, fmt.Errorf("initramfs: name at byte %d: %w", off, err)
		}
		if err := skipPad(); err != nil {
			return nil, err
		}
		data, err := read(int64(f[6]))
		if err != nil {
			return nil, fmt.Errorf("initramfs: data of %q: %w", name, err)
		}
		if err := skipPad(); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		e := Entry{
			Name: string(bytes.TrimRight(name, "\x00")),
			Mode: f[1], UID: f[2], GID: f[3], Nlink: f[4], Mtime: int64(f[5]),
			Major: f[9], Minor: f[10], Data: data,
		}
		if e.Name == "TRAILER!!!" {
			continue
		}
		out = append(out, e)
	}
}
