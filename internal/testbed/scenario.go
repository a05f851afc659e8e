package testbed

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/livebootp/livebootp/bootp/registry"
	"github.com/livebootp/livebootp/wire"
)

// Scenario is one registry in a fresh namespace with one configured host,
// ready to PXE-boot a qemu guest: what the VM tests and `make demo` share.
type Scenario struct {
	Repo     string // module root
	Dir      string // scratch directory; everything is written under it
	Binary   string // livebootp binary
	Kernel   string // kernel the guest boots
	Initrd   string // initrd the guest boots ("" builds the vminit one)
	Loaders  string // directory with undionly.kpxe, ipxe.efi, ... ("" for none)
	NetName  string // namespace name
	Server   netip.Prefix
	HostName string
	MAC      string
	HostIP   netip.Addr
	Cmdline  string // the host's cmdline-append
	// ImagesDir, when set, is a registry images directory built beforehand
	// (livebootp image build) and Image the NAME/VERSION to boot from it;
	// otherwise Kernel and Initrd become the image vmtest/1.
	ImagesDir string
	Image     string
	Keys      string // the host's authorized_keys file content
	// RouterAdvertisements turns the registry's RA responder on.
	RouterAdvertisements bool
	RegistryLog          io.Writer // the registry's log (stderr); nil: Dir/registry.log only
	MemoryMB             int       // guest RAM; 0 is StartVM's default

	Net     *Net
	Config  string // path of the written config.yml
	Socket  string // admin socket
	regCmd  *exec.Cmd
	regDone chan error
	logFile *os.File
}

