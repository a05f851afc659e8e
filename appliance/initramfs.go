// Package appliance builds the livebootp appliance: a u-root initramfs
// holding the registry, its admin CLI, a shell and the kernel modules a
// small server needs, and (with appliance/disk) the flashable disk image
// around it.
//
// Building compiles Go code (u-root's busybox mode), so it needs the Go
// toolchain and this module's source; it never touches a block device
// (flashing is appliance/disk's job) and writes only its output file and a
// temporary directory.
package appliance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"

	"github.com/livebootp/livebootp/initramfs"
)

// Commands are the Go programs in the appliance, in one busybox binary:
// u-root's init and a shell, the core tools an administrator reaches for on
// a serial console, and ours.
func Commands() []string {
	return []string{
		"github.com/u-root/u-root/cmds/core/init",
		"github.com/u-root/u-root/cmds/core/gosh",
		"github.com/u-root/u-root/cmds/core/cat",
		"github.com/u-root/u-root/cmds/core/cp",
		"github.com/u-root/u-root/cmds/core/date",
		"github.com/u-root/u-root/cmds/core/df",
		"github.com/u-root/u-root/cmds/core/dmesg",
		"github.com/u-root/u-root/cmds/core/echo",
		"github.com/u-root/u-root/cmds/core/free",
		"github.com/u-root/u-root/cmds/core/grep",
		"github.com/u-root/u-root/cmds/core/hostname",
		"github.com/u-root/u-root/cmds/core/ip",
		"github.com/u-root/u-root/cmds/core/kill",
		"github.com/u-root/u-root/cmds/core/ls",
		"github.com/u-root/u-root/cmds/core/mkdir",
		"github.com/u-root/u-root/cmds/core/more",
		"github.com/u-root/u-root/cmds/core/mount",
		"github.com/u-root/u-root/cmds/core/mv",
		"github.com/u-root/u-root/cmds/core/ping",
		"github.com/u-root/u-root/cmds/core/ps",
		"github.com/u-root/u-root/cmds/core/rm",
		"github.com/u-root/u-root/cmds/core/shutdown",
		"github.com/u-root/u-root/cmds/core/sync",
		"github.com/u-root/u-root/cmds/core/umount",
		"github.com/u-root/u-root/cmds/core/uname",
		"github.com/livebootp/livebootp/cmds/livebootp",
		"github.com/livebootp/livebootp/cmds/livebootp-uinit",
		"github.com/livebootp/livebootp/cmds/livebootp-login",
	}
}

// Modules are what an appliance of arch needs from the kernel, by name or
// alias: NICs common on mini PCs, small servers, SBCs and VMs; USB, SATA,
// NVMe, SD and virtio storage; FAT for the data partition. Names the
// kernel lacks (built in, or another arch) are skipped. 10 GbE server NICs
// are left out: their drivers (ixgbe, bnxt_en, ...) would take a tenth of
// the 8 MB the initramfs may have; add them with InitramfsSpec.Want.
func Modules(arch string) []string {
	m := []string{
		// NICs: Intel, Realtek (incl. USB adapters), ASIX, virtio, e1000
		"virtio_pci", "virtio_net", "e1000", "e1000e", "igb", "igc", "r8169",
		"r8152", "ax88179_178a", "cdc_ether", "smsc95xx", "lan78xx",
		// storage
		"virtio_blk", "virtio_scsi", "sd_mod", "usb_storage", "uas", "xhci_pci", "ehci_pci",
		"ahci", "nvme", "mmc_block", "sdhci_pci",
		// the data partition
		"vfat", "nls_cp437", "nls_ascii", "nls_utf8", "nls_iso8859_1",
	}
	if arch == "arm64" {
		// SoC Ethernet and SD/eMMC of common boards (Raspberry Pi, Rockchip).
		m = append(m, "virtio_mmio", "bcmgenet", "stmmac_platform", "dwmac_rk", "xhci_plat_hcd", "dw_mmc_rockchip",
			"sdhci_iproc", "sdhci_of_arasan", "mmc_spi")
	} else {
		m = append(m, "ohci_pci", "sdhci_acpi")
	}
	return m
}

// InitramfsSpec describes an appliance initramfs.
type InitramfsSpec struct {
	Repo          string               // this module's root: the Go source built into it
	Arch          string               // GOARCH: amd64, arm64
	KernelVersion string               // uname -r of the kernel it boots with
	Modules       initramfs.ModuleTree // the kernel's modules ("" Dir: none)
	Want          []string             // module names; nil means Modules(Arch)
	Commands      []string             // Go commands; nil means Commands()
	TempDir       string
	Log           *slog.Logger
}

