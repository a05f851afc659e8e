package disk

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// fixture is the inputs of a small appliance image and what its data
// partition should hold.
type fixture struct {
	spec Spec
	data map[string][]byte // path on the data partition -> contents
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sparseFile makes a file of size bytes that takes no space.
func sparseFile(t testing.TB, p string, size int64) {
	t.Helper()
	writeFile(t, p, nil)
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
}

// newFixture makes kernel, initramfs, a stand-in UEFI loader and a data
// tree of dataBytes (spread over an image's files) under dir.
func newFixture(t testing.TB, dir string, kernelBytes, dataBytes int) fixture {
	in := filepath.Join(dir, "in")
	f := fixture{
		spec: Spec{
			Arch:      "amd64",
			Kernel:    filepath.Join(in, "vmlinuz-6.1.0-amd64"),
			Initramfs: filepath.Join(in, "appliance.cpio.zst"),
			EFILoader: filepath.Join(in, "systemd-bootx64.efi"),
			Cmdline:   "console=ttyS0,115200 console=tty0 quiet",
			DataDir:   filepath.Join(dir, "data"),
		},
		data: map[string][]byte{
			"config.yml":                                      []byte("hosts:\n  web:\n    hardware-ethernet: \"52:54:00:12:34:56\"\n"),
			"images/busybox/1.0/filesystem.squashfs":          randomBytes(t, dataBytes*7/10),
			"images/busybox/1.0/vmlinuz":                      randomBytes(t, dataBytes*2/10),
			"images/busybox/1.0/initrd.img":                   randomBytes(t, dataBytes/10+123),
			"images/busybox/1.0/manifest.json":                []byte(`{"name":"busybox"}`),
			"ssh-authorized-keys/default":                     []byte("ssh-ed25519 AAAA test@example\n"),
			"ssh-authorized-keys/a-rather-long-file-name.pub": []byte("ssh-ed25519 BBBB other@example\n"),
			"loaders/EMPTY":                                   {},
			"Mixed Case Name.TXT":                             []byte("kept as written\n"),
		},
	}
	writeFile(t, f.spec.Kernel, randomBytes(t, kernelBytes*6/10))
	writeFile(t, f.spec.Initramfs, randomBytes(t, kernelBytes*4/10+7))
	writeFile(t, f.spec.EFILoader, append([]byte("MZ"), randomBytes(t, 100_000)...))
	for p, b := range f.data {
		writeFile(t, filepath.Join(f.spec.DataDir, p), b)
	}
	// A link to a file is copied as the file.
	if err := os.Symlink("default", filepath.Join(f.spec.DataDir, "ssh-authorized-keys", "linked")); err != nil {
		t.Fatal(err)
	}
	f.data["ssh-authorized-keys/linked"] = f.data["ssh-authorized-keys/default"]
	return f
}

func build(t testing.TB, f fixture, out string) Layout {
	t.Helper()
	var steps []string
	l, err := Build(context.Background(), out, f.spec, func(s string) { steps = append(steps, s) })
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if len(steps) < 3 {
		t.Errorf("progress steps: %q", steps)
	}
	return l
}

func TestBuildLayoutAndFiles(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, dir, 3<<20, 2<<20)
	img := filepath.Join(dir, "appliance.img")
	l := build(t, f, img)

	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != l.Size || l.Size%mib != 0 {
		t.Errorf("image is %d bytes, layout says %d", fi.Size(), l.Size)
	}
	if l.ESPSize < minPart || l.DataSize < minPart {
		t.Errorf("partitions smaller than 64 MiB: %+v", l)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, ".appliance.img.tmp-*")); len(matches) > 0 {
		t.Errorf("temporary files left: %v", matches)
	}

	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	table, ok := d.Table.(*gpt.Table)
	if !ok {
		t.Fatalf("partition table is %T, want GPT", d.Table)
	}
	if !table.ProtectiveMBR {
		t.Error("no protective MBR")
	}
	if err := table.Verify(d.Backend, uint64(l.Size)); err != nil {
		t.Errorf("backup GPT: %v", err)
	}
	want := []struct {
		name  string
		typ   gpt.Type
		start int64
		size  int64
		attr  uint64
	}{
		{ESPName, gpt.EFISystemPartition, l.ESPStart, l.ESPSize, legacyBIOSBootable},
		{DataName, gpt.MicrosoftBasicData, l.DataStart, l.DataSize, 0},
	}
	if len(table.Partitions) != len(want) {
		t.Fatalf("%d partitions, want %d", len(table.Partitions), len(want))
	}
	for i, w := range want {
		p := table.Partitions[i]
		if p.Name != w.name || p.Type != w.typ || p.GetStart() != w.start || p.GetSize() != w.size || p.Attributes != w.attr {
			t.Errorf("partition %d = %s %s start %d size %d attr %#x, want %+v", i+1, p.Name, p.Type, p.GetStart(), p.GetSize(), p.Attributes, w)
		}
		if p.GetStart()%mib != 0 {
			t.Errorf("partition %d starts at %d, not on a MiB boundary", i+1, p.GetStart())
		}
	}

	esp, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatal(err)
	}
	if esp.Type() != filesystem.TypeFat32 || strings.TrimSpace(esp.Label()) != ESPLabel {
		t.Errorf("ESP: type %v label %q", esp.Type(), esp.Label())
	}
	espWant := map[string][]byte{
		"/EFI/BOOT/BOOTX64.EFI":          mustRead(t, f.spec.EFILoader),
		"/vmlinuz":                       mustRead(t, f.spec.Kernel),
		"/initrd.img":                    mustRead(t, f.spec.Initramfs),
		"/loader/loader.conf":            []byte("default livebootp.conf\ntimeout 0\nconsole-mode keep\n"),
		"/loader/entries/livebootp.conf": []byte("title   LiveBOOTP appliance\nlinux   /vmlinuz\ninitrd  /initrd.img\noptions " + f.spec.Cmdline + "\n"),
		"/extlinux/extlinux.conf": []byte("default livebootp\nprompt 0\ntimeout 10\n\nlabel livebootp\n    menu label LiveBOOTP appliance\n" +
			"    kernel /vmlinuz\n    initrd /initrd.img\n    append " + f.spec.Cmdline + "\n"),
	}
	checkFiles(t, esp, espWant)

	data, err := d.GetFilesystem(2)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(data.Label()) != DataLabel {
		t.Errorf("data label %q, want %q", data.Label(), DataLabel)
	}
	dataWant := map[string][]byte{}
	for p, b := range f.data {
		dataWant["/"+p] = b
	}
	checkFiles(t, data, dataWant)
	st, err := data.Stat("config.yml")
	if err != nil {
		t.Fatal(err)
	}
	src, _ := os.Stat(filepath.Join(f.spec.DataDir, "config.yml"))
	if d := st.ModTime().Sub(src.ModTime()); d < -2*time.Second || d > 2*time.Second {
		t.Errorf("config.yml mtime %v, source %v", st.ModTime(), src.ModTime())
	}

	// Independent readers: dosfstools, mtools and gdisk must agree.
	fsckPartitions(t, img, l)
	mtoolsCheck(t, img, l.ESPStart, "/EFI/BOOT/BOOTX64.EFI", espWant["/EFI/BOOT/BOOTX64.EFI"])
	mtoolsCheck(t, img, l.DataStart, "/ssh-authorized-keys/a-rather-long-file-name.pub", f.data["ssh-authorized-keys/a-rather-long-file-name.pub"])
	mlabel(t, img, l.DataStart, DataLabel)
	sgdiskVerify(t, img)
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkFiles compares every file of want with the filesystem's, and that
// the filesystem holds no other files.
func checkFiles(t *testing.T, fsys filesystem.FileSystem, want map[string][]byte) {
	t.Helper()
	got := map[string]bool{}
	var walk func(dir string)
	walk = func(dir string) {
		des, err := fsys.ReadDir(dir)
		if err != nil {
			t.Fatalf("ReadDir %s: %v", dir, err)
		}
		for _, de := range des {
			p := path.Join(dir, de.Name())
			if de.IsDir() {
				walk(p)
				continue
			}
			got[p] = true
		}
	}
	walk(".")
	for p, b := range want {
		if !got[strings.TrimPrefix(p, "/")] {
			t.Errorf("%s missing; have %v", p, got)
			continue
		}
		if len(b) == 0 {
			// go-diskfs cannot open an empty file: it has no cluster.
			if fi, err := fsys.Stat(strings.TrimPrefix(p, "/")); err != nil || fi.Size() != 0 {
				t.Errorf("empty file %s: %v %v", p, fi, err)
			}
			continue
		}
		f, err := fsys.OpenFile(p, os.O_RDONLY)
		if err != nil {
			t.Errorf("open %s: %v", p, err)
			continue
		}
		have, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Errorf("read %s: %v", p, err)
		} else if !bytes.Equal(have, b) {
			t.Errorf("%s: %d bytes differ from the %d written", p, len(have), len(b))
		}
	}
	for p := range got {
		if _, ok := want["/"+p]; !ok {
			t.Errorf("unexpected file %s", p)
		}
	}
}

