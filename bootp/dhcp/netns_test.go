//go:build linux

package dhcp

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vishvananda/netns"
)

// testNet is two network namespaces joined by a veth pair: the server side
// holds 10.83.0.1/16, the client side starts without an address and with
// the MAC address of the test host.
type testNet struct {
	srvNS, cliNS, srvIf, cliIf string
}

func newTestNet(t *testing.T, tag string) *testNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and a veth pair")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	pid := os.Getpid()
	n := &testNet{
		srvNS: fmt.Sprintf("lbdhcp-%d-%s-srv", pid, tag), cliNS: fmt.Sprintf("lbdhcp-%d-%s-cli", pid, tag),
		srvIf: fmt.Sprintf("ld%d%ss", pid, tag[:1]), cliIf: fmt.Sprintf("ld%d%sc", pid, tag[:1]),
	}
	ipCmd(t, "netns", "add", n.srvNS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.srvNS).Run() })
	ipCmd(t, "netns", "add", n.cliNS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.cliNS).Run() })
	ipCmd(t, "-n", n.srvNS, "link", "add", n.srvIf, "type", "veth", "peer", "name", n.cliIf, "netns", n.cliNS)
	ipCmd(t, "-n", n.cliNS, "link", "set", n.cliIf, "address", webMAC.String())
	ipCmd(t, "-n", n.srvNS, "addr", "add", "10.83.0.1/16", "dev", n.srvIf)
	for _, ns := range []struct{ ns, dev string }{{n.srvNS, n.srvIf}, {n.cliNS, n.cliIf}, {n.srvNS, "lo"}, {n.cliNS, "lo"}} {
		ipCmd(t, "-n", ns.ns, "link", "set", ns.dev, "up")
	}
	return n
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// inNetns runs fn on an OS thread switched into namespace name. The thread
// is never unlocked, so it exits with the goroutine instead of carrying the
// namespace into other goroutines. Sockets fn opens stay in the namespace.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.GetFromName(name)
		if err != nil {
			errc <- fmt.Errorf("netns %s: %w", name, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("entering netns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// serveInNetns starts env's handler on Listen(srvIf, ":67") inside the
// server namespace.
func serveInNetns(t *testing.T, env *testEnv, n *testNet) {
	t.Helper()
	var conn net.PacketConn
	if err := inNetns(n.srvNS, func() (err error) {
		conn, err = Listen(n.srvIf, "0.0.0.0:67")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- env.h.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		conn.Close()
	})
}

// TestUdhcpcNetns: busybox udhcpc, a real DHCP client, gets the host's fixed
// address, host name, router, DNS servers, domain and lease from Serve.
func TestUdhcpcNetns(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs busybox (Debian: busybox-static) for udhcpc")
	}
	n := newTestNet(t, "udhcpc")
	env := newEnv(t, nil)
	serveInNetns(t, env, n)

	dir := t.TempDir()
	out := filepath.Join(dir, "lease.env")
	script := filepath.Join(dir, "script.sh")
	// udhcpc hands the lease to its script in environment variables; keep
	// them, configure nothing.
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncase \"$1\" in bound|renew) env > "+out+".tmp && mv "+out+".tmp "+out+" ;; esac\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.cliNS, busybox, "udhcpc",
		"-i", n.cliIf, "-n", "-q", "-f", "-s", script, "-t", "5", "-T", "1", "-A", "1")
	if msgs, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("udhcpc: %v\n%s\nserver log:\n%s", err, msgs, env.logs)
	}
	lease := readEnv(t, out)
	t.Logf("udhcpc lease: ip=%s hostname=%s boot_file=%s", lease["ip"], lease["hostname"], lease["boot_file"])
	want := map[string]string{
		"ip":       "10.83.1.10",
		"subnet":   "255.255.0.0",
		"router":   "10.83.0.254",
		"dns":      "10.83.0.53 10.83.0.54",
		"hostname": "my-nginx-web-server",
		"domain":   "lab.example",
		"lease":    "7200",
		"serverid": "10.83.0.1",
		"siaddr":   "10.83.0.1",
	}
	for k, v := range want {
		if got := strings.TrimSpace(lease[k]); got != v {
			t.Errorf("udhcpc %s=%q, want %q", k, got, v)
		}
	}
	if lease["boot_file"] == "" {
		t.Errorf("udhcpc got no boot file (env: %v)", lease)
	}
	if last := lastDHCP(env, webMAC); last != "REQUEST→ACK" {
		t.Errorf("tracker's last exchange %q, want REQUEST→ACK", last)
	}
}

func readEnv(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatalf("udhcpc script output: %v", err)
	}
	defer f.Close()
	m := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), "="); ok {
			m[k] = v
		}
	}
	return m
}

// TestBOOTPNetns sends a plain BOOTP request (no option 53) from a client
// without an address, by broadcast over the veth pair, and expects the
// BOOTREPLY by broadcast.
func TestBOOTPNetns(t *testing.T) {
	n := newTestNet(t, "bootp")
	env := newEnv(t, nil)
	serveInNetns(t, env, n)

	var conn net.PacketConn
	if err := inNetns(n.cliNS, func() (err error) {
		conn, err = Listen(n.cliIf, "0.0.0.0:68")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := mustPacket(t, dhcpv4.WithBroadcast(false))
	req.Options = dhcpv4.Options{} // a BOOTP vendor area: cookie and End only
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: ServerPort}
	buf := make([]byte, 1500)
	var reply *dhcpv4.DHCPv4
	for try := 0; try < 5 && reply == nil; try++ {
		if _, err := conn.WriteTo(req.ToBytes(), bcast); err != nil {
			t.Fatalf("sending BOOTP request: %v", err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		for reply == nil {
			k, _, err := conn.ReadFrom(buf)
			if err != nil {
				break
			}
			if r, err := dhcpv4.FromBytes(buf[:k]); err == nil && r.TransactionID == req.TransactionID && r.OpCode == dhcpv4.OpcodeBootReply {
				reply = r
				if k != bootpMax {
					t.Errorf("BOOTREPLY is %d bytes, want %d", k, bootpMax)
				}
			}
		}
	}
	if reply == nil {
		t.Fatalf("no BOOTREPLY; server log:\n%s", env.logs)
	}
	if reply.MessageType() != dhcpv4.MessageTypeNone || reply.YourIPAddr.String() != "10.83.1.10" ||
		reply.ServerIPAddr.String() != "10.83.0.1" || reply.BootFileName == "" || reply.HostName() != "my-nginx-web-server" {
		t.Errorf("BOOTREPLY:\n%s", reply.Summary())
	}
}
