package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"
)

// FlashOptions are the choices and dependencies of Flash.
type FlashOptions struct {
	System System // where mounts, swaps and sysfs are read; zero = this system
	// Confirm is asked, once every check has passed, whether to write; nil
	// means yes (--yes). The question names the image and the disk.
	Confirm func(question string) (bool, error)
	// Progress is told how far the writing is, at most once a second and once
	// at the end. Nil = not told.
	Progress func(FlashProgress)
	// ForceFile allows a regular file as the device (a VM's disk image); it
	// must already be at least as big as the image.
	ForceFile bool
	// NoGrow keeps the data partition at the image's size instead of growing
	// it to the end of the disk.
	NoGrow bool
	Log    *slog.Logger     // nil = discard
	Now    func() time.Time // nil = time.Now; paces Progress
}

// FlashProgress is how far Flash has got.
type FlashProgress struct {
	Step        string // "writing", "synced"
	Done, Total int64  // bytes
	Elapsed     time.Duration
}

// Percent is Done as a share of Total.
func (p FlashProgress) Percent() float64 {
	if p.Total == 0 {
		return 100
	}
	return 100 * float64(p.Done) / float64(p.Total)
}

// Rate is the mean speed so far in bytes per second.
func (p FlashProgress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Done) / p.Elapsed.Seconds()
}

// ErrDeclined is returned when Confirm says no.
var ErrDeclined = errors.New("not confirmed: nothing was written")

// imageInfo is what Flash needs of an appliance image.
type imageInfo struct {
	size  int64
	table *gpt.Table
	data  *gpt.Partition
}

func readImage(f *os.File) (imageInfo, error) {
	fi, err := f.Stat()
	if err != nil {
		return imageInfo{}, err
	}
	t, err := gpt.Read(f, sectorSize, sectorSize)
	if err != nil {
		return imageInfo{}, fmt.Errorf("%s: no GPT partition table (%v): not an appliance image", f.Name(), err)
	}
	info := imageInfo{size: fi.Size(), table: t}
	names := map[int]string{1: ESPName, 2: DataName}
	for _, p := range t.Partitions {
		if want, ok := names[p.Index]; ok && p.Name == want {
			delete(names, p.Index)
			if p.Index == 2 {
				info.data = p
			}
		}
	}
	if len(names) > 0 || len(t.Partitions) != 2 {
		return imageInfo{}, fmt.Errorf("%s: not a livebootp appliance image (want partitions %s and %s); write other images with dd", f.Name(), ESPName, DataName)
	}
	if end := int64(info.data.End+1) * sectorSize; end > info.size {
		return imageInfo{}, fmt.Errorf("%s: data partition ends at %d, after the end of the file (%d): truncated image?", f.Name(), end, info.size)
	}
	return info, nil
}

// Flash writes the appliance image file to device, a whole disk, after
// Check and Confirm, and grows the data partition to the end of the disk
// (unless o.NoGrow): it writes the image up to the data partition, a new
// partition table whose primary and backup headers fit the disk, and a new
// FAT32 filesystem of the grown size holding the image's data files
// (go-diskfs cannot grow FAT32 in place). Then it syncs and has the kernel
// re-read the partition table.
func Flash(ctx context.Context, image, device string, o FlashOptions) error {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	img, err := os.Open(image)
	if err != nil {
		return err
	}
	defer img.Close()
	info, err := readImage(img)
	if err != nil {
		return err
	}
	target, err := Check(o.System, device, info.size, o.ForceFile)
	if err != nil {
		return err
	}
	if err := notSameFile(img, device); err != nil {
		return err
	}
	newTable, dataStart, dataSize := grownTable(info, target.Size, o.NoGrow)
	var entries []entry
	if !o.NoGrow {
		oldStart, oldSize := info.data.GetStart(), info.data.GetSize()
		fsys, err := fat32.Read(file.New(img, true), oldSize, oldStart, sectorSize)
		if err != nil {
			return fmt.Errorf("%s: data partition: %w", image, err)
		}
		if entries, err = fatEntries(fsys, img, oldStart); err != nil {
			return fmt.Errorf("%s: data partition: %w", image, err)
		}
	}
	if o.Confirm != nil {
		q := fmt.Sprintf("write %s (%s) to %s, erasing all on it", image, humanBytes(info.size), target)
		ok, err := o.Confirm(q)
		if err != nil {
			return err
		}
		if !ok {
			return ErrDeclined
		}
	}
	dev, err := openDevice(device, target.Disk != "")
	if err != nil {
		return err
	}
	defer dev.Close()
	log.Info("flashing", "image", image, "device", device, "disk", target.Disk, "size", target.Size,
		"data_partition", dataSize, "files", len(entries))
	w := flashWrite{dev: dev, img: img, table: newTable, diskSize: target.Size,
		dataStart: dataStart, dataSize: dataSize, grow: !o.NoGrow, entries: entries}
	if err := w.run(ctx, newProgressMeter(o, w.total())); err != nil {
		return fmt.Errorf("%s: %w; the disk holds an incomplete image now: flash it again", device, err)
	}
	if target.Disk != "" {
		if err := unix.IoctlSetInt(int(dev.f.Fd()), unix.BLKRRPART, 0); err != nil {
			// The disk is written; only the kernel's view of it is old.
			log.Warn("the kernel did not re-read the partition table; unplug and replug the disk", "device", device, "err", err)
		}
	}
	return verifyTable(dev.f, target.Size)
}

