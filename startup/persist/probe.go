package persist

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// MiB is the size of the regions at each end of a disk that must be all
// zeros for the disk to count as blank.
const MiB = 1 << 20

// Signature is what Probe recognised on a device.
type Signature struct {
	Kind  string // ext4, vfat, gpt, mbr, xfs, btrfs, swap, lvm2, luks, iso9660, squashfs, data
	Label string // filesystem label, when the kind has one and it is set
}

func (s Signature) String() string {
	if s.Label != "" {
		return fmt.Sprintf("%s (label %q)", s.Kind, s.Label)
	}
	return s.Kind
}

// Mountable reports kinds the init can mount as persistent storage.
func (s Signature) Mountable() bool {
	return s.Kind == "ext2" || s.Kind == "ext3" || s.Kind == "ext4" || s.Kind == "vfat"
}

// FSType is the type to pass to mount(2): the ext4 driver mounts ext2 and
// ext3 too, and Debian kernels build ext2/3 support only through it.
func (s Signature) FSType() string {
	if strings.HasPrefix(s.Kind, "ext") {
		return "ext4"
	}
	return s.Kind
}

func at(b []byte, off int, magic string) bool {
	return off+len(magic) <= len(b) && string(b[off:off+len(magic)]) == magic
}

// Probe identifies the filesystem or partition table at the start of a
// device from its first MiB (pass fewer bytes for small devices). Only
// the kinds a server disk plausibly holds are named; anything else that is
// not all zeros is "data". ok is false when the region is all zeros.
func Probe(head []byte) (sig Signature, ok bool) {
	switch {
	case at(head, 1080, "\x53\xef"): // ext2/3/4 superblock at 1024, s_magic at 0x38
		sb := head[1024:]
		compat := binary.LittleEndian.Uint32(sb[0x5c:])
		incompat := binary.LittleEndian.Uint32(sb[0x60:])
		kind := "ext2"
		if incompat&0x2c0 != 0 { // extents, 64bit, flex_bg
			kind = "ext4"
		} else if compat&0x4 != 0 { // has_journal
			kind = "ext3"
		}
		return Signature{Kind: kind, Label: cstr(sb[0x78 : 0x78+16])}, true
	case at(head, 0, "XFSB"):
		return Signature{Kind: "xfs", Label: cstr(head[108:120])}, true
	case at(head, 0, "LUKS\xba\xbe") || at(head, 0, "SKUL\xba\xbe"):
		return Signature{Kind: "luks"}, true
	case at(head, 0, "hsqs"):
		return Signature{Kind: "squashfs"}, true
	case at(head, 65600, "_BHRfS_M"):
		return Signature{Kind: "btrfs", Label: cstr(head[65536+0x12b : 65536+0x12b+256])}, true
	case at(head, 512+24, "LVM2 001") || at(head, 24, "LVM2 001"):
		return Signature{Kind: "lvm2"}, true
	case at(head, 4086, "SWAPSPACE2") || at(head, 4086, "SWAP-SPACE"):
		return Signature{Kind: "swap"}, true
	case at(head, 32769, "CD001"):
		return Signature{Kind: "iso9660", Label: strings.TrimSpace(cstr(head[32808 : 32808+32]))}, true
	case at(head, 512, "EFI PART") || at(head, 4096, "EFI PART"):
		return Signature{Kind: "gpt"}, true
	}
	if at(head, 510, "\x55\xaa") {
		// A FAT boot sector and an MBR share the 0x55AA marker; FAT names
		// itself in the BIOS parameter block.
		if at(head, 0x52, "FAT32   ") {
			return Signature{Kind: "vfat", Label: fatLabel(head[0x47 : 0x47+11])}, true
		}
		if at(head, 0x36, "FAT12   ") || at(head, 0x36, "FAT16   ") || at(head, 0x36, "FAT     ") {
			return Signature{Kind: "vfat", Label: fatLabel(head[0x2b : 0x2b+11])}, true
		}
		if at(head, 3, "NTFS    ") {
			return Signature{Kind: "ntfs"}, true
		}
		if at(head, 3, "EXFAT   ") {
			return Signature{Kind: "exfat"}, true
		}
		return Signature{Kind: "mbr"}, true
	}
	if !allZero(head) {
		return Signature{Kind: "data"}, true
	}
	return Signature{}, false
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func fatLabel(b []byte) string {
	l := strings.TrimRight(string(b), " \x00")
	if l == "NO NAME" {
		return ""
	}
	return l
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Blank reports whether a device of the given size may be initialised: the
// first and the last MiB are all zeros (that is where partition tables —
// MBR, GPT and its backup — and every filesystem, RAID, LVM and LUKS
// signature live). When it is not blank, what says what was found.
func Blank(r io.ReaderAt, size int64) (blank bool, what string, err error) {
	n := int64(MiB)
	if size < n {
		n = size
	}
	head := make([]byte, n)
	if _, err := r.ReadAt(head, 0); err != nil && err != io.EOF {
		return false, "", fmt.Errorf("read the first MiB: %w", err)
	}
	if sig, ok := Probe(head); ok {
		return false, sig.String() + " at the start", nil
	}
	tailOff := size - MiB
	if tailOff < 0 {
		tailOff = 0
	}
	tail := make([]byte, size-tailOff)
	if _, err := r.ReadAt(tail, tailOff); err != nil && err != io.EOF {
		return false, "", fmt.Errorf("read the last MiB: %w", err)
	}
	if !allZero(tail) {
		return false, "data in the last MiB (a backup GPT, RAID or LVM metadata?)", nil
	}
	return true, "", nil
}
