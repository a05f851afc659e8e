package verity

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The veritysetup superblock (cryptsetup's struct verity_sb), little
// endian, 512 bytes at the hash offset; the rest of its block is zero.
const (
	sbSize       = 512
	sbSignature  = "verity\x00\x00"
	offVersion   = 8  // u32, 1
	offHashType  = 12 // u32, 1: the salt comes first (Chrome OS's type 0 puts it last)
	offUUID      = 16 // [16]byte
	offAlgorithm = 32 // [32]byte, NUL padded
	offDataBS    = 64 // u32
	offHashBS    = 68 // u32
	offDataBlks  = 72 // u64
	offSaltSize  = 80 // u16, then 6 bytes of padding
	offSalt      = 88 // [256]byte, then 168 bytes of padding
	maxSalt      = 256
	algorithmLen = 32
	// maxHashOffset keeps every offset computed from a hostile superblock
	// far from int64 overflow (1 EiB).
	maxHashOffset = 1 << 60
)

// encode writes p's superblock into sb (at least sbSize zeroed bytes).
func (p Params) encode(sb []byte) {
	le := binary.LittleEndian
	copy(sb, sbSignature)
	le.PutUint32(sb[offVersion:], 1)
	le.PutUint32(sb[offHashType:], 1)
	copy(sb[offUUID:], p.UUID[:])
	copy(sb[offAlgorithm:offAlgorithm+algorithmLen], Algorithm)
	le.PutUint32(sb[offDataBS:], BlockSize)
	le.PutUint32(sb[offHashBS:], BlockSize)
	le.PutUint64(sb[offDataBlks:], p.DataBlocks)
	le.PutUint16(sb[offSaltSize:], uint16(len(p.Salt)))
	copy(sb[offSalt:offSalt+maxSalt], p.Salt)
}

// ReadSuperblock reads the superblock at hashOffset: everything Params
// holds but the root hash, which must come from somewhere trusted.
func ReadSuperblock(r io.ReaderAt, hashOffset int64) (Params, error) {
	sb := make([]byte, sbSize)
	if _, err := r.ReadAt(sb, hashOffset); err != nil {
		return Params{}, fmt.Errorf("verity: reading the superblock at byte %d: %w (a file without a hash tree, or a wrong hash offset)", hashOffset, err)
	}
	where := fmt.Sprintf("verity: superblock at byte %d", hashOffset)
	if string(sb[:len(sbSignature)]) != sbSignature {
		return Params{}, fmt.Errorf("%s: bad signature %q, want %q: no hash tree there (not built by verity.Build, or a wrong hash offset)", where, sb[:len(sbSignature)], sbSignature)
	}
	le := binary.LittleEndian
	if v := le.Uint32(sb[offVersion:]); v != 1 {
		return Params{}, fmt.Errorf("%s: unsupported version %d, only 1", where, v)
	}
	if t := le.Uint32(sb[offHashType:]); t != 1 {
		return Params{}, fmt.Errorf("%s: unsupported hash type %d, only 1 (salt first)", where, t)
	}
	alg, _, _ := bytes.Cut(sb[offAlgorithm:offAlgorithm+algorithmLen], []byte{0})
	if string(alg) != Algorithm {
		return Params{}, fmt.Errorf("%s: unsupported algorithm %q, only %s", where, alg, Algorithm)
	}
	if d, h := le.Uint32(sb[offDataBS:]), le.Uint32(sb[offHashBS:]); d != BlockSize || h != BlockSize {
		return Params{}, fmt.Errorf("%s: unsupported block sizes %d (data) and %d (hash), only %d", where, d, h, BlockSize)
	}
	n := le.Uint16(sb[offSaltSize:])
	if n > maxSalt {
		return Params{}, fmt.Errorf("%s: salt size %d, at most %d", where, n, maxSalt)
	}
	p := Params{
		DataBlocks: le.Uint64(sb[offDataBlks:]),
		HashOffset: hashOffset,
		Salt:       bytes.Clone(sb[offSalt : offSalt+int(n)]),
	}
	copy(p.UUID[:], sb[offUUID:])
	if err := p.check(); err != nil {
		return Params{}, fmt.Errorf("%s: %w", where, err)
	}
	return p, nil
}

// check refuses Params that cannot describe data followed by its own tree
// in one file.
func (p Params) check() error {
	switch {
	case p.HashOffset <= 0 || p.HashOffset%BlockSize != 0 || p.HashOffset > maxHashOffset:
		return fmt.Errorf("hash offset %d is not a positive multiple of %d", p.HashOffset, BlockSize)
	case p.DataBlocks == 0:
		return errors.New("no data blocks")
	case p.DataBlocks > uint64(p.HashOffset)/BlockSize:
		return fmt.Errorf("%d data blocks run past the superblock at byte %d", p.DataBlocks, p.HashOffset)
	case len(p.Salt) > maxSalt:
		return fmt.Errorf("salt of %d bytes, at most %d", len(p.Salt), maxSalt)
	}
	return nil
}

// SquashfsHashOffset is where Build puts the superblock after a squashfs:
// its bytes_used rounded up to BlockSize. mksquashfs pads its output to
// 4096 bytes unless -nopad, so that is the squashfs file's size.
func SquashfsHashOffset(r io.ReaderAt) (int64, error) {
	sb := make([]byte, 96)
	if _, err := r.ReadAt(sb, 0); err != nil {
		return 0, fmt.Errorf("verity: reading the squashfs superblock: %w", err)
	}
	if string(sb[:4]) != "hsqs" {
		return 0, fmt.Errorf("verity: no squashfs: magic %q, want \"hsqs\" (a little-endian squashfs)", sb[:4])
	}
	le := binary.LittleEndian
	if major, minor := le.Uint16(sb[28:]), le.Uint16(sb[30:]); major != 4 || minor != 0 {
		return 0, fmt.Errorf("verity: squashfs version %d.%d, only 4.0", major, minor)
	}
	used := le.Uint64(sb[40:])
	if used < 96 || used > maxHashOffset {
		return 0, fmt.Errorf("verity: squashfs bytes_used %d is not a plausible size", used)
	}
	return roundUp(int64(used)), nil
}
