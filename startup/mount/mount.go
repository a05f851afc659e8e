// Package mount is the init helper's thin layer over mount(2) and loop
// devices: a Mounter interface so steps can be driven in tests, the real
// implementation, and read-only loop attachment of the squashfs.
//
// It must never guess: every call names its source and target in errors,
// and it never unmounts or detaches anything it was not asked to.
package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Mounter is mount(2) and umount2(2). Steps receive one so tests can record
// or redirect mounts; Unix is the real thing.
type Mounter interface {
	Mount(source, target, fstype string, flags uintptr, data string) error
	Unmount(target string, flags int) error
}

// Unix performs real mounts.
type Unix struct{}

// Mount calls mount(2); the error names what was mounted where.
func (Unix) Mount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		what := fstype
		if flags&unix.MS_BIND != 0 {
			what = "bind"
		} else if flags&unix.MS_MOVE != 0 {
			what = "move"
		}
		if data != "" {
			what += " (" + data + ")"
		}
		return fmt.Errorf("mount %s %s on %s: %w", what, source, target, err)
	}
	return nil
}

// Unmount calls umount2(2).
func (Unix) Unmount(target string, flags int) error {
	if err := unix.Unmount(target, flags); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// loopChangeFD is LOOP_CHANGE_FD (linux/loop.h), missing from x/sys.
const loopChangeFD = 0x4C06

// Loop is an attached loop device. Keep it open until the filesystem on it
// is mounted: it was attached with autoclear, so closing the last reference
// before the mount takes one detaches it.
type Loop struct {
	Path string // /dev/loopN under the root it was attached in
	f    *os.File
}

// Close drops the init's reference; the mount keeps the device alive.
func (l *Loop) Close() error { return l.f.Close() }

// AttachLoop binds file to a free loop device found through
// devDir/loop-control (devDir is /dev in production), read-only unless rw.
func AttachLoop(devDir, file string, rw bool) (*Loop, error) {
	flag := os.O_RDONLY
	if rw {
		flag = os.O_RDWR
	}
	backing, err := os.OpenFile(file, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("loop device for %s: %w", file, err)
	}
	defer backing.Close()
	ctl, err := os.OpenFile(filepath.Join(devDir, "loop-control"), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("loop device for %s: %w (is the loop module loaded?)", file, err)
	}
	defer ctl.Close()
	var last error
	// Another process may grab the free device between GET_FREE and
	// configuring it: try a few times.
	for try := 0; try < 5; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("loop device for %s: LOOP_CTL_GET_FREE: %w", file, err)
		}
		path := filepath.Join(devDir, "loop"+strconv.Itoa(n))
		dev, err := openWhenPresent(path)
		if err != nil {
			return nil, fmt.Errorf("loop device for %s: %w", file, err)
		}
		err = configure(int(dev.Fd()), int(backing.Fd()), file, rw)
		if err == nil {
			return &Loop{Path: path, f: dev}, nil
		}
		dev.Close()
		last = err
		if !errors.Is(err, unix.EBUSY) {
			break
		}
	}
	return nil, fmt.Errorf("loop device for %s: %w", file, last)
}

// openWhenPresent waits briefly for devtmpfs to create a node the kernel
// just registered.
func openWhenPresent(path string) (*os.File, error) {
	var err error
	for i := 0; i < 50; i++ {
		var f *os.File
		if f, err = os.OpenFile(path, os.O_RDWR, 0); err == nil {
			return f, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, err
}

func configure(devFD, fileFD int, name string, rw bool) error {
	info := unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}
	if !rw {
		info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	copy(info.File_name[:], name)
	err := unix.IoctlLoopConfigure(devFD, &unix.LoopConfig{Fd: uint32(fileFD), Info: info})
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		return fmt.Errorf("LOOP_CONFIGURE: %w", err)
	}
	// Kernels before 5.8: the two-step way.
	if err := unix.IoctlSetInt(devFD, unix.LOOP_SET_FD, fileFD); err != nil {
		return fmt.Errorf("LOOP_SET_FD: %w", err)
	}
	if err := unix.IoctlLoopSetStatus64(devFD, &info); err != nil {
		unix.IoctlSetInt(devFD, unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("LOOP_SET_STATUS64: %w", err)
	}
	return nil
}

// ChangeBacking switches a read-only loop device to another file with the
// same content and size (LOOP_CHANGE_FD), so a squashfs downloaded into RAM
// can be served from its copy on disk and the RAM freed, without unmounting.
func ChangeBacking(loopDev, file string) error {
	dev, err := os.OpenFile(loopDev, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("switch %s to %s: %w", loopDev, file, err)
	}
	defer dev.Close()
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("switch %s to %s: %w", loopDev, file, err)
	}
	defer f.Close()
	return ChangeBackingFile(dev, f)
}

// ChangeBackingFile is ChangeBacking on open files: the loop device and
// the new backing file (opened for reading).
func ChangeBackingFile(dev, file *os.File) error {
	if err := unix.IoctlSetInt(int(dev.Fd()), loopChangeFD, int(file.Fd())); err != nil {
		return fmt.Errorf("switch %s to %s: LOOP_CHANGE_FD: %w", dev.Name(), file.Name(), err)
	}
	return nil
}

// BackingFile is the file behind a loop device as the kernel reports it.
func BackingFile(sysDir, loopDev string) (string, error) {
	b, err := os.ReadFile(filepath.Join(sysDir, "block", filepath.Base(loopDev), "loop", "backing_file"))
	if err != nil {
		return "", err
	}
	return string(trimNL(b)), nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
