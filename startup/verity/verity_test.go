package verity

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sizes cover every tree shape: no tree (one block), one partial leaf
// block, one full one, two levels, three levels, and data that ends
// mid-block.
var sizes = []int64{
	1 * BlockSize, 2 * BlockSize, 127 * BlockSize, 128 * BlockSize, 129 * BlockSize,
	(128*128 + 1) * BlockSize, 5*BlockSize + 123, 100,
}

// dataFile writes size bytes of seeded random data to a new file.
func dataFile(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("data-%d", size))
	b := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), byte(size >> 16)}).Read(b)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func buildFile(t testing.TB, path string, dataSize int64) Params {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := Build(f, dataSize)
	if err != nil {
		t.Fatalf("Build(%s, %d): %v", path, dataSize, err)
	}
	return p
}

// image builds a tree over size bytes of data and returns the whole file.
func image(t *testing.T, size int64) (Params, []byte) {
	t.Helper()
	path := dataFile(t, size)
	p := buildFile(t, path, size)
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return p, img
}

// wantErr fails the test unless err says want.
func wantErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: %v, want an error with %q", what, err, want)
	}
}

func verifyFile(t *testing.T, path string, p Params) error {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Verify(f, p)
}

func needVeritysetup(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("veritysetup"); err != nil {
		t.Skip("needs veritysetup (apt package cryptsetup-bin)")
	}
}

func veritysetup(args ...string) (string, error) {
	out, err := exec.Command("veritysetup", args...).CombinedOutput()
	return string(out), err
}

// dumpFields parses `veritysetup dump` output into its "Name: value" lines.
func dumpFields(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m
}

// flip inverts one byte of the file at off.
func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestVeritysetup checks Build's files with cryptsetup's own tool: it
// verifies them, reads our superblock back, formats the same data into the
// same bytes, and notices the corruptions our Verify notices.
func TestVeritysetup(t *testing.T) {
	needVeritysetup(t)
	for _, size := range sizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			path := dataFile(t, size)
			p := buildFile(t, path, size)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != Size(size) {
				t.Errorf("file is %d bytes, Size(%d) says %d", fi.Size(), size, Size(size))
			}
			off := fmt.Sprintf("--hash-offset=%d", p.HashOffset)
			root := hex.EncodeToString(p.Root)
			if out, err := veritysetup("verify", off, path, path, root); err != nil {
				t.Fatalf("veritysetup verify: %v\n%s", err, out)
			}
			if err := verifyFile(t, path, p); err != nil {
				t.Fatalf("Verify: %v", err)
			}

			out, err := veritysetup("dump", off, path)
			if err != nil {
				t.Fatalf("veritysetup dump: %v\n%s", err, out)
			}
			d := dumpFields(out)
			want := map[string]string{
				"UUID": p.UUIDString(), "Hash type": "1", "Data blocks": fmt.Sprint(p.DataBlocks),
				"Data block size": "4096", "Hash block size": "4096", "Hash algorithm": "sha256",
				"Hash blocks": fmt.Sprint(newShape(p.DataBlocks).total), "Salt": hex.EncodeToString(p.Salt),
			}
			for k, v := range want {
				if d[k] != v {
					t.Errorf("veritysetup dump: %s is %q, want %q", k, d[k], v)
				}
			}

			// veritysetup's own tree over the same padded data, salt and UUID.
			ours, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			theirs := filepath.Join(t.TempDir(), "theirs")
			if err := os.WriteFile(theirs, ours[:p.HashOffset], 0o644); err != nil {
				t.Fatal(err)
			}
			out, err = veritysetup("format", off, fmt.Sprintf("--data-blocks=%d", p.DataBlocks),
				"--salt="+hex.EncodeToString(p.Salt), "--uuid="+p.UUIDString(), theirs, theirs)
			if err != nil {
				t.Fatalf("veritysetup format: %v\n%s", err, out)
			}
			if got := dumpFields(out)["Root hash"]; got != root {
				t.Errorf("veritysetup format: root hash %s, ours %s", got, root)
			}
			tb, err := os.ReadFile(theirs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tb, ours) {
				t.Errorf("veritysetup format wrote %d bytes that differ from our %d", len(tb), len(ours))
			}

			// One flipped byte in a data block, then in the first and the
			// last hash block (the top and a leaf block): both tools refuse.
			type corruption struct {
				off  int64
				want string // in Verify's error
			}
			corrupt := []corruption{{p.HashOffset / 2, fmt.Sprintf("data block %d ", p.HashOffset/2/BlockSize)}}
			if tree := newShape(p.DataBlocks).total; tree > 0 {
				start := int64(p.HashStartBlock()) * BlockSize
				corrupt = append(corrupt, corruption{start + 5, "hash block 0 "},
					corruption{start + int64(tree-1)*BlockSize + 33, fmt.Sprintf("hash block %d ", tree-1)})
			}
			for _, c := range corrupt {
				flip(t, path, c.off)
				out, err := veritysetup("verify", off, path, path, root)
				if err == nil || !strings.Contains(out, "failed") {
					t.Errorf("veritysetup verify with byte %d flipped: %v %q, want a failure", c.off, err, out)
				}
				wantErr(t, fmt.Sprintf("Verify with byte %d flipped", c.off), verifyFile(t, path, p), c.want)
				flip(t, path, c.off)
			}
		})
	}
}

