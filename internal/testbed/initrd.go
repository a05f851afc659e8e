package testbed

import (
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/livebootp/livebootp/initramfs"
)

// VMInitMarker is the line the test init prints once the kernel runs it.
const VMInitMarker = "LIVEBOOTP-VMINIT: init reached"

// BuildVMInitrd builds internal/testbed/vminit as a static binary and packs
// it as /init of a gzip initramfs at out. repo is the module root.
func BuildVMInitrd(repo, out string) error {
	bin := out + ".init"
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./internal/testbed/vminit")
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if o, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("testbed: building vminit: %v: %s", err, o)
	}
	defer os.Remove(bin)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	w := initramfs.NewWriter(zw)
	for _, d := range []string{"dev", "proc", "sys"} {
		if err := w.Dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := w.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := w.CopyFile("init", 0o755, bin); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// RepoRoot finds the module root above dir (the directory holding go.mod).
func RepoRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("testbed: no go.mod above %s", dir)
		}
	}
}
