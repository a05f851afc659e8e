package boot

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/wire"
)

func testConfig(t *testing.T, httpListen string) (*config.Config, *config.Host) {
	t.Helper()
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	h := &config.Host{Name: "web1", MAC: mac, Address: netip.MustParseAddr("10.0.0.10"), Image: "nginx/1.0", SSHAuthorizedKeys: "default", CmdlineAppend: "debug console=ttyS0"}
	images := t.TempDir()
	cfg, err := config.New(config.Registry{
		ServerAddress: netip.MustParseAddr("10.0.0.1"), Subnet: netip.MustParsePrefix("10.0.0.0/24"),
		HTTPListen: httpListen, ImagesDir: images, TFTPRoot: t.TempDir(),
	}, []*config.Host{h})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, h
}

func TestBootFile(t *testing.T) {
	cfg, h := testConfig(t, ":8080")
	root := t.TempDir()
	b := Booter{Root: root}
	for _, n := range []string{LoaderBIOS, LoaderUEFI64, LoaderSNP64} {
		if err := os.WriteFile(filepath.Join(root, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		c     Client
		file  string
		isURL bool
		arch  string
	}{
		{"bios", Client{HasArch: true, Arch: iana.INTEL_X86PC, PXEClient: true}, LoaderBIOS, false, "bios"},
		{"uefi x64", Client{HasArch: true, Arch: iana.EFI_X86_64, PXEClient: true}, LoaderUEFI64, false, "uefi-x64"},
		{"uefi bc", Client{HasArch: true, Arch: iana.EFI_BC}, LoaderUEFI64, false, "uefi-x64"},
		{"arm64 without its loader", Client{HasArch: true, Arch: iana.EFI_ARM64}, "", false, "uefi-arm64"},
		{"ipxe", Client{HasArch: true, Arch: iana.INTEL_X86PC, IPXE: true}, "http://10.0.0.1:8080/boot/52:54:00:12:34:56.ipxe", true, "ipxe-bios"},
		{"ipxe efi", Client{HasArch: true, Arch: iana.EFI_X86_64, IPXE: true}, "http://10.0.0.1:8080/boot/52:54:00:12:34:56.ipxe", true, "ipxe-uefi-x64"},
		{"uefi http boot", Client{HasArch: true, Arch: iana.EFI_X86_64_HTTP, HTTPClient: true}, "http://10.0.0.1:8080/loaders/ipxe.efi", true, "http-uefi-x64"},
		{"plain bootp", Client{}, LoaderBIOS, false, "dhcp"},
		{"u-boot", Client{HasArch: true, Arch: iana.UBOOT_ARM64}, LoaderPXELinux, false, "u-boot"},
		{"ia32 unsupported", Client{HasArch: true, Arch: iana.EFI_IA32}, "", false, "uefi-ia32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.MAC = h.MAC
			file, isURL := b.BootFile(cfg, h, tc.c)
			if file != tc.file || isURL != tc.isURL {
				t.Errorf("BootFile = %q, %v; want %q, %v", file, isURL, tc.file, tc.isURL)
			}
			if got := tc.c.ArchName(); got != tc.arch {
				t.Errorf("ArchName = %q, want %q", got, tc.arch)
			}
		})
	}
	// The arm64 loader is offered once it is present.
	if err := os.WriteFile(filepath.Join(root, LoaderARM64), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if f, _ := b.BootFile(cfg, h, Client{HasArch: true, Arch: iana.EFI_ARM64}); f != LoaderARM64 {
		t.Errorf("arm64 with its loader: %q", f)
	}
	// Without ipxe.efi, snponly.efi serves UEFI x64.
	os.Remove(filepath.Join(root, LoaderUEFI64))
	if f, _ := b.BootFile(cfg, h, Client{HasArch: true, Arch: iana.EFI_X86_64}); f != LoaderSNP64 {
		t.Errorf("uefi without ipxe.efi: %q", f)
	}
}

func TestClientFromRequest(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:12:34:56")
	req, err := dhcpv4.NewDiscovery(mac,
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")))
	if err != nil {
		t.Fatal(err)
	}
	c := ClientFromRequest(req)
	if !c.HasArch || c.Arch != iana.EFI_X86_64 || !c.IPXE || !c.PXEClient || c.HTTPClient || c.MAC.String() != mac.String() {
		t.Errorf("ClientFromRequest = %+v", c)
	}
}

func TestScripts(t *testing.T) {
	cfg, h := testConfig(t, ":80")
	dir := filepath.Join(cfg.Registry.ImagesDir, "nginx", "1.0")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, wire.ImageManifest), []byte(`{"files":{"filesystem.squashfs":{"size":3,"sha256":"abc123"}},"verity":{"root_hash":"def456","hash_offset":4096}}`), 0o644)

	args := KernelArgs(cfg, h)
	want := "livebootp.registry=http://10.0.0.1 livebootp.image=nginx/1.0 livebootp.squashfs=http://10.0.0.1/images/nginx/1.0/filesystem.squashfs livebootp.sha256=abc123 livebootp.verity=def456 livebootp.hostname=web1 debug console=ttyS0"
	if args != want {
		t.Errorf("KernelArgs =\n %q\nwant\n %q", args, want)
	}
	s := IPXEScript(cfg, h)
	for _, w := range []string{"#!ipxe\n", "kernel http://10.0.0.1/images/nginx/1.0/vmlinuz initrd=initrd.img " + want + " || goto failed\n",
		"initrd --name initrd.img http://10.0.0.1/images/nginx/1.0/initrd.img || goto failed\n", "boot || goto failed\n", "goto retry\n"} {
		if !strings.Contains(s, w) {
			t.Errorf("iPXE script lacks %q:\n%s", w, s)
		}
	}
	p := PXELinuxConfig(cfg, h)
	for _, w := range []string{"KERNEL images/nginx/1.0/vmlinuz\n", "INITRD images/nginx/1.0/initrd.img\n", "APPEND " + want + "\n"} {
		if !strings.Contains(p, w) {
			t.Errorf("pxelinux config lacks %q:\n%s", w, p)
		}
	}
	if got := PXELinuxPath(h.MAC); got != "pxelinux.cfg/01-52-54-00-12-34-56" {
		t.Errorf("PXELinuxPath = %q", got)
	}
	// No manifest: no checksum argument, rather than a wrong one.
	os.Remove(filepath.Join(dir, wire.ImageManifest))
	if strings.Contains(KernelArgs(cfg, h), wire.ArgSHA256) {
		t.Error("sha256 argument without a manifest")
	}
}

func TestParseMAC(t *testing.T) {
	for _, in := range []string{"52:54:00:12:34:56", "52-54-00-12-34-56", "525400123456", "01-52-54-00-12-34-56", "52:54:00:12:34:56"} {
		m, err := ParseMAC(in)
		if err != nil || m.String() != "52:54:00:12:34:56" {
			t.Errorf("ParseMAC(%q) = %v, %v", in, m, err)
		}
	}
	for _, in := range []string{"", "52:54:00:12:34", "zz:54:00:12:34:56", "00:00:00:00:00:00:00:00", "../../etc"} {
		if _, err := ParseMAC(in); err == nil {
			t.Errorf("ParseMAC(%q) accepted", in)
		}
	}
}
