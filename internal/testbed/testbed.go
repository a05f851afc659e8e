// Package testbed builds the throwaway networks and VMs that the VM tests
// and `make demo` boot: a network namespace holding a bridge with the
// registry's address and tap devices for qemu guests, and qemu (TCG only)
// with its serial console captured line by line.
//
// It only ever creates namespaces it names itself and tears them down by
// name; processes it starts are killed by PID. Nothing it sets up sends
// traffic outside its namespace.
package testbed

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Net is a network namespace with a bridge that holds the server's address.
type Net struct {
	Name   string       // namespace name
	Bridge string       // bridge inside it
	Server netip.Prefix // the bridge's address, e.g. 10.80.0.1/24
}

// NewNet creates namespace name with bridge br0 addressed server.
func NewNet(name string, server netip.Prefix) (*Net, error) {
	n := &Net{Name: name, Bridge: "br0", Server: server}
	_ = exec.Command("ip", "netns", "del", name).Run() // a leftover of a killed run
	steps := [][]string{
		{"ip", "netns", "add", name},
		{"ip", "-n", name, "link", "set", "lo", "up"},
		{"ip", "-n", name, "link", "add", n.Bridge, "type", "bridge", "forward_delay", "0"},
		{"ip", "-n", name, "addr", "add", server.String(), "dev", n.Bridge},
		{"ip", "-n", name, "link", "set", n.Bridge, "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			n.Close()
			return nil, fmt.Errorf("testbed: %s: %v: %s", strings.Join(s, " "), err, bytes.TrimSpace(out))
		}
	}
	return n, nil
}

// AddTap adds a tap device on the bridge for a qemu guest.
func (n *Net) AddTap(tap string) error {
	for _, s := range [][]string{
		{"ip", "-n", n.Name, "tuntap", "add", "dev", tap, "mode", "tap"},
		{"ip", "-n", n.Name, "link", "set", tap, "master", n.Bridge},
		{"ip", "-n", n.Name, "link", "set", tap, "up"},
	} {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("testbed: %s: %v: %s", strings.Join(s, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// Command runs a program inside the namespace.
func (n *Net) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Close deletes the namespace and with it every device in it.
func (n *Net) Close() error {
	out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testbed: ip netns del %s: %v: %s", n.Name, err, bytes.TrimSpace(out))
	}
	return nil
}

// Console collects a VM's serial output and lets callers wait for a line.
type Console struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines []string
	tee   io.Writer
	wake  chan struct{}
	done  bool
	start time.Time
	times []time.Duration // when each line arrived, since start
}

func newConsole(tee io.Writer) *Console {
	return &Console{tee: tee, wake: make(chan struct{}), start: time.Now()}
}

func (c *Console) consume(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			clean := strings.TrimRight(strings.ReplaceAll(line, "\r", ""), "\n")
			c.mu.Lock()
			c.buf.WriteString(line)
			c.lines = append(c.lines, stripANSI(clean))
			c.times = append(c.times, time.Since(c.start))
			if c.tee != nil {
				fmt.Fprintln(c.tee, clean)
			}
			close(c.wake)
			c.wake = make(chan struct{})
			c.mu.Unlock()
		}
		if err != nil {
			c.mu.Lock()
			c.done = true
			close(c.wake)
			c.wake = make(chan struct{})
			c.mu.Unlock()
			return
		}
	}
}

// WaitFor waits until a console line contains want and returns that line
// and when it arrived (since the VM started).
func (c *Console) WaitFor(ctx context.Context, want string, timeout time.Duration) (string, time.Duration, error) {
	return c.WaitFrom(ctx, 0, want, timeout)
}

// Mark is the number of lines printed so far: pass it to WaitFrom to look
// only at what comes after, e.g. the output of a command typed with VM.Type.
func (c *Console) Mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}

// Since returns the lines printed after mark, joined by newlines.
func (c *Console) Since(mark int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if mark > len(c.lines) {
		return ""
	}
	return strings.Join(c.lines[mark:], "\n")
}

// WaitFrom is WaitFor looking only at lines from index mark on.
func (c *Console) WaitFrom(ctx context.Context, mark int, want string, timeout time.Duration) (string, time.Duration, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := mark
	for {
		c.mu.Lock()
		for ; seen < len(c.lines); seen++ {
			if strings.Contains(c.lines[seen], want) {
				l, t := c.lines[seen], c.times[seen]
				c.mu.Unlock()
				return l, t, nil
			}
		}
		done, wake := c.done, c.wake
		c.mu.Unlock()
		if done {
			return "", 0, fmt.Errorf("console closed before %q appeared; last lines:\n%s", want, c.Tail(30))
		}
		select {
		case <-wake:
		case <-deadline.C:
			return "", 0, fmt.Errorf("%q did not appear on the console within %s; last lines:\n%s", want, timeout, c.Tail(30))
		case <-ctx.Done():
			return "", 0, ctx.Err()
		}
	}
}