// Setup writes the image, key and config files and creates the namespace.
func (s *Scenario) Setup() error {
	keys := filepath.Join(s.Dir, "keys")
	tftpRoot := filepath.Join(s.Dir, "tftpboot")
	for _, d := range []string{keys, tftpRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if s.ImagesDir == "" {
		if err := s.writeTestImage(); err != nil {
			return err
		}
	}
	if s.Loaders != "" {
		ents, err := os.ReadDir(s.Loaders)
		if err != nil {
			return fmt.Errorf("testbed: loaders: %w (run make loaders)", err)
		}
		for _, e := range ents {
			if e.Type().IsRegular() {
				if err := copyFile(filepath.Join(s.Loaders, e.Name()), filepath.Join(tftpRoot, e.Name())); err != nil {
					return err
				}
			}
		}
	}
	if s.Keys == "" {
		s.Keys = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3RrZXl0ZXN0a2V5dGVzdGtleXRlc3RrZXl0ZXN0 vmtest\n"
	}
	if err := s.SetKeys(s.Keys); err != nil {
		return err
	}
	s.Socket = filepath.Join(s.Dir, "admin.sock")
	s.Config = filepath.Join(s.Dir, "config.yml")
	cfg := fmt.Sprintf(`# written by internal/testbed for a VM boot
bootp-registry:
  interface: br0
  server-address: %s
  subnet: %s
  routers: [%s]
  domain-name: vmtest.internal
  domain-name-servers: [%s]
  tftp-root: %s
  images-dir: %s
  ssh-authorized-keys-dir: %s
  http-listen: ":8080"
  admin-socket: %s
  router-advertisements: %t
hosts:
  %s:
    hardware-ethernet: "%s"
    fixed-address: "%s"
    image-name: %s
    ssh-authorized-keys: default
    cmdline-append: "%s"
`, s.Server.Addr(), s.Server.Masked(), s.Server.Addr(), s.Server.Addr(), tftpRoot, s.ImagesDir, keys,
		s.Socket, s.RouterAdvertisements, s.HostName, s.MAC, s.HostIP, s.Image, s.Cmdline)
	if err := os.WriteFile(s.Config, []byte(cfg), 0o644); err != nil {
		return err
	}
	n, err := NewNet(s.NetName, s.Server)
	if err != nil {
		return err
	}
	s.Net = n
	return n.AddTap("tap0")
}

// writeTestImage makes the image vmtest/1 from Kernel and Initrd (the
// vminit initrd when Initrd is empty).
func (s *Scenario) writeTestImage() error {
	s.ImagesDir, s.Image = filepath.Join(s.Dir, "images"), "vmtest/1"
	images := filepath.Join(s.ImagesDir, "vmtest", "1")
	if err := os.MkdirAll(images, 0o755); err != nil {
		return err
	}
	if err := copyFile(s.Kernel, filepath.Join(images, wire.ImageKernel)); err != nil {
		return fmt.Errorf("testbed: kernel: %w (run make kernel)", err)
	}
	initrd := filepath.Join(images, wire.ImageInitrd)
	if s.Initrd != "" {
		return copyFile(s.Initrd, initrd)
	}
	return BuildVMInitrd(s.Repo, initrd)
}

// SetKeys replaces the host's authorized_keys file on the registry.
func (s *Scenario) SetKeys(content string) error {
	s.Keys = content
	return os.WriteFile(filepath.Join(s.Dir, "keys", "default"), []byte(content), 0o644)
}

// StartRegistry runs `livebootp serve` inside the namespace and waits until
// its admin socket answers.
func (s *Scenario) StartRegistry(ctx context.Context) error {
	f, err := os.OpenFile(filepath.Join(s.Dir, "registry.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	s.logFile = f
	var out io.Writer = f
	if s.RegistryLog != nil {
		out = io.MultiWriter(f, s.RegistryLog)
	}
	cmd := s.Net.Command(context.Background(), s.Binary, "serve", "-debug", "-config", s.Config)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return err
	}
	s.regCmd = cmd
	s.regDone = make(chan error, 1)
	go func() { s.regDone <- cmd.Wait() }()
	c := registry.Client{Socket: s.Socket}
	for i := 0; i < 100; i++ {
		if _, err := c.Status(); err == nil {
			return nil
		}
		select {
		case err := <-s.regDone:
			return fmt.Errorf("testbed: registry exited: %v; log:\n%s", err, s.RegistryLogText())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("testbed: registry admin socket %s did not answer in 10 s; log:\n%s", s.Socket, s.RegistryLogText())
}

// StopRegistry kills the registry by PID.
func (s *Scenario) StopRegistry() {
	if s.regCmd != nil && s.regCmd.Process != nil {
		_ = s.regCmd.Process.Kill()
		select {
		case <-s.regDone:
		case <-time.After(5 * time.Second):
		}
		s.regCmd = nil
	}
}

// RegistryLogText is what the registry logged so far.
func (s *Scenario) RegistryLogText() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "registry.log"))
	return string(b)
}

// RegistryLogTail is the registry log's last n lines.
func (s *Scenario) RegistryLogTail(n int) string { return Tail(s.RegistryLogText(), n) }

// Tail is the last n lines of text.
func Tail(text string, n int) string {
	l := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// Boot starts the guest, PXE-booting through qemu's built-in iPXE ROM,
// with the given raw disk images attached as virtio disks.
func (s *Scenario) Boot(ctx context.Context, console io.Writer, disks ...string) (*VM, error) {
	return StartVM(ctx, VMOptions{Net: s.Net, Tap: "tap0", MAC: s.MAC, MemoryMB: s.MemoryMB, Console: console, Dir: s.Dir, Disks: disks})
}

// BootUEFI starts the guest under OVMF with no iPXE option ROM on its NIC,
// so the firmware's own PXE client (TFTP) boots: the path real UEFI
// machines take.
func (s *Scenario) BootUEFI(ctx context.Context, console io.Writer) (*VM, error) {
	return StartVM(ctx, VMOptions{Net: s.Net, Tap: "tap0", MAC: s.MAC, MemoryMB: s.MemoryMB, Console: console, Dir: s.Dir, UEFI: true, NICROM: "none"})
}

// Close stops the registry and deletes the namespace.
func (s *Scenario) Close() {
	s.StopRegistry()
	if s.logFile != nil {
		s.logFile.Close()
	}
	if s.Net != nil {
		_ = s.Net.Close()
	}
}

// Client talks to the scenario's registry.
func (s *Scenario) Client() registry.Client { return registry.Client{Socket: s.Socket} }

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// Tools reports which of the named programs are missing from PATH.
func Missing(tools ...string) []string {
	var miss []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			miss = append(miss, t)
		}
	}
	return miss
}

// KernelPath finds the test kernel: $LIVEBOOTP_KERNEL, else
// build/kernel/vmlinuz under the module root.
func KernelPath(repo string) string {
	if k := os.Getenv("LIVEBOOTP_KERNEL"); k != "" {
		return k
	}
	return filepath.Join(repo, "build", "kernel", "vmlinuz")
}

// Uniq is a short per-process tag for namespace names.
func Uniq(tag string) string {
	s := fmt.Sprintf("lb%s%d", tag, os.Getpid())
	return strings.ToLower(s)
}

// Signal sends sig to the registry process.
func (s *Scenario) Signal(sig os.Signal) error {
	if s.regCmd == nil || s.regCmd.Process == nil {
		return fmt.Errorf("testbed: registry not running")
	}
	return s.regCmd.Process.Signal(sig)
}