// BuildInitramfs writes a zstd-compressed initramfs to out (atomically) and
// returns the modules it holds.
func BuildInitramfs(ctx context.Context, out string, s InitramfsSpec) (*initramfs.ModuleSet, error) {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	tmp, err := os.MkdirTemp(s.TempDir, "appliance-initramfs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	base := filepath.Join(tmp, "base.cpio")
	set, err := writeBase(base, s)
	if err != nil {
		return nil, err
	}
	cmds := s.Commands
	if cmds == nil {
		cmds = Commands()
	}
	s.Log.Info("initramfs: building the busybox (u-root)", "commands", len(cmds), "arch", s.Arch)
	raw := filepath.Join(tmp, "initramfs.cpio")
	// livebootp_appliance leaves the image-building commands out of the
	// appliance's livebootp (cmds/livebootp/appliance_omitted.go).
	env := golang.Default(golang.DisableCGO(), golang.WithGOARCH(s.Arch), golang.WithGOOS("linux"),
		golang.WithWorkingDir(s.Repo), golang.WithBuildTag("livebootp_appliance"))
	logf := func(format string, v ...any) { s.Log.Debug("u-root: " + strings.TrimSpace(fmt.Sprintf(format, v...))) }
	err = uimage.Create(llog.New(slog.LevelInfo, logf),
		uimage.WithReplaceEnv(env),
		uimage.WithTempDir(tmp),
		uimage.WithBaseFile(base),
		uimage.WithCPIOOutput(raw),
		uimage.WithBusyboxCommands(cmds...),
		// The busybox is compiled in GOPATH mode, where the go command
		// stamps Go 1.20's GODEBUG defaults into the binary: the old
		// ServeMux (no "GET /path" patterns: every registry route 404s),
		// old timer channels and more. An empty default is this
		// toolchain's own. gobusybox's usual -ldflags (strip, no build
		// ID) are kept by spelling them here.
		uimage.WithBusyboxBuildOpts(&golang.BuildOpts{NoStrip: true,
			ExtraArgs: []string{"-ldflags=-s -w -buildid= -X=runtime.godebugDefault="}}),
		uimage.WithInit("init"),
		uimage.WithUinit("livebootp-uinit"),
		// The console shell goes through the password gate; scripts get
		// the plain shell.
		uimage.WithSymlink("bin/defaultsh", "livebootp-login"),
		uimage.WithSymlink("bin/sh", "gosh"),
		uimage.WithSkipLDD(),
	)
	if err != nil {
		return nil, fmt.Errorf("appliance: u-root: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.Log.Info("initramfs: compressing (zstd)")
	if err := compress(raw, out); err != nil {
		return nil, err
	}
	return set, nil
}

// writeBase writes the part of the archive that is not Go: directories,
// device nodes, the kernel modules and their load list.
func writeBase(path string, s InitramfsSpec) (*initramfs.ModuleSet, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cw := initramfs.NewWriter(f)
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "run", "tmp", "var/log", "data", "usr/lib"} {
		if err := cw.Dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	for _, n := range []struct {
		name         string
		major, minor uint32
		perm         os.FileMode
	}{{"dev/console", 5, 1, 0o600}, {"dev/tty", 5, 0, 0o666}, {"dev/null", 1, 3, 0o666}, {"dev/urandom", 1, 9, 0o666}} {
		if err := cw.CharDev(n.name, n.perm, n.major, n.minor); err != nil {
			return nil, err
		}
	}
	if err := cw.File("etc/resolv.conf", 0o644, nil); err != nil {
		return nil, err
	}
	// livebootp's commands default to the container's config path: point
	// it at the data partition so `livebootp check`, `host add` and the
	// rest work on the console without -config.
	if err := cw.Symlink("opt/livebootp/etc/config.yml", "/data/config.yml"); err != nil {
		return nil, err
	}
	set := &initramfs.ModuleSet{}
	if s.Modules.Dir != "" || s.Modules.FS != nil {
		want := s.Want
		if want == nil {
			want = Modules(s.Arch)
		}
		if set, err = s.Modules.Resolve(want); err != nil {
			return nil, fmt.Errorf("appliance: modules: %w", err)
		}
		if err := cw.AddModules(s.KernelVersion, s.Modules, set); err != nil {
			return nil, fmt.Errorf("appliance: modules: %w", err)
		}
	}
	if err := cw.Close(); err != nil {
		return nil, err
	}
	return set, f.Close()
}

// compress writes src zstd-compressed to dst through a temporary file.
func compress(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	// The kernel's zstd decompressor needs a window it can allocate
	// early in boot; 8 MiB is what the kernel's own build uses for
	// initramfs.
	zw, err := zstd.NewWriter(tmp, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(8<<20))
	if err != nil {
		return err
	}
	if _, err := io.Copy(zw, in); err != nil {
		tmp.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
