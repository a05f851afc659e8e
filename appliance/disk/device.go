package disk

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// System is where Flash reads what the kernel says about disks and mounts.
// Tests point it at fixture trees; the zero value is the running system.
type System struct {
	Mountinfo string // default /proc/self/mountinfo
	Swaps     string // default /proc/swaps
	Sys       string // sysfs, default /sys
}

func (s System) withDefaults() System {
	if s.Mountinfo == "" {
		s.Mountinfo = "/proc/self/mountinfo"
	}
	if s.Swaps == "" {
		s.Swaps = "/proc/swaps"
	}
	if s.Sys == "" {
		s.Sys = "/sys"
	}
	return s
}

// Target is a disk (or, for tests and VM disks, a file) to flash.
type Target struct {
	Path        string // as given, e.g. /dev/sdb or /dev/disk/by-id/usb-...
	Disk        string // kernel name, e.g. sdb; "" for a file
	Size        int64  // bytes
	Description string // model or backing file, for the question before writing
}

func (t Target) String() string {
	if t.Description == "" {
		return fmt.Sprintf("%s (%s)", t.Path, humanBytes(t.Size))
	}
	return fmt.Sprintf("%s (%s, %s)", t.Path, t.Description, humanBytes(t.Size))
}

// Check says whether device may be overwritten by an image of imageSize
// bytes: it must be a whole disk (or, with forceFile, a regular file), not
// mounted, not swap, not the running system's disk, writable and big enough.
func Check(sys System, device string, imageSize int64, forceFile bool) (Target, error) {
	sys = sys.withDefaults()
	t := Target{Path: device}
	fi, err := os.Stat(device)
	if err != nil {
		return t, fmt.Errorf("device %s: %w", device, err)
	}
	switch {
	case fi.Mode().IsRegular() && forceFile:
		t.Size = fi.Size()
		t.Description = "regular file"
	case fi.Mode().IsRegular():
		return t, fmt.Errorf("%s is a regular file, not a disk: give the disk's device (e.g. /dev/sdb, see lsblk), or --force-file to write into the file", device)
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return t, fmt.Errorf("device %s: no device number", device)
		}
		devnum := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		if t, err = sys.checkDisk(device, devnum); err != nil {
			return t, err
		}
	default:
		return t, fmt.Errorf("%s is not a block device (it is %s)", device, fi.Mode().Type())
	}
	if t.Size < imageSize {
		return t, fmt.Errorf("%s is %s, smaller than the image (%s): use a bigger stick or card", device, humanBytes(t.Size), humanBytes(imageSize))
	}
	return t, nil
}

// checkDisk checks the block device with number devnum ("8:16"), opened as
// path, against sysfs, the mount table and the swap list.
func (s System) checkDisk(path, devnum string) (Target, error) {
	t := Target{Path: path}
	sysDir, part, name, err := s.lookup(devnum)
	if err != nil {
		return t, fmt.Errorf("device %s (%s): %w", path, devnum, err)
	}
	if part {
		return t, fmt.Errorf("%s is partition %s of /dev/%s: give the whole disk, /dev/%s; the image brings its own partition table", path, filepath.Base(sysDir), name, name)
	}
	t.Disk = name
	dir := filepath.Join(s.Sys, "class", "block", name)
	sectors, err := readInt(filepath.Join(dir, "size"))
	if err != nil {
		return t, fmt.Errorf("device %s: size: %w", path, err)
	}
	t.Size = sectors * 512 // sysfs counts 512-byte sectors whatever the disk's own
	if lbs, err := readInt(filepath.Join(dir, "queue", "logical_block_size")); err == nil && lbs != sectorSize {
		return t, fmt.Errorf("%s has %d-byte sectors; the image's partition table is laid out for 512-byte sectors", path, lbs)
	}
	if ro, err := readInt(filepath.Join(dir, "ro")); err == nil && ro != 0 {
		return t, fmt.Errorf("%s is read-only (the write-protect switch of an SD card or its adapter?)", path)
	}
	t.Description = s.describe(name)
	if err := s.inUse(name); err != nil {
		return t, fmt.Errorf("%s: %w; nothing was written", path, err)
	}
	return t, nil
}

