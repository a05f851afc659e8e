package mount

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The device-mapper control interface (linux/dm-ioctl.h), which x/sys does
// not wrap: a fixed 312-byte header, followed for a table load by target
// specs, each a 40-byte header and its NUL-terminated parameters.
const (
	dmHeaderSize     = 312
	dmTargetSpecSize = 40
	dmNameLen        = 128

	dmDevCreate  = 3
	dmDevRemove  = 4
	dmDevSuspend = 6
	dmTableLoad  = 9
	dmTableStat  = 12

	dmReadOnlyFlag = 1 << 0

	// Field offsets in the header.
	dmOffDataSize    = 12
	dmOffDataStart   = 16
	dmOffTargetCount = 20
	dmOffFlags       = 28
	dmOffDev         = 40
	dmOffName        = 48
)

// dmRequest is _IOWR(0xfd, cmd, struct dm_ioctl).
func dmRequest(cmd uintptr) uintptr {
	return 3<<30 | dmHeaderSize<<16 | 0xfd<<8 | cmd
}

// DMTarget is one line of a device-mapper table: Length sectors from Start
// handled by target Type with Params (e.g. "verity" and its arguments).
type DMTarget struct {
	Start, Length uint64
	Type, Params  string
}

// DMDevice is a device-mapper device this package created.
type DMDevice struct {
	Name string
	Path string // its block device node, e.g. /dev/dm-0
	Dev  uint64 // device number
	ctl  string
}

// CreateDM creates device-mapper device name with table targets, read-only
// when readOnly, and activates it. devDir is the devtmpfs mount (/dev):
// its mapper/control is the control node and the device's node is
// devDir/dm-<minor>. Nothing is left behind on error.
func CreateDM(devDir, name string, readOnly bool, targets []DMTarget) (*DMDevice, error) {
	if len(name) >= dmNameLen || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("device-mapper name %q: 1 to %d characters, no slash", name, dmNameLen-1)
	}
	d := &DMDevice{Name: name, ctl: filepath.Join(devDir, "mapper", "control")}
	var flags uint32
	if readOnly {
		flags = dmReadOnlyFlag
	}
	hdr, err := d.ioctl(dmDevCreate, flags, nil, 0)
	if err != nil {
		return nil, fmt.Errorf("create device-mapper device %s: %w", name, err)
	}
	d.Dev = binary.LittleEndian.Uint64(hdr[dmOffDev:])
	undo := func(err error) (*DMDevice, error) {
		return nil, errors.Join(err, d.Remove())
	}
	var body []byte
	for _, t := range targets {
		if len(t.Type) >= 16 {
			return undo(fmt.Errorf("device-mapper target type %q: too long", t.Type))
		}
		spec := make([]byte, dmTargetSpecSize+len(t.Params)+1)
		spec = append(spec, make([]byte, (8-len(spec)%8)%8)...) // the next spec starts 8-aligned
		binary.LittleEndian.PutUint64(spec[0:], t.Start)
		binary.LittleEndian.PutUint64(spec[8:], t.Length)
		binary.LittleEndian.PutUint32(spec[20:], uint32(len(spec))) // next: from this spec's start
		copy(spec[24:40], t.Type)
		copy(spec[dmTargetSpecSize:], t.Params)
		body = append(body, spec...)
	}
	if _, err := d.ioctl(dmTableLoad, flags, body, uint32(len(targets))); err != nil {
		return undo(fmt.Errorf("load the table of device-mapper device %s: %w", name, err))
	}
	// DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the loaded table
	// becomes live.
	if _, err := d.ioctl(dmDevSuspend, 0, nil, 0); err != nil {
		return undo(fmt.Errorf("activate device-mapper device %s: %w", name, err))
	}
	d.Path = filepath.Join(devDir, fmt.Sprintf("dm-%d", unix.Minor(d.Dev)))
	// devtmpfs makes the node as the disk is added; should it be late,
	// wait a little, then make it.
	for i := 0; i < 50; i++ {
		if _, err := os.Stat(d.Path); err == nil {
			return d, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := unix.Mknod(d.Path, unix.S_IFBLK|0o600, int(d.Dev)); err != nil && !errors.Is(err, unix.EEXIST) {
		return undo(fmt.Errorf("device node %s: %w", d.Path, err))
	}
	return d, nil
}

// Status is the device's target status line(s) (DM_TABLE_STATUS): for
// dm-verity "V" while every block read matched and "C" once one did not.
func (d *DMDevice) Status() (string, error) {
	out, err := d.ioctlOut(dmTableStat, 0, 16<<10)
	if err != nil {
		return "", fmt.Errorf("status of device-mapper device %s: %w", d.Name, err)
	}
	start := binary.LittleEndian.Uint32(out[dmOffDataStart:])
	size := binary.LittleEndian.Uint32(out[dmOffDataSize:])
	count := binary.LittleEndian.Uint32(out[dmOffTargetCount:])
	var lines []string
	for i, off := uint32(0), start; i < count && off+dmTargetSpecSize <= size && int(off)+dmTargetSpecSize <= len(out); i++ {
		spec := out[off:]
		params := spec[dmTargetSpecSize:]
		if n := strings.IndexByte(string(params), 0); n >= 0 {
			params = params[:n]
		}
		lines = append(lines, string(params))
		next := binary.LittleEndian.Uint32(spec[20:])
		if next == 0 {
			break
		}
		off = start + next // the kernel's next counts from the data start on output
	}
	return strings.Join(lines, "\n"), nil
}

// Remove deletes the device (it must not be mounted or open).
func (d *DMDevice) Remove() error {
	if _, err := d.ioctl(dmDevRemove, 0, nil, 0); err != nil {
		return fmt.Errorf("remove device-mapper device %s: %w", d.Name, err)
	}
	return nil
}

func (d *DMDevice) ioctl(cmd uintptr, flags uint32, body []byte, targets uint32) ([]byte, error) {
	buf := make([]byte, dmHeaderSize+len(body))
	d.header(buf, flags, targets)
	copy(buf[dmHeaderSize:], body)
	return buf, d.call(cmd, buf)
}

func (d *DMDevice) ioctlOut(cmd uintptr, flags uint32, size int) ([]byte, error) {
	buf := make([]byte, size)
	d.header(buf, flags, 0)
	return buf, d.call(cmd, buf)
}

func (d *DMDevice) header(buf []byte, flags, targets uint32) {
	binary.LittleEndian.PutUint32(buf[0:], 4) // interface version 4.0.0
	binary.LittleEndian.PutUint32(buf[dmOffDataSize:], uint32(len(buf)))
	binary.LittleEndian.PutUint32(buf[dmOffDataStart:], dmHeaderSize)
	binary.LittleEndian.PutUint32(buf[dmOffTargetCount:], targets)
	binary.LittleEndian.PutUint32(buf[dmOffFlags:], flags)
	copy(buf[dmOffName:dmOffName+dmNameLen-1], d.Name)
}

func (d *DMDevice) call(cmd uintptr, buf []byte) error {
	f, err := os.OpenFile(d.ctl, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w (is dm-mod loaded?)", err)
	}
	defer f.Close()
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), dmRequest(cmd), uintptr(unsafe.Pointer(&buf[0])))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}
