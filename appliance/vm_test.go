package appliance_test

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/livebootp/livebootp/appliance"
	"github.com/livebootp/livebootp/appliance/login"
	"github.com/livebootp/livebootp/internal/syncbuf"
	"github.com/livebootp/livebootp/internal/testbed"
)

const consolePW = "lbp-console-pw"

// TestVMAppliance builds an appliance image the way `livebootp appliance
// build` does, with the busybox test image and a host on its data
// partition, and boots it under OVMF: from a virtio disk with a second VM
// that PXE-boots from it, and from a USB stick. Commands are typed into
// the appliance's serial console, behind its console password.
func TestVMAppliance(t *testing.T) {
	repo := testbed.NeedVM(t)
	if _, err := os.Stat("/usr/lib/systemd/boot/efi/systemd-bootx64.efi"); err != nil {
		t.Fatalf("needs Debian's systemd-boot-efi (make deps): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir := t.TempDir()
	img := buildTestAppliance(t, ctx, repo, dir, "amd64")

	t.Run("virtio+pxe-target", func(t *testing.T) {
		n := newNet(t, "appv")
		vm := bootAppliance(t, ctx, n, dir, testbed.VMOptions{Disks: []string{copyImage(t, img)}})
		logIn(t, ctx, vm)
		out := typeCommand(t, ctx, vm, "livebootp status", "interfaces:")
		for _, want := range []string{"config:", "/data/config.yml", "serving:"} {
			if !strings.Contains(out, want) {
				t.Errorf("livebootp status lacks %q:\n%s", want, out)
			}
		}

		// A target on the same bridge PXE-boots the image from the
		// appliance's data partition.
		if err := n.AddTap("tapt"); err != nil {
			t.Fatal(err)
		}
		blank := filepath.Join(t.TempDir(), "target-disk.img")
		if err := os.WriteFile(blank, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(blank, 256<<20); err != nil {
			t.Fatal(err)
		}
		target, err := testbed.StartVM(ctx, testbed.VMOptions{Net: n, Tap: "tapt", MAC: testbed.TargetMAC, Disks: []string{blank}, Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		defer target.Kill()
		if _, at, err := target.Console.WaitFor(ctx, testbed.TargetMarker+"done", 4*time.Minute); err != nil {
			t.Fatalf("target: %v", err)
		} else {
			t.Logf("target: power-on to its image's init done in %s", at.Round(100*time.Millisecond))
		}
		if err := target.Wait(time.Minute); err != nil {
			t.Errorf("target did not power off: %v", err)
		}
		out = typeCommand(t, ctx, vm, "livebootp hosts", "target1")
		line := lineWith(out, "target1")
		if !strings.Contains(line, "booted in") || !strings.Contains(line, "10.88.0.10") {
			t.Errorf("livebootp hosts on the appliance: target1 without its boot report:\n%s", out)
		}
		out = typeCommand(t, ctx, vm, "livebootp check", "")
		if !strings.Contains(out, ": OK:") {
			t.Errorf("livebootp check on the appliance:\n%s", out)
		}
	})

	t.Run("128MB", func(t *testing.T) { boot128MB(t, ctx, img) })

	t.Run("usb", func(t *testing.T) {
		n := newNet(t, "appu")
		vm := bootAppliance(t, ctx, n, dir, testbed.VMOptions{USBDisks: []string{copyImage(t, img)}})
		logIn(t, ctx, vm)
		out := typeCommand(t, ctx, vm, "livebootp status", "interfaces:")
		if !strings.Contains(out, "10.88.0.1/24") {
			t.Errorf("livebootp status from the USB-booted appliance lacks eth0's address:\n%s", out)
		}
	})
}

// buildTestAppliance builds an appliance image for arch behind the
// console password consolePW; the amd64 one carries the busybox test image
// and a host to boot it.
func buildTestAppliance(t *testing.T, ctx context.Context, repo, dir, arch string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(consolePW), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	spec := testbed.ApplianceSpec{Repo: repo, Dir: dir, Arch: arch, PasswordHash: string(hash)}
	if arch == "amd64" {
		spec.Binary = testbed.BuildGo(t, repo, "./cmds/livebootp")
		spec.Init = testbed.BuildGo(t, repo, "./cmds/livebootp-init")
	}
	var log syncbuf.Buffer
	spec.Log = &log
	start := time.Now()
	img, res, err := testbed.BuildAppliance(ctx, spec)
	if err != nil {
		t.Fatalf("appliance build: %v\n%s", err, log.String())
	}
	t.Logf("%s appliance image built in %s: %d MiB, initramfs %.2f MB zstd, %d modules (kernel lacks %v)",
		arch, time.Since(start).Round(time.Second), res.Layout.Size>>20, float64(res.Initramfs)/1e6, res.Modules, res.MissingModule)
	if res.Initramfs > 8<<20 {
		t.Errorf("initramfs is %.2f MB: the appliance's budget is 8 MB", float64(res.Initramfs)/1e6)
	}
	return img
}

// In 128 MB: OVMF 2022.11 under TCG cannot start any EFI program (not even
// a bare kernel) with so little memory, so the image's own kernel and
// initramfs, taken from its ESP, are started by qemu directly; the data
// partition is the image's.
func boot128MB(t *testing.T, ctx context.Context, img string) {
	n := newNet(t, "app128")
	stick := copyImage(t, img)
	dir := t.TempDir()
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		if out, err := exec.Command("mcopy", "-n", "-i", stick+"@@1M", "::"+f, filepath.Join(dir, f)).CombinedOutput(); err != nil {
			t.Fatalf("mcopy %s from the ESP (mtools): %v: %s", f, err, out)
		}
	}
	vm, err := testbed.StartVM(ctx, testbed.VMOptions{Net: n, Tap: "tapa", MAC: testbed.ApplianceMAC, MemoryMB: 128, NICROM: "none",
		Disks: []string{stick}, Dir: dir, Extra: []string{"-kernel", filepath.Join(dir, "vmlinuz"),
			"-initrd", filepath.Join(dir, "initrd.img"), "-append", appliance.DefaultCmdline("amd64")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	if _, at, err := vm.Console.WaitFor(ctx, testbed.ApplianceServing, 3*time.Minute); err != nil {
		t.Fatalf("%v\nthe whole console:\n%s", err, vm.Console.String())
	} else {
		t.Logf("appliance in 128 MB: kernel start to serving in %s", at.Round(100*time.Millisecond))
	}
	logIn(t, ctx, vm)
	out := typeCommand(t, ctx, vm, "livebootp status; free", "interfaces:")
	if !strings.Contains(out, "10.88.0.1/24") {
		t.Errorf("livebootp status in 128 MB:\n%s", out)
	}
	t.Logf("memory in 128 MB, serving:\n%s", lineWith(out, "Mem"))
}

// TestVMApplianceArm64 builds the arm64 image (Debian's arm64 kernel and
// systemd-boot) and boots it on qemu's virt board under AAVMF: the
// registry serves and answers at the console.
func TestVMApplianceArm64(t *testing.T) {
	repo := testbed.NeedVM(t)
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	if miss := testbed.Missing("qemu-system-aarch64"); len(miss) > 0 {
		fail("needs %v (make deps)", miss)
	}
	if _, err := os.Stat(filepath.Join(repo, "build", "kernel-arm64", "systemd-bootaa64.efi")); err != nil {
		fail("needs the arm64 kernel and systemd-boot: %v (make kernel-arm64)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir := t.TempDir()
	img := buildTestAppliance(t, ctx, repo, dir, "arm64")
	n := newNet(t, "appa")
	vm := bootAppliance(t, ctx, n, dir, testbed.VMOptions{Arch: "arm64", Disks: []string{img}})
	logIn(t, ctx, vm)
	out := typeCommand(t, ctx, vm, "livebootp status", "interfaces:")
	if !strings.Contains(out, "10.88.0.1/24") {
		t.Errorf("livebootp status on the arm64 appliance lacks eth0's address:\n%s", out)
	}
}

func newNet(t *testing.T, tag string) *testbed.Net {
	t.Helper()
	n, err := testbed.NewNet(testbed.Uniq(tag), netip.MustParsePrefix("10.88.0.254/24"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.AddTap("tapa"); err != nil {
		t.Fatal(err)
	}
	return n
}

// copyImage gives each boot its own copy: a boot writes logs to the data
// partition.
func copyImage(t *testing.T, img string) string {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "stick.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// bootAppliance boots the image and waits until the registry serves.
func bootAppliance(t *testing.T, ctx context.Context, n *testbed.Net, dir string, o testbed.VMOptions) *testbed.VM {
	t.Helper()
	o.Dir = t.TempDir()
	vm, at, err := testbed.BootAppliance(ctx, n, o, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	t.Logf("appliance: power-on to serving in %s", at.Round(100*time.Millisecond))
	return vm
}

// login answers the console password prompt; the banner of the shell
// gate shows once it let us through.
func logIn(t *testing.T, ctx context.Context, vm *testbed.VM) {
	t.Helper()
	prompt := func(mark int) {
		if _, _, err := vm.Console.WaitFrom(ctx, mark, login.PasswordPrompt, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	prompt(0)
	// A wrong password first: refused, and asked again.
	mark := vm.Console.Mark()
	if err := vm.Type("not-the-password\n"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := vm.Console.WaitFrom(ctx, mark, "wrong password", time.Minute); err != nil {
		t.Fatal(err)
	}
	prompt(mark)
	mark = vm.Console.Mark()
	if err := vm.Type(consolePW + "\n"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := vm.Console.WaitFrom(ctx, mark, "livebootp appliance:", time.Minute); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(vm.Console.String(), consolePW) {
		t.Error("the console password was echoed on the console")
	}
}

// typeCommand types cmd on the console and returns what it printed,
// failing t unless it contains want.
func typeCommand(t *testing.T, ctx context.Context, vm *testbed.VM, cmd, want string) string {
	t.Helper()
	out, err := testbed.RunOnConsole(ctx, vm, cmd, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want != "" && !strings.Contains(out, want) {
		t.Fatalf("%s: no %q in its output:\n%s", cmd, want, out)
	}
	return out
}

func lineWith(text, sub string) string {
	for l := range strings.Lines(text) {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
