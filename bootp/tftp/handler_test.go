package tftp

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCleanPath(t *testing.T) {
	ok := map[string]string{
		"pxelinux.0":                "pxelinux.0",
		"/pxelinux.0":               "pxelinux.0",
		"//a//b/./c":                "a/b/c",
		`images\deb\vmlinuz`:        "images/deb/vmlinuz",
		`\pxelinux.cfg\01-52-54-00`: "pxelinux.cfg/01-52-54-00",
		"/etc/passwd":               "etc/passwd", // absolute names land under the root
		"%2e%2e/%2e%2e/etc/passwd":  "%2e%2e/%2e%2e/etc/passwd",
		"..foo/bar..":               "..foo/bar..",
	}
	for in, want := range ok {
		got, err := CleanPath(in)
		if err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"..", "../etc/passwd", "a/../../b", "a/..", `..\..\windows`, `a\..\..\b`, "/../x",
		"a\x00b", "a\nb", "a\x7fb", "", "/", "./", "//.//",
		strings.Repeat("a", 1025),
	} {
		if got, err := CleanPath(in); err == nil {
			t.Errorf("CleanPath(%q) = %q, want refusal", in, got)
		}
	}
}

// traversalRoot builds root/ with files, and a secret next to it that must never be served.
func traversalRoot(t *testing.T) (root, secret string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "root")
	secret = filepath.Join(base, "secret")
	must(t, os.MkdirAll(filepath.Join(root, "sub"), 0o755))
	must(t, os.WriteFile(secret, []byte("SECRET"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "hello.txt"), []byte("hello"), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "sub", "inner"), []byte("inner"), 0o644))
	must(t, os.Symlink("../secret", filepath.Join(root, "link-out")))
	must(t, os.Symlink(base, filepath.Join(root, "dir-out")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(root, "abs-out")))
	must(t, os.Symlink("hello.txt", filepath.Join(root, "link-in")))
	must(t, os.Symlink("sub/../hello.txt", filepath.Join(root, "link-in-dotdot")))
	must(t, syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	// A device node needs CAP_MKNOD; without it the FIFO covers "not a regular file".
	_ = syscall.Mknod(filepath.Join(root, "null"), syscall.S_IFCHR|0o666, 1<<8|3)
	return root, secret
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// traversalCorpus is requested both directly (Dir) and over the wire (TestServerTraversal).
var traversalCorpus = []string{
	"../secret", "../../secret", "/../secret", "sub/../../secret", `..\secret`, `sub\..\..\secret`,
	"link-out", "dir-out/secret", "abs-out", "/etc/passwd", "etc/passwd", "%2e%2e/secret",
	"%2e%2e%2fsecret", "sub", "/", ".", "fifo", "null", "missing", strings.Repeat("x/", 600),
	strings.Repeat("a", 300), "hello.txt\x00../secret",
}

func TestDirTraversal(t *testing.T) {
	root, _ := traversalRoot(t)
	h := Dir(root)
	for _, name := range traversalCorpus {
		p, err := CleanPath(name)
		if err != nil {
			continue // refused before any handler runs
		}
		r, _, err := h.ServeTFTP(&Request{Path: p})
		if err == nil {
			b, _ := io.ReadAll(io.NewSectionReader(r, 0, 100))
			if c, ok := r.(io.Closer); ok {
				c.Close()
			}
			t.Errorf("%q (clean %q) served %q, want refusal", name, p, b)
		}
	}
	for name, want := range map[string]string{"hello.txt": "hello", "sub/inner": "inner", "link-in": "hello", "link-in-dotdot": "hello"} {
		r, size, err := h.ServeTFTP(&Request{Path: name})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		b := make([]byte, size)
		if _, err := r.ReadAt(b, 0); err != nil || string(b) != want {
			t.Errorf("%s: got %q, %v; want %q", name, b, err, want)
		}
		r.(io.Closer).Close()
	}
}

func TestDirErrors(t *testing.T) {
	root, _ := traversalRoot(t)
	h := Dir(root)
	_, _, err := h.ServeTFTP(&Request{Path: "missing"})
	if code, _ := wireError(err); code != ErrFileNotFound || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: code %d, err %v; want file not found", code, err)
	}
	for _, p := range []string{"sub", "fifo", "link-out"} {
		_, _, err := h.ServeTFTP(&Request{Path: p})
		if code, _ := wireError(err); code != ErrAccessViolation {
			t.Errorf("%s: code %d, err %v; want access violation", p, code, err)
		}
	}
	_, _, err = Dir(filepath.Join(root, "nope")).ServeTFTP(&Request{Path: "hello.txt"})
	if err == nil || !strings.Contains(err.Error(), "tftp-root") {
		t.Errorf("missing root: %v, want an error naming tftp-root", err)
	}
}

func TestMux(t *testing.T) {
	named := func(tag string) Handler {
		return HandlerFunc(func(r *Request) (io.ReaderAt, int64, error) {
			s := tag + ":" + r.Path
			return strings.NewReader(s), int64(len(s)), nil
		})
	}
	var m Mux
	m.Handle("", named("root"))
	m.Handle("images/", named("images"))
	m.Handle("/pxelinux.cfg", named("cfg")) // slashes normalised
	m.Handle("images/deb/", named("deb"))
	for in, want := range map[string]string{
		"undionly.kpxe":                  "root:undionly.kpxe",
		"images/x/vmlinuz":               "images:x/vmlinuz",
		"images/deb/v":                   "deb:v",
		"pxelinux.cfg/01-52-54-00-12-34": "cfg:01-52-54-00-12-34",
		"pxelinux.cfgX":                  "root:pxelinux.cfgX",
		"images":                         "root:images",
	} {
		r, n, err := m.ServeTFTP(&Request{Path: in})
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		b := make([]byte, n)
		r.ReadAt(b, 0)
		if string(b) != want {
			t.Errorf("%s: got %q, want %q", in, b, want)
		}
	}
	var empty Mux
	empty.Handle("images/", named("images"))
	if _, _, err := empty.ServeTFTP(&Request{Path: "x"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("unmounted path: %v, want fs.ErrNotExist", err)
	}
	if _, _, err := empty.ServeTFTP(&Request{Path: "images/"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("bare prefix: %v, want fs.ErrNotExist", err)
	}
}
