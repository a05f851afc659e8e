// Package boot decides what a client boots: which loader its firmware gets
// (by DHCP option 93, user class and vendor class), the iPXE script and
// pxelinux configuration of a known host, and the kernel arguments the init
// helper reads. It is the one place that knows the boot chain's shape; the
// DHCP, TFTP and HTTP servers ask it and only move bytes. It never does I/O
// beyond reading the registry's own files (loaders present, image manifest).
package boot

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/wire"
)

// Loader file names, looked up in the TFTP root and served over TFTP and at
// wire.PathLoaders over HTTP. `make loaders` stages them from Debian's ipxe
// and pxelinux packages.
const (
	LoaderBIOS     = "undionly.kpxe"
	LoaderUEFI64   = "ipxe.efi"
	LoaderSNP64    = "snponly.efi"
	LoaderARM64    = "ipxe-arm64.efi"
	LoaderPXELinux = "pxelinux.0"
)

// Client is what a DHCP request tells about the firmware that sent it.
type Client struct {
	MAC        net.HardwareAddr
	Arch       iana.Arch // option 93; valid only if HasArch
	HasArch    bool
	IPXE       bool // user class (77) "iPXE": the loader is already running
	HTTPClient bool // vendor class (60) "HTTPClient...": UEFI HTTP boot
	PXEClient  bool // vendor class (60) "PXEClient...": firmware PXE
	Init       bool // vendor class wire.VendorClassInit: the target's init helper
}

// ClientFromRequest reads the client's kind from its request.
func ClientFromRequest(req *dhcpv4.DHCPv4) Client {
	c := Client{MAC: req.ClientHWAddr}
	if archs := req.ClientArch(); len(archs) > 0 {
		c.Arch, c.HasArch = archs[0], true
	}
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			c.IPXE = true
		}
	}
	// iPXE also sends its build information in option 175; the user class
	// is what chainloading setups rely on, so it is the one we trust.
	vc := req.ClassIdentifier()
	c.HTTPClient = strings.HasPrefix(vc, "HTTPClient")
	c.PXEClient = strings.HasPrefix(vc, "PXEClient")
	c.Init = vc == wire.VendorClassInit
	return c
}

// ArchInit is the ArchName of the init helper's requests.
const ArchInit = "livebootp-init"

// ArchName is a short name for logs and the status page.
func (c Client) ArchName() string {
	if c.Init {
		return ArchInit
	}
	var base string
	switch {
	case !c.HasArch && !c.PXEClient && !c.HTTPClient:
		base = "dhcp"
	case !c.HasArch || c.Arch == iana.INTEL_X86PC:
		base = "bios"
	case c.Arch == iana.EFI_X86_64 || c.Arch == iana.EFI_BC || c.Arch == iana.EFI_X86_64_HTTP || c.Arch == iana.EFI_BC_HTTP:
		base = "uefi-x64"
	case c.Arch == iana.EFI_ARM64 || c.Arch == iana.EFI_ARM64_HTTP:
		base = "uefi-arm64"
	case c.Arch == iana.EFI_IA32 || c.Arch == iana.EFI_X86_HTTP:
		base = "uefi-ia32"
	case c.Arch == iana.UBOOT_ARM64 || c.Arch == iana.UBOOT_ARM32:
		base = "u-boot"
	default:
		base = "arch-" + strconv.Itoa(int(c.Arch))
	}
	switch {
	case c.IPXE:
		return "ipxe-" + base
	case c.HTTPClient:
		return "http-" + base
	}
	return base
}

// Booter picks loaders from the files present under Root (the TFTP root).
type Booter struct {
	Root string
}

func (b Booter) has(name string) bool {
	fi, err := os.Stat(filepath.Join(b.Root, name))
	return err == nil && fi.Mode().IsRegular()
}

