package startup

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/livebootp/livebootp/startup/mount"
	"github.com/livebootp/livebootp/startup/verity"
)

// dmName is the device-mapper name of the image's dm-verity device.
const dmName = "livebootp-image"

// verityUsable says whether the squashfs is checked by dm-verity as it is
// read rather than hashed whole before it is mounted: the image has a root
// hash (kernel argument or manifest) and the kernel has device-mapper with
// the verity target (modules in the initrd, or built in). Otherwise the
// whole file is hashed, as for images built before the tree existed.
func (s *State) verityUsable() bool {
	if s.VerityRoot == "" {
		return false
	}
	// With the CPU's sha256 code where there is one: dm-verity keeps the
	// implementation it finds when the table is loaded.
	err := s.needModules("dm-verity", anyModule([]string{"dm_verity", "sha256_ssse3"}))
	if err == nil && !fileExists(filepath.Join(s.Root, "dev", "mapper", "control")) {
		err = errors.New("no /dev/mapper/control")
	}
	if err != nil {
		s.warnf("dm-verity is not available (%v: dm-mod and dm-verity in the initrd's modules?): the whole image is hashed before it is mounted", err)
		return false
	}
	return true
}

// cacheKey names the image in the persistent cache by what vouches for
// its content: the dm-verity root hash when dm-verity checks it (every
// block is read back through it before the name is given), else the
// whole file's sha256. A file cached under one is never taken for the
// other. "" means the image is not cached.
func (s *State) cacheKey() string {
	if s.Verification == "dm-verity" {
		return s.VerityRoot
	}
	return s.SHA256
}

// openVerity puts the dm-verity device over the loop device dev holding
// the squashfs and its tree: the tree's place and salt come from the
// file (after the squashfs's data), the root hash from the kernel
// argument or manifest, which is what makes a forged tree fail.
func (s *State) openVerity(dev string) (string, error) {
	f, err := os.Open(s.Squashfs)
	if err != nil {
		return "", err
	}
	defer f.Close()
	off := int64(0)
	if s.Manifest != nil && s.Manifest.Verity != nil {
		off = s.Manifest.Verity.HashOffset
	}
	if off <= 0 {
		if off, err = verity.SquashfsHashOffset(f); err != nil {
			return "", fmt.Errorf("%s: %w", s.Squashfs, err)
		}
	}
	p, err := verity.ReadSuperblock(f, off)
	if err != nil {
		return "", fmt.Errorf("%s: the dm-verity tree: %w; rebuild the image with this livebootp", s.Squashfs, err)
	}
	if p.Root, err = hex.DecodeString(s.VerityRoot); err != nil {
		return "", err
	}
	d, err := mount.CreateDM(filepath.Join(s.Root, "dev"), dmName, true,
		[]mount.DMTarget{{Length: p.Sectors(), Type: "verity", Params: p.Table(dev, dev)}})
	if err != nil {
		return "", err
	}
	s.dm, s.verity = d, p
	return d.Path, nil
}

// closeVerity removes the dm-verity device after a failed mount.
func (s *State) closeVerity() {
	if s.dm != nil {
		if err := s.dm.Remove(); err != nil {
			s.warnf("%v", err)
		}
		s.dm = nil
	}
}

// VerityError is a squashfs that dm-verity refused while it was mounted: a
// block read does not match its hash, or the root hash is not the image's.
type VerityError struct {
	File, URL, Root string
	Offset          int64 // of the tree
	Err             error
}

func (e *VerityError) Error() string {
	return fmt.Sprintf("squashfs checksum mismatch: a block of the image does not match its dm-verity hash, or livebootp.verity %s is not its root hash (%v; the kernel's log names the block); the image on the registry is corrupt or changed: rebuild or re-upload it", e.Root, e.Err)
}

func (e *VerityError) Unwrap() error { return e.Err }

// Hint says where to look, for the init's FAILED line.
func (e *VerityError) Hint() string {
	return fmt.Sprintf("on the registry, veritysetup verify --hash-offset=%d F F %s with F its filesystem.squashfs (%s), and the manifest", e.Offset, e.Root, e.URL)
}
