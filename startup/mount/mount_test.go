package mount

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices and mount(2)")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("needs /dev/loop-control (loop module)")
	}
}

// squashfs builds a small squashfs holding name=content with mksquashfs.
func squashfs(t *testing.T, name, content string) string {
	t.Helper()
	mk, err := exec.LookPath("mksquashfs")
	if err != nil {
		t.Skip("needs mksquashfs (squashfs-tools)")
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, name), []byte(content), 0o644)
	out := filepath.Join(t.TempDir(), "fs.squashfs")
	if b, err := exec.Command(mk, src, out, "-noappend", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, b)
	}
	return out
}

func TestAttachLoopMountAndChangeBacking(t *testing.T) {
	needRoot(t)
	img := squashfs(t, "hello", "world")
	copyImg := filepath.Join(t.TempDir(), "copy.squashfs")
	b, _ := os.ReadFile(img)
	os.WriteFile(copyImg, b, 0o644)

	l, err := AttachLoop("/dev", img, false)
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	var m Unix
	if err := m.Mount(l.Path, mnt, "squashfs", unix.MS_RDONLY, ""); err != nil {
		l.Close()
		t.Fatal(err)
	}
	l.Close() // autoclear: the mount now holds the device
	t.Cleanup(func() { m.Unmount(mnt, unix.MNT_DETACH) })
	if got, _ := os.ReadFile(filepath.Join(mnt, "hello")); string(got) != "world" {
		t.Fatalf("read through the loop mount: %q", got)
	}
	// Read-only: the device refuses writes.
	if f, err := os.OpenFile(l.Path, os.O_WRONLY, 0); err == nil {
		_, werr := f.Write([]byte("x"))
		f.Close()
		if werr == nil {
			t.Error("wrote to a read-only loop device")
		}
	}
	if err := ChangeBacking(l.Path, copyImg); err != nil {
		t.Fatal(err)
	}
	if bf, err := BackingFile("/sys", l.Path); err != nil || bf != copyImg {
		t.Errorf("backing file %q, %v; want %q", bf, err, copyImg)
	}
	os.Remove(img) // the original can go: the RAM copy is freed this way in the init
	if got, _ := os.ReadFile(filepath.Join(mnt, "hello")); !bytes.Equal(got, []byte("world")) {
		t.Errorf("after LOOP_CHANGE_FD: %q", got)
	}
}

func TestMountErrorNamesThings(t *testing.T) {
	needRoot(t)
	err := Unix{}.Mount("/nonexistent-src", filepath.Join(t.TempDir(), "missing"), "", unix.MS_BIND, "")
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("mount bind /nonexistent-src on ")) {
		t.Errorf("err = %v", err)
	}
}
