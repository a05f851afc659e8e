package verity

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
)

// Domain tags keep the derived salt and UUID apart from any other sha256
// of the same bytes (the image's published checksum, for one).
const (
	saltTag = "livebootp-verity-salt"
	uuidTag = "livebootp-verity-uuid"
)

// Build appends a hash tree to the first dataSize bytes of f: zeros up to
// the next BlockSize boundary, the superblock, then the tree. Whatever f
// held past dataSize (an older tree) is replaced; the bytes before it are
// never written. The file ends up Size(dataSize) bytes long; syncing it
// is the caller's, with the rest of the image.
//
// The salt is sha256 of a tag and the padded data, so the same data always
// gives the same file (the image build is reproducible) while two images
// never share a salt. Deriving it reads the data once more; BuildSalt
// skips that pass for a caller that already has a value unique to the
// data.
func Build(f *os.File, dataSize int64) (Params, error) {
	if err := padData(f, dataSize); err != nil {
		return Params{}, err
	}
	h := sha256.New()
	h.Write([]byte(saltTag))
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, roundUp(dataSize))); err != nil {
		return Params{}, fmt.Errorf("verity: reading %s for the salt: %w", f.Name(), err)
	}
	return writeTree(f, dataSize, h.Sum(nil))
}

// BuildSalt is Build with the caller's salt (at most 256 bytes). The same
// salt for two images lets one precomputed table of block hashes serve
// attacks on both, so it must be unique to the data.
func BuildSalt(f *os.File, dataSize int64, salt []byte) (Params, error) {
	if len(salt) > maxSalt {
		return Params{}, fmt.Errorf("verity: salt of %d bytes: the superblock holds at most %d", len(salt), maxSalt)
	}
	if err := padData(f, dataSize); err != nil {
		return Params{}, err
	}
	return writeTree(f, dataSize, bytes.Clone(salt))
}

// padData cuts f to dataSize and zero-fills it to the next block boundary.
func padData(f *os.File, dataSize int64) error {
	if dataSize <= 0 {
		return fmt.Errorf("verity: %s: data size %d: nothing to protect", f.Name(), dataSize)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("verity: %w", err)
	}
	if fi.Size() < dataSize {
		return fmt.Errorf("verity: %s is %d bytes, shorter than the %d bytes of data to protect", f.Name(), fi.Size(), dataSize)
	}
	if err := f.Truncate(dataSize); err != nil {
		return fmt.Errorf("verity: %w", err)
	}
	if pad := roundUp(dataSize) - dataSize; pad > 0 {
		if _, err := f.WriteAt(make([]byte, pad), dataSize); err != nil {
			return fmt.Errorf("verity: padding %s: %w", f.Name(), err)
		}
	}
	return nil
}

func writeTree(f *os.File, dataSize int64, salt []byte) (Params, error) {
	p := Params{HashOffset: roundUp(dataSize), Salt: salt, UUID: uuidFor(salt)}
	p.DataBlocks = uint64(p.HashOffset) / BlockSize
	s := newShape(p.DataBlocks)
	tree := make([]byte, s.total*BlockSize)
	h := newHasher(salt)
	p.Root = make([]byte, hashSize)
	leaves := p.Root // a single data block: its hash is the root
	if len(s.blocks) > 0 {
		leaves = s.level(tree, 0)
	}
	err := eachBlock(f, p.DataBlocks, func(n uint64, block []byte) error {
		h.sum(leaves[n*hashSize:], block)
		return nil
	})
	if err != nil {
		return Params{}, fmt.Errorf("verity: %s: %w", f.Name(), err)
	}
	if len(s.blocks) > 0 {
		p.Root = s.hashLevels(h, tree)
	}
	sb := make([]byte, BlockSize)
	p.encode(sb)
	if _, err := f.WriteAt(sb, p.HashOffset); err != nil {
		return Params{}, fmt.Errorf("verity: writing the superblock of %s: %w", f.Name(), err)
	}
	if _, err := f.WriteAt(tree, p.HashOffset+BlockSize); err != nil {
		return Params{}, fmt.Errorf("verity: writing the hash tree of %s: %w", f.Name(), err)
	}
	return p, nil
}

