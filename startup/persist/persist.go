// Package persist gives a diskless target its persistent storage (design
// §5): it finds the filesystem labelled for livebootp (or the one the
// kernel command line names), or a disk that is entirely blank to
// initialise, mounts it, keeps the image's VOLUMEs on it (bind or overlay,
// first filled by copying the image's content) and caches the squashfs.
//
// It must never format a device that holds anything. A disk qualifies only
// when Blank says so (its first and last MiB are all zeros: no partition
// table, no filesystem, RAID, LVM or LUKS signature) and it is a plain,
// writable, non-removable, unpartitioned whole disk that nothing else uses;
// the check runs again immediately before mkfs.
//
// Layout on the filesystem (label DefaultLabel):
//
//	livebootp/ssh/                     SSH host keys
//	livebootp/cache/<sha256>.squashfs  the verified image, reused while its sha256 is unchanged
//	livebootp/volumes/<escaped>/       bind-mounted directories
//	livebootp/overlays/<escaped>/{upper,work}  unionfs directories
package persist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// DefaultLabel is the filesystem label `livebootp.persistent=auto` looks for
// and gives to a disk it initialises.
const DefaultLabel = "livebootp-data"

// MinDiskSize is the smallest blank disk worth initialising.
const MinDiskSize = 64 * MiB

// Device is a block device as sysfs describes it.
type Device struct {
	Name      string // vda, vda1, nvme0n1
	Path      string // the device node: <root>/dev/<name>
	Partition bool
	Size      int64 // bytes
	Removable bool
	ReadOnly  bool
	Hardware  bool     // has a device/ link: a real disk, not a loop, ram, zram, dm or md device
	Holders   bool     // used by device-mapper, md or bcache
	Children  []string // partitions of a whole disk
}

