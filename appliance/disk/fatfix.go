package disk

// Fix-ups for what go-diskfs v1.9.4 gets wrong in the FAT32 filesystems it
// makes, each found by fsck.fat and checked by this package's tests.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// newFAT32 makes a FAT32 filesystem on the partition [start, start+size) of
// b. go-diskfs v1.9.4 sizes the FAT for the data clusters but forgets the two
// reserved entries, so for some sizes the FAT is up to two entries short: the
// Linux kernel refuses to mount such a filesystem ("count of clusters too
// big") and fsck.fat refuses it too. So the boot sector is checked, and the
// filesystem made a few clusters smaller than its partition until it fits.
func newFAT32(b backend.Storage, start, size int64, label string) (filesystem.FileSystem, error) {
	for range 8 {
		fsys, err := fat32.Create(b, size, start, sectorSize, label, false)
		if err != nil {
			return nil, fmt.Errorf("making FAT32 %s: %w", label, err)
		}
		bs, err := readBootSector(b, start)
		if err != nil {
			return nil, fmt.Errorf("FAT32 %s: %w", label, err)
		}
		short := bs.clusters() + 2 - bs.perFAT*bs.bps/4 // FAT entries missing
		if short <= 0 {
			return fsys, nil
		}
		size -= short * bs.spc * bs.bps
	}
	return nil, fmt.Errorf("FAT32 %s: go-diskfs keeps making a FAT too small for %d bytes", label, size)
}

// bootSector is what the fix-ups need of a FAT32 boot sector.
type bootSector struct {
	bps, spc, reserved, fats, total, perFAT int64
	fsInfo, backupBoot                      int64 // sectors
}

func readBootSector(r io.ReaderAt, off int64) (bootSector, error) {
	b := make([]byte, sectorSize)
	if _, err := r.ReadAt(b, off); err != nil {
		return bootSector{}, err
	}
	le := binary.LittleEndian
	bs := bootSector{
		bps: int64(le.Uint16(b[11:])), spc: int64(b[13]), reserved: int64(le.Uint16(b[14:])), fats: int64(b[16]),
		total: int64(le.Uint32(b[32:])), perFAT: int64(le.Uint32(b[36:])),
		fsInfo: int64(le.Uint16(b[48:])), backupBoot: int64(le.Uint16(b[50:])),
	}
	if bs.bps == 0 || bs.spc == 0 || bs.perFAT == 0 || b[510] != 0x55 || b[511] != 0xaa {
		return bootSector{}, errors.New("boot sector is not FAT32")
	}
	return bs, nil
}

func (bs bootSector) clusters() int64 { return (bs.total - bs.reserved - bs.fats*bs.perFAT) / bs.spc }

// fixDotDot points the ".." entry of a directory in the root at cluster 0,
// as FAT requires of the root's children; go-diskfs points it at the root's
// first cluster, which fsck.fat and chkdsk report as an error.
func fixDotDot(fsys filesystem.FileSystem, b backend.Storage, partStart int64, p string) error {
	ranges, err := diskRanges(fsys, p)
	if err != nil {
		return err
	}
	off := partStart + int64(ranges[0].Offset) + 32 // the second entry
	ent := make([]byte, 32)
	if _, err := b.ReadAt(ent, off); err != nil {
		return err
	}
	if string(ent[:11]) != "..         " {
		return fmt.Errorf("second entry is %q, not \"..\"", ent[:11])
	}
	w, err := b.Writable()
	if err != nil {
		return err
	}
	clear(ent[20:22]) // cluster, high half
	clear(ent[26:28]) // cluster, low half
	_, err = w.WriteAt(ent, off)
	return err
}

// finishFAT is called once go-diskfs has written all it will. It gives the
// empty files no cluster, as FAT requires (go-diskfs gives each one cluster,
// which fsck.fat truncates away), and records the free cluster count and the
// first free cluster in the FSInfo sector and its backup (go-diskfs leaves
// them "unknown", which fsck.fat reports and every mount has to count).
func finishFAT(fsys filesystem.FileSystem, b backend.Storage, partStart int64, empty []string) error {
	bs, err := readBootSector(b, partStart)
	if err != nil {
		return err
	}
	w, err := b.Writable()
	if err != nil {
		return err
	}
	fatStart := partStart + bs.reserved*bs.bps
	fat := make([]byte, bs.perFAT*bs.bps)
	if _, err := b.ReadAt(fat, fatStart); err != nil {
		return err
	}
	for _, p := range empty {
		c, err := releaseCluster(fsys, b, w, partStart, bs, p)
		if err != nil {
			return fmt.Errorf("empty file %s: %w", p, err)
		}
		clear(fat[4*c : 4*c+4])
		for i := range bs.fats {
			if _, err := w.WriteAt(fat[4*c:4*c+4], fatStart+i*bs.perFAT*bs.bps+4*c); err != nil {
				return err
			}
		}
	}
	free, next := uint32(0), uint32(0xffffffff)
	for c := int64(2); c < bs.clusters()+2; c++ {
		if binary.LittleEndian.Uint32(fat[4*c:])&0x0fffffff == 0 {
			if free == 0 {
				next = uint32(c)
			}
			free++
		}
	}
	var v [8]byte
	binary.LittleEndian.PutUint32(v[0:], free)
	binary.LittleEndian.PutUint32(v[4:], next)
	for _, sec := range []int64{bs.fsInfo, bs.backupBoot + 1} {
		if _, err := w.WriteAt(v[:], partStart+sec*bs.bps+488); err != nil {
			return err
		}
	}
	return nil
}

// releaseCluster sets the start cluster of the empty file p to 0 in its
// directory entry and returns the cluster go-diskfs had given it.
func releaseCluster(fsys filesystem.FileSystem, b backend.Storage, w io.WriterAt, partStart int64, bs bootSector, p string) (int64, error) {
	fileRanges, err := diskRanges(fsys, p)
	if err != nil {
		return 0, err
	}
	clusterBytes := bs.spc * bs.bps
	dataStart := (bs.reserved + bs.fats*bs.perFAT) * bs.bps
	c := (int64(fileRanges[0].Offset)-dataStart)/clusterBytes + 2
	dirRanges, err := diskRanges(fsys, path.Dir(p))
	if err != nil {
		return 0, err
	}
	le := binary.LittleEndian
	for _, r := range dirRanges {
		buf := make([]byte, r.Length)
		if _, err := b.ReadAt(buf, partStart+int64(r.Offset)); err != nil {
			return 0, err
		}
		for off := 0; off+32 <= len(buf); off += 32 {
			ent := buf[off : off+32]
			if ent[0] == 0 || ent[0] == 0xe5 || ent[11] == 0x0f || ent[11]&0x18 != 0 {
				continue // free, deleted, long-name slot, directory or label
			}
			if int64(le.Uint16(ent[20:]))<<16|int64(le.Uint16(ent[26:])) != c || le.Uint32(ent[28:]) != 0 {
				continue
			}
			clear(ent[20:22])
			clear(ent[26:28])
			if _, err := w.WriteAt(ent, partStart+int64(r.Offset)+int64(off)); err != nil {
				return 0, err
			}
			return c, nil
		}
	}
	return 0, fmt.Errorf("no directory entry starts at cluster %d", c)
}