// lookup finds the block device devnum ("8:17") in sysfs: its directory
// there, whether it is a partition, and the whole disk that holds it.
func (s System) lookup(devnum string) (dir string, partition bool, disk string, err error) {
	dir, err = filepath.EvalSymlinks(filepath.Join(s.Sys, "dev", "block", devnum))
	if err != nil {
		return "", false, "", fmt.Errorf("not a block device the kernel lists: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
		return dir, true, filepath.Base(filepath.Dir(dir)), nil
	}
	return dir, false, filepath.Base(dir), nil
}

// disksUnder lists the whole disks that the block device devnum lives on:
// its own disk, and for device-mapper (LUKS, LVM) and md devices, the disks
// of everything under it.
func (s System) disksUnder(devnum string, depth int) []string {
	if depth > 16 {
		return nil
	}
	real, _, disk, err := s.lookup(devnum)
	if err != nil {
		return nil
	}
	out := []string{disk}
	slaves, _ := os.ReadDir(filepath.Join(real, "slaves"))
	for _, sl := range slaves {
		dev, err := os.ReadFile(filepath.Join(real, "slaves", sl.Name(), "dev"))
		if err != nil {
			continue
		}
		out = append(out, s.disksUnder(strings.TrimSpace(string(dev)), depth+1)...)
	}
	return out
}

// disksOfSource lists the disks under a mount or swap source such as
// /dev/sdb1 or /dev/mapper/data. Some filesystems (btrfs) show a
// anonymous device number in the mount table; their source names the disk.
func (s System) disksOfSource(source string) []string {
	if !strings.HasPrefix(source, "/dev/") {
		return nil
	}
	if real, err := filepath.EvalSymlinks(source); err == nil {
		source = real
	}
	dev, err := os.ReadFile(filepath.Join(s.Sys, "class", "block", filepath.Base(source), "dev"))
	if err != nil {
		return nil
	}
	return s.disksUnder(strings.TrimSpace(string(dev)), 0)
}

// inUse says why disk must not be written: the running system's root is on
// it, something on it is mounted, or it holds swap.
func (s System) inUse(disk string) error {
	mounts, err := readMountinfo(s.Mountinfo)
	if err != nil {
		return err
	}
	on := func(devnum, source string) bool {
		for _, d := range append(s.disksUnder(devnum, 0), s.disksOfSource(source)...) {
			if d == disk {
				return true
			}
		}
		return false
	}
	// The last mount on / is the one in effect.
	for i := len(mounts) - 1; i >= 0; i-- {
		if m := mounts[i]; m.point == "/" {
			if on(m.devnum, m.source) {
				return fmt.Errorf("the running system's root filesystem (/) is on this disk (%s)", m.source)
			}
			break
		}
	}
	for _, m := range mounts {
		if on(m.devnum, m.source) {
			return fmt.Errorf("%s is mounted on %s: unmount it first (umount %s)", m.source, m.point, m.point)
		}
	}
	swaps, err := os.ReadFile(s.Swaps)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, line := range strings.Split(string(swaps), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		name := unescapeMount(f[0])
		disks := s.disksOfSource(name)
		if fi, err := os.Stat(name); err == nil && fi.Mode().IsRegular() {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				disks = s.disksUnder(fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)), 0)
			}
		}
		for _, d := range disks {
			if d == disk {
				return fmt.Errorf("%s is in use as swap: swapoff %s first", name, name)
			}
		}
	}
	return nil
}

// describe names the disk for a human: vendor and model, or a loop device's
// backing file.
func (s System) describe(disk string) string {
	dir := filepath.Join(s.Sys, "class", "block", disk)
	if b, err := os.ReadFile(filepath.Join(dir, "loop", "backing_file")); err == nil {
		return "loop device on " + strings.TrimSpace(string(b))
	}
	var parts []string
	for _, f := range []string{"vendor", "model"} {
		if b, err := os.ReadFile(filepath.Join(dir, "device", f)); err == nil {
			if v := strings.TrimSpace(string(b)); v != "" {
				parts = append(parts, v)
			}
		}
	}
	if rm, err := readInt(filepath.Join(dir, "removable")); err == nil && rm == 1 {
		parts = append(parts, "removable")
	}
	return strings.Join(parts, " ")
}

type mount struct{ devnum, point, source string }

// readMountinfo reads the fields Check needs from a mountinfo file
// (proc(5)): major:minor, mount point and source.
func readMountinfo(p string) ([]mount, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+3 {
			return nil, fmt.Errorf("%s: malformed line %q", p, sc.Text())
		}
		out = append(out, mount{devnum: fields[2], point: unescapeMount(fields[4]), source: unescapeMount(fields[sep+2])})
	}
	return out, sc.Err()
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo
// and /proc/swaps.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
