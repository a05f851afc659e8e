package imagebuild

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/livebootp/livebootp/initramfs"
	"github.com/livebootp/livebootp/startup/verity"
	"github.com/livebootp/livebootp/wire"
	"golang.org/x/sys/unix"
)

const testInit = "#!/bin/sh\necho livebootp test init\n"

// testOptions builds from, with the light module set (see smallRootfs).
func testOptions(t testing.TB, from string) Options {
	t.Helper()
	initPath := filepath.Join(t.TempDir(), "livebootp-init")
	write(t, initPath, testInit, 0o755)
	return Options{
		Name: "small", Version: "1.0.0", From: from, Out: t.TempDir(), Init: initPath, Modules: lightModules,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
}

// testWriter sends the build's log to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func imageDir(o Options) string { return filepath.Join(o.Out, "images", o.Name, o.Version) }

// checkImage verifies what every build must produce: the manifest
// matches the files, the initrd holds the init and the modules, the
// squashfs lists the root filesystem. It returns the squashfs listing.
func checkImage(t *testing.T, o Options, m *wire.Manifest) map[string]string {
	t.Helper()
	dir := imageDir(o)
	_, kver := debianKernel(t)
	if m.Name != o.Name || m.Version != o.Version || m.Arch != "amd64" || m.KernelVersion != kver {
		t.Errorf("manifest = %+v", m)
	}
	var onDisk wire.Manifest
	b, err := os.ReadFile(filepath.Join(dir, wire.ImageManifest))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &onDisk); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{wire.ImageKernel, wire.ImageInitrd, wire.ImageSquashfs} {
		want, err := sumFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if m.Files[f] != want || onDisk.Files[f] != want {
			t.Errorf("%s: manifest says %+v, file is %+v", f, m.Files[f], want)
		}
	}
	// The squashfs carries its dm-verity tree: the manifest's root hash
	// and offset check every block, and the manifest on disk says the same.
	if m.Verity == nil || onDisk.Verity == nil || *m.Verity != *onDisk.Verity {
		t.Fatalf("manifest verity %+v, on disk %+v", m.Verity, onDisk.Verity)
	}
	sq, err := os.Open(filepath.Join(dir, wire.ImageSquashfs))
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	vp, err := verity.ReadSuperblock(sq, m.Verity.HashOffset)
	if err != nil {
		t.Fatal(err)
	}
	if vp.Root, err = hex.DecodeString(m.Verity.RootHash); err != nil {
		t.Fatal(err)
	}
	if err := verity.Verify(sq, vp); err != nil {
		t.Errorf("the squashfs's dm-verity tree: %v", err)
	}
	entries, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover %s beside the image", e.Name())
		}
	}

	f, err := os.Open(filepath.Join(dir, wire.ImageInitrd))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	es, err := initramfs.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]initramfs.Entry{}
	for _, e := range es {
		byName[e.Name] = e
	}
	if e := byName["init"]; string(e.Data) != testInit || e.Mode != 0o100755 {
		t.Errorf("initrd /init = %o %q", e.Mode, e.Data)
	}
	if e := byName["dev/console"]; e.Mode&initramfs.TypeMask != initramfs.TypeChar || e.Major != 5 || e.Minor != 1 {
		t.Errorf("initrd /dev/console = %+v", e)
	}
	list := strings.Fields(string(byName[initramfs.LoadListPath].Data))
	for _, want := range []string{"virtio_net", "virtio_blk", "squashfs", "overlay", "loop", "ext4", "crc32c_generic"} {
		if !slices.Contains(list, want) {
			t.Errorf("initrd module list lacks %s: %v", want, list)
		}
	}
	if e, ok := byName["lib/modules/"+kver+"/kernel/fs/squashfs/squashfs.ko"]; !ok || !bytes.HasPrefix(e.Data, []byte("\x7fELF")) {
		t.Error("initrd lacks squashfs.ko")
	}

	ls := squashfsList(t, filepath.Join(dir, wire.ImageSquashfs))
	for _, want := range []string{"usr/bin/busybox", "bin", "etc/passwd", "var/www/index.html", "boot/vmlinuz-" + kver} {
		if _, ok := ls[want]; !ok {
			t.Errorf("squashfs lacks %s", want)
		}
	}
	if _, ok := ls["boot/initrd.img-"+kver]; ok {
		t.Error("the distribution's initramfs is in the squashfs (DefaultExclude)")
	}
	if root := ls[""]; !strings.HasPrefix(root, "drwxr-xr-x 0/0") {
		t.Errorf("squashfs root = %q, want drwxr-xr-x 0/0", root)
	}
	return ls
}

