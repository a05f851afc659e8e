// Package verity builds and checks a dm-verity hash tree appended to a
// squashfs, in the on-disk format of cryptsetup's `veritysetup format
// --hash-offset` (superblock version 1, hash type 1, sha256, 4096-byte
// blocks). With the tree inside the image file, the kernel's dm-verity
// target checks each block of the image as it is read, against a root hash
// from a trusted place, instead of the init hashing the whole download
// before it can mount anything.
//
// The image builder calls Build on the build host; livebootp-init reads the
// superblock, takes the root hash from the kernel command line and hands
// Table to device-mapper. So the package stays small, uses the standard
// library only and keeps no package-level state.
//
// It must never take the root hash from the image itself: everything in the
// file (superblock, salt, tree) is as untrusted as the data it describes,
// and only a root hash from the command line or a signed manifest makes it
// trustworthy. Build must never change the first dataSize bytes of the file.
package verity

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
)

// BlockSize is the data and hash block size, in bytes. 4096 is what
// veritysetup picks by default and what the kernel requires to be at most
// the page size on every architecture livebootp boots.
const BlockSize = 4096

// Algorithm is the only hash this package writes and accepts.
const Algorithm = "sha256"

const (
	hashSize      = sha256.Size
	hashesPerBits = 7 // log2(BlockSize / hashSize): 128 hashes per hash block
)

// Params is what device-mapper needs to verify one image: where its tree
// is, the salt, and the root hash that everything is checked against.
type Params struct {
	DataBlocks uint64   // BlockSize-byte data blocks covered
	HashOffset int64    // byte offset of the superblock (= data size rounded up to BlockSize)
	Salt       []byte   // at most 256 bytes
	UUID       [16]byte // the superblock's; veritysetup shows it, dm-verity ignores it
	Root       []byte   // root hash; only ever from a trusted place (command line, manifest)
}

// HashStartBlock is the first tree block in BlockSize units from the start
// of the hash device, as the dm table wants it: the tree starts in the
// block after the superblock.
func (p Params) HashStartBlock() uint64 {
	return uint64(p.HashOffset)/BlockSize + 1
}

// Sectors is the length of the dm target in 512-byte sectors.
func (p Params) Sectors() uint64 {
	return p.DataBlocks * (BlockSize / 512)
}

// Table is the parameter string of a dm "verity" target whose data and
// hash device are dataDev and hashDev (the same loop device for a file
// built by Build).
func (p Params) Table(dataDev, hashDev string) string {
	salt := "-"
	if len(p.Salt) > 0 {
		salt = hex.EncodeToString(p.Salt)
	}
	return fmt.Sprintf("1 %s %s %d %d %d %d %s %x %s",
		dataDev, hashDev, BlockSize, BlockSize, p.DataBlocks, p.HashStartBlock(), Algorithm, p.Root, salt)
}

// UUIDString is the UUID as veritysetup prints and takes it.
func (p Params) UUIDString() string {
	u := p.UUID
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// Size is the size of a file after Build(f, dataSize).
func Size(dataSize int64) int64 {
	off := roundUp(dataSize)
	return off + BlockSize + int64(newShape(uint64(off)/BlockSize).total)*BlockSize
}

func roundUp(n int64) int64 {
	return (n + BlockSize - 1) / BlockSize * BlockSize
}

// shape is the geometry of the tree over a number of data blocks.
type shape struct {
	blocks []uint64 // blocks[i] is the block count of level i; level 0 holds the data blocks' hashes
	start  []uint64 // start[i] is level i's first block, counted from the tree's first block
	total  uint64   // blocks in the tree
}

// newShape lays the levels out as dm-verity does: the level count is the
// kernel's (verity_ctr), so a single data block has no tree at all and its
// own hash is the root; levels are stored top level first.
func newShape(dataBlocks uint64) shape {
	var s shape
	n := dataBlocks
	for l := 0; dataBlocks > 0 && (dataBlocks-1)>>(hashesPerBits*l) != 0; l++ {
		n = (n + 1<<hashesPerBits - 1) >> hashesPerBits
		s.blocks = append(s.blocks, n)
	}
	s.start = make([]uint64, len(s.blocks))
	for i := len(s.blocks) - 1; i >= 0; i-- {
		s.start[i] = s.total
		s.total += s.blocks[i]
	}
	return s
}

// level is level i of tree, a slice of whole blocks.
func (s shape) level(tree []byte, i int) []byte {
	return tree[s.start[i]*BlockSize : (s.start[i]+s.blocks[i])*BlockSize]
}

// hasher computes sha256(salt || block), the version 1 block hash.
type hasher struct {
	h    hash.Hash
	salt []byte
}

func newHasher(salt []byte) hasher {
	return hasher{h: sha256.New(), salt: salt}
}

// sum writes the hash of block into out (hashSize bytes).
func (h hasher) sum(out, block []byte) {
	h.h.Reset()
	h.h.Write(h.salt)
	h.h.Write(block)
	h.h.Sum(out[:0])
}

// hashLevels fills the levels above the leaves and returns the root hash.
// The leaves (level 0) must already be in tree, and the tree must have at
// least one level.
func (s shape) hashLevels(h hasher, tree []byte) []byte {
	for i := 1; i < len(s.blocks); i++ {
		below, here := s.level(tree, i-1), s.level(tree, i)
		for b := 0; b < len(below)/BlockSize; b++ {
			h.sum(here[b*hashSize:], below[b*BlockSize:(b+1)*BlockSize])
		}
	}
	root := make([]byte, hashSize)
	h.sum(root, s.level(tree, len(s.blocks)-1))
	return root
}
