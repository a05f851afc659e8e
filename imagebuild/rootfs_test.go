package imagebuild

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"
)

func TestResolveInsideRoot(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "usr/lib/modules/6.1/modules.dep"), "x", 0o644)
	symlink(t, "usr/lib", filepath.Join(root, "lib"))
	symlink(t, "/usr/lib", filepath.Join(root, "abs"))                 // absolute: means ROOT/usr/lib
	symlink(t, "../../../../../usr/lib", filepath.Join(root, "climb")) // cannot climb above the root
	symlink(t, "loop2", filepath.Join(root, "loop1"))
	symlink(t, "loop1", filepath.Join(root, "loop2"))
	symlink(t, "/etc/passwd", filepath.Join(root, "hostfile")) // the build host's file must stay out of reach
	fsys := dirFS(root)
	for _, p := range []string{"lib/modules/6.1/modules.dep", "abs/modules/6.1/modules.dep", "climb/modules/6.1/modules.dep"} {
		if b, err := fs.ReadFile(fsys, p); err != nil || string(b) != "x" {
			t.Errorf("%s: %q, %v", p, b, err)
		}
	}
	if _, err := fs.ReadFile(fsys, "loop1"); err == nil || !strings.Contains(err.Error(), "symbolic links") {
		t.Errorf("loop: err = %v", err)
	}
	if _, err := fs.ReadFile(fsys, "hostfile"); err == nil {
		t.Error("an absolute link reached the build host's /etc/passwd")
	}
	es, err := fs.ReadDir(fsys, "lib/modules")
	if err != nil || len(es) != 1 || es[0].Name() != "6.1" {
		t.Errorf("ReadDir through a link: %v, %v", es, err)
	}
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: unpacking an image sets its files' owners")
	}
}

// flattenMembers unpacks a tar of members as an image layer would be.
func flattenMembers(t *testing.T, ms ...tarMember) (*source, error) {
	t.Helper()
	return flatten(t.Context(), KindRootfsTar, bytes.NewReader(tarOf(t, ms...)), t.TempDir(), time.Unix(1234, 0), testOptions(t, "").Log)
}