func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (scripts/install-deps.sh installs it)", name)
	}
	return p
}

// partition makes the n bytes at off of img a file or device of their own,
// for tools that read a filesystem but not at an offset: a read-only loop
// device when root, else a copy.
func partition(t testing.TB, img string, off, n int64) string {
	t.Helper()
	if os.Geteuid() == 0 {
		return losetup(t, "--read-only", "--offset", itoa(off), "--sizelimit", itoa(n), img)
	}
	if n > 1<<30 {
		t.Skip("copying a partition over 1 GiB: run as root to use a loop device")
	}
	in, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	p := filepath.Join(t.TempDir(), "part.img")
	out, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(in, off, n)); err != nil {
		t.Fatal(err)
	}
	return p
}

// losetup attaches a loop device (losetup --find --show args...) and
// detaches it when the test ends.
func losetup(t testing.TB, args ...string) string {
	t.Helper()
	dev := strings.TrimSpace(run(t, "losetup", append([]string{"--find", "--show"}, args...)...))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
		}
	})
	return dev
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(needTool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// fsckPartitions runs dosfstools' checker, read-only, on both partitions.
func fsckPartitions(t *testing.T, img string, l Layout) {
	t.Helper()
	needTool(t, "fsck.vfat")
	for _, p := range []struct{ off, n int64 }{{l.ESPStart, l.ESPSize}, {l.DataStart, l.DataSize}} {
		out := run(t, "fsck.vfat", "-n", "-v", partition(t, img, p.off, p.n))
		if !strings.Contains(out, "32 bit entries") {
			t.Errorf("fsck.vfat at offset %d does not see FAT32:\n%s", p.off, out)
		}
		// A fsck that finds a problem also prints it; -n answers no to fixes.
		for _, bad := range []string{"Free cluster summary wrong", "Fix?", "Remove", "Truncate", "Reclaimed", "differs"} {
			if strings.Contains(out, bad) {
				t.Errorf("fsck.vfat at offset %d: %q in\n%s", p.off, bad, out)
			}
		}
	}
}

func mtoolsCheck(t *testing.T, img string, off int64, p string, want []byte) {
	t.Helper()
	needTool(t, "mcopy")
	dst := filepath.Join(t.TempDir(), "copy")
	cmd := exec.Command("mcopy", "-n", "-i", img+"@@"+itoa(off), "::"+p, dst)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mcopy %s: %v\n%s", p, err, out)
	}
	if got := mustRead(t, dst); !bytes.Equal(got, want) {
		t.Errorf("mcopy %s: %d bytes differ from the %d written", p, len(got), len(want))
	}
}

