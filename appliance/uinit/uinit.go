// Package uinit is what the appliance runs once u-root's init has set up
// the root file system: it loads the kernel modules the image carries,
// mounts the data partition, applies the config's `appliance:` section
// (hostname, interfaces through netlink) and starts the registry under a
// supervisor in the background, then returns so init can give the console
// a shell.
//
// It must never block the console: every wait is bounded, and a missing
// data partition or a broken config is reported on the console with the
// way out, not retried forever. It never formats or repairs anything.
package uinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/livebootp/livebootp/appliance/login"
	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/startup/netconf"
)

// Well-known places on the appliance.
const (
	DataPartName = "livebootp-data" // GPT partition name of the data partition
	DataMount    = "/data"
	ConfigFile   = DataMount + "/config.yml"
	LogDir       = DataMount + "/logs"
	DefaultName  = "livebootp"
)

// Env is what the steps touch; tests point it at a temporary tree.
type Env struct {
	Root        string    // "/" on the appliance
	Out         io.Writer // the console
	Supervisor  []string  // argv that starts the supervisor (run detached)
	LoadModules func(root string, console io.Writer) error
	Mount       func(source, target, fstype string, flags uintptr, data string) error
	Netlink     *netlink.Handle
	// PartitionWait bounds the wait for the data partition (USB sticks
	// enumerate late).
	PartitionWait time.Duration

	dataDev   string
	appliance config.Appliance
}

// Step is one thing uinit does; a failing step is reported and the next
// one still runs unless Fatal.
type Step struct {
	Name  string
	Run   func(context.Context, *Env) error
	Fatal bool
	Hint  string
}

// Steps is the appliance's boot, in order.
func Steps() []Step {
	return []Step{
		{Name: "modules", Run: modules,
			Hint: "the kernel the image was built with (livebootp appliance build --kernel/--modules)"},
		{Name: "data", Run: mountData, Fatal: true,
			Hint: "the stick: a partition named " + DataPartName + " (FAT32) must exist; rebuild or re-flash the image"},
		{Name: "config", Run: readAppliance, Fatal: true,
			Hint: "fix " + ConfigFile + " (open the stick on a laptop, or `livebootp check -config " + ConfigFile + "`), then reboot"},
		{Name: "hostname", Run: setHostname},
		{Name: "network", Run: network,
			Hint: "the appliance: interfaces in " + ConfigFile + " and `ip link`"},
		{Name: "registry", Run: startSupervisor, Fatal: true},
	}
}

// Run walks the steps, printing one line per step on the console.
func Run(ctx context.Context, e *Env, steps []Step) error {
	for _, s := range steps {
		start := time.Now()
		err := s.Run(ctx, e)
		d := time.Since(start).Round(time.Millisecond)
		if err == nil {
			e.printf("%s: ok (%s)", s.Name, d)
			continue
		}
		msg := fmt.Sprintf("%s: FAILED: %v", s.Name, err)
		if s.Hint != "" {
			msg += "\n  check: " + s.Hint
		}
		e.printf("%s", msg)
		if s.Fatal {
			e.printf("the registry is not running; the shell below still works (livebootp check, dmesg, ip addr)")
			return err
		}
	}
	return nil
}

func (e *Env) printf(format string, args ...any) {
	fmt.Fprintf(e.Out, "livebootp-appliance: "+format+"\n", args...)
}

func (e *Env) path(p string) string { return filepath.Join(e.Root, p) }

func modules(_ context.Context, e *Env) error {
	if e.LoadModules == nil {
		return nil
	}
	return e.LoadModules(e.Root, e.Out)
}

// findPartition returns the /dev node of the block device whose GPT
// partition name is name, from the kernel's uevent files.
func findPartition(sysClassBlock, name string) (string, error) {
	ents, err := os.ReadDir(sysClassBlock)
	if err != nil {
		return "", err
	}
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join(sysClassBlock, ent.Name(), "uevent"))
		if err != nil {
			continue
		}
		var dev, part string
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, "=")
			switch k {
			case "DEVNAME":
				dev = v
			case "PARTNAME":
				part = v
			}
		}
		if part == name && dev != "" {
			return "/dev/" + dev, nil
		}
	}
	return "", os.ErrNotExist
}

