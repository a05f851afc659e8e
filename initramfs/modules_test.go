package initramfs

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// targetModules is the module set the image builder asks for (see
// imagebuild.DefaultModules); kept here so this package's tests exercise
// the same closure on the real kernel.
var targetModules = []string{
	"virtio_net", "virtio_pci", "virtio_blk", "virtio_scsi", "e1000", "e1000e", "igb", "ixgbe", "r8169",
	"tg3", "bnx2", "af_packet", "squashfs", "loop", "overlay", "ext4", "vfat", "nls_cp437", "nls_iso8859-1",
	"nls_utf8", "crc32c", "af_alg", "algif_hash", "sha256_ssse3",
}

// debianKernel returns the modules directory and version of the kernel
// scripts/fetch-kernel.sh unpacked into build/kernel, or skips.
func debianKernel(t testing.TB) (string, string) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(wd) // this package sits one level below the module root
	v, err := os.ReadFile(filepath.Join(root, "build/kernel/version"))
	if err != nil {
		t.Skip("needs the Debian kernel: run scripts/fetch-kernel.sh (make kernel)")
	}
	kver := strings.TrimSpace(string(v))
	return filepath.Join(root, "build/kernel/lib/modules", kver), kver
}

// checkOrder fails if a module comes before one it depends on.
func checkOrder(t *testing.T, mods []Module) {
	t.Helper()
	pos := map[string]int{}
	for i, m := range mods {
		if _, dup := pos[m.Name]; dup {
			t.Errorf("%s listed twice", m.Name)
		}
		pos[m.Name] = i
	}
	for i, m := range mods {
		for _, d := range append(slices.Clone(m.Deps), m.Pre...) {
			if j, ok := pos[d]; ok && j > i {
				t.Errorf("%s (position %d) is loaded before its dependency %s (position %d)", m.Name, i, d, j)
			}
		}
	}
}

func names(mods []Module) []string {
	var out []string
	for _, m := range mods {
		out = append(out, m.Name)
	}
	return out
}

// TestClosureMatchesModprobe resolves the target module set on the real
// Debian kernel and compares it with what kmod's modprobe would load.
func TestClosureMatchesModprobe(t *testing.T) {
	dir, kver := debianKernel(t)
	set, err := ModuleTree{Dir: dir}.Resolve(append(slices.Clone(targetModules), "no_such_module"))
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, set.Modules)
	if !slices.Equal(set.Missing, []string{"no_such_module"}) {
		t.Errorf("missing = %v, want [no_such_module]", set.Missing)
	}
	if !slices.Contains(set.Builtin, "af_packet") {
		t.Errorf("builtin = %v, want af_packet among them (Debian builds it in)", set.Builtin)
	}
	got := names(set.Modules)
	// ext4's soft dependency on crypto-crc32c must bring both providers,
	// before ext4 itself.
	for _, m := range []string{"crc32c_generic", "crc32c_intel", "ext4", "virtio_net", "failover", "realtek"} {
		if !slices.Contains(got, m) {
			t.Errorf("closure lacks %s: %v", m, got)
		}
	}
	if slices.Index(got, "crc32c_generic") > slices.Index(got, "ext4") {
		t.Errorf("crc32c_generic after ext4: %v", got)
	}

	modprobe, err := exec.LookPath("modprobe")
	if err != nil {
		t.Skip("needs modprobe (apt-get install kmod) for the cross-check")
	}
	kernelRoot := filepath.Dir(filepath.Dir(filepath.Dir(dir)))
	var want []string
	for _, m := range targetModules {
		out, err := exec.Command(modprobe, "-d", kernelRoot, "-S", kver, "--show-depends", m).CombinedOutput()
		if err != nil {
			continue // builtin or absent: modprobe says so on stderr
		}
		for line := range strings.Lines(string(out)) {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "insmod" {
				want = append(want, modName(f[1]))
			}
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("modprobe loads %s, our closure does not", w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			t.Errorf("our closure loads %s, modprobe does not", g)
		}
	}
}