// uuidFor derives the superblock's UUID from the salt, marked as a random
// (version 4) RFC 4122 UUID, which is what veritysetup accepts and writes.
func uuidFor(salt []byte) [16]byte {
	sum := sha256.Sum256(append([]byte(uuidTag), salt...))
	var u [16]byte
	copy(u[:], sum[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// eachBlock calls fn with each of the first n BlockSize blocks of r, in
// order. The data is read in large chunks: a multi-GB image is never held
// in memory.
func eachBlock(r io.ReaderAt, n uint64, fn func(i uint64, block []byte) error) error {
	const chunkBlocks = 256
	buf := make([]byte, chunkBlocks*BlockSize)
	for i := uint64(0); i < n; {
		c := min(n-i, chunkBlocks)
		b := buf[:c*BlockSize]
		if _, err := r.ReadAt(b, int64(i)*BlockSize); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("reading data blocks %d-%d: %w", i, i+c-1, err)
		}
		for j := uint64(0); j < c; j++ {
			if err := fn(i+j, b[j*BlockSize:(j+1)*BlockSize]); err != nil {
				return err
			}
		}
		i += c
	}
	return nil
}

// Verify checks the data and tree in r against p.Root the way dm-verity
// does, from the top: the top hash block against the root, each hash block
// against its entry in the level above, each data block against its leaf
// entry. The first mismatch is returned, naming the block, so a corrupt
// hash block is told apart from the data it covers.
func Verify(r io.ReaderAt, p Params) error {
	if err := p.check(); err != nil {
		return fmt.Errorf("verity: %w", err)
	}
	if len(p.Root) != hashSize {
		return fmt.Errorf("verity: root hash of %d bytes, want %d (%s)", len(p.Root), hashSize, Algorithm)
	}
	s := newShape(p.DataBlocks)
	h := newHasher(p.Salt)
	got := make([]byte, hashSize)
	want := p.Root // with a single data block, the root is its hash
	if len(s.blocks) > 0 {
		treeOff := int64(p.HashStartBlock()) * BlockSize
		tree, err := readTree(r, treeOff, s.total)
		if err != nil {
			return err
		}
		top := len(s.blocks) - 1
		h.sum(got, s.level(tree, top))
		if !bytes.Equal(got, p.Root) {
			return fmt.Errorf("verity: hash block 0 (top level, byte %d) does not match the root hash: wrong root hash, or the image was changed", treeOff)
		}
		for i := top - 1; i >= 0; i-- {
			lvl, above := s.level(tree, i), s.level(tree, i+1)
			for b := uint64(0); b < s.blocks[i]; b++ {
				h.sum(got, lvl[b*BlockSize:(b+1)*BlockSize])
				if !bytes.Equal(got, above[b*hashSize:(b+1)*hashSize]) {
					n := s.start[i] + b
					return fmt.Errorf("verity: hash block %d (level %d, byte %d) does not match its hash in the level above: the image was changed", n, i, treeOff+int64(n)*BlockSize)
				}
			}
		}
		want = s.level(tree, 0)
	}
	err := eachBlock(r, p.DataBlocks, func(n uint64, block []byte) error {
		h.sum(got, block)
		if !bytes.Equal(got, want[n*hashSize:(n+1)*hashSize]) {
			return fmt.Errorf("data block %d (bytes %d-%d) does not match its hash: the image was changed", n, n*BlockSize, (n+1)*BlockSize-1)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("verity: %w", err)
	}
	return nil
}

// readTree reads the tree's blocks. The file's end is probed first, so a
// superblock claiming an absurd number of data blocks fails here instead
// of allocating memory for a tree the file cannot hold.
func readTree(r io.ReaderAt, off int64, blocks uint64) ([]byte, error) {
	end := off + int64(blocks)*BlockSize
	if _, err := r.ReadAt(make([]byte, 1), end-1); err != nil {
		return nil, fmt.Errorf("verity: the hash tree should end at byte %d, the file is shorter (%v): a truncated image or a wrong hash offset", end, err)
	}
	tree := make([]byte, blocks*BlockSize)
	if _, err := r.ReadAt(tree, off); err != nil {
		return nil, fmt.Errorf("verity: reading the hash tree at byte %d: %w", off, err)
	}
	return tree, nil
}
