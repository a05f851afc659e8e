package imagebuild

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/livebootp/livebootp/initramfs"
)

// debianKernel returns build/kernel (scripts/fetch-kernel.sh) and its
// version, or skips.
func debianKernel(t testing.TB) (string, string) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(filepath.Dir(wd), "build/kernel")
	v, err := os.ReadFile(filepath.Join(dir, "version"))
	if err != nil {
		t.Skip("needs the Debian kernel: run scripts/fetch-kernel.sh (make kernel)")
	}
	return dir, strings.TrimSpace(string(v))
}

func needTool(t testing.TB, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("needs %s (apt-get install %s)", tool, pkg)
	}
	return p
}

func copyFile(t testing.TB, src, dst string, mode fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	write(t, dst, string(b), mode)
}

func write(t testing.TB, p, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t testing.TB, target, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

// Kernels for smallRootfs.
const (
	noKernel    = iota
	fullKernel  // the Debian kernel and the modules DefaultModules need: bootable
	lightKernel // the kernel's first 256 KiB (enough to tell its arch) and lightModules: quick to pack
)

// lightModules are what the initrd of a lightKernel image asks for.
var lightModules = []string{"virtio_net", "virtio_blk", "squashfs", "loop", "overlay", "ext4", "crc32c"}

// smallRootfs makes a busybox root filesystem in a merged-/usr layout (bin
// and lib are links into usr/, as on Debian 12) with the Debian kernel in
// /boot and, under /usr/lib/modules, just the modules the initrd needs.
func smallRootfs(t testing.TB, kernel int) string {
	t.Helper()
	bb := needTool(t, "busybox", "busybox-static")
	root := filepath.Join(t.TempDir(), "rootfs")
	copyFile(t, bb, filepath.Join(root, "usr/bin/busybox"), 0o755)
	for _, a := range []string{"sh", "ls", "cat", "mount", "ip"} {
		symlink(t, "busybox", filepath.Join(root, "usr/bin", a))
	}
	symlink(t, "usr/bin", filepath.Join(root, "bin"))
	symlink(t, "usr/lib", filepath.Join(root, "lib"))
	symlink(t, "/bin/busybox", filepath.Join(root, "sbin/init"))
	write(t, filepath.Join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nwww:x:1000:1000::/var/www:/bin/sh\n", 0o644)
	write(t, filepath.Join(root, "etc/motd"), "welcome\n", 0o644)
	write(t, filepath.Join(root, "opaque/old"), "lower layer\n", 0o644)
	write(t, filepath.Join(root, "var/www/index.html"), "<h1>small</h1>\n", 0o644)
	for _, d := range []string{"proc", "sys", "dev", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if kernel == noKernel {
		return root
	}
	kdir, kver := debianKernel(t)
	vmlinuz, err := os.ReadFile(filepath.Join(kdir, "vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultModules
	if kernel == lightKernel {
		vmlinuz, want = vmlinuz[:256<<10], lightModules
	}
	write(t, filepath.Join(root, "boot/vmlinuz-"+kver), string(vmlinuz), 0o644)
	copyFile(t, filepath.Join(kdir, "config"), filepath.Join(root, "boot/config-"+kver), 0o644)
	write(t, filepath.Join(root, "boot/initrd.img-"+kver), "the distribution's initramfs", 0o644)
	src := filepath.Join(kdir, "lib/modules", kver)
	dst := filepath.Join(root, "usr/lib/modules", kver)
	mods, err := initramfs.ModuleClosure(src, want)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		copyFile(t, filepath.Join(src, m.Path), filepath.Join(dst, m.Path), 0o644)
	}
	for _, f := range []string{"modules.dep", "modules.alias", "modules.softdep", "modules.builtin", "modules.builtin.modinfo"} {
		copyFile(t, filepath.Join(src, f), filepath.Join(dst, f), 0o644)
	}
	return root
}

// tarDir writes root as an uncompressed tar, sorted, names relative
// ("./etc/passwd" style when dotSlash, as GNU tar -C root . does).
func tarDir(t testing.TB, root string, dotSlash bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if dotSlash {
			h.Name = "./" + h.Name
		}
		if rel == "." {
			h.Name = "./"
		}
		if d.IsDir() && rel != "." {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarOf builds a small tar from entries; a name ending in / is a directory,
// "name -> target" a symlink.
type tarMember struct {
	name, body   string
	uid          int
	mode         int64
	char         bool // a character device major:minor
	major, minor int64
	pax          map[string]string
}

func tarOf(t testing.TB, ms ...tarMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		h := &tar.Header{Name: m.name, Mode: m.mode, Uid: m.uid, Gid: m.uid, Typeflag: tar.TypeReg, Size: int64(len(m.body)), PAXRecords: m.pax}
		if m.char {
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, m.major, m.minor
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if n, tgt, ok := strings.Cut(m.name, " -> "); ok {
			h.Name, h.Linkname, h.Typeflag, h.Size = n, tgt, tar.TypeSymlink, 0
		} else if strings.HasSuffix(m.name, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(m.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// squashfsList is `unsquashfs -lln`: "mode uid/gid size date time path".
func squashfsList(t testing.TB, p string) map[string]string {
	t.Helper()
	bin := needTool(t, "unsquashfs", "squashfs-tools")
	out, err := exec.Command(bin, "-lln", p).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -lln %s: %v: %s", p, err, out)
	}
	m := map[string]string{}
	for line := range strings.Lines(string(out)) {
		// Devices list "major, minor" where files list a size: find the path.
		f := strings.Fields(line)
		i := slices.IndexFunc(f, func(s string) bool { return strings.HasPrefix(s, "squashfs-root") })
		if i < 5 {
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(f[i], "squashfs-root"), "/")
		m[name] = strings.TrimSpace(line)
	}
	return m
}

// squashfsCat is the content of one file of a squashfs (unsquashfs -cat).
func squashfsCat(t testing.TB, p, name string) string {
	t.Helper()
	bin := needTool(t, "unsquashfs", "squashfs-tools")
	out, err := exec.Command(bin, "-cat", p, name).Output()
	if err != nil {
		t.Fatalf("unsquashfs -cat %s %s: %v", p, name, err)
	}
	return string(out)
}
