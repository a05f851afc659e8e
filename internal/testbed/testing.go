package testbed

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// NeedVM skips the test (or, in CI, fails it: CI installs everything, so a
// skip there would hide a broken set-up) when a VM boot is impossible, and
// returns the module root.
func NeedVM(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("VM test: skipped with -short")
	}
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	if os.Geteuid() != 0 {
		fail("VM test needs root (network namespace, tap device); run make test as root")
	}
	if miss := Missing("qemu-system-x86_64", "ip"); len(miss) > 0 {
		fail("VM test needs %v (make deps)", miss)
	}
	wd, _ := os.Getwd()
	repo, err := RepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(KernelPath(repo)); err != nil {
		fail("VM test needs a kernel: %v (run make kernel)", err)
	}
	return repo
}

// BuildGo builds the main package pkg (e.g. ./cmds/livebootp) statically
// into the test's temp dir.
func BuildGo(t testing.TB, repo, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, pkg)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}