// TestBuildDirectory builds the small busybox image from a directory,
// twice, and expects identical bytes; then refuses to overwrite it.
func TestBuildDirectory(t *testing.T) {
	root := smallRootfs(t, fullKernel)
	if os.Geteuid() == 0 {
		write(t, filepath.Join(root, "srv/owned"), "www's\n", 0o640)
		if err := os.Chown(filepath.Join(root, "srv/owned"), 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	o := testOptions(t, root)
	o.Modules = nil // DefaultModules
	start := time.Now()
	m, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built in %v: vmlinuz %d, initrd %d, squashfs %d bytes", time.Since(start).Round(time.Millisecond),
		m.Files[wire.ImageKernel].Size, m.Files[wire.ImageInitrd].Size, m.Files[wire.ImageSquashfs].Size)
	ls := checkImage(t, o, m)
	if os.Geteuid() == 0 && !strings.HasPrefix(ls["srv/owned"], "-rw-r----- 1000/1000") {
		t.Errorf("srv/owned = %q, want -rw-r----- 1000/1000", ls["srv/owned"])
	}
	if len(m.Volumes) != 0 || len(m.Env) != 0 || !m.Created.IsZero() {
		t.Errorf("a directory has no config, manifest says %+v", m)
	}

	o2 := o
	o2.Out = t.TempDir()
	if _, err := Build(context.Background(), o2); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{wire.ImageKernel, wire.ImageInitrd, wire.ImageSquashfs, wire.ImageManifest} {
		a, err := os.ReadFile(filepath.Join(imageDir(o), f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(imageDir(o2), f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of the same directory", f)
		}
	}

	if _, err := Build(context.Background(), o); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("rebuilding an existing version: err = %v, want a refusal naming --force", err)
	}
	write(t, filepath.Join(root, "etc/motd"), "changed\n", 0o644)
	o.Force = true
	if _, err := Build(context.Background(), o); err != nil {
		t.Fatalf("--force: %v", err)
	}
	if got := squashfsCat(t, filepath.Join(imageDir(o), wire.ImageSquashfs), "etc/motd"); got != "changed\n" {
		t.Errorf("after --force, etc/motd = %q", got)
	}
}

// TestBuildNoKernel: an image without a kernel fails with the message
// saying how to add one, and leaves nothing in the output directory.
func TestBuildNoKernel(t *testing.T) {
	needTool(t, "mksquashfs", "squashfs-tools")
	o := testOptions(t, smallRootfs(t, noKernel))
	_, err := Build(context.Background(), o)
	if !errors.Is(err, ErrNoKernel) || !strings.Contains(err.Error(), "linux-image-generic") {
		t.Fatalf("err = %v, want ErrNoKernel naming linux-image-generic", err)
	}
	entries, err := os.ReadDir(filepath.Join(o.Out, "images", o.Name))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("a failed build left %v", entries)
	}
}

func TestBuildBadOptions(t *testing.T) {
	o := testOptions(t, t.TempDir())
	for _, tc := range []struct {
		change func(*Options)
		want   string
	}{
		{func(o *Options) { o.Name = "../evil" }, "image name"},
		{func(o *Options) { o.Version = ".hidden" }, "image version"},
		{func(o *Options) { o.From = "" }, "no source"},
		{func(o *Options) { o.Out = "" }, "no output"},
		{func(o *Options) { o.Init = filepath.Join(o.Out, "absent") }, "--init"},
		{func(o *Options) { o.From = filepath.Join(o.Out, "absent") }, "absent"},
		{func(o *Options) { o.Mksquashfs = "no-such-mksquashfs" }, "squashfs-tools"},
	} {
		oo := o
		tc.change(&oo)
		if _, err := Build(context.Background(), oo); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want one containing %q", err, tc.want)
		}
	}
}

