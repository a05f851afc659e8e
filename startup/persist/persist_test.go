package persist

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const diskSize = 80 * MiB

// disk makes a sparse disk image file of diskSize bytes.
func disk(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(diskSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func tool(t *testing.T, name string, args ...string) {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		for _, d := range []string{"/sbin", "/usr/sbin"} {
			if _, serr := os.Stat(filepath.Join(d, name)); serr == nil {
				path, err = filepath.Join(d, name), nil
			}
		}
	}
	if err != nil {
		t.Skipf("needs %s", name)
	}
	if out, err := exec.Command(path, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// gpt writes a protective MBR, a primary GPT header at LBA 1 and the backup
// header at the last LBA — the layout sgdisk -o leaves.
func gpt(t *testing.T, path string) {
	mbr := make([]byte, 512)
	mbr[446+4] = 0xee // protective partition type
	binary.LittleEndian.PutUint32(mbr[446+8:], 1)
	binary.LittleEndian.PutUint32(mbr[446+12:], uint32(diskSize/512-1))
	mbr[510], mbr[511] = 0x55, 0xaa
	hdr := make([]byte, 92)
	copy(hdr, "EFI PART")
	binary.LittleEndian.PutUint32(hdr[8:], 0x00010000)
	binary.LittleEndian.PutUint32(hdr[12:], 92)
	writeAt(t, path, 0, mbr)
	writeAt(t, path, 512, hdr)
	writeAt(t, path, diskSize-512, hdr)
}

// mbrTable writes a DOS partition table with one Linux partition.
func mbrTable(t *testing.T, path string) {
	mbr := make([]byte, 512)
	mbr[446+4] = 0x83
	binary.LittleEndian.PutUint32(mbr[446+8:], 2048)
	binary.LittleEndian.PutUint32(mbr[446+12:], 4096)
	mbr[510], mbr[511] = 0x55, 0xaa
	writeAt(t, path, 0, mbr)
}

func TestProbeAndBlankOnRealImages(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name      string
		make      func(p string)
		kind      string
		label     string
		blank     bool
		whatMatch string
	}{
		{"zero", func(string) {}, "", "", true, ""},
		{"ext4", func(p string) { tool(t, "mkfs.ext4", "-q", "-F", "-L", "livebootp-data", p) }, "ext4", "livebootp-data", false, "ext4"},
		{"ext2", func(p string) { tool(t, "busybox", "mke2fs", "-F", "-L", "old", p) }, "ext2", "old", false, "ext2"},
		{"ext4-nolabel", func(p string) { tool(t, "mkfs.ext4", "-q", "-F", p) }, "ext4", "", false, "ext4"},
		{"vfat", func(p string) { tool(t, "busybox", "mkdosfs", "-n", "DATA", p) }, "vfat", "DATA", false, "vfat"},
		{"swap", func(p string) { tool(t, "busybox", "mkswap", p) }, "swap", "", false, "swap"},
		{"squashfs", func(p string) {
			src := t.TempDir()
			os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
			sq := filepath.Join(t.TempDir(), "s")
			tool(t, "mksquashfs", src, sq, "-quiet", "-no-progress")
			b, _ := os.ReadFile(sq)
			writeAt(t, p, 0, b)
		}, "squashfs", "", false, "squashfs"},
		{"gpt", func(p string) { gpt(t, p) }, "gpt", "", false, "gpt"},
		{"mbr", func(p string) { mbrTable(t, p) }, "mbr", "", false, "mbr"},
		{"luks", func(p string) { writeAt(t, p, 0, []byte("LUKS\xba\xbe\x00\x02")) }, "luks", "", false, "luks"},
		{"lvm", func(p string) {
			writeAt(t, p, 512, []byte("LABELONE\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00LVM2 001"))
		}, "lvm2", "", false, "lvm2"},
		{"tail-only", func(p string) { writeAt(t, p, diskSize-4096, []byte{1}) }, "", "", false, "last MiB"},
		{"one-byte", func(p string) { writeAt(t, p, 300000, []byte{1}) }, "data", "", false, "data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := disk(t, dir, tc.name)
			tc.make(p)
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			head := make([]byte, MiB)
			f.ReadAt(head, 0)
			sig, ok := Probe(head)
			if sig.Kind != tc.kind || sig.Label != tc.label || ok != (tc.kind != "") {
				t.Errorf("Probe = %+v, %v; want kind %q label %q", sig, ok, tc.kind, tc.label)
			}
			blank, what, err := Blank(f, diskSize)
			if err != nil || blank != tc.blank || !strings.Contains(what, tc.whatMatch) {
				t.Errorf("Blank = %v, %q, %v; want %v mentioning %q", blank, what, err, tc.blank, tc.whatMatch)
			}
		})
	}
	// GPT without its protective MBR (a wiped sector 0) is still seen.
	p := disk(t, dir, "gpt-only")
	gpt(t, p)
	writeAt(t, p, 0, make([]byte, 512))
	head := make([]byte, MiB)
	f, _ := os.Open(p)
	f.ReadAt(head, 0)
	f.Close()
	if sig, _ := Probe(head); sig.Kind != "gpt" {
		t.Errorf("GPT header without protective MBR: %+v", sig)
	}
}

// fakeSys lays out root/sys/class/block/<name> and root/dev/<name> (the
// device node is the disk image itself) the way the kernel does.
type fakeSys struct {
	t    *testing.T
	root string
}

func (f fakeSys) add(name string, size int64, attrs ...string) string {
	f.t.Helper()
	d := filepath.Join(f.root, "sys", "class", "block", name)
	os.MkdirAll(filepath.Join(d, "holders"), 0o755)
	os.WriteFile(filepath.Join(d, "size"), []byte(strconv.FormatInt(size/512, 10)+"\n"), 0o644)
	os.WriteFile(filepath.Join(d, "ro"), []byte("0\n"), 0o644)
	os.WriteFile(filepath.Join(d, "removable"), []byte("0\n"), 0o644)
	hw := true
	for _, a := range attrs {
		switch {
		case a == "ro" || a == "removable":
			os.WriteFile(filepath.Join(d, a), []byte("1\n"), 0o644)
		case a == "virtual":
			hw = false
		case a == "holder":
			os.WriteFile(filepath.Join(d, "holders", "dm-0"), nil, 0o644)
		case strings.HasPrefix(a, "part-of="):
			parent := strings.TrimPrefix(a, "part-of=")
			os.WriteFile(filepath.Join(d, "partition"), []byte("1\n"), 0o644)
			os.MkdirAll(filepath.Join(f.root, "sys", "class", "block", parent, name), 0o755)
		}
	}
	if hw {
		os.MkdirAll(filepath.Join(d, "device"), 0o755)
	}
	os.MkdirAll(filepath.Join(f.root, "dev"), 0o755)
	return disk(f.t, filepath.Join(f.root, "dev"), name)
}

func sum(t *testing.T, p string) [32]byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestDecideInitialisesOnlyABlankDisk(t *testing.T) {
	root := t.TempDir()
	fs := fakeSys{t, root}
	vda := fs.add("vda", diskSize) // unlabelled ext4: holds data
	tool(t, "mkfs.ext4", "-q", "-F", vda)
	vdb := fs.add("vdb", diskSize) // GPT, no partitions visible yet
	gpt(t, vdb)
	fs.add("vdc", diskSize, "removable")
	fs.add("vdd", diskSize, "holder")
	fs.add("loop0", diskSize, "virtual")
	fs.add("vde", diskSize) // partitioned: vde1 holds a FAT filesystem
	vde1 := fs.add("vde1", diskSize, "part-of=vde")
	tool(t, "busybox", "mkdosfs", "-n", "OTHER", vde1)
	fs.add("vdf", 16*MiB)          // too small
	vdg := fs.add("vdg", diskSize) // blank: the one to take
	vdh := fs.add("vdh", diskSize) // blank too, later in name order
	before := map[string][32]byte{}
	for _, p := range []string{vda, vdb, vde1, vdh} {
		before[p] = sum(t, p)
	}

	p, err := Decide(root, "auto")
	if err != nil {
		t.Fatal(err)
	}
	if p.Action != Format || p.Device.Name != "vdg" || p.Label != DefaultLabel {
		t.Fatalf("Decide = %+v", p)
	}
	notes := strings.Join(p.Notes, "\n")
	for _, want := range []string{"vda: not initialised: holds ext4", "vdb: not initialised: holds gpt", "vdc: not initialised: removable",
		"vdd: not initialised: in use", "vde: not initialised: has partitions vde1", "vdf: not initialised: smaller than"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}

	cmd, err := Initialise(context.Background(), p, "/", "", vdg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initialised with %s", cmd)
	for path, s := range before {
		if sum(t, path) != s {
			t.Errorf("%s changed", path)
		}
	}

	// Next boot: the labelled filesystem is found and used.
	p, err = Decide(root, "auto")
	if err != nil || p.Action != Use || p.Device.Name != "vdg" || p.Sig.FSType() != "ext4" {
		t.Fatalf("second Decide = %+v, %v", p, err)
	}
	// A stale plan cannot format a disk that is no longer blank.
	if _, err := Initialise(context.Background(), Plan{Action: Format, Device: p.Device, Label: "x"}, "/", "", vdg, nil); err == nil ||
		!strings.Contains(err.Error(), "no longer blank") {
		t.Errorf("Initialise on a formatted disk: %v", err)
	}
}

func TestDecideByLabelDeviceAndNone(t *testing.T) {
	root := t.TempDir()
	fs := fakeSys{t, root}
	vda := fs.add("vda", diskSize)
	vda1 := fs.add("vda1", diskSize, "part-of=vda")
	tool(t, "busybox", "mkdosfs", "-n", "MYDATA", vda1)
	vdb := fs.add("vdb", diskSize)
	tool(t, "busybox", "mkswap", vdb)
	_ = vda

	p, err := Decide(root, "LABEL=MYDATA")
	if err != nil || p.Action != Use || p.Device.Name != "vda1" || p.Sig.FSType() != "vfat" {
		t.Errorf("LABEL=MYDATA: %+v, %v", p, err)
	}
	p, err = Decide(root, "/dev/vda1")
	if err != nil || p.Action != Use || p.Device.Name != "vda1" {
		t.Errorf("/dev/vda1: %+v, %v", p, err)
	}
	if _, err = Decide(root, "/dev/vdb"); err == nil || !strings.Contains(err.Error(), "swap") || !strings.Contains(err.Error(), "will not format") {
		t.Errorf("/dev/vdb (swap): %v", err)
	}
	if _, err = Decide(root, "/dev/sdz"); err == nil || !strings.Contains(err.Error(), "no such block device") {
		t.Errorf("/dev/sdz: %v", err)
	}
	p, err = Decide(root, "auto")
	if err != nil || p.Action != None || !strings.Contains(p.Reason, "no blank disk") {
		t.Errorf("auto without label or blank disk: %+v, %v", p, err)
	}
	if p, _ := Decide(root, "none"); p.Action != None {
		t.Errorf("none: %+v", p)
	}
	vdc := fs.add("vdc", diskSize)
	p, err = Decide(root, "/dev/vdc")
	if err != nil || p.Action != Format {
		t.Errorf("/dev/vdc (blank): %+v, %v", p, err)
	}
	_ = vdc
}

func TestInitialiseWithoutMkfsInTheImage(t *testing.T) {
	root := t.TempDir()
	vdb := fakeSys{t, root}.add("vdb", diskSize)
	p, err := Decide(root, "auto")
	if err != nil || p.Action != Format {
		t.Fatal(p, err)
	}
	_, err = Initialise(context.Background(), p, t.TempDir(), "", vdb, nil)
	if err == nil || !strings.Contains(err.Error(), "install e2fsprogs") {
		t.Errorf("err = %v", err)
	}
}