func mlabel(t *testing.T, img string, off int64, want string) {
	t.Helper()
	out := run(t, "mlabel", "-s", "-i", img+"@@"+itoa(off), "::")
	if !strings.Contains(out, "Volume label is "+want) {
		t.Errorf("mlabel: %q, want label %s", out, want)
	}
}

func sgdiskVerify(t *testing.T, img string) {
	t.Helper()
	out := run(t, "sgdisk", "-v", img)
	if !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestBuildArm64WithoutEFILoader(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, dir, 1<<20, 1<<20)
	f.spec.Arch = "arm64"
	f.spec.EFILoader = ""
	writeFile(t, filepath.Join(dir, "dtbs-6.1", "broadcom", "bcm2711-rpi-4-b.dtb"), []byte("dtb"))
	// A link to the directory, as /usr/lib/linux-image-* often is reached.
	f.spec.DTBs = filepath.Join(dir, "dtbs")
	if err := os.Symlink("dtbs-6.1", f.spec.DTBs); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "arm64.img")
	l := build(t, f, img)
	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	esp, err := d.GetFilesystem(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := esp.Stat("EFI"); err == nil {
		t.Error("an EFI directory without a UEFI loader")
	}
	conf, err := esp.ReadFile("/extlinux/extlinux.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "    fdtdir /dtbs\n") {
		t.Errorf("extlinux.conf without fdtdir:\n%s", conf)
	}
	dtb, err := esp.ReadFile("/dtbs/broadcom/bcm2711-rpi-4-b.dtb")
	if err != nil || string(dtb) != "dtb" {
		t.Errorf("dtb: %q %v", dtb, err)
	}
	fsckPartitions(t, img, l)
}