// TestReproducible: the image build is reproducible, so the same data must
// give the same file, also when an old tree is built over.
func TestReproducible(t *testing.T) {
	size := int64(200*BlockSize + 7)
	a, b := dataFile(t, size), dataFile(t, size)
	pa, pb := buildFile(t, a, size), buildFile(t, b, size)
	if !reflect.DeepEqual(pa, pb) {
		t.Errorf("same data, different Params:\n%+v\n%+v", pa, pb)
	}
	first, _ := os.ReadFile(a)
	if second, _ := os.ReadFile(b); !bytes.Equal(first, second) {
		t.Error("same data, different files")
	}
	buildFile(t, a, size)
	if again, _ := os.ReadFile(a); !bytes.Equal(first, again) {
		t.Error("Build over its own output changed the file")
	}
	// Other data, other salt: no two images share one.
	c := dataFile(t, size+1)
	if pc := buildFile(t, c, size+1); bytes.Equal(pc.Salt, pa.Salt) || pc.UUID == pa.UUID {
		t.Error("different data, same salt or UUID")
	}
}

func TestBuildSalt(t *testing.T) {
	size := int64(3 * BlockSize)
	path := dataFile(t, size)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, salt := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte{7}, maxSalt)} {
		p, err := BuildSalt(f, size, salt)
		if err != nil {
			t.Fatalf("BuildSalt with %d bytes of salt: %v", len(salt), err)
		}
		if err := Verify(f, p); err != nil {
			t.Errorf("Verify with %d bytes of salt: %v", len(salt), err)
		}
		r, err := ReadSuperblock(f, p.HashOffset)
		if err != nil || !bytes.Equal(r.Salt, salt) {
			t.Errorf("ReadSuperblock with %d bytes of salt: %v, salt %x", len(salt), err, r.Salt)
		}
	}
	if _, err := BuildSalt(f, size, make([]byte, maxSalt+1)); err == nil {
		t.Error("BuildSalt took a salt longer than the superblock holds")
	}
}

func TestBuildRefuses(t *testing.T) {
	path := dataFile(t, 10)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for size, want := range map[int64]string{0: "nothing to protect", -1: "nothing to protect", 11: "shorter than"} {
		_, err := Build(f, size)
		wantErr(t, fmt.Sprintf("Build(%d bytes of a 10-byte file)", size), err, want)
	}
	if b, _ := os.ReadFile(path); len(b) != 10 {
		t.Errorf("a refused Build changed the file to %d bytes", len(b))
	}
}

