//go:build !livebootp_appliance

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/livebootp/livebootp/appliance"
)

const applianceBuildUsage = `usage: livebootp appliance build --out FILE [flags]

Builds a disk image to flash on a USB stick or SD card: GPT, an EFI system
partition with systemd-boot (x86 UEFI) and extlinux/extlinux.conf (U-Boot),
the kernel and a u-root initramfs holding the registry; and a FAT32 data
partition with config.yml, images/, ssh-authorized-keys/ and loaders/ that
any laptop can open. Needs the Go toolchain and livebootp's source tree
(it compiles the initramfs): run it from the source tree, or pass --source.

flags:
`

func applianceBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("appliance build", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, applianceBuildUsage); fs.PrintDefaults() }
	out := fs.String("out", "", "image file to write (required)")
	arch := fs.String("arch", runtime.GOARCH, "amd64 or arm64")
	source := fs.String("source", ".", "livebootp source tree (holds go.mod)")
	kernel := fs.String("kernel", "", "kernel image (default: build/kernel/vmlinuz, build/kernel-arm64/vmlinuz for arm64, under --source; `make kernel` fetches Debian's)")
	modules := fs.String("modules", "", "the kernel's modules directory, lib/modules/VERSION (default: the one beside --kernel's default)")
	cfg := fs.String("config", "", "config.yml for the data partition (default: a template with eth0 at 10.0.0.1/24)")
	images := fs.String("images", "", "images directory to copy onto the data partition (livebootp image build output)")
	keys := fs.String("keys", "", "ssh-authorized-keys directory to copy onto the data partition")
	loaders := fs.String("loaders", "/usr/lib/ipxe", "directory with undionly.kpxe, ipxe.efi, snponly.efi (Debian's ipxe package)")
	efi := fs.String("efi-loader", "", "systemd-boot EFI binary (default: Debian's systemd-boot-efi for ARCH; \"none\" for U-Boot only)")
	cmdline := fs.String("cmdline", "", "kernel command line (default: consoles tty0 and the serial port)")
	dataSize := fs.Int64("data-size-mb", 0, "data partition size in MiB (default: the content plus room; flash grows it to the stick)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("appliance build: --out FILE is required")
	}
	if *arch != "amd64" && *arch != "arm64" {
		return fmt.Errorf("appliance build: --arch %q: amd64 or arm64", *arch)
	}
	src, err := filepath.Abs(*source)
	if err != nil {
		return err
	}
	if b, err := os.ReadFile(filepath.Join(src, "go.mod")); err != nil || !strings.Contains(string(b), "module github.com/livebootp/livebootp\n") {
		return fmt.Errorf("appliance build: %s is not livebootp's source tree (no go.mod of github.com/livebootp/livebootp): run from the tree or pass --source", src)
	}
	kdir := filepath.Join(src, "build", "kernel")
	if *arch != "amd64" {
		kdir += "-" + *arch
	}
	if *kernel == "" {
		*kernel = filepath.Join(kdir, "vmlinuz")
		if *modules == "" {
			if v, err := os.ReadFile(filepath.Join(kdir, "version")); err == nil {
				*modules = filepath.Join(kdir, "lib", "modules", strings.TrimSpace(string(v)))
			}
		}
	}
	if _, err := os.Stat(*kernel); err != nil {
		return fmt.Errorf("appliance build: kernel %s: %w (run `make kernel ARCH=%s`, or pass --kernel and --modules)", *kernel, err, *arch)
	}
	switch *efi {
	case "none":
		*efi = ""
	case "":
		*efi = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
		if *arch == "arm64" {
			// fetch-kernel.sh unpacks the foreign architecture's loader
			// beside its kernel.
			*efi = filepath.Join(kdir, "systemd-bootaa64.efi")
		}
		if _, err := os.Stat(*efi); err != nil {
			fmt.Fprintf(stderr, "appliance build: no %s (Debian's systemd-boot-efi for %s): the image boots with U-Boot only\n", *efi, *arch)
			*efi = ""
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == slog.LevelKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	res, err := appliance.Build(ctx, *out, appliance.Spec{
		Repo: src, Arch: *arch, Kernel: *kernel, ModulesDir: *modules,
		Config: *cfg, Images: *images, Keys: *keys, Loaders: *loaders,
		EFILoader: *efi, Cmdline: *cmdline, DataSize: *dataSize << 20, Log: log,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d MiB image (initramfs %.1f MB zstd, %d modules; data partition %d MiB, %d files) in %s\n",
		*out, res.Layout.Size>>20, float64(res.Initramfs)/1e6, res.Modules, res.Layout.DataSize>>20, res.Layout.DataFiles, res.Took.Round(100e6))
	fmt.Fprintf(stdout, "flash it: livebootp appliance flash --image %s --device /dev/sdX\n", *out)
	return nil
}
