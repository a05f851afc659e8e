package testbed

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
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
// into the test's temp dir, as `make build` does (no symbol table or DWARF:
// livebootp-init's size is part of every boot's initrd).
func BuildGo(t testing.TB, repo, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, pkg)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// Start sets s up and starts its registry, failing t on error. The
// scenario is torn down when the test ends.
func Start(t testing.TB, ctx context.Context, s *Scenario) {
	t.Helper()
	t.Cleanup(s.Close)
	if err := s.Setup(); err != nil {
		t.Fatal(err)
	}
	if err := s.StartRegistry(ctx); err != nil {
		t.Fatal(err)
	}
}

// Wait waits for want on the VM's console and returns when it appeared
// (since power-on); on a time-out it fails t with the console's and the
// registry's last lines.
func Wait(t testing.TB, ctx context.Context, s *Scenario, vm *VM, want string, timeout time.Duration) time.Duration {
	t.Helper()
	_, at, err := vm.Console.WaitFor(ctx, want, timeout)
	if err != nil {
		t.Fatalf("%v\nregistry log (last lines):\n%s", err, s.RegistryLogTail(20))
	}
	return at
}