func TestReadSuperblock(t *testing.T) {
	size := int64(129 * BlockSize)
	p, img := image(t, size)
	got, err := ReadSuperblock(bytes.NewReader(img), p.HashOffset)
	if err != nil {
		t.Fatal(err)
	}
	p.Root = nil
	if !reflect.DeepEqual(got, p) {
		t.Errorf("ReadSuperblock: %+v, Build returned %+v", got, p)
	}

	le := binary.LittleEndian
	for _, c := range []struct {
		name  string
		patch func(sb []byte)
		want  string
	}{
		{"signature", func(sb []byte) { sb[0] = 'V' }, "bad signature"},
		{"version", func(sb []byte) { le.PutUint32(sb[offVersion:], 2) }, "unsupported version 2"},
		{"hash type", func(sb []byte) { le.PutUint32(sb[offHashType:], 0) }, "unsupported hash type 0"},
		{"algorithm", func(sb []byte) { copy(sb[offAlgorithm:], "sha512") }, `unsupported algorithm "sha512"`},
		{"data block size", func(sb []byte) { le.PutUint32(sb[offDataBS:], 512) }, "unsupported block sizes 512 (data)"},
		{"hash block size", func(sb []byte) { le.PutUint32(sb[offHashBS:], 1024) }, "1024 (hash)"},
		{"salt size", func(sb []byte) { le.PutUint16(sb[offSaltSize:], 257) }, "salt size 257"},
		{"data blocks", func(sb []byte) { le.PutUint64(sb[offDataBlks:], 130) }, "130 data blocks run past"},
		{"no data", func(sb []byte) { le.PutUint64(sb[offDataBlks:], 0) }, "no data blocks"},
	} {
		bad := bytes.Clone(img)
		c.patch(bad[p.HashOffset:])
		_, err := ReadSuperblock(bytes.NewReader(bad), p.HashOffset)
		wantErr(t, c.name, err, c.want)
	}
	for _, off := range []int64{p.HashOffset - BlockSize, p.HashOffset + 512, int64(len(img))} {
		if _, err := ReadSuperblock(bytes.NewReader(img), off); err == nil {
			t.Errorf("ReadSuperblock at byte %d found a superblock", off)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	size := int64(300 * BlockSize)
	p, img := image(t, size)
	wrong := p
	wrong.Root = bytes.Clone(p.Root)
	wrong.Root[0]++
	shortRoot := p
	shortRoot.Root = p.Root[:31]
	otherSalt := p
	otherSalt.Salt = []byte("x")
	for _, c := range []struct {
		name string
		r    io.ReaderAt
		p    Params
		want string
	}{
		{"wrong root", bytes.NewReader(img), wrong, "hash block 0 (top level"},
		{"short root", bytes.NewReader(img), shortRoot, "root hash of 31 bytes"},
		{"other salt", bytes.NewReader(img), otherSalt, "does not match the root hash"},
		{"truncated", bytes.NewReader(img[:len(img)-1]), p, "the file is shorter"},
		{"no tree", bytes.NewReader(img[:p.HashOffset]), p, "the file is shorter"},
	} {
		wantErr(t, c.name, Verify(c.r, c.p), c.want)
	}
}

func TestShape(t *testing.T) {
	for _, c := range []struct {
		data   uint64
		blocks []uint64
	}{
		{1, nil}, {2, []uint64{1}}, {128, []uint64{1}}, {129, []uint64{2, 1}},
		{128 * 128, []uint64{128, 1}}, {128*128 + 1, []uint64{129, 2, 1}},
	} {
		if s := newShape(c.data); !reflect.DeepEqual(s.blocks, c.blocks) {
			t.Errorf("%d data blocks: levels %v, want %v", c.data, s.blocks, c.blocks)
		}
	}
	// Levels are stored top first.
	if s := newShape(128*128 + 1); !reflect.DeepEqual(s.start, []uint64{3, 1, 0}) || s.total != 132 {
		t.Errorf("starts %v, total %d", s.start, s.total)
	}
	if got, want := Size(5*BlockSize+1), int64((6+1+1)*BlockSize); got != want {
		t.Errorf("Size: %d, want %d", got, want)
	}
}

func TestTable(t *testing.T) {
	p := Params{DataBlocks: 300, HashOffset: 300 * BlockSize, Salt: []byte{0xab, 0x01}, Root: bytes.Repeat([]byte{0x0f}, 32)}
	want := "1 /dev/loop0 /dev/loop0 4096 4096 300 301 sha256 " + strings.Repeat("0f", 32) + " ab01"
	if got := p.Table("/dev/loop0", "/dev/loop0"); got != want {
		t.Errorf("Table:\n%s\nwant\n%s", got, want)
	}
	p.Salt = nil
	if got := p.Table("a", "b"); !strings.HasSuffix(got, " -") {
		t.Errorf("Table without salt: %s", got)
	}
	if p.Sectors() != 2400 {
		t.Errorf("Sectors: %d", p.Sectors())
	}
}

// TestSquashfs builds a tree after a real squashfs: the hash offset is its
// size, and the squashfs still reads with the tree behind it.
func TestSquashfs(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("needs mksquashfs (apt package squashfs-tools)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "hello"), bytes.Repeat([]byte("livebootp\n"), 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "img.sqfs")
	if out, err := exec.Command("mksquashfs", src, img, "-noappend", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off, err := SquashfsHashOffset(f)
	if err != nil || off != fi.Size() {
		t.Fatalf("SquashfsHashOffset: %d, %v; the file is %d bytes", off, err, fi.Size())
	}
	p, err := Build(f, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	if off, err := SquashfsHashOffset(f); err != nil || off != p.HashOffset {
		t.Errorf("SquashfsHashOffset after Build: %d, %v, want %d", off, err, p.HashOffset)
	}
	sb, err := ReadSuperblock(f, off)
	if err != nil {
		t.Fatal(err)
	}
	sb.Root = p.Root
	if err := Verify(f, sb); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("unsquashfs"); err == nil {
		out, err := exec.Command("unsquashfs", "-l", img).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "hello") {
			t.Errorf("unsquashfs -l on the squashfs with its tree: %v\n%s", err, out)
		}
	}
}

func TestSquashfsHashOffsetRefuses(t *testing.T) {
	sb := make([]byte, 96)
	copy(sb, "hsqs")
	binary.LittleEndian.PutUint16(sb[28:], 4)
	binary.LittleEndian.PutUint64(sb[40:], 4097)
	if off, err := SquashfsHashOffset(bytes.NewReader(sb)); err != nil || off != 2*BlockSize {
		t.Errorf("bytes_used 4097: %d, %v", off, err)
	}
	for _, c := range []struct {
		name  string
		patch func([]byte)
		want  string
	}{
		{"magic", func(b []byte) { copy(b, "sqsh") }, "no squashfs"},
		{"version", func(b []byte) { binary.LittleEndian.PutUint16(b[28:], 3) }, "version 3.0"},
		{"size", func(b []byte) { binary.LittleEndian.PutUint64(b[40:], 1<<63) }, "not a plausible size"},
	} {
		bad := bytes.Clone(sb)
		c.patch(bad)
		_, err := SquashfsHashOffset(bytes.NewReader(bad))
		wantErr(t, c.name, err, c.want)
	}
	if _, err := SquashfsHashOffset(bytes.NewReader(sb[:50])); err == nil {
		t.Error("a 50-byte file passed for a squashfs")
	}
}

// at is a file holding b at off and zeros before it.
type at struct {
	off int64
	b   []byte
}

func (a at) ReadAt(p []byte, off int64) (int, error) {
	end := a.off + int64(len(a.b))
	n := 0
	for ; n < len(p) && off+int64(n) < end; n++ {
		if pos := off + int64(n); pos >= a.off {
			p[n] = a.b[pos-a.off]
		} else {
			p[n] = 0
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// FuzzReadSuperblock feeds superblocks at any offset: one that is accepted
// round-trips through encode, and Verify on it fails without panicking or
// allocating a tree the file cannot hold.
func FuzzReadSuperblock(f *testing.F) {
	good := make([]byte, sbSize)
	Params{DataBlocks: 3, HashOffset: 3 * BlockSize, Salt: []byte("salt")}.encode(good)
	f.Add(good, uint32(3))
	big := bytes.Clone(good)
	binary.LittleEndian.PutUint64(big[offDataBlks:], 1<<40)
	f.Add(big, uint32(1<<30))
	f.Fuzz(func(t *testing.T, b []byte, blocks uint32) {
		off := int64(blocks) * BlockSize
		p, err := ReadSuperblock(at{off, b}, off)
		if err != nil {
			return
		}
		again := make([]byte, sbSize)
		p.encode(again)
		q, err := ReadSuperblock(at{off, again}, off)
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("accepted %+v, re-encoded it reads as %+v, %v", p, q, err)
		}
		p.Root = make([]byte, hashSize)
		if Verify(at{off, b}, p) == nil {
			t.Fatal("Verify accepted a zero root hash")
		}
	})
}

func BenchmarkBuild(b *testing.B) {
	const size = 64 << 20
	path := dataFile(b, size)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var p Params
	b.Run("Build", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if p, err = Build(f, size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("BuildSalt", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := BuildSalt(f, size, p.Salt); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Verify", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if err := Verify(f, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