// BootFile returns the boot file for a client: a TFTP path relative to the
// TFTP root, or (isURL) an HTTP URL for iPXE and UEFI HTTP boot clients.
// An empty file means there is nothing this client can boot: the DHCP
// server then answers without boot information.
func (b Booter) BootFile(cfg *config.Config, h *config.Host, c Client) (file string, isURL bool) {
	if c.Init {
		return "", false // the kernel is already running
	}
	if c.IPXE {
		return ScriptURL(cfg, c.MAC), true
	}
	uefi64 := ""
	for _, n := range []string{LoaderUEFI64, LoaderSNP64} {
		if b.has(n) {
			uefi64 = n
			break
		}
	}
	arm64 := ""
	if b.has(LoaderARM64) {
		arm64 = LoaderARM64
	}
	if c.HTTPClient {
		// UEFI HTTP boot loads one EFI binary and cannot hand an initrd to a
		// kernel, so it gets iPXE, which asks again as an iPXE client.
		name := uefi64
		if c.HasArch && (c.Arch == iana.EFI_ARM64_HTTP || c.Arch == iana.EFI_ARM64) {
			name = arm64
		}
		if name == "" {
			return "", false
		}
		return BaseURL(cfg) + wire.PathLoaders + name, true
	}
	if !c.HasArch {
		// Plain BOOTP and DHCP clients without option 93 (old BIOS PXE
		// stacks, pxelinux, U-Boot without it): the BIOS loader if present.
		for _, n := range []string{LoaderBIOS, LoaderPXELinux} {
			if b.has(n) {
				return n, false
			}
		}
		return "", false
	}
	switch c.Arch {
	case iana.INTEL_X86PC:
		for _, n := range []string{LoaderBIOS, LoaderPXELinux} {
			if b.has(n) {
				return n, false
			}
		}
	case iana.EFI_X86_64, iana.EFI_BC:
		return uefi64, false
	case iana.EFI_ARM64:
		return arm64, false
	case iana.UBOOT_ARM32, iana.UBOOT_ARM64:
		// U-Boot's `pxe get` reads pxelinux.cfg/01-<mac> itself; the file
		// name only has to be present.
		return LoaderPXELinux, false
	}
	return "", false
}

// BaseURL is the registry's HTTP base URL as targets reach it, without a
// trailing slash.
func BaseURL(cfg *config.Config) string {
	if u := strings.TrimRight(cfg.Registry.HTTPURL, "/"); u != "" {
		return u
	}
	host := cfg.Registry.ServerAddress.String()
	_, port, err := net.SplitHostPort(cfg.Registry.HTTPListen)
	if err == nil && port != "" && port != strconv.Itoa(wire.DefaultHTTPPort) {
		return "http://" + net.JoinHostPort(host, port)
	}
	return "http://" + host
}

// MACString is the canonical form of a MAC in paths: lower case, colons.
func MACString(mac net.HardwareAddr) string {
	return strings.ToLower(mac.String())
}

// ScriptURL is where an iPXE client finds its boot script.
func ScriptURL(cfg *config.Config, mac net.HardwareAddr) string {
	return BaseURL(cfg) + wire.PathBoot + MACString(mac) + ".ipxe"
}

// ImageURL is the HTTP URL of one file of a host's image.
func ImageURL(cfg *config.Config, h *config.Host, file string) string {
	return BaseURL(cfg) + wire.PathImages + path.Join(h.Image, file)
}

// ImageChecks reads the squashfs's sha256 and dm-verity root hash from the
// image's manifest; "" for each the manifest lacks, or when it is missing
// (the init helper then says what it could not check in its report).
func ImageChecks(cfg *config.Config, h *config.Host) (sha256, verityRoot string) {
	data, err := os.ReadFile(filepath.Join(cfg.Registry.ImagesDir, filepath.FromSlash(h.Image), wire.ImageManifest))
	if err != nil {
		return "", ""
	}
	var m wire.Manifest
	if json.Unmarshal(data, &m) != nil {
		return "", ""
	}
	if m.Verity != nil {
		verityRoot = m.Verity.RootHash
	}
	return m.Files[wire.ImageSquashfs].SHA256, verityRoot
}