// TestClosureFromModinfo copies part of the real tree without modules.dep,
// some modules xz- and zstd-compressed, and expects the same closure from
// the modules' own .modinfo.
func TestClosureFromModinfo(t *testing.T) {
	dir, _ := debianKernel(t)
	want := []string{"virtio_net", "virtio_blk", "ext4", "vfat", "igb"}
	ref, err := ModuleTree{Dir: dir}.Resolve(want)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	for i, m := range ref.Modules {
		dst := filepath.Join(tmp, m.Path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, m.Path))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		// Every third module compressed by the real tools, as Debian 13 and
		// Ubuntu ship them.
		if tool := []string{"", "xz", "zstd"}[i%3]; tool != "" {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("needs %s (apt-get install xz-utils zstd)", tool)
			}
			args := map[string][]string{"xz": {"-q", dst}, "zstd": {"-q", "--rm", dst}}[tool]
			if out, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
				t.Fatalf("%s %s: %v: %s", tool, dst, err, out)
			}
		}
	}
	tree := ModuleTree{Dir: tmp, Decompress: testDecompress}
	got, err := tree.Resolve(want)
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, got.Modules)
	a, b := names(ref.Modules), names(got.Modules)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		t.Errorf("closure from .modinfo = %v, from modules.dep = %v", b, a)
	}
	if _, err := (ModuleTree{Dir: tmp}).Resolve(want); err == nil || !strings.Contains(err.Error(), "decompressor") {
		t.Errorf("without a decompressor: err = %v, want one naming the missing decompressor", err)
	}
}

// testDecompress runs the real xz and zstd tools, so the package's own
// tests need no decompression library.
func testDecompress(ext string, r io.Reader) (io.Reader, error) {
	tool := map[string]string{".xz": "xz", ".zst": "zstd"}[ext]
	cmd := exec.Command(tool, "-dc")
	cmd.Stdin = r
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(out), nil
}

// writeTree makes a synthetic modules tree: files named in dep (with
// dummy content), plus the given extra files.
func writeTree(t *testing.T, dep string, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"modules.dep": dep}
	for k, v := range extra {
		files[k] = v
	}
	for line := range strings.Lines(dep) {
		for _, f := range strings.Fields(strings.Replace(line, ":", " ", 1)) {
			files[f] = "module " + f
		}
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestClosureSynthetic(t *testing.T) {
	dep := `kernel/a/top-mod.ko: kernel/b/mid_mod.ko.xz kernel/c/base.ko
kernel/b/mid_mod.ko.xz: kernel/c/base.ko
kernel/c/base.ko:
kernel/d/soft.ko.zst:
kernel/e/cyc1.ko:
kernel/e/cyc2.ko:
kernel/f/other.ko: kernel/c/base.ko
`
	dir := writeTree(t, dep, map[string]string{
		"modules.builtin":         "kernel/net/packet/af_packet.ko\n",
		"modules.builtin.modinfo": "crc32_generic.alias=crypto-crc32\x00crc32_generic.license=GPL\x00",
		"modules.alias":           "alias fancy-alias other\nalias pci:v00001AF4d*sv*sd*bc*sc*i* top_mod\n",
		"modules.softdep":         "softdep top-mod pre: soft\nsoftdep cyc1 pre: cyc2\nsoftdep cyc2 pre: cyc1\n",
	})
	set, err := ModuleTree{Dir: dir}.Resolve([]string{"top_mod", "af-packet", "crypto-crc32", "nope", "fancy-alias", "cyc1", "top-mod"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"soft", "base", "mid_mod", "top_mod", "other", "cyc2", "cyc1"}
	if got := names(set.Modules); !slices.Equal(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
	if !slices.Equal(set.Builtin, []string{"af-packet", "crypto-crc32"}) {
		t.Errorf("builtin = %v", set.Builtin)
	}
	if !slices.Equal(set.Missing, []string{"nope"}) {
		t.Errorf("missing = %v", set.Missing)
	}
	if set.Modules[2].Path != "kernel/b/mid_mod.ko.xz" {
		t.Errorf("mid_mod path = %q", set.Modules[2].Path)
	}
}

func TestClosureBrokenTree(t *testing.T) {
	dir := writeTree(t, "kernel/a.ko: kernel/b.ko\n", nil)
	if err := os.Remove(filepath.Join(dir, "kernel/b.ko")); err != nil {
		t.Fatal(err)
	}
	// modules.dep names b.ko, but its own line is gone: a stale modules.dep.
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte("kernel/a.ko: kernel/b.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ModuleTree{Dir: dir}.Resolve([]string{"a"})
	if err == nil || !strings.Contains(err.Error(), "depmod") {
		t.Errorf("err = %v, want one telling to run depmod", err)
	}
	if _, err := (ModuleTree{Dir: filepath.Join(dir, "absent")}).Resolve([]string{"a"}); err == nil {
		t.Error("a missing modules directory resolved without error")
	}
	bad := writeTree(t, "no colon here\n", nil)
	if _, err := (ModuleTree{Dir: bad}).Resolve([]string{"a"}); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("err = %v, want one naming line 1", err)
	}
}
