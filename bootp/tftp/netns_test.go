//go:build linux

package tftp

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// inNetns runs fn on a thread inside the named network namespace; sockets fn opens stay there.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Left locked on failure to switch back: the thread then dies with this goroutine
		// instead of carrying the namespace into unrelated code.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", name))
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// netnsPair makes two namespaces joined by a veth pair, server side with addresses srvAddrs
// (first one primary), client side with cliAddr; all torn down in t.Cleanup.
func netnsPair(t *testing.T, tag string, srvAddrs []string, cliAddr string) (srvNS, cliNS string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	ip := needTool(t, "ip")
	id := fmt.Sprintf("%d%s", os.Getpid()%100000, tag)
	srvNS, cliNS = "lbtftp-s-"+id, "lbtftp-c-"+id
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %q: %v: %s", args, err, out)
		}
	}
	sh("netns", "add", srvNS)
	t.Cleanup(func() { exec.Command(ip, "netns", "del", srvNS).Run() })
	sh("netns", "add", cliNS)
	t.Cleanup(func() { exec.Command(ip, "netns", "del", cliNS).Run() })
	sv, cv := "lbs"+id, "lbc"+id
	sh("link", "add", sv, "netns", srvNS, "type", "veth", "peer", "name", cv, "netns", cliNS)
	for _, a := range srvAddrs {
		sh("-n", srvNS, "addr", "add", a+"/24", "dev", sv)
	}
	sh("-n", cliNS, "addr", "add", cliAddr+"/24", "dev", cv)
	for _, x := range [][2]string{{srvNS, sv}, {cliNS, cv}, {srvNS, "lo"}, {cliNS, "lo"}} {
		sh("-n", x[0], "link", "set", x[1], "up")
	}
	return srvNS, cliNS
}

// netnsSubnet keeps concurrent runs of this test apart in 10.82.0.0/16 (the namespaces isolate
// them anyway; distinct addresses keep logs unambiguous).
func netnsSubnet() string { return fmt.Sprintf("10.82.%d", 1+os.Getpid()%190) }

// atftp in one namespace fetches from the server in another, across a veth: from a server
// bound to one address, and from a wildcard listener answering on a secondary address.
func TestNetnsAtftp(t *testing.T) {
	atftp := needTool(t, "atftp")
	net24 := netnsSubnet()
	primary, secondary, client := net24+".1", net24+".3", net24+".2"
	srvNS, cliNS := netnsPair(t, "a", []string{primary, secondary}, client)
	content := randBytes(5<<20+3, 12)
	root := fileRoot(t, map[string][]byte{"images/deb/vmlinuz": content})

	for _, tc := range []struct{ listen, dst string }{
		{primary + ":69", primary},
		{"0.0.0.0:69", primary},
		{"0.0.0.0:69", secondary},
	} {
		stop := serveInNetns(t, srvNS, root, tc.listen)
		for _, opts := range [][]string{{"blksize", "1468"}, {"blksize", "1468", "windowsize", "16"}, nil} {
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"netns", "exec", cliNS, atftp}, atftpOpts(opts...)...)
			msg, err := run(t, "ip", append(args, "-g", "-r", "images/deb/vmlinuz", "-l", out, tc.dst)...)
			got, _ := os.ReadFile(out)
			if err != nil || !bytes.Equal(got, content) {
				t.Errorf("listen %s, fetch from %s %v: %v, %d bytes: %s", tc.listen, tc.dst, opts, err, len(got), msg)
			}
		}
		// A Go client in the client namespace checks where the DATA comes from.
		var c *testClient
		if err := inNetns(cliNS, func() error {
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(client)})
			c = &testClient{conn: conn, timeout: 2 * time.Second, tries: 5}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		res, err := c.get(netip.AddrPortFrom(netip.MustParseAddr(tc.dst), 69), "images/deb/vmlinuz", "blksize", "1468")
		c.conn.Close()
		if err != nil || res.sum != sha256Sum(content) {
			t.Errorf("listen %s: Go client: %v", tc.listen, err)
		} else if res.from.Addr().String() != tc.dst {
			t.Errorf("listen %s: request to %s answered from %v", tc.listen, tc.dst, res.from)
		}
		stop()
	}
}

// serveInNetns runs this test binary's TestServeHarness inside the namespace: the server must
// live there as a whole, since each transfer opens its socket in the process's namespace.
func serveInNetns(t *testing.T, ns, root, listen string) (stop func()) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestServeHarness$", "-test.v")
	cmd.Env = append(os.Environ(), "TFTP_HARNESS_ROOT="+root, "TFTP_HARNESS_LISTEN="+listen)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM) // ip netns exec execs the binary: same PID
		cmd.Wait()
		if t.Failed() {
			t.Logf("server in %s:\n%s", ns, log.String())
		}
	}
	t.Cleanup(stop)
	// Bounded wait until it answers (a missing file is an answer).
	for i := 0; i < 100; i++ {
		ok := false
		inNetns(ns, func() error {
			c, err := net.ListenUDP("udp4", nil)
			if err != nil {
				return err
			}
			defer c.Close()
			tc := &testClient{conn: c, timeout: 100 * time.Millisecond, tries: 0}
			host, _, _ := net.SplitHostPort(listen)
			if host == "0.0.0.0" {
				host = "127.0.0.1"
			}
			_, err = tc.get(netip.AddrPortFrom(netip.MustParseAddr(host), 69), "ready")
			_, isRemote := err.(*remoteError)
			ok = isRemote
			return nil
		})
		if ok {
			return stop
		}
	}
	t.Fatalf("server in %s did not answer on %s: %s", ns, listen, log.String())
	return stop
}