func TestFlattenNormalises(t *testing.T) {
	needRoot(t)
	s, err := flattenMembers(t,
		tarMember{name: "./etc/hostname", body: "one\n"},
		tarMember{name: "etc/hostname", body: "two\n"}, // a second copy: the first stays
		tarMember{name: "etc/.wh.gone"},                // a stray whiteout: dropped
		tarMember{name: "deep/er/file", body: "implied parents\n", uid: 7},
		tarMember{name: "link -> /deep"},
		tarMember{name: "link/hidden", body: "under a symlink\n"}, // hidden, never written through the link
		tarMember{name: "srv/"},
	)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := fs.ReadFile(s.fsys, "etc/hostname"); err != nil || string(b) != "one\n" {
		t.Errorf("etc/hostname = %q, %v", b, err)
	}
	if !slices.Equal(s.dups, []string{"etc/hostname"}) {
		t.Errorf("dups = %v", s.dups)
	}
	if _, err := fs.Stat(s.fsys, "etc/.wh.gone"); err == nil {
		t.Error("whiteout kept")
	}
	if _, err := fs.Stat(s.fsys, "deep/hidden"); err == nil {
		t.Error("a member was written through a symlink")
	}
	if b, err := fs.ReadFile(s.fsys, "link/er/file"); err != nil || string(b) != "implied parents\n" {
		t.Errorf("link/er/file = %q, %v", b, err)
	}
	fi, err := fs.Stat(s.fsys, "deep")
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 || !fi.ModTime().Equal(time.Unix(1234, 0)) {
		t.Errorf("implied dir deep = %v, %v", fi, err)
	}
	st, err := os.Stat(filepath.Join(s.dir, "deep/er/file"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid != 7 {
		t.Errorf("deep/er/file owned by %d, want 7", uid)
	}
	if _, err := flattenMembers(t, tarMember{name: "../escape", body: "x"}); err == nil || !strings.Contains(err.Error(), "climbs out") {
		t.Errorf("../escape: err = %v", err)
	}
}

func TestCompareVersions(t *testing.T) {
	vs := []string{"6.1.0-56-amd64", "5.10.0-9-amd64", "6.1.0-9-amd64", "6.12.1-amd64", "6.1.0-56-cloud-amd64", "6.2"}
	slices.SortFunc(vs, compareVersions)
	want := []string{"5.10.0-9-amd64", "6.1.0-9-amd64", "6.1.0-56-amd64", "6.1.0-56-cloud-amd64", "6.2", "6.12.1-amd64"}
	if !slices.Equal(vs, want) {
		t.Errorf("sorted = %v, want %v", vs, want)
	}
}

func TestKernelArch(t *testing.T) {
	arm := make([]byte, 0x40)
	copy(arm[0x38:], "ARM\x64")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(arm)
	zw.Close()
	bz := make([]byte, 0x240)
	copy(bz[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(bz[0x206:], 0x20f)
	bz[0x236] = 1
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{{"arm64 Image", arm, "arm64"}, {"gzip arm64 Image", gz.Bytes(), "arm64"}, {"bzImage", bz, "amd64"}, {"garbage", []byte("hello"), ""}} {
		if got := kernelArch(tc.b, 0); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	kdir, _ := debianKernel(t)
	b, err := os.ReadFile(filepath.Join(kdir, "vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	if got := kernelArch(b[:64<<10], 0); got != "amd64" {
		t.Errorf("Debian vmlinuz: %q", got)
	}
}

func TestFindKernel(t *testing.T) {
	fsys := fstest.MapFS{
		"boot/vmlinuz-6.1.0-9-amd64":             {Data: []byte("k9")},
		"boot/vmlinuz-6.1.0-56-amd64":            {Data: []byte("k56")},
		"boot/config-6.1.0-56-amd64":             {Data: []byte("CONFIG_SQUASHFS=m\nCONFIG_SQUASHFS_ZSTD=y\n# CONFIG_X is not set\n")},
		"lib/modules/6.1.0-56-amd64/modules.dep": {Data: []byte("")},
		"usr/lib/modules/7.0-fedora/vmlinuz":     {Data: []byte("k7")},
	}
	k, err := findKernel(fsys, "")
	if err != nil {
		t.Fatal(err)
	}
	if k.Version != "7.0-fedora" || k.Path != "usr/lib/modules/7.0-fedora/vmlinuz" || k.ModulesDir != "usr/lib/modules/7.0-fedora" {
		t.Errorf("newest = %+v", k)
	}
	k, err = findKernel(fsys, "6.1.0-56-amd64")
	if err != nil {
		t.Fatal(err)
	}
	if k.Path != "boot/vmlinuz-6.1.0-56-amd64" || k.ModulesDir != "lib/modules/6.1.0-56-amd64" || k.Config["CONFIG_SQUASHFS_ZSTD"] != "y" {
		t.Errorf("picked = %+v", k)
	}
	m := &mksquashfs{comps: map[string]bool{"gzip": true, "zstd": true, "xz": true}}
	if c, err := m.compression("", k); c != "zstd" || err != nil {
		t.Errorf("compression = %s, %v; want zstd", c, err)
	}
	if _, err := m.compression("xz", k); err == nil || !strings.Contains(err.Error(), "CONFIG_SQUASHFS_XZ") {
		t.Errorf("xz on a kernel without it: err = %v", err)
	}
	if c, _ := m.compression("", &kernel{}); c != "gzip" {
		t.Errorf("no kernel config: compression = %s, want gzip", c)
	}
	if _, err := findKernel(fsys, "5.0"); err == nil || !strings.Contains(err.Error(), "6.1.0-56-amd64") {
		t.Errorf("unknown version: err = %v, want the list of versions", err)
	}
	if _, err := findKernel(fstest.MapFS{"etc/passwd": {}}, ""); err != ErrNoKernel {
		t.Errorf("no kernel: err = %v", err)
	}
}
