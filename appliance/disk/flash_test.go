package disk

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices")
	}
	needTool(t, "losetup")
}

// loopDevice attaches a sparse file of size bytes as a loop device that
// scans partitions (losetup -P) and detaches it when the test ends.
func loopDevice(t testing.TB, size int64) string {
	t.Helper()
	backing := filepath.Join(t.TempDir(), "disk")
	sparseFile(t, backing, size)
	return losetup(t, "-P", backing)
}

// builtImage builds a small appliance image in a temporary directory.
func builtImage(t testing.TB, dataBytes int) (fixture, string, Layout) {
	t.Helper()
	dir := t.TempDir()
	f := newFixture(t, dir, 2<<20, dataBytes)
	img := filepath.Join(dir, "appliance.img")
	l, err := Build(context.Background(), img, f.spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f, img, l
}

func sha(t testing.TB, p string, off, n int64) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func TestFlashGrowsDataPartition(t *testing.T) {
	needRoot(t)
	f, img, l := builtImage(t, 3<<20)
	const size = 600 << 20
	dev := loopDevice(t, size)

	var reports []FlashProgress
	clock := time.Unix(0, 0)
	o := FlashOptions{
		Progress: func(p FlashProgress) { reports = append(reports, p) },
		// Each reading of the clock is 300 ms later: a report every 4th chunk.
		Now: func() time.Time { clock = clock.Add(300 * time.Millisecond); return clock },
	}
	if err := Flash(context.Background(), img, dev, o); err != nil {
		t.Fatalf("Flash: %v", err)
	}
	if len(reports) < 2 {
		t.Fatalf("progress reports: %+v", reports)
	}
	last := reports[len(reports)-1]
	if last.Step != "synced" || last.Done != last.Total || last.Percent() != 100 {
		t.Errorf("last progress %+v", last)
	}
	for i := 1; i < len(reports)-1; i++ {
		if d := reports[i].Elapsed - reports[i-1].Elapsed; d < time.Second {
			t.Errorf("progress reports %d and %d only %v apart", i-1, i, d)
		}
	}

	// sgdisk and the kernel agree on the grown layout.
	if out := run(t, "sgdisk", "-v", dev); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v %s:\n%s", dev, out)
	}
	d, err := diskfs.Open(dev, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	table := d.Table.(*gpt.Table)
	imgDisk, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer imgDisk.Close()
	imgTable := imgDisk.Table.(*gpt.Table)
	if table.GUID != imgTable.GUID || !table.ProtectiveMBR {
		t.Errorf("disk GUID %s (image %s), protective MBR %v", table.GUID, imgTable.GUID, table.ProtectiveMBR)
	}
	esp, data := table.Partitions[0], table.Partitions[1]
	if *esp != *imgTable.Partitions[0] {
		t.Errorf("ESP entry changed: %+v, image %+v", esp, imgTable.Partitions[0])
	}
	if data.Start != imgTable.Partitions[1].Start || data.End != size/sectorSize-34 || data.Name != DataName ||
		data.Type != gpt.MicrosoftBasicData || data.GUID != imgTable.Partitions[1].GUID {
		t.Errorf("data partition %+v, want it from %d to the last usable sector %d", data, imgTable.Partitions[1].Start, size/sectorSize-34)
	}
	if got, want := sha(t, dev, l.ESPStart, l.ESPSize), sha(t, img, l.ESPStart, l.ESPSize); got != want {
		t.Error("the ESP on the device differs from the image's")
	}
	if got, want := sha(t, dev, 0, sectorSize), sha(t, img, 0, sectorSize); got == want {
		t.Log("protective MBR identical (disk sizes under 2 TiB keep the size field as go-diskfs writes it)")
	}

	// BLKRRPART made the kernel see the new partition at its new size.
	p2 := dev + "p2"
	if kernelReadsGPT() {
		if n, err := blockSize(p2); err != nil || n != data.GetSize() {
			t.Errorf("%s: %d bytes, %v; want %d", p2, n, err, data.GetSize())
		}
	} else {
		t.Logf("this kernel reads no GPT (CONFIG_EFI_PARTITION): %s is a loop device at the partition's offset", p2)
		p2 = partition(t, dev, data.GetStart(), data.GetSize())
	}
	fsckPartitions(t, dev, Layout{ESPStart: l.ESPStart, ESPSize: l.ESPSize, DataStart: data.GetStart(), DataSize: data.GetSize()})
	fs2, err := d.GetFilesystem(2)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(fs2.Label()) != DataLabel {
		t.Errorf("data label %q", fs2.Label())
	}
	want := map[string][]byte{}
	for p, b := range f.data {
		want["/"+p] = b
	}
	checkFiles(t, fs2, want)
	mlabel(t, p2, 0, DataLabel)
}

// kernelReadsGPT says whether the running kernel finds partitions in a GPT:
// some (the VM this project's CI runs in) are built without. Without
// /proc/config.gz it assumes a kernel that does.
func kernelReadsGPT() bool {
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return true
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return true
	}
	b, err := io.ReadAll(z)
	return err != nil || bytes.Contains(b, []byte("\nCONFIG_EFI_PARTITION=y\n"))
}

