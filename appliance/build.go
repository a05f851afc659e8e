package appliance

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/livebootp/livebootp/appliance/disk"
	"github.com/livebootp/livebootp/bootp/boot"
	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/initramfs"
)

// DefaultConfig is the config.yml of an image built without --config.
//
//go:embed config.yml
var DefaultConfig []byte

// Spec is an appliance image to build.
type Spec struct {
	Repo       string // this module's root (the Go source of the initramfs)
	Arch       string // amd64 or arm64
	Kernel     string // the kernel image
	ModulesDir string // its modules: .../lib/modules/<version>; "" = none (all built in)
	Config     string // config.yml for the data partition; "" = DefaultConfig
	Images     string // images directory copied to the data partition; "" = none
	Keys       string // ssh-authorized-keys directory copied to the data partition; "" = none
	Loaders    string // directory holding the network boot loaders the registry hands out (undionly.kpxe, ipxe.efi, ...); "" = none
	EFILoader  string // systemd-boot binary; "" = none (U-Boot only)
	Cmdline    string // kernel command line; "" = DefaultCmdline(Arch)
	DataSize   int64  // data partition size; 0 = fit the content
	TempDir    string
	Log        *slog.Logger
}

// Result describes a built image.
type Result struct {
	Layout        disk.Layout
	Initramfs     int64 // compressed size
	Modules       int
	MissingModule []string // wanted modules the kernel lacks (built in or another arch)
	Took          time.Duration
}

// DefaultCmdline is the kernel command line for arch: the serial console
// last so /dev/console (the shell u-root's init starts) is the serial port.
func DefaultCmdline(arch string) string {
	if arch == "arm64" {
		return "console=tty0 console=ttyAMA0,115200"
	}
	return "console=tty0 console=ttyS0,115200"
}

// Build makes the disk image out: the initramfs, then the data partition's
// tree, then the image. Progress goes to s.Log, a line per step.
func Build(ctx context.Context, out string, s Spec) (Result, error) {
	start := time.Now()
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.Cmdline == "" {
		s.Cmdline = DefaultCmdline(s.Arch)
	}
	var res Result
	if _, err := os.Stat(s.Kernel); err != nil {
		return res, fmt.Errorf("appliance: kernel: %w (make kernel fetches Debian's; or pass --kernel)", err)
	}
	tmp, err := os.MkdirTemp(s.TempDir, "appliance-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)

	s.Log.Info("step 1/3: data partition contents")
	data := filepath.Join(tmp, "data")
	if err := stageData(data, s); err != nil {
		return res, err
	}

	s.Log.Info("step 2/3: initramfs (u-root, zstd)")
	ispec := InitramfsSpec{Repo: s.Repo, Arch: s.Arch, TempDir: tmp, Log: s.Log}
	if s.ModulesDir != "" {
		ispec.Modules = initramfs.ModuleTree{Dir: s.ModulesDir}
		ispec.KernelVersion = filepath.Base(s.ModulesDir)
	}
	initrd := filepath.Join(tmp, "initramfs.img")
	set, err := BuildInitramfs(ctx, initrd, ispec)
	if err != nil {
		return res, err
	}
	st, err := os.Stat(initrd)
	if err != nil {
		return res, err
	}
	res.Initramfs, res.Modules, res.MissingModule = st.Size(), len(set.Modules), set.Missing
	s.Log.Info("initramfs ready", "size", fmt.Sprintf("%.1f MB", float64(st.Size())/1e6), "modules", len(set.Modules))

	s.Log.Info("step 3/3: disk image", "out", out)
	res.Layout, err = disk.Build(ctx, out, disk.Spec{
		Arch: s.Arch, Kernel: s.Kernel, Initramfs: initrd, Cmdline: s.Cmdline,
		EFILoader: s.EFILoader, DataDir: data, DataSize: s.DataSize,
	}, func(step string) { s.Log.Info("  " + step) })
	if err != nil {
		return res, err
	}
	res.Took = time.Since(start)
	return res, nil
}

// stageData lays out the data partition: config.yml, images/,
// ssh-authorized-keys/, loaders/ and logs/.
func stageData(dir string, s Spec) error {
	cfg := DefaultConfig
	if s.Config != "" {
		var err error
		if cfg, err = os.ReadFile(s.Config); err != nil {
			return fmt.Errorf("appliance: --config: %w", err)
		}
	}
	for _, d := range []string{"images", "ssh-authorized-keys", "loaders", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), cfg, 0o644); err != nil {
		return err
	}
	if s.Loaders != "" {
		if err := copyLoaders(s.Loaders, filepath.Join(dir, "loaders")); err != nil {
			return err
		}
	}
	for _, c := range []struct{ from, to string }{{s.Images, "images"}, {s.Keys, "ssh-authorized-keys"}} {
		if c.from == "" {
			continue
		}
		if err := copyTree(c.from, filepath.Join(dir, c.to)); err != nil {
			return fmt.Errorf("appliance: %s: %w", c.from, err)
		}
	}
	return checkConfig(filepath.Join(dir, "config.yml"))
}

// copyTree copies regular files (following symlinks: Debian's ipxe.efi is
// one) from src into dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if st.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !st.Mode().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// copyLoaders copies from dir the boot loaders the registry hands out
// (following Debian's symlinks: its ipxe.efi is one) into dst.
func copyLoaders(dir, dst string) error {
	n := 0
	for _, f := range []string{boot.LoaderBIOS, boot.LoaderUEFI64, boot.LoaderSNP64, boot.LoaderARM64} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("appliance: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o644); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("appliance: no boot loaders (%s, %s) in %s: install Debian's ipxe package or pass --loaders DIR (\"\" for none)", boot.LoaderBIOS, boot.LoaderUEFI64, dir)
	}
	return nil
}

// checkConfig validates the staged config as the appliance will load it:
// the registry's address is the static address the appliance section
// gives its interface. A file that would not load is refused now rather
// than on the stick.
func checkConfig(file string) error {
	a, err := config.LoadAppliance(file)
	if err != nil {
		return fmt.Errorf("appliance: config.yml: %w", err)
	}
	_, err = config.Load(file, config.Options{Detector: applianceDetector{a}})
	var probs config.Problems
	if errors.As(err, &probs) {
		return fmt.Errorf("appliance: the config would not load on the appliance:\n%w", err)
	}
	return err
}

// applianceDetector answers auto-detection with what the appliance
// section will configure.
type applianceDetector struct{ a config.Appliance }

func (d applianceDetector) Detect(iface string) (config.Detected, error) {
	for _, ifc := range d.a.Interfaces {
		if (iface == "" || iface == ifc.Name) && ifc.Address.IsValid() {
			det := config.Detected{Interface: ifc.Name, Address: ifc.Address}
			if ifc.Gateway.IsValid() {
				det.Routers = []netip.Addr{ifc.Gateway}
			}
			return det, nil
		}
	}
	if iface == "" {
		iface = "any interface"
	}
	return config.Detected{}, fmt.Errorf("the appliance section gives %s no static address (with dhcp the address is known only at boot): set server-address and subnet in bootp-registry", strings.TrimSpace(iface))
}