// flashWrite is the writing part of Flash, once everything is checked.
type flashWrite struct {
	dev                 *device
	img                 *os.File
	table               *gpt.Table
	diskSize            int64
	dataStart, dataSize int64
	grow                bool
	entries             []entry // the data partition's files when growing
}

// rawEnd is how much of the image is copied as it is: up to the data
// partition when it grows (its files are copied one by one), else up to the
// end of the data partition.
func (w flashWrite) rawEnd() int64 {
	if w.grow {
		return w.dataStart
	}
	return w.dataStart + w.dataSize
}

func (w flashWrite) total() int64 {
	n := w.rawEnd()
	for _, e := range w.entries {
		n += e.size
	}
	return n
}

func (w flashWrite) run(ctx context.Context, pr *progressMeter) error {
	if err := w.dev.copyAt(ctx, io.NewSectionReader(w.img, 0, w.rawEnd()), 0, w.rawEnd(), pr.add); err != nil {
		return err
	}
	b := file.New(w.dev.f, false)
	if err := writeTable(b, w.diskSize, w.table); err != nil {
		return err
	}
	if w.grow {
		// Old signatures (ext4, LUKS, ISO 9660) inside the first MiB would make
		// blkid see two filesystems on the partition; FAT32 writes only a few
		// sectors of it.
		if err := w.dev.zero(ctx, w.dataStart, min(mib, w.dataSize)); err != nil {
			return err
		}
		copyAt := func(ctx context.Context, r io.Reader, off, n int64) error {
			return w.dev.copyAt(ctx, r, off, n, pr.add)
		}
		if err := makeFAT(ctx, b, w.dataStart, w.dataSize, DataLabel, w.entries, copyAt); err != nil {
			return fmt.Errorf("data partition: %w", err)
		}
	}
	if err := w.dev.sync(); err != nil {
		return fmt.Errorf("syncing: %w", err)
	}
	pr.finish()
	return nil
}

// grownTable is the partition table for a disk of diskSize bytes: the
// image's partitions with the data partition grown to the last usable
// sector (capped where go-diskfs's FAT32 stops working), or kept as is.
func grownTable(info imageInfo, diskSize int64, noGrow bool) (t *gpt.Table, dataStart, dataSize int64) {
	t = &gpt.Table{
		LogicalSectorSize:  sectorSize,
		PhysicalSectorSize: sectorSize,
		ProtectiveMBR:      true,
		GUID:               info.table.GUID,
	}
	for _, p := range info.table.Partitions {
		q := *p
		q.Size = 0 // recomputed from Start and End
		t.Partitions = append(t.Partitions, &q)
	}
	data := t.Partitions[1]
	dataStart = int64(data.Start) * sectorSize
	if !noGrow {
		// The backup GPT takes the last 33 sectors.
		last := diskSize/sectorSize - 34
		end := min(last, (dataStart+maxDataPart)/sectorSize-1)
		data.End = uint64(end)
	}
	return t, dataStart, (int64(data.End) + 1 - int64(data.Start)) * sectorSize
}

// verifyTable reads the partition table back and checks its backup header
// sits at the end of the disk.
func verifyTable(f *os.File, size int64) error {
	t, err := gpt.Read(f, sectorSize, sectorSize)
	if err != nil {
		return fmt.Errorf("%s: reading the written partition table back: %w", f.Name(), err)
	}
	if t.RecoveredFromBackup {
		return fmt.Errorf("%s: the written primary partition table does not read back", f.Name())
	}
	if err := t.Verify(f, uint64(size)); err != nil {
		return fmt.Errorf("%s: written partition table: %w", f.Name(), err)
	}
	return nil
}

// notSameFile refuses to write an image onto itself.
func notSameFile(img *os.File, device string) error {
	a, err := img.Stat()
	if err != nil {
		return err
	}
	b, err := os.Stat(device)
	if err != nil {
		return err
	}
	if os.SameFile(a, b) {
		return fmt.Errorf("%s is the image itself", device)
	}
	return nil
}

// progressMeter paces FlashProgress reports to one a second.
type progressMeter struct {
	o           FlashOptions
	now         func() time.Time
	start, last time.Time
	done, total int64
}

func newProgressMeter(o FlashOptions, total int64) *progressMeter {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	t := now()
	return &progressMeter{o: o, now: now, start: t, last: t, total: total}
}

func (m *progressMeter) add(n int64) {
	m.done += n
	if m.o.Progress == nil {
		return
	}
	if t := m.now(); t.Sub(m.last) >= time.Second {
		m.last = t
		m.o.Progress(FlashProgress{Step: "writing", Done: m.done, Total: m.total, Elapsed: t.Sub(m.start)})
	}
}

func (m *progressMeter) finish() {
	if m.o.Progress != nil {
		m.o.Progress(FlashProgress{Step: "synced", Done: m.done, Total: m.total, Elapsed: m.now().Sub(m.start)})
	}
}