func TestBuildRefuses(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, f *fixture)
		want  string
	}{
		{"file of 4 GiB", func(t *testing.T, f *fixture) {
			sparseFile(t, filepath.Join(f.spec.DataDir, "images", "huge", "1", "filesystem.squashfs"), 1<<32)
		}, "FAT32 holds files smaller than 4 GiB"},
		{"names differing in case", func(t *testing.T, f *fixture) {
			writeFile(t, filepath.Join(f.spec.DataDir, "CONFIG.yml"), []byte("x"))
		}, "differ only in case"},
		{"name FAT cannot hold", func(t *testing.T, f *fixture) {
			writeFile(t, filepath.Join(f.spec.DataDir, "what?"), []byte("x"))
		}, "printable ASCII"},
		{"fifo", func(t *testing.T, f *fixture) {
			if err := syscall.Mkfifo(filepath.Join(f.spec.DataDir, "fifo"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"linked directory", func(t *testing.T, f *fixture) {
			if err := os.Symlink("images", filepath.Join(f.spec.DataDir, "more-images")); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link to a directory"},
		{"unknown arch", func(t *testing.T, f *fixture) { f.spec.Arch = "riscv64" }, "want amd64 or arm64"},
		{"missing kernel", func(t *testing.T, f *fixture) { f.spec.Kernel = filepath.Join(t.TempDir(), "nope") }, "kernel"},
		{"two-line cmdline", func(t *testing.T, f *fixture) { f.spec.Cmdline = "a\nb" }, "one line"},
		{"data size too small", func(t *testing.T, f *fixture) { f.spec.DataSize = 65 * mib }, "files need about"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			f := newFixture(t, dir, 1<<10, 1<<10)
			if c.name == "data size too small" {
				sparseFile(t, filepath.Join(f.spec.DataDir, "big"), 80*mib)
			}
			c.setup(t, &f)
			out := filepath.Join(dir, "x.img")
			_, err := Build(context.Background(), out, f.spec, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Build: %v, want an error containing %q", err, c.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("%s exists after a failed build", out)
			}
		})
	}
}

// BenchmarkBuild builds an image from ~10 MB of kernel and initramfs and
// ~50 MB of data, the size of a small appliance.
func BenchmarkBuild(b *testing.B) {
	dir := b.TempDir()
	f := newFixture(b, dir, 10<<20, 50<<20)
	out := filepath.Join(dir, "bench.img")
	var l Layout
	for b.Loop() {
		var err error
		if l, err = Build(context.Background(), out, f.spec, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(l.Size)/float64(mib), "image-MiB")
}

func TestBuildCancelled(t *testing.T) {
	dir := t.TempDir()
	f := newFixture(t, dir, 1<<20, 1<<20)
	ctx, cancel := context.WithCancel(context.Background())
	out := filepath.Join(dir, "x.img")
	_, err := Build(ctx, out, f.spec, func(step string) {
		if strings.HasPrefix(step, "EFI system partition:") {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Build = %v, want context.Canceled", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 2 { // in/ and data/
		t.Errorf("left behind: %v", left)
	}
}