func mountData(ctx context.Context, e *Env) error {
	wait := e.PartitionWait
	if wait == 0 {
		wait = 15 * time.Second
	}
	deadline := time.Now().Add(wait)
	var dev string
	for {
		var err error
		if dev, err = findPartition(e.path("sys/class/block"), DataPartName); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no partition named %s after %s (block devices: %s)", DataPartName, wait, blockDevices(e.path("sys/class/block")))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	e.dataDev = dev
	if err := os.MkdirAll(e.path(DataMount), 0o755); err != nil {
		return err
	}
	// flush: a stick pulled out loses as little as possible.
	if err := e.Mount(e.path(dev), e.path(DataMount), "vfat", unix.MS_NOATIME, "utf8,flush,umask=022"); err != nil {
		return fmt.Errorf("mount %s (vfat) on %s: %w", dev, DataMount, err)
	}
	e.printf("data: %s mounted on %s", dev, DataMount)
	return os.MkdirAll(e.path(LogDir), 0o755)
}

func blockDevices(dir string) string {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) == 0 {
		return "none: is the storage driver in the image?"
	}
	return strings.Join(names, " ")
}

func readAppliance(_ context.Context, e *Env) error {
	a, err := config.LoadAppliance(e.path(ConfigFile))
	if err != nil {
		return err
	}
	e.appliance = a
	pw := e.path(login.DefaultPasswordFile)
	if err := os.MkdirAll(filepath.Dir(pw), 0o700); err != nil {
		return err
	}
	if a.ConsolePassword == "" {
		e.printf("config: no console password (appliance.console-password): the console shell is open")
		return removeIfExists(pw)
	}
	return os.WriteFile(pw, []byte(a.ConsolePassword+"\n"), 0o600)
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func setHostname(_ context.Context, e *Env) error {
	name := e.appliance.Hostname
	if name == "" {
		name = DefaultName
	}
	if e.Root == "/" {
		if err := unix.Sethostname([]byte(name)); err != nil {
			return err
		}
	}
	return os.WriteFile(e.path("etc/hostname"), []byte(name+"\n"), 0o644)
}

// network applies appliance.interfaces: static addresses and routes, or a
// DHCP client. Without any, every Ethernet link is only set up, so a
// config that names server-address still finds its interface.
func network(ctx context.Context, e *Env) error {
	h := e.Netlink
	if lo, err := h.LinkByName("lo"); err == nil {
		_ = h.LinkSetUp(lo)
	}
	if len(e.appliance.Interfaces) == 0 {
		links, err := h.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Type() == "device" && l.Attrs().Name != "lo" {
				_ = h.LinkSetUp(l)
			}
		}
		e.printf("network: no appliance.interfaces in the config: links are up without addresses")
		return nil
	}
	var errs []error
	for _, ifc := range e.appliance.Interfaces {
		if err := configure(ctx, e, ifc); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s line %d): %w", ifc.Name, ConfigFile, ifc.Line, err))
		}
	}
	return errors.Join(errs...)
}

func configure(ctx context.Context, e *Env, ifc config.ApplianceInterface) error {
	h := e.Netlink
	link, err := h.LinkByName(ifc.Name)
	if err != nil {
		return fmt.Errorf("no such interface (have: %s)", linkNames(h))
	}
	if err := h.LinkSetUp(link); err != nil {
		return err
	}
	if ifc.DHCP {
		lease, err := netconf.DHCP(ctx, []string{ifc.Name}, 20*time.Second, func(string, ...any) {})
		if err != nil {
			return fmt.Errorf("DHCP: %w", err)
		}
		if err := netconf.Configure(h, lease); err != nil {
			return err
		}
		e.printf("network: %s", lease)
		return nil
	}
	// A static address is a lease that never ends: the same netlink
	// calls the targets' DHCP client makes.
	lease := &netconf.Lease{Iface: ifc.Name, Addr: *prefixIPNet(ifc.Address)}
	msg := fmt.Sprintf("%s %s", ifc.Name, ifc.Address)
	if ifc.Gateway.IsValid() {
		lease.Router = net.IP(ifc.Gateway.AsSlice())
		msg += " via " + ifc.Gateway.String()
	}
	if err := netconf.Configure(h, lease); err != nil {
		return err
	}
	e.printf("network: %s", msg)
	return nil
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

func linkNames(h *netlink.Handle) string {
	links, err := h.LinkList()
	if err != nil {
		return err.Error()
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return strings.Join(names, " ")
}

// startSupervisor starts the supervisor as its own session: u-root's init
// waits for uinit to return before it starts the console shell, so the
// registry must outlive this process.
func startSupervisor(_ context.Context, e *Env) error {
	if len(e.Supervisor) == 0 {
		return errors.New("no supervisor command")
	}
	// No stdio: init's console writer goes away with this process; the
	// supervisor opens the console itself.
	cmd := exec.Command(e.Supervisor[0], e.Supervisor[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	e.printf("registry: supervisor started (pid %d); logs in %s and `livebootp logs`", cmd.Process.Pid, LogDir)
	return cmd.Process.Release()
}
