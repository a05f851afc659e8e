package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// Names the appliance's uinit and a user's laptop see.
const (
	ESPName   = "livebootp-esp"  // GPT name of partition 1, the EFI system partition
	DataName  = "livebootp-data" // GPT name of partition 2, the data partition
	ESPLabel  = "LBP-BOOT"       // FAT volume label of the EFI system partition
	DataLabel = "LIVEBOOTP"      // FAT volume label of the data partition: mount it by this
)

// Files on the EFI system partition, as loader configs name them.
const (
	KernelFile = "vmlinuz"
	InitrdFile = "initrd.img"
	DTBDir     = "dtbs"
)

const (
	sectorSize = 512
	mib        = int64(1) << 20
	// Partitions start and (in a built image) end on 1 MiB boundaries, as
	// partitioning tools do, so flash pages and erase blocks line up.
	alignment = mib
	minPart   = 64 * mib
	// go-diskfs v1.9.4 stores FAT32's sectors-per-FAT in 16 bits, which
	// overflows above 256 GiB (32 KiB clusters): the data partition stops
	// there on bigger disks.
	maxDataPart = 256 << 30
	// legacyBIOSBootable (GPT attribute bit 2) is what U-Boot's distro boot
	// looks for when it picks the partition holding extlinux/extlinux.conf.
	legacyBIOSBootable = 1 << 2
)

// Spec is what goes into an appliance image.
type Spec struct {
	Arch      string // "amd64" or "arm64": picks the UEFI loader's name
	Kernel    string // kernel image (an EFI stub for UEFI boot)
	Initramfs string // the appliance initramfs
	Cmdline   string // kernel command line for every loader
	EFILoader string // systemd-boot EFI binary; "" leaves UEFI boot out (U-Boot only)
	DTBs      string // device tree directory copied to /dtbs for U-Boot (fdtdir); "" = none
	DataDir   string // tree copied to the data partition (config.yml, images/, ...); "" = empty
	DataSize  int64  // data partition size in bytes; 0 = the content plus slack, at least 64 MiB
	// Time stamped on generated files (loader configs); zero = now.
	Time time.Time
}

// Layout is where the partitions of an image lie, in bytes.
type Layout struct {
	Size                int64 // the whole image
	ESPStart, ESPSize   int64
	DataStart, DataSize int64
	ESPFiles, DataFiles int   // files (not directories) on each partition
	ESPBytes, DataBytes int64 // their contents' sizes
}

