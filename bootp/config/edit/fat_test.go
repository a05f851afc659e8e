package edit

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livebootp/livebootp/initramfs"
	"github.com/livebootp/livebootp/internal/testbed"
)

// The appliance's data partition is FAT32, and its config is replaced by
// renaming over it. TestWriteOnFAT proves that on a real vfat mount: a
// loop device here when this kernel has vfat, else inside a qemu VM that
// runs this test binary as its /init (the test kernel has vfat as a
// module).

// vmExit is what the test binary prints as PID 1 before powering off.
const vmExit = "EDIT-FATVM-EXIT:"

// fatImage is where the FAT image sits in the VM's initramfs.
const fatImage = "/fat.img"

// fatModules are loaded, in this order, from the initramfs in the VM.
var fatModules = []string{"kernel/drivers/block/loop.ko", "kernel/fs/fat/fat.ko", "kernel/fs/fat/vfat.ko",
	"kernel/fs/nls/nls_cp437.ko", "kernel/fs/nls/nls_ascii.ko"}

func TestMain(m *testing.M) {
	if os.Getpid() != 1 {
		os.Exit(m.Run())
	}
	// The VM's init: the kernel gave us nothing but the initramfs.
	code := 1
	if err := vmSetup(); err != nil {
		fmt.Println("EDIT-FATVM: set-up:", err)
	} else {
		code = m.Run()
	}
	fmt.Printf("\n%s %d\n", vmExit, code)
	syscall.Sync()
	_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	time.Sleep(time.Minute)
}

func vmSetup() error {
	for _, m := range []struct{ fs, dir string }{{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"}, {"tmpfs", "/tmp"}} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := syscall.Mount(m.fs, m.dir, m.fs, 0, ""); err != nil && err != syscall.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	for _, m := range fatModules {
		f, err := os.Open("/" + filepath.Base(m))
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("loading %s: %w", m, err)
		}
	}
	return nil
}

func TestWriteOnFAT(t *testing.T) {
	var mnt string
	switch {
	case os.Getpid() == 1:
		mnt = vmMountFAT(t)
	case hasVFAT():
		mnt = mountFAT(t)
	default:
		runInVM(t)
		return
	}
	checkWritesOnFAT(t, mnt)
}

func checkWritesOnFAT(t *testing.T, mnt string) {
	path := filepath.Join(mnt, "config.yml")
	if err := os.WriteFile(path, []byte(registry+"hosts:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"web-1", "web-2"} {
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Add(name, web(fmt.Sprintf("52:54:00:00:00:0%d", i+1), fmt.Sprintf("10.0.0.1%d", i+1))...); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Check(opts); err != nil {
			t.Fatal(err)
		}
		if err := f.Write(); err != nil {
			t.Fatalf("write %d on FAT: %v", i+1, err)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, f.Text()) {
			t.Fatalf("after write %d the file is %q (%v)", i+1, got, err)
		}
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Mode() != before.Mode() {
		t.Errorf("mode %v, was %v", after.Mode(), before.Mode())
	}
	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != "config.yml" {
		t.Errorf("the data partition holds %v, want only config.yml", names)
	}
	t.Logf("two atomic replacements of %s on vfat", path)
}

func hasVFAT() bool {
	b, err := os.ReadFile("/proc/filesystems")
	return err == nil && bytes.Contains(b, []byte("\tvfat\n"))
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (dosfstools, util-linux, qemu-system-x86; make deps installs them)", tool)
		}
	}
}

func command(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// newFATImage makes a FAT32 filesystem in a file, as on the appliance's
// data partition.
func newFATImage(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "data.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 40<<20); err != nil {
		t.Fatal(err)
	}
	command(t, "mkfs.vfat", "-F", "32", "-n", "LIVEBOOTP", img)
	return img
}

// mountFAT mounts a new FAT image through a loop device on this machine.
func mountFAT(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to attach a loop device and mount FAT")
	}
	needTools(t, "mkfs.vfat", "losetup", "mount", "umount")
	img := newFATImage(t)
	dev := command(t, "losetup", "--find", "--show", img)
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	command(t, "mount", "-t", "vfat", dev, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// vmMountFAT mounts the initramfs's FAT image inside the VM, attaching
// the loop device itself (the VM has no losetup).
func vmMountFAT(t *testing.T) string {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		t.Fatal("LOOP_CTL_GET_FREE:", err)
	}
	dev := fmt.Sprintf("/dev/loop%d", n)
	loop, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Close()
	img, err := os.OpenFile(fatImage, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if err := unix.IoctlSetInt(int(loop.Fd()), unix.LOOP_SET_FD, int(img.Fd())); err != nil {
		t.Fatal("LOOP_SET_FD:", err)
	}
	mnt := t.TempDir()
	if err := syscall.Mount(dev, mnt, "vfat", 0, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", dev, mnt, err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, 0) })
	return mnt
}

// runInVM boots the test kernel with this package's test binary as /init
// and asks it to run TestWriteOnFAT there.
func runInVM(t *testing.T) {
	if testing.Short() {
		t.Skip("this kernel has no vfat, and -short skips the VM that has")
	}
	needTools(t, "mkfs.vfat", "qemu-system-x86_64", "go")
	wd, _ := os.Getwd()
	repo, err := testbed.RepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	kernel := testbed.KernelPath(repo)
	kver, err := os.ReadFile(filepath.Join(filepath.Dir(kernel), "version"))
	if err != nil {
		t.Skipf("this kernel has no vfat, and there is no test kernel to run the test in a VM: %v (run make kernel)", err)
	}
	mods := filepath.Join(filepath.Dir(kernel), "lib", "modules", strings.TrimSpace(string(kver)))
	dir := t.TempDir()

	bin := filepath.Join(dir, "edit.test")
	build := exec.Command("go", "test", "-c", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go test -c: %v\n%s", err, out)
	}
	initrd := filepath.Join(dir, "initrd.gz")
	if err := writeInitrd(initrd, bin, newFATImage(t), mods); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute) // TCG on a busy machine
	defer cancel()
	qemu := exec.CommandContext(ctx, "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256", "-smp", "1",
		"-display", "none", "-vga", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nic", "none",
		"-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet -- -test.run=^TestWriteOnFAT$ -test.v")
	out, err := qemu.CombinedOutput()
	console := string(out)
	if ctx.Err() != nil {
		t.Fatalf("the VM did not finish in 4 minutes; its console:\n%s", testbed.Tail(console, 40))
	}
	if err != nil || !strings.Contains(console, "--- PASS: TestWriteOnFAT") || !strings.Contains(console, vmExit+" 0") {
		t.Fatalf("TestWriteOnFAT in the VM failed (qemu: %v); its console:\n%s", err, testbed.Tail(console, 40))
	}
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, "on vfat") {
			t.Log("in the VM:", strings.TrimSpace(l))
		}
	}
}

func writeInitrd(out, bin, img, mods string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	zw, err := gzip.NewWriterLevel(f, gzip.BestSpeed)
	if err != nil {
		return err
	}
	w := initramfs.NewWriter(zw)
	if err := w.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := w.CopyFile("init", 0o755, bin); err != nil {
		return err
	}
	if err := w.CopyFile(fatImage[1:], 0o600, img); err != nil {
		return err
	}
	for _, m := range fatModules {
		if err := w.CopyFile(filepath.Base(m), 0o644, filepath.Join(mods, m)); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}
