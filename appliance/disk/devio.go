package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// chunk is the size of Flash's writes: large enough that a USB stick's
// controller sees whole erase blocks, small enough for a progress line a
// second on slow sticks.
const chunk = 4 << 20

// device is a disk opened for Flash. Bulk data (the image's first
// partitions, the data files) goes through direct, aligned writes, so the
// progress shows what the disk takes rather than what the page cache
// swallows; go-diskfs's small metadata writes go through f.
type device struct {
	f      *os.File // buffered, held exclusively for a block device
	direct *os.File // O_DIRECT, nil where the filesystem has no direct I/O
	buf    []byte   // page-aligned (mmap), as O_DIRECT needs
}

func openDevice(path string, block bool) (*device, error) {
	flags := os.O_RDWR
	if block {
		// O_EXCL on a block device fails while anything has it mounted or
		// claimed, even in another mount namespace: the last guard.
		flags |= unix.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("%s is in use (mounted, in a RAID or LVM, or open by another program): %w", path, err)
		}
		return nil, err
	}
	buf, err := unix.Mmap(-1, 0, chunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		f.Close()
		return nil, err
	}
	d := &device{f: f, buf: buf}
	if direct, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0); err == nil {
		d.direct = direct
	}
	return d, nil
}

// copyAt copies n bytes from r to byte offset off in chunks, telling
// counted how many bytes each chunk held. A last chunk that is not a whole
// number of sectors is padded with zeros: it ends a file whose cluster
// holds the rest of that sector.
func (d *device) copyAt(ctx context.Context, r io.Reader, off, n int64, counted func(int64)) error {
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := min(n, int64(len(d.buf)))
		if _, err := io.ReadFull(r, d.buf[:k]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return errors.New("the image ended early")
			}
			return err
		}
		w := roundUp(k, sectorSize)
		clear(d.buf[k:w])
		if err := d.writeAt(d.buf[:w], off); err != nil {
			return err
		}
		counted(k)
		off += k
		n -= k
	}
	return nil
}

// zero writes n zero bytes at off.
func (d *device) zero(ctx context.Context, off, n int64) error {
	clear(d.buf)
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := min(n, int64(len(d.buf)))
		if err := d.writeAt(d.buf[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

func (d *device) writeAt(b []byte, off int64) error {
	f := d.f
	if d.direct != nil && off%sectorSize == 0 && len(b)%sectorSize == 0 {
		f = d.direct
	}
	if _, err := f.WriteAt(b, off); err != nil {
		return fmt.Errorf("writing %d bytes at %d: %w", len(b), off, err)
	}
	return nil
}

func (d *device) sync() error {
	if d.direct != nil {
		if err := d.direct.Sync(); err != nil {
			return err
		}
	}
	return d.f.Sync()
}

func (d *device) Close() error {
	var errs []error
	if d.direct != nil {
		errs = append(errs, d.direct.Close())
	}
	errs = append(errs, unix.Munmap(d.buf), d.f.Close())
	return errors.Join(errs...)
}