// Tail returns the last n console lines.
func (c *Console) Tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.lines
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// String is everything the console printed.
func (c *Console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func stripANSI(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// VMOptions describe a qemu guest.
type VMOptions struct {
	Net      *Net
	Tap      string
	MAC      string
	MemoryMB int
	UEFI     bool   // OVMF instead of SeaBIOS
	NICROM   string // "" keeps qemu's built-in iPXE ROM; "none" disables it
	Disks    []string
	// USBDisks are raw images attached as USB sticks (xHCI).
	USBDisks []string
	// DiskBoot boots from the first disk (or USB stick) instead of the
	// network: the appliance.
	DiskBoot bool
	Console  io.Writer // gets every console line as it arrives (demo)
	Extra    []string  // more qemu arguments
	Dir      string    // scratch dir (OVMF vars copy)
	// Arch is the guest's architecture: "" or "amd64" (q35), or "arm64"
	// (qemu's virt board with AAVMF, UEFI only).
	Arch string
}

// VM is a running qemu guest.
type VM struct {
	Console *Console
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	waitErr chan error
}

// Type sends text to the guest's serial console, as if typed on it.
func (vm *VM) Type(text string) error {
	_, err := io.WriteString(vm.stdin, text)
	return err
}

// StartVM boots a guest from the network inside the namespace. qemu runs
// with TCG: KVM is not used even where it exists, so runs are comparable.
func StartVM(ctx context.Context, o VMOptions) (*VM, error) {
	mem := o.MemoryMB
	if mem == 0 {
		mem = 512
	}
	qemu, machine := "qemu-system-x86_64", []string{"-machine", "q35"}
	if o.Arch == "arm64" {
		qemu, machine = "qemu-system-aarch64", []string{"-machine", "virt", "-cpu", "cortex-a57"}
	}
	args := append(machine,
		"-accel", "tcg", "-m", fmt.Sprint(mem), "-smp", "1",
		"-display", "none", "-vga", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
		"-netdev", "tap,id=n0,ifname="+o.Tap+",script=no,downscript=no",
	)
	nic := "virtio-net-pci,netdev=n0,mac=" + o.MAC
	if !o.DiskBoot {
		nic += ",bootindex=1"
	}
	if o.NICROM == "none" {
		nic += ",romfile="
	} else if o.NICROM != "" {
		nic += ",romfile=" + o.NICROM
	}
	args = append(args, "-device", nic)
	if o.UEFI || o.Arch == "arm64" {
		code, varsTemplate, pkg := "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd", "ovmf"
		if o.Arch == "arm64" {
			code, varsTemplate, pkg = "/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd", "qemu-efi-aarch64"
		}
		vars := filepath.Join(o.Dir, "VARS.fd")
		data, err := os.ReadFile(varsTemplate)
		if err != nil {
			return nil, fmt.Errorf("testbed: UEFI firmware (Debian package %s): %w", pkg, err)
		}
		if err := os.WriteFile(vars, data, 0o600); err != nil {
			return nil, err
		}
		args = append(args, "-drive", "if=pflash,format=raw,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,file="+vars)
	} else {
		// SeaBIOS copies what option ROMs (iPXE) print to the screen to
		// this serial port: the file holds the port number, little endian.
		port := filepath.Join(o.Dir, "sercon-port")
		if err := os.WriteFile(port, []byte{0xf8, 0x03}, 0o600); err != nil {
			return nil, err
		}
		args = append(args, "-fw_cfg", "name=etc/sercon-port,file="+port)
	}
	for i, d := range o.Disks {
		if o.DiskBoot && i == 0 {
			args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=d%d", d, i),
				"-device", fmt.Sprintf("virtio-blk-pci,drive=d%d,bootindex=0", i))
			continue
		}
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=virtio,index=%d", d, i))
	}
	if len(o.USBDisks) > 0 {
		args = append(args, "-device", "qemu-xhci,id=xhci")
	}
	for i, d := range o.USBDisks {
		dev := fmt.Sprintf("usb-storage,bus=xhci.0,drive=u%d", i)
		if o.DiskBoot && i == 0 && len(o.Disks) == 0 {
			dev += ",bootindex=0"
		}
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=u%d", d, i), "-device", dev)
	}
	args = append(args, o.Extra...)
	cmd := o.Net.Command(ctx, qemu, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	vm := &VM{Console: newConsole(o.Console), cmd: cmd, stdin: stdin, waitErr: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testbed: %s (Debian package qemu-system-x86 or qemu-system-arm): %w", qemu, err)
	}
	go vm.Console.consume(stdout)
	go func() {
		err := cmd.Wait()
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
		vm.waitErr <- err
	}()
	return vm, nil
}

// Wait waits for qemu to exit (the guest powered off) for at most timeout.
func (vm *VM) Wait(timeout time.Duration) error {
	select {
	case err := <-vm.waitErr:
		return err
	case <-time.After(timeout):
		return errors.New("qemu still running after " + timeout.String())
	}
}

// Kill stops qemu by PID (the `ip netns exec` wrapper execs it, so the PID is
// qemu's own).
func (vm *VM) Kill() {
	if vm.cmd.Process != nil {
		_ = vm.cmd.Process.Kill()
	}
}

// AddPeer creates a second namespace, name, joined to the bridge by a veth
// pair whose inner end (eth0) has the given MAC: a client host for real
// DHCP/TFTP/HTTP clients. Close the returned Net to delete it.
func (n *Net) AddPeer(name, mac string) (*Net, error) {
	_ = exec.Command("ip", "netns", "del", name).Run()
	p := &Net{Name: name}
	outer := "v" + name
	if len(outer) > 15 {
		outer = outer[:15]
	}
	steps := [][]string{
		{"ip", "netns", "add", name},
		{"ip", "-n", name, "link", "set", "lo", "up"},
		{"ip", "-n", n.Name, "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", name},
		{"ip", "-n", name, "link", "set", "eth0", "address", mac},
		{"ip", "-n", n.Name, "link", "set", outer, "master", n.Bridge},
		{"ip", "-n", n.Name, "link", "set", outer, "up"},
		{"ip", "-n", name, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			p.Close()
			return nil, fmt.Errorf("testbed: %s: %v: %s", strings.Join(s, " "), err, bytes.TrimSpace(out))
		}
	}
	return p, nil
}