// Build writes the appliance image described by s to out. It writes a
// temporary file beside out and renames it, so out is either the old file
// or a complete image. progress, if not nil, is told each step.
func Build(ctx context.Context, out string, s Spec, progress func(step string)) (Layout, error) {
	if progress == nil {
		progress = func(string) {}
	}
	esp, err := espEntries(s)
	if err != nil {
		return Layout{}, err
	}
	var data []entry
	if s.DataDir != "" {
		if data, err = scanDir(s.DataDir, ""); err != nil {
			return Layout{}, fmt.Errorf("data partition: %w", err)
		}
	}
	if err := checkEntries(esp); err != nil {
		return Layout{}, fmt.Errorf("EFI system partition: %w", err)
	}
	if err := checkEntries(data); err != nil {
		return Layout{}, fmt.Errorf("data partition (from %s): %w", s.DataDir, err)
	}
	l, err := plan(esp, data, s.DataSize)
	if err != nil {
		return Layout{}, err
	}
	progress(fmt.Sprintf("image %s: EFI system partition %s (%d files, %s), data partition %s (%d files, %s)",
		humanBytes(l.Size), humanBytes(l.ESPSize), l.ESPFiles, humanBytes(l.ESPBytes),
		humanBytes(l.DataSize), l.DataFiles, humanBytes(l.DataBytes)))

	dir, base := filepath.Split(out)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return Layout{}, fmt.Errorf("creating the image beside %s: %w", out, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Truncate(l.Size); err != nil {
		return Layout{}, fmt.Errorf("%s: %w", tmp.Name(), err)
	}
	b := file.New(tmp, false)
	progress("partition table (GPT, protective MBR)")
	if err := writeTable(b, l.Size, newTable(l)); err != nil {
		return Layout{}, fmt.Errorf("%s: %w", tmp.Name(), err)
	}
	copyAt := func(ctx context.Context, r io.Reader, off, n int64) error {
		return copyN(ctx, io.NewOffsetWriter(tmp, off), r, n)
	}
	progress(fmt.Sprintf("EFI system partition: %s", espSummary(s)))
	if err := makeFAT(ctx, b, l.ESPStart, l.ESPSize, ESPLabel, esp, copyAt); err != nil {
		return Layout{}, fmt.Errorf("EFI system partition: %w", err)
	}
	progress(fmt.Sprintf("data partition %s: %d files from %s", DataLabel, l.DataFiles, orNone(s.DataDir)))
	if err := makeFAT(ctx, b, l.DataStart, l.DataSize, DataLabel, data, copyAt); err != nil {
		return Layout{}, fmt.Errorf("data partition: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return Layout{}, fmt.Errorf("%s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return Layout{}, err
	}
	if err := tmp.Close(); err != nil {
		return Layout{}, err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return Layout{}, err
	}
	ok = true
	return l, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func espSummary(s Spec) string {
	loaders := []string{"extlinux"}
	if s.EFILoader != "" {
		loaders = append([]string{"systemd-boot"}, loaders...)
	}
	return fmt.Sprintf("%s, kernel, initramfs", strings.Join(loaders, " + "))
}

// espEntries lists what goes on the EFI system partition.
func espEntries(s Spec) ([]entry, error) {
	var efiName string
	switch s.Arch {
	case "amd64":
		efiName = "BOOTX64.EFI"
	case "arm64":
		efiName = "BOOTAA64.EFI"
	default:
		return nil, fmt.Errorf("arch %q: want amd64 or arm64", s.Arch)
	}
	if strings.ContainsAny(s.Cmdline, "\r\n") {
		return nil, fmt.Errorf("kernel command line %q: must be one line", s.Cmdline)
	}
	mtime := s.Time
	if mtime.IsZero() {
		mtime = time.Now()
	}
	var out []entry
	add := func(what, dest, src string) error {
		if src == "" {
			return fmt.Errorf("%s: no file given", what)
		}
		e, err := fileEntry(dest, src)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, e)
		return nil
	}
	if s.EFILoader != "" {
		out = append(out, entry{path: "EFI", dir: true, mtime: mtime}, entry{path: "EFI/BOOT", dir: true, mtime: mtime})
		if err := add("UEFI loader", "EFI/BOOT/"+efiName, s.EFILoader); err != nil {
			return nil, err
		}
		out = append(out,
			entry{path: "loader", dir: true, mtime: mtime},
			bytesEntry("loader/loader.conf", []byte(loaderConf), mtime),
			entry{path: "loader/entries", dir: true, mtime: mtime},
			bytesEntry("loader/entries/livebootp.conf", []byte(loaderEntry(s.Cmdline)), mtime))
	}
	out = append(out, entry{path: "extlinux", dir: true, mtime: mtime},
		bytesEntry("extlinux/extlinux.conf", []byte(extlinuxConf(s.Cmdline, s.DTBs != "")), mtime))
	if err := add("kernel", KernelFile, s.Kernel); err != nil {
		return nil, err
	}
	if err := add("initramfs", InitrdFile, s.Initramfs); err != nil {
		return nil, err
	}
	if s.DTBs != "" {
		fi, err := os.Stat(s.DTBs)
		if err != nil {
			return nil, fmt.Errorf("device trees: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("device trees: %s is not a directory", s.DTBs)
		}
		dtbs, err := scanDir(s.DTBs, DTBDir)
		if err != nil {
			return nil, fmt.Errorf("device trees: %w", err)
		}
		out = append(out, entry{path: DTBDir, dir: true, mtime: fi.ModTime()})
		out = append(out, dtbs...)
	}
	return out, nil
}

// loaderConf makes systemd-boot start the one entry at once; holding a key
// while it starts still shows its menu.
const loaderConf = `default livebootp.conf
timeout 0
console-mode keep
`

func loaderEntry(cmdline string) string {
	return fmt.Sprintf("title   LiveBOOTP appliance\nlinux   /%s\ninitrd  /%s\noptions %s\n", KernelFile, InitrdFile, cmdline)
}

// extlinuxConf is read by U-Boot's distro boot (and syslinux-style loaders):
// prompt 0 boots the default label without a menu.
func extlinuxConf(cmdline string, dtbs bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "default livebootp\nprompt 0\ntimeout 10\n\nlabel livebootp\n")
	fmt.Fprintf(&b, "    menu label LiveBOOTP appliance\n    kernel /%s\n    initrd /%s\n", KernelFile, InitrdFile)
	if dtbs {
		fmt.Fprintf(&b, "    fdtdir /%s\n", DTBDir)
	}
	fmt.Fprintf(&b, "    append %s\n", cmdline)
	return b.String()
}

// plan sizes the partitions. The EFI system partition leaves room for a
// second kernel and initramfs beside the first, so a user can update them in
// place; the data partition only needs some slack, since flashing grows it
// to the end of the disk.
func plan(esp, data []entry, dataSize int64) (Layout, error) {
	var l Layout
	for _, e := range esp {
		if !e.dir {
			l.ESPFiles++
			l.ESPBytes += e.size
		}
	}
	for _, e := range data {
		if !e.dir {
			l.DataFiles++
			l.DataBytes += e.size
		}
	}
	espNeed, dataNeed := fatOverhead(treeBytes(esp)), fatOverhead(treeBytes(data))
	l.ESPStart = alignment
	l.ESPSize = roundUp(max(minPart, 2*espNeed+16*mib), alignment)
	l.DataStart = l.ESPStart + l.ESPSize
	switch {
	case dataSize == 0:
		l.DataSize = roundUp(max(minPart, dataNeed+dataNeed/8+16*mib), alignment)
	case dataSize < minPart:
		return Layout{}, fmt.Errorf("data partition size %s: FAT32 needs at least %s", humanBytes(dataSize), humanBytes(minPart))
	case dataSize < dataNeed:
		return Layout{}, fmt.Errorf("data partition size %s: its files need about %s", humanBytes(dataSize), humanBytes(dataNeed))
	case dataSize > maxDataPart:
		return Layout{}, fmt.Errorf("data partition size %s: at most %s", humanBytes(dataSize), humanBytes(maxDataPart))
	default:
		l.DataSize = roundUp(dataSize, alignment)
	}
	// The backup GPT (33 sectors) goes into one more aligned MiB at the end.
	l.Size = l.DataStart + l.DataSize + alignment
	return l, nil
}

// fatOverhead adds the reserved sectors and both FATs (4 bytes a cluster of
// at least 512 bytes, twice) to n bytes of contents.
func fatOverhead(n int64) int64 { return n + n/64 + mib }

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// newTable is the image's partition table for layout l.
func newTable(l Layout) *gpt.Table {
	return &gpt.Table{
		LogicalSectorSize:  sectorSize,
		PhysicalSectorSize: sectorSize,
		ProtectiveMBR:      true,
		Partitions: []*gpt.Partition{
			{Index: 1, Type: gpt.EFISystemPartition, Name: ESPName, Attributes: legacyBIOSBootable,
				Start: uint64(l.ESPStart / sectorSize), End: uint64((l.ESPStart+l.ESPSize)/sectorSize - 1)},
			{Index: 2, Type: gpt.MicrosoftBasicData, Name: DataName,
				Start: uint64(l.DataStart / sectorSize), End: uint64((l.DataStart+l.DataSize)/sectorSize - 1)},
		},
	}
}

// writeTable writes t (primary and backup GPT, protective MBR) to a disk of
// size bytes.
func writeTable(b backend.Storage, size int64, t *gpt.Table) error {
	w, err := b.Writable()
	if err != nil {
		return err
	}
	if err := t.Write(w, size); err != nil {
		return fmt.Errorf("writing the partition table: %w", err)
	}
	return fixProtectiveMBR(w, size)
}

// fixProtectiveMBR caps the protective MBR's size field at 0xFFFFFFFF sectors
// on disks of 2 TiB and more, as UEFI requires; go-diskfs truncates it.
func fixProtectiveMBR(w io.WriterAt, size int64) error {
	sectors := size/sectorSize - 1
	if sectors <= 0xFFFFFFFF {
		return nil
	}
	_, err := w.WriteAt([]byte{0xff, 0xff, 0xff, 0xff}, 446+12)
	return err
}

// makeFAT makes a FAT32 filesystem labelled label on [start, start+size) and
// fills it with entries.
func makeFAT(ctx context.Context, b backend.Storage, start, size int64, label string, entries []entry, copyAt copyAtFunc) error {
	fsys, err := newFAT32(b, start, size, label)
	if err != nil {
		return err
	}
	return fill(ctx, fsys, b, start, entries, copyAt)
}

// copyN copies n bytes from r to w, stopping early when ctx ends.
func copyN(ctx context.Context, w io.Writer, r io.Reader, n int64) error {
	buf := make([]byte, 1<<20)
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := min(n, int64(len(buf)))
		if _, err := io.ReadFull(r, buf[:k]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return errors.New("the file got shorter while it was copied")
			}
			return err
		}
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