// testImage is the small rootfs as a two-layer container image: the
// second layer deletes /etc/motd (whiteout), hides /opaque's old content
// (opaque directory), adds a file owned by uid 1000, and the config
// declares a VOLUME and ENV.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	root := smallRootfs(t, lightKernel)
	base := tarDir(t, root, false)
	top := tarOf(t,
		tarMember{name: "etc/.wh.motd"},
		tarMember{name: "opaque/"},
		tarMember{name: "opaque/.wh..wh..opq"},
		tarMember{name: "opaque/new", body: "upper layer\n"},
		tarMember{name: "srv/", uid: 0},
		tarMember{name: "srv/owned", body: "www's\n", uid: 1000, mode: 0o640},
		tarMember{name: "var/www/index.html", body: "<h1>upper</h1>\n"},
		tarMember{name: "dev/null", char: true, major: 1, minor: 3, mode: 0o666},
		tarMember{name: "usr/bin/tagged", body: "x", mode: 0o4755, pax: map[string]string{"SCHILY.xattr.user.livebootp": "kept"}},
	)
	cfg := &v1.ConfigFile{
		Architecture: "amd64", OS: "linux",
		Created: v1.Time{Time: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)},
		Config: v1.Config{
			Volumes: map[string]struct{}{"/var/www": {}, "/var/lib/data": {}},
			Env:     []string{"PATH=/usr/sbin:/usr/bin", "GREETING=hello"},
			Labels:  map[string]string{"org.example.role": "web"},
		},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{base, top} {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// writeDockerArchive saves img as `docker save` would, tagged
// example.org/small:1.0.
func writeDockerArchive(t *testing.T, img v1.Image) string {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "small.tar")
	tag, err := name.NewTag("example.org/small:1.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	return archive
}

func checkImageLayers(t *testing.T, o Options, m *wire.Manifest) {
	t.Helper()
	ls := checkImage(t, o, m)
	if !slices.Equal(m.Volumes, []string{"/var/lib/data", "/var/www"}) {
		t.Errorf("volumes = %v", m.Volumes)
	}
	if !slices.Equal(m.Env, []string{"PATH=/usr/sbin:/usr/bin", "GREETING=hello"}) {
		t.Errorf("env = %v", m.Env)
	}
	if m.Labels["org.example.role"] != "web" || !m.Created.Equal(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("labels %v, created %v", m.Labels, m.Created)
	}
	sq := filepath.Join(imageDir(o), wire.ImageSquashfs)
	if _, ok := ls["etc/motd"]; ok {
		t.Error("etc/motd survived its whiteout")
	}
	if _, ok := ls["opaque/old"]; ok {
		t.Error("opaque/old survived its opaque directory")
	}
	if !strings.HasPrefix(ls["srv/owned"], "-rw-r----- 1000/1000") {
		t.Errorf("srv/owned = %q, want -rw-r----- 1000/1000 (ownership from the layer)", ls["srv/owned"])
	}
	if got := squashfsCat(t, sq, "var/www/index.html"); got != "<h1>upper</h1>\n" {
		t.Errorf("index.html = %q, want the upper layer's", got)
	}
	if got := squashfsCat(t, sq, "opaque/new"); got != "upper layer\n" {
		t.Errorf("opaque/new = %q", got)
	}
	if !strings.Contains(ls["lib"], "-> usr/lib") {
		t.Errorf("lib = %q, want the merged-/usr link", ls["lib"])
	}
	if f := strings.Fields(ls["dev/null"]); len(f) < 4 || f[0] != "crw-rw-rw-" || f[2]+f[3] != "1,3" {
		t.Errorf("dev/null = %q, want a character device 1,3", ls["dev/null"])
	}
	if !strings.HasPrefix(ls["usr/bin/tagged"], "-rwsr-xr-x") {
		t.Errorf("usr/bin/tagged = %q, want setuid kept", ls["usr/bin/tagged"])
	}
	// Extended attributes (file capabilities in real images) survive.
	out := filepath.Join(t.TempDir(), "x")
	if b, err := exec.Command("unsquashfs", "-q", "-n", "-xattrs", "-d", out, sq, "usr/bin/tagged").CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs: %v: %s", err, b)
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(filepath.Join(out, "usr/bin/tagged"), "user.livebootp", buf)
	if err != nil || string(buf[:n]) != "kept" {
		t.Errorf("xattr user.livebootp = %q, %v; want kept", buf[:max(n, 0)], err)
	}
}

// TestBuildDockerArchive builds from a `docker save` style archive,
// twice, expecting identical files.
func TestBuildDockerArchive(t *testing.T) {
	needRoot(t)
	needTool(t, "mksquashfs", "squashfs-tools")
	archive := writeDockerArchive(t, testImage(t))
	o := testOptions(t, archive)
	start := time.Now()
	m, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built in %v", time.Since(start).Round(time.Millisecond))
	checkImageLayers(t, o, m)

	o2 := o
	o2.Out = t.TempDir()
	o2.From = archive + ":example.org/small:1.0"
	if _, err := Build(context.Background(), o2); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{wire.ImageInitrd, wire.ImageSquashfs, wire.ImageManifest} {
		a, _ := os.ReadFile(filepath.Join(imageDir(o), f))
		b, _ := os.ReadFile(filepath.Join(imageDir(o2), f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of the same archive", f)
		}
	}
}

// TestBuildOCILayout builds from an OCI image layout directory, and from
// the same layout packed as an OCI archive.
func TestBuildOCILayout(t *testing.T) {
	needRoot(t)
	needTool(t, "mksquashfs", "squashfs-tools")
	img := testImage(t)
	dir := filepath.Join(t.TempDir(), "oci")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{refAnnotation: "1.0"})); err != nil {
		t.Fatal(err)
	}
	o := testOptions(t, dir+":1.0")
	m, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkImageLayers(t, o, m)

	if _, err := Build(context.Background(), Options{Name: "x", Version: "1", From: dir + ":2.0", Out: t.TempDir(), Init: o.Init}); err == nil || !strings.Contains(err.Error(), `no image tagged "2.0"`) {
		t.Errorf("unknown tag: err = %v", err)
	}

	archive := filepath.Join(t.TempDir(), "small-oci.tar")
	write(t, archive, string(tarDir(t, dir, false)), 0o644)
	o2 := testOptions(t, archive)
	m2, err := Build(context.Background(), o2)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Files[wire.ImageSquashfs] != m.Files[wire.ImageSquashfs] {
		t.Error("the OCI archive gave another squashfs than the same layout as a directory")
	}
}

