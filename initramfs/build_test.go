package initramfs

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func writeInit(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho test init\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func entryMap(t *testing.T, es []Entry) map[string]Entry {
	t.Helper()
	m := map[string]Entry{}
	for _, e := range es {
		if _, dup := m[e.Name]; dup {
			t.Errorf("%s appears twice in the archive", e.Name)
		}
		m[e.Name] = e
	}
	return m
}

// extract writes the regular files and directories of es under dir, as the
// kernel unpacks an initramfs.
func extract(t *testing.T, es []Entry, dir string) {
	t.Helper()
	for _, e := range es {
		p := filepath.Join(dir, e.Name)
		switch e.Mode & TypeMask {
		case TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case TypeRegular:
			if err := os.WriteFile(p, e.Data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestBuildDebianKernel builds the target initrd from the real kernel's
// modules, reads it back, and checks it against cpio(1) and the load list
// the init helper will read.
func TestBuildDebianKernel(t *testing.T) {
	for _, zst := range []bool{false, true} {
		t.Run(map[bool]string{false: "gzip", true: "zstd"}[zst], func(t *testing.T) { testBuildDebianKernel(t, zst) })
	}
}

func testBuildDebianKernel(t *testing.T, zst bool) {
	dir, kver := debianKernel(t)
	spec := Spec{Init: writeInit(t), KernelVersion: kver, Modules: ModuleTree{Dir: dir}, Want: targetModules, Zstd: zst}
	var a, b bytes.Buffer
	set, err := Build(&a, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Build(&b, spec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two builds of the same initrd differ")
	}
	t.Logf("initrd: %d modules, %d bytes (zstd %v)", len(set.Modules), a.Len(), zst)
	if zst != bytes.HasPrefix(a.Bytes(), []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Errorf("zstd %v, archive starts % x", zst, a.Bytes()[:4])
	}

	es, err := Read(bytes.NewReader(a.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	m := entryMap(t, es)
	if e := m["init"]; e.Mode != 0o100755 || !strings.Contains(string(e.Data), "test init") {
		t.Errorf("init = mode %o %q", e.Mode, e.Data)
	}
	if e := m["dev/console"]; e.Mode != 0o020600 || e.Major != 5 || e.Minor != 1 {
		t.Errorf("dev/console = mode %o %d:%d, want char 5:1", e.Mode, e.Major, e.Minor)
	}
	base := "lib/modules/" + kver + "/"
	for _, mod := range set.Modules {
		e, ok := m[base+mod.Path]
		if !ok {
			t.Errorf("%s missing from the archive", mod.Path)
			continue
		}
		orig, err := os.ReadFile(filepath.Join(dir, mod.Path))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(orig, e.Data) {
			t.Errorf("%s differs from the tree's copy", mod.Path)
		}
	}
	if _, ok := m[base+"modules.alias"]; !ok {
		t.Error("no trimmed modules.alias")
	}

	// The load list, read back as the init helper will, names the same
	// modules in the same order.
	root := t.TempDir()
	extract(t, es, root)
	list, err := ReadLoadList(root, kver)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(list), names(set.Modules); !slices.Equal(got, want) {
		t.Errorf("load list = %v, want %v", got, want)
	}

	// cpio(1) must agree on the archive's members.
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("needs cpio (apt-get install cpio) for the cross-check")
	}
	var zr io.Reader
	if zst {
		d, err := zstd.NewReader(bytes.NewReader(a.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		zr = d
	} else if zr, err = gzip.NewReader(bytes.NewReader(a.Bytes())); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cpio, "-t", "--quiet")
	cmd.Stdin = zr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	listed := strings.Fields(string(out))
	if len(listed) != len(es) {
		t.Errorf("cpio -t lists %d members, Read %d", len(listed), len(es))
	}
	for _, e := range es {
		if !slices.Contains(listed, e.Name) {
			t.Errorf("cpio -t does not list %s", e.Name)
		}
	}
}

// TestBuildKeepsCompressed: without a decompressor, compressed modules are
// stored as they are and modules.dep names them so.
func TestBuildKeepsCompressed(t *testing.T) {
	dir := writeTree(t, "kernel/a.ko.xz: kernel/b.ko\nkernel/b.ko:\n", nil)
	var buf bytes.Buffer
	spec := Spec{Init: writeInit(t), KernelVersion: "1.2.3", Modules: ModuleTree{Dir: dir}, Want: []string{"a", "gone"}, Level: NoCompression}
	set, err := Build(&buf, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(set.Missing, []string{"gone"}) {
		t.Errorf("missing = %v", set.Missing)
	}
	es, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	m := entryMap(t, es)
	if got := string(m["lib/modules/1.2.3/modules.dep"].Data); got != "kernel/b.ko:\nkernel/a.ko.xz: kernel/b.ko\n" {
		t.Errorf("modules.dep = %q", got)
	}
	if got := string(m[LoadListPath].Data); got != "b\na\n" {
		t.Errorf("load list = %q", got)
	}
	if got := string(m["lib/modules/1.2.3/kernel/a.ko.xz"].Data); got != "module kernel/a.ko.xz" {
		t.Errorf("a.ko.xz = %q", got)
	}
	// Without modules the list is there, empty.
	buf.Reset()
	if _, err := Build(&buf, Spec{Init: writeInit(t), Level: NoCompression}); err != nil {
		t.Fatal(err)
	}
	es, err = Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	extract(t, es, root)
	if list, err := ReadLoadList(root, "1.2.3"); err != nil || len(list) != 0 {
		t.Errorf("no modules: load list %v, %v", list, err)
	}
	if _, err := Build(&buf, Spec{KernelVersion: "1"}); err == nil {
		t.Error("Build without an init succeeded")
	}
	if _, err := Build(&buf, Spec{Init: filepath.Join(dir, "absent")}); err == nil {
		t.Error("Build with a missing init succeeded")
	}
}

func TestReadRejectsGarbage(t *testing.T) {
	if _, err := Read(strings.NewReader("070707 not newc")); err == nil {
		t.Error("Read accepted a non-newc header")
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.File("a", 0o644, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	whole := buf.Bytes()
	if _, err := Read(bytes.NewReader(whole[:len(whole)-130])); err == nil {
		t.Error("Read accepted a truncated archive")
	}
	// Two archives back to back, as early microcode + main initramfs.
	twice := append(append([]byte{}, whole...), whole...)
	es, err := Read(bytes.NewReader(twice))
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || string(es[1].Data) != "hello" {
		t.Errorf("concatenated archives: %d entries", len(es))
	}
}

// BenchmarkBuildDebianKernel measures the target initrd's gzip levels:
// size is reported as bytes/op-independent metric "initrd-bytes".
func BenchmarkBuildDebianKernel(b *testing.B) {
	dir, kver := debianKernel(b)
	for _, lv := range []struct {
		name  string
		level int
	}{{"none", NoCompression}, {"speed", gzip.BestSpeed}, {"default", gzip.DefaultCompression}, {"best", gzip.BestCompression}} {
		b.Run(lv.name, func(b *testing.B) {
			spec := Spec{Init: writeInit(b), KernelVersion: kver, Modules: ModuleTree{Dir: dir}, Want: targetModules, Level: lv.level}
			var n int
			for b.Loop() {
				var buf bytes.Buffer
				if _, err := Build(&buf, spec); err != nil {
					b.Fatal(err)
				}
				n = buf.Len()
			}
			b.ReportMetric(float64(n), "initrd-bytes")
		})
	}
}