func blockSize(dev string) (int64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

func TestFlashRefusals(t *testing.T) {
	needRoot(t)
	_, img, l := builtImage(t, 1<<20)

	t.Run("smaller device", func(t *testing.T) {
		dev := loopDevice(t, l.Size-mib)
		err := Flash(context.Background(), img, dev, FlashOptions{})
		if err == nil || !strings.Contains(err.Error(), "smaller than the image") {
			t.Fatalf("Flash = %v", err)
		}
	})
	t.Run("declined", func(t *testing.T) {
		dev := loopDevice(t, l.Size+10*mib)
		before := sha(t, dev, 0, l.Size+10*mib)
		var question string
		err := Flash(context.Background(), img, dev, FlashOptions{Confirm: func(q string) (bool, error) { question = q; return false, nil }})
		if !errors.Is(err, ErrDeclined) {
			t.Fatalf("Flash = %v, want ErrDeclined", err)
		}
		if !strings.Contains(question, img) || !strings.Contains(question, dev+" (loop device on ") {
			t.Errorf("question %q names neither image nor device", question)
		}
		if sha(t, dev, 0, l.Size+10*mib) != before {
			t.Error("the device changed although the user said no")
		}
	})
	t.Run("mounted partition", func(t *testing.T) {
		needTool(t, "mkfs.ext4")
		dev := loopDevice(t, l.Size+10*mib)
		if err := Flash(context.Background(), img, dev, FlashOptions{}); err != nil {
			t.Fatal(err)
		}
		// Mount the data partition, or where the kernel reads no GPT, the
		// whole device.
		p2 := dev + "p2"
		if !kernelReadsGPT() {
			p2 = dev
		}
		run(t, "mkfs.ext4", "-q", "-F", p2)
		mnt := t.TempDir()
		run(t, "mount", "-o", "ro", p2, mnt)
		t.Cleanup(func() {
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v\n%s", mnt, err, out)
			}
		})
		before := sha(t, dev, 0, l.Size)
		err := Flash(context.Background(), img, dev, FlashOptions{Confirm: func(string) (bool, error) {
			t.Error("asked to confirm a mounted disk")
			return false, nil
		}})
		if err == nil || !strings.Contains(err.Error(), p2+" is mounted on "+mnt) {
			t.Fatalf("Flash = %v, want a refusal naming %s and %s", err, p2, mnt)
		}
		if sha(t, dev, 0, l.Size) != before {
			t.Error("the mounted device changed")
		}
		if !kernelReadsGPT() {
			return
		}
		// A partition is refused whatever its state.
		if err := Flash(context.Background(), img, dev+"p1", FlashOptions{}); err == nil || !strings.Contains(err.Error(), "give the whole disk, "+dev) {
			t.Errorf("Flash to a partition = %v", err)
		}
	})
	t.Run("not an appliance image", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other.img")
		writeFile(t, other, make([]byte, 4*mib))
		dev := loopDevice(t, 8*mib)
		if err := Flash(context.Background(), other, dev, FlashOptions{}); err == nil || !strings.Contains(err.Error(), "not an appliance image") {
			t.Errorf("Flash = %v", err)
		}
	})
}