// TestBuildRootfsTarball builds from a gzip tarball made like `tar -C
// rootfs -czf`, with ./ names.
func TestBuildRootfsTarball(t *testing.T) {
	needRoot(t)
	needTool(t, "mksquashfs", "squashfs-tools")
	root := smallRootfs(t, lightKernel)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	// Append members whose directories the tarball does not hold: they
	// must still come out the same in every build.
	base := tarDir(t, root, true)
	whole := append(base[:len(base)-1024], tarOf(t, tarMember{name: "./implied/dir/file", body: "x"})...)
	if _, err := zw.Write(whole); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "rootfs.tar.gz")
	write(t, archive, buf.String(), 0o644)
	o := testOptions(t, archive)
	m, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	ls := checkImage(t, o, m)
	if _, ok := ls["etc/motd"]; !ok {
		t.Error("etc/motd missing")
	}
	if got := ls["implied/dir"]; !strings.HasPrefix(got, "drwxr-xr-x 0/0") || !strings.Contains(got, "1970-01-01 00:00") {
		t.Errorf("implied/dir = %q, want root's, 0755, at the epoch (1970)", got)
	}
	if !m.Created.IsZero() {
		t.Errorf("created = %v, want none (no epoch given, no image config)", m.Created)
	}
	o.Out = t.TempDir()
	m2, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Files[wire.ImageSquashfs] != m.Files[wire.ImageSquashfs] {
		t.Error("two builds of the same tarball gave different squashfs files")
	}
}

// BenchmarkBuildSmall builds the bootable busybox image (Debian kernel,
// DefaultModules) from a directory, reporting the output sizes.
func BenchmarkBuildSmall(b *testing.B) {
	root := smallRootfs(b, fullKernel)
	o := testOptions(b, root)
	o.Modules, o.Log = nil, nil
	var m *wire.Manifest
	for b.Loop() {
		o.Out = b.TempDir()
		var err error
		if m, err = Build(context.Background(), o); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(m.Files[wire.ImageInitrd].Size), "initrd-bytes")
	b.ReportMetric(float64(m.Files[wire.ImageSquashfs].Size), "squashfs-bytes")
}
