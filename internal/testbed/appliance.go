package testbed

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/livebootp/livebootp/appliance"
)

// The appliance test network: the appliance's address and MAC, and the one
// host its test image serves.
const (
	ApplianceMAC     = "52:54:00:88:00:01"
	ApplianceAddress = "10.88.0.1/24"
	ApplianceTarget  = "target1"
	TargetMAC        = "52:54:00:88:00:10"
	TargetAddress    = "10.88.0.10"
)

// ApplianceSpec is an appliance image for the tests and the demo.
type ApplianceSpec struct {
	Repo, Dir string
	Arch      string // amd64 or arm64
	// Binary and Init (livebootp, livebootp-init) build the busybox image
	// target1 boots; amd64 only.
	Binary, Init string
	// PasswordHash is appliance.console-password ("" for none).
	PasswordHash string
	Log          io.Writer // the build's progress lines
}

// BuildAppliance builds the image (under s.Dir) as `livebootp appliance
// build` does: for amd64 with the busybox test image and host target1 on
// its data partition.
func BuildAppliance(ctx context.Context, s ApplianceSpec) (string, appliance.Result, error) {
	var res appliance.Result
	out := filepath.Join(s.Dir, "out")
	if s.Arch == "amd64" {
		if err := BuildBusyboxImage(s.Repo, s.Binary, s.Init, filepath.Join(s.Dir, "scratch"), out); err != nil {
			return "", res, err
		}
	} else if err := os.MkdirAll(filepath.Join(out, "images", "busybox", "1"), 0o755); err != nil {
		return "", res, err
	}
	keys := filepath.Join(s.Dir, "keys")
	if err := os.MkdirAll(keys, 0o755); err != nil {
		return "", res, err
	}
	if err := os.WriteFile(filepath.Join(keys, "admins"), []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAppliancetestkeyAppliancetestkeyAppliance admin@appliance-test\n"), 0o644); err != nil {
		return "", res, err
	}
	pw := ""
	if s.PasswordHash != "" {
		pw = fmt.Sprintf("  console-password: %q\n", s.PasswordHash)
	}
	cfg := filepath.Join(s.Dir, "config.yml")
	yml := fmt.Sprintf(`appliance:
  hostname: lbp-appliance
%s  interfaces:
    eth0:
      address: %s
bootp-registry:
  interface: eth0
  tftp-root: loaders
  images-dir: images
  ssh-authorized-keys-dir: ssh-authorized-keys
hosts:
  %s:
    hardware-ethernet: "%s"
    fixed-address: %s
    image-name: busybox/1
    ssh-authorized-keys: admins
    cmdline-append: console=ttyS0 panic=-1
`, pw, ApplianceAddress, ApplianceTarget, TargetMAC, TargetAddress)
	if err := os.WriteFile(cfg, []byte(yml), 0o644); err != nil {
		return "", res, err
	}
	kdir, efi := filepath.Dir(KernelPath(s.Repo)), "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	if s.Arch == "arm64" {
		kdir = filepath.Join(s.Repo, "build", "kernel-arm64")
		efi = filepath.Join(kdir, "systemd-bootaa64.efi")
	}
	kver, err := os.ReadFile(filepath.Join(kdir, "version"))
	if err != nil {
		return "", res, fmt.Errorf("%w (make kernel, make kernel-arm64)", err)
	}
	log := s.Log
	if log == nil {
		log = io.Discard
	}
	img := filepath.Join(s.Dir, "appliance.img")
	res, err = appliance.Build(ctx, img, appliance.Spec{
		Repo: s.Repo, Arch: s.Arch, Kernel: filepath.Join(kdir, "vmlinuz"),
		ModulesDir: filepath.Join(kdir, "lib", "modules", strings.TrimSpace(string(kver))),
		Config:     cfg, Images: filepath.Join(out, "images"), Keys: keys,
		Loaders: filepath.Join(s.Repo, "build", "tftpboot"), EFILoader: efi,
		TempDir: s.Dir, Log: slog.New(slog.NewTextHandler(log, nil)),
	})
	return img, res, err
}

// ApplianceServing is the console line the appliance prints once its
// registry answers.
const ApplianceServing = "livebootp-appliance: registry serving"

// BootAppliance boots an appliance image from its disk (o.Disks or
// o.USBDisks) under UEFI on tap "tapa" of n, and waits until the registry
// serves; it returns the VM and when serving began (since power-on).
func BootAppliance(ctx context.Context, n *Net, o VMOptions, timeout time.Duration) (*VM, time.Duration, error) {
	o.Net, o.Tap, o.MAC, o.UEFI, o.DiskBoot, o.NICROM = n, "tapa", ApplianceMAC, true, true, "none"
	if o.MemoryMB == 0 {
		// OVMF 2022.11 under TCG cannot start any EFI program in 128 MB.
		o.MemoryMB = 256
	}
	vm, err := StartVM(ctx, o)
	if err != nil {
		return nil, 0, err
	}
	_, at, err := vm.Console.WaitFor(ctx, ApplianceServing, timeout)
	if err != nil {
		vm.Kill()
		return nil, 0, fmt.Errorf("%w\nthe whole console:\n%s", err, vm.Console.String())
	}
	return vm, at, nil
}

// RunOnConsole types cmd at the VM's shell and returns what it printed,
// once the shell has run it: the end marker is computed by the shell, so
// the echoed command line does not match it.
func RunOnConsole(ctx context.Context, vm *VM, cmd string, timeout time.Duration) (string, error) {
	mark := vm.Console.Mark()
	if err := vm.Type(cmd + "; echo cmd-end-$((6*7))\n"); err != nil {
		return "", err
	}
	if _, _, err := vm.Console.WaitFrom(ctx, mark, "cmd-end-42", timeout); err != nil {
		return "", fmt.Errorf("%s: %w", cmd, err)
	}
	return vm.Console.Since(mark), nil
}