// TestFlashFileNoGrow writes into a VM disk file (--force-file) and keeps
// the data partition's size: the bytes up to its end are the image's, and
// the backup GPT moves to the end of the file.
func TestFlashFileNoGrow(t *testing.T) {
	_, img, l := builtImage(t, 1<<20)
	vmdisk := filepath.Join(t.TempDir(), "vm.img")
	sparseFile(t, vmdisk, l.Size+100*mib)
	if err := Flash(context.Background(), img, vmdisk, FlashOptions{}); err == nil || !strings.Contains(err.Error(), "--force-file") {
		t.Fatalf("Flash to a file without ForceFile = %v", err)
	}
	if err := Flash(context.Background(), img, img, FlashOptions{ForceFile: true}); err == nil || !strings.Contains(err.Error(), "the image itself") {
		t.Fatalf("Flash onto itself = %v", err)
	}
	if err := Flash(context.Background(), img, vmdisk, FlashOptions{ForceFile: true, NoGrow: true}); err != nil {
		t.Fatal(err)
	}
	dataEnd := l.DataStart + l.DataSize
	if sha(t, vmdisk, sectorSize*34, dataEnd-sectorSize*34) != sha(t, img, sectorSize*34, dataEnd-sectorSize*34) {
		t.Error("partitions differ from the image's")
	}
	sgdiskVerify(t, vmdisk)
	f, err := os.Open(vmdisk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := verifyTable(f, l.Size+100*mib); err != nil {
		t.Error(err)
	}
}

// TestFlashFileGrowsLarge grows the data partition of a sparse 3 TiB VM
// disk: it stops at 256 GiB, where go-diskfs's FAT32 stops working, the
// filesystem passes fsck, and the protective MBR covers what it can of a
// disk over 2 TiB.
func TestFlashFileGrowsLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 128 MiB FAT")
	}
	// One file: go-diskfs rewrites the 32 MiB FAT for each file and
	// directory, which takes seconds under the race detector.
	dir := t.TempDir()
	f := newFixture(t, dir, 1<<10, 1<<10)
	if err := os.RemoveAll(f.spec.DataDir); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.spec.DataDir, "config.yml"), f.data["config.yml"])
	img := filepath.Join(dir, "appliance.img")
	l := build(t, f, img)
	vmdisk := filepath.Join(t.TempDir(), "big.img")
	const size = 3 << 40
	sparseFile(t, vmdisk, size)
	if err := Flash(context.Background(), img, vmdisk, FlashOptions{ForceFile: true}); err != nil {
		t.Fatal(err)
	}
	d, err := diskfs.Open(vmdisk, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	data := d.Table.(*gpt.Table).Partitions[1]
	if data.GetSize() != maxDataPart {
		t.Errorf("data partition %s, want %s", humanBytes(data.GetSize()), humanBytes(maxDataPart))
	}
	fs2, err := d.GetFilesystem(2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fs2.ReadFile("/config.yml")
	if err != nil || !bytes.Equal(b, f.data["config.yml"]) {
		t.Errorf("config.yml: %q %v", b, err)
	}
	fsckPartitions(t, vmdisk, Layout{ESPStart: l.ESPStart, ESPSize: l.ESPSize, DataStart: l.DataStart, DataSize: data.GetSize()})
	sgdiskVerify(t, vmdisk)
	mbr := make([]byte, sectorSize)
	fh, err := os.Open(vmdisk)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.ReadAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	if mbr[446+4] != 0xee || !bytes.Equal(mbr[446+12:446+16], []byte{0xff, 0xff, 0xff, 0xff}) {
		t.Errorf("protective MBR entry % x, want type ee and size ffffffff", mbr[446:462])
	}
}

// BenchmarkFlash flashes an image with ~50 MB of data to a 1 GiB loop
// device: the b/s it reports is the image's bytes written per second.
func BenchmarkFlash(b *testing.B) {
	needRoot(b)
	_, img, _ := builtImage(b, 50<<20)
	dev := loopDevice(b, 1<<30)
	var last FlashProgress
	for b.Loop() {
		if err := Flash(context.Background(), img, dev, FlashOptions{Progress: func(p FlashProgress) { last = p }}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(last.Done)/float64(mib), "MiB-written")
	b.ReportMetric(last.Rate()/float64(mib), "MiB/s")
}