// KernelArgs are the arguments every boot of the host gets: the contract of
// wire.Arg*, then the host's own cmdline-append last so it can override.
func KernelArgs(cfg *config.Config, h *config.Host) string {
	args := []string{
		wire.ArgRegistry + "=" + BaseURL(cfg),
		wire.ArgImage + "=" + h.Image,
		wire.ArgSquashfs + "=" + ImageURL(cfg, h, wire.ImageSquashfs),
	}
	sum, root := ImageChecks(cfg, h)
	if sum != "" {
		args = append(args, wire.ArgSHA256+"="+sum)
	}
	if root != "" {
		args = append(args, wire.ArgVerity+"="+root)
	}
	args = append(args, wire.ArgHostname+"="+h.Name)
	if h.CmdlineAppend != "" {
		args = append(args, h.CmdlineAppend)
	}
	return strings.Join(args, " ")
}

// IPXEScript is the boot script of a known host. Kernel and initrd load
// over HTTP (several times faster than TFTP in iPXE). The initrd= argument
// is what iPXE builds of 2019 need to hand the initrd to an EFI-stub kernel;
// BIOS kernels ignore it. A failed fetch retries instead of dropping the
// machine to the firmware's next boot device.
func IPXEScript(cfg *config.Config, h *config.Host) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#!ipxe\n# livebootp: %s (%s) image %s\n", h.Name, MACString(h.MAC), h.Image)
	fmt.Fprintf(&b, "set tries:int32 0\n:retry\n")
	fmt.Fprintf(&b, "echo livebootp: booting %s image %s\n", h.Name, h.Image)
	fmt.Fprintf(&b, "kernel %s initrd=%s %s || goto failed\n", ImageURL(cfg, h, wire.ImageKernel), wire.ImageInitrd, KernelArgs(cfg, h))
	fmt.Fprintf(&b, "initrd --name %s %s || goto failed\n", wire.ImageInitrd, ImageURL(cfg, h, wire.ImageInitrd))
	fmt.Fprintf(&b, "boot || goto failed\n")
	fmt.Fprintf(&b, ":failed\ninc tries\necho livebootp: boot of %s failed (try ${tries}); check the registry at %s; retrying in 10 s\n", h.Name, BaseURL(cfg))
	fmt.Fprintf(&b, "imgfree\nsleep 10\ngoto retry\n")
	return b.String()
}

// PXELinuxPath is the TFTP path of a host's pxelinux configuration.
func PXELinuxPath(mac net.HardwareAddr) string {
	return "pxelinux.cfg/01-" + strings.ReplaceAll(MACString(mac), ":", "-")
}

// PXELinuxConfig is the pxelinux/U-Boot configuration of a known host, for
// clients that speak only TFTP. Paths are relative to the TFTP root, where
// the registry mounts the images directory at images/.
func PXELinuxConfig(cfg *config.Config, h *config.Host) string {
	dir := path.Join("images", h.Image)
	return fmt.Sprintf("# livebootp: %s (%s)\nDEFAULT livebootp\nPROMPT 0\nLABEL livebootp\n  KERNEL %s\n  INITRD %s\n  APPEND %s\n",
		h.Name, MACString(h.MAC), path.Join(dir, wire.ImageKernel), path.Join(dir, wire.ImageInitrd), KernelArgs(cfg, h))
}

// ParseMAC accepts 52:54:00:12:34:56, 52-54-00-12-34-56, 525400123456 and
// pxelinux's 01-52-54-00-12-34-56 (ARP type 1 prefix).
func ParseMAC(s string) (net.HardwareAddr, error) {
	t := strings.ToLower(s)
	if len(t) == 20 && strings.HasPrefix(t, "01-") {
		t = t[3:]
	}
	if len(t) == 12 && !strings.ContainsAny(t, ":-") {
		var b strings.Builder
		for i := 0; i < 12; i += 2 {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(t[i : i+2])
		}
		t = b.String()
	}
	mac, err := net.ParseMAC(strings.ReplaceAll(t, "-", ":"))
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("%q is not an Ethernet MAC address (want 52:54:00:12:34:56)", s)
	}
	return mac, nil
}
