package persist

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livebootp/livebootp/startup/mount"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"/var/www":     "var%2Fwww",
		"/etc/nginx/":  "etc%2Fnginx",
		"/a%2Fb":       "a%252Fb",
		"/srv/my-data": "srv%2Fmy-data",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCopyTreeKeepsMetadata(t *testing.T) {
	src := filepath.Join(t.TempDir(), "www")
	os.MkdirAll(filepath.Join(src, "html", "sub"), 0o750)
	os.WriteFile(filepath.Join(src, "html", "index.html"), []byte("<h1>hi</h1>"), 0o640)
	os.Link(filepath.Join(src, "html", "index.html"), filepath.Join(src, "html", "hard.html"))
	os.Symlink("html/index.html", filepath.Join(src, "link"))
	unix.Mkfifo(filepath.Join(src, "fifo"), 0o600)
	unix.Chmod(filepath.Join(src, "html"), 0o2750)
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(filepath.Join(src, "html", "index.html"), old, old)
	os.Chtimes(filepath.Join(src, "html"), old, old)
	if os.Geteuid() == 0 {
		os.Lchown(filepath.Join(src, "html", "index.html"), 33, 33)
	}

	dst := filepath.Join(t.TempDir(), "copy")
	if err := CopyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dst, "html", "index.html"))
	if err != nil || st.Mode().Perm() != 0o640 || !st.ModTime().Equal(old) {
		t.Fatalf("index.html: %v %v %v", err, st.Mode(), st.ModTime())
	}
	if os.Geteuid() == 0 && st.Sys().(*syscall.Stat_t).Uid != 33 {
		t.Errorf("owner not kept: uid %d", st.Sys().(*syscall.Stat_t).Uid)
	}
	if st.Sys().(*syscall.Stat_t).Nlink != 2 {
		t.Errorf("hard link not kept: nlink %d", st.Sys().(*syscall.Stat_t).Nlink)
	}
	if dt, _ := os.Stat(filepath.Join(dst, "html")); dt.Mode()&os.ModeSetgid == 0 || !dt.ModTime().Equal(old) {
		t.Errorf("html dir: mode %v mtime %v", dt.Mode(), dt.ModTime())
	}
	if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "html/index.html" {
		t.Errorf("symlink: %q %v", l, err)
	}
	if ft, err := os.Lstat(filepath.Join(dst, "fifo")); err != nil || ft.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo: %v %v", ft, err)
	}
	// A missing source gives an empty volume.
	if err := CopyTree(filepath.Join(src, "none"), filepath.Join(t.TempDir(), "empty")); err != nil {
		t.Error(err)
	}
}

func TestVolumeChecks(t *testing.T) {
	for _, v := range []Volume{{Path: "var/www"}, {Path: "/"}, {Path: "/var/../etc"}, {Path: "/proc/x"},
		{Path: "/a,b"}, {Path: "/x", Mode: "tmpfs"}, {Path: "/x", Init: "rsync"}} {
		if _, err := Apply(nil, t.TempDir(), t.TempDir(), v); err == nil {
			t.Errorf("Apply(%+v) accepted", v)
		}
	}
}

// TestApplyBindAndUnionfs mounts for real, in temp dirs: the image's
// directory content is copied on first use, survives a "reboot" (unmount and
// Apply again) and is not copied again; unionfs keeps changes in its upper
// layer on the data disk.
func TestApplyBindAndUnionfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: bind and overlay mounts")
	}
	data, newRoot := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(newRoot, "var", "www"), 0o755)
	os.WriteFile(filepath.Join(newRoot, "var", "www", "index.html"), []byte("image"), 0o644)
	os.MkdirAll(filepath.Join(newRoot, "etc", "nginx"), 0o755)
	os.WriteFile(filepath.Join(newRoot, "etc", "nginx", "nginx.conf"), []byte("conf"), 0o644)
	m := mount.Unix{}
	var mounted []string
	unmountAll := func() {
		for i := len(mounted) - 1; i >= 0; i-- {
			if err := m.Unmount(mounted[i], 0); err != nil {
				t.Error(err)
			}
		}
		mounted = nil
	}
	t.Cleanup(unmountAll)
	apply := func(v Volume) bool {
		created, err := Apply(m, data, newRoot, v)
		if err != nil {
			t.Fatal(err)
		}
		mounted = append(mounted, filepath.Join(newRoot, v.Path))
		return created
	}

	if !apply(Volume{Path: "/var/www"}) || !apply(Volume{Path: "/etc/nginx", Mode: "unionfs"}) || !apply(Volume{Path: "/srv/empty", Init: "none"}) {
		t.Fatal("first use not reported as created")
	}
	if b, _ := os.ReadFile(filepath.Join(data, DirVolumes, "var%2Fwww", "index.html")); string(b) != "image" {
		t.Errorf("bind volume not initialised by copy: %q", b)
	}
	os.WriteFile(filepath.Join(newRoot, "var", "www", "index.html"), []byte("changed"), 0o644)
	os.WriteFile(filepath.Join(newRoot, "etc", "nginx", "site.conf"), []byte("site"), 0o644)
	unmountAll()

	// Under the mounts the image is unchanged.
	if b, _ := os.ReadFile(filepath.Join(newRoot, "var", "www", "index.html")); string(b) != "image" {
		t.Errorf("image content changed under the bind mount: %q", b)
	}
	if apply(Volume{Path: "/var/www"}) || apply(Volume{Path: "/etc/nginx", Mode: "unionfs"}) {
		t.Error("second boot reported the volumes as created")
	}
	if b, _ := os.ReadFile(filepath.Join(newRoot, "var", "www", "index.html")); string(b) != "changed" {
		t.Errorf("bind volume after reboot: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(newRoot, "etc", "nginx", "site.conf")); string(b) != "site" {
		t.Errorf("unionfs volume after reboot: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(newRoot, "etc", "nginx", "nginx.conf")); string(b) != "conf" {
		t.Errorf("unionfs lower layer not visible: %q", b)
	}
	if _, err := os.Stat(filepath.Join(data, DirOverlays, "etc%2Fnginx", "upper", "site.conf")); err != nil {
		t.Errorf("unionfs change not in the upper layer on the data disk: %v", err)
	}
}

func TestPruneCache(t *testing.T) {
	data := t.TempDir()
	os.MkdirAll(filepath.Join(data, DirCache), 0o755)
	for _, n := range []string{"aaa.squashfs", "bbb.squashfs", "bbb.squashfs.part"} {
		os.WriteFile(filepath.Join(data, DirCache, n), nil, 0o644)
	}
	removed, err := PruneCache(data, "bbb")
	if err != nil || strings.Join(removed, ",") != "aaa.squashfs,bbb.squashfs.part" {
		t.Errorf("removed %v, %v", removed, err)
	}
	if _, err := os.Stat(CachePath(data, "bbb")); err != nil {
		t.Error(err)
	}
}