// Scan lists the block devices under root/sys/class/block, whole disks and
// partitions, in name order. Device nodes are expected at root/dev/<name>
// (devtmpfs creates them; there is no udev in the initrd).
func Scan(root string) ([]Device, error) {
	classDir := filepath.Join(root, "sys", "class", "block")
	ents, err := os.ReadDir(classDir)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	byName := map[string]*Device{}
	var names []string
	for _, e := range ents {
		d := filepath.Join(classDir, e.Name())
		dev := &Device{Name: e.Name(), Path: filepath.Join(root, "dev", e.Name())}
		_, perr := os.Stat(filepath.Join(d, "partition"))
		dev.Partition = perr == nil
		if s, err := readInt(filepath.Join(d, "size")); err == nil {
			dev.Size = s * 512 // sysfs counts 512-byte sectors whatever the device's sector size
		}
		dev.ReadOnly = readBool(filepath.Join(d, "ro"))
		dev.Removable = readBool(filepath.Join(d, "removable"))
		if _, err := os.Stat(filepath.Join(d, "device")); err == nil {
			dev.Hardware = true
		}
		if hs, err := os.ReadDir(filepath.Join(d, "holders")); err == nil && len(hs) > 0 {
			dev.Holders = true
		}
		byName[dev.Name] = dev
		names = append(names, dev.Name)
	}
	sort.Strings(names)
	for _, n := range names {
		dev := byName[n]
		if dev.Partition {
			// A partition's directory sits inside its disk's: find the parent
			// through the sysfs directory of each disk.
			for _, p := range names {
				if pd := byName[p]; !pd.Partition && strings.HasPrefix(n, p) {
					if _, err := os.Stat(filepath.Join(classDir, p, n)); err == nil {
						pd.Children = append(pd.Children, n)
					}
				}
			}
		}
	}
	out := make([]Device, 0, len(names))
	for _, n := range names {
		out = append(out, *byName[n])
	}
	return out, nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

func readBool(path string) bool {
	n, err := readInt(path)
	return err == nil && n != 0
}

// Action is what Plan decided.
type Action string

const (
	None   Action = "none"   // no persistent storage
	Use    Action = "mount"  // mount an existing filesystem
	Format Action = "format" // initialise a blank disk, then mount it
)

// Plan is the outcome of Decide.
type Plan struct {
	Action Action
	Device Device
	Sig    Signature // for Use: what is on it
	Label  string    // for Format: the label to give it
	Notes  []string  // each device considered and why it was skipped, for the debug log
	Reason string    // for None: why, one line for the console
}

// Decide picks persistent storage according to spec (the value of
// livebootp.persistent): "none"; "auto" (= LABEL=livebootp-data); "LABEL=x":
// the first filesystem labelled x, else the first blank disk, initialised
// with label x; "/dev/NAME": that device, mounted if it holds an ext or
// vfat filesystem, initialised if it is blank, refused otherwise.
func Decide(root, spec string) (Plan, error) {
	if spec == "" || spec == "auto" {
		spec = "LABEL=" + DefaultLabel
	}
	if spec == "none" {
		return Plan{Action: None, Reason: "livebootp.persistent=none"}, nil
	}
	devs, err := Scan(root)
	if err != nil {
		return Plan{}, err
	}
	if name, ok := strings.CutPrefix(spec, "/dev/"); ok {
		return decideDevice(root, devs, name)
	}
	label, ok := strings.CutPrefix(spec, "LABEL=")
	if !ok || label == "" {
		return Plan{}, fmt.Errorf("livebootp.persistent=%q: want auto, none, LABEL=NAME or /dev/NAME", spec)
	}
	var p Plan
	var found []Plan
	for _, d := range devs {
		if skipForLabels(d.Name) {
			continue
		}
		sig, err := probeDevice(d)
		if err != nil {
			p.Notes = append(p.Notes, fmt.Sprintf("%s: %v", d.Name, err))
			continue
		}
		if sig.Mountable() && sig.Label == label {
			found = append(found, Plan{Action: Use, Device: d, Sig: sig})
		}
	}
	if len(found) > 0 {
		use := found[0]
		use.Notes = p.Notes
		for _, f := range found[1:] {
			use.Notes = append(use.Notes, fmt.Sprintf("%s is labelled %q too; using %s", f.Device.Name, label, use.Device.Name))
		}
		return use, nil
	}
	for _, d := range devs {
		ok, why := Candidate(d)
		if ok {
			blank, what, err := blankDevice(d)
			switch {
			case err != nil:
				ok, why = false, err.Error()
			case !blank:
				ok, why = false, "holds "+what
			}
		}
		if !ok {
			if d.Hardware && !d.Partition {
				p.Notes = append(p.Notes, fmt.Sprintf("%s: not initialised: %s", d.Name, why))
			}
			continue
		}
		return Plan{Action: Format, Device: d, Label: label, Notes: p.Notes}, nil
	}
	p.Action = None
	p.Reason = fmt.Sprintf("no filesystem labelled %q and no blank disk", label)
	return p, nil
}

func decideDevice(root string, devs []Device, name string) (Plan, error) {
	for _, d := range devs {
		if d.Name != name {
			continue
		}
		sig, err := probeDevice(d)
		if err != nil {
			return Plan{}, fmt.Errorf("livebootp.persistent=/dev/%s: %w", name, err)
		}
		if sig.Mountable() {
			return Plan{Action: Use, Device: d, Sig: sig}, nil
		}
		if sig.Kind != "" {
			return Plan{}, fmt.Errorf("livebootp.persistent=/dev/%s: it holds %s, which livebootp does not mount and will not format; wipe it (wipefs -a) to have it initialised, or name another device", name, sig)
		}
		blank, what, err := blankDevice(d)
		if err != nil {
			return Plan{}, fmt.Errorf("livebootp.persistent=/dev/%s: %w", name, err)
		}
		if !blank {
			return Plan{}, fmt.Errorf("livebootp.persistent=/dev/%s: it holds %s and is left untouched; wipe it to have it initialised", name, what)
		}
		if d.ReadOnly {
			return Plan{}, fmt.Errorf("livebootp.persistent=/dev/%s: the device is read-only", name)
		}
		return Plan{Action: Format, Device: d, Label: DefaultLabel}, nil
	}
	return Plan{}, fmt.Errorf("livebootp.persistent=/dev/%s: no such block device (is its driver in the initrd's module list?)", name)
}

// skipForLabels leaves out devices that cannot hold the persistent
// filesystem: our own loop devices, RAM disks, optical and floppy drives.
func skipForLabels(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "sr", "fd", "nbd"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Candidate reports whether a device may be considered for initialisation
// at all, before looking at its content.
func Candidate(d Device) (bool, string) {
	switch {
	case d.Partition:
		return false, "a partition (only whole, unpartitioned disks are initialised)"
	case !d.Hardware || skipForLabels(d.Name):
		return false, "not a disk"
	case strings.HasPrefix(d.Name, "mmcblk") && (strings.Contains(d.Name, "boot") || strings.Contains(d.Name, "rpmb")):
		return false, "an eMMC boot area"
	case d.ReadOnly:
		return false, "read-only"
	case d.Removable:
		return false, "removable media"
	case d.Holders:
		return false, "in use by device-mapper, md or bcache"
	case len(d.Children) > 0:
		return false, "has partitions " + strings.Join(d.Children, ", ")
	case d.Size < MinDiskSize:
		return false, fmt.Sprintf("smaller than %d MiB", MinDiskSize/MiB)
	}
	return true, ""
}

func probeDevice(d Device) (Signature, error) {
	f, err := os.Open(d.Path)
	if err != nil {
		return Signature{}, err
	}
	defer f.Close()
	head := make([]byte, MiB)
	n, err := f.ReadAt(head, 0)
	if err != nil && n == 0 {
		return Signature{}, fmt.Errorf("read %s: %w", d.Path, err)
	}
	sig, _ := Probe(head[:n])
	return sig, nil
}

func blankDevice(d Device) (bool, string, error) {
	f, err := os.Open(d.Path)
	if err != nil {
		return false, "", err
	}
	defer f.Close()
	size := d.Size
	if size == 0 {
		if size, err = f.Seek(0, 2); err != nil {
			return false, "", err
		}
	}
	blank, what, err := Blank(f, size)
	if err != nil {
		return false, "", fmt.Errorf("%s: %w", d.Path, err)
	}
	return blank, what, nil
}

// ErrNotBlank is returned by Initialise when the disk changed since Decide.
var ErrNotBlank = errors.New("the disk is no longer blank")
