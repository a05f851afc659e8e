package httpd

import (
	"bytes"
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

	"github.com/vishvananda/netns"

	"github.com/livebootp/livebootp/bootp/state"
)

// TestNetnsCurlRange: curl, in a network namespace of its own, fetches a
// byte range of an image from the handler, which listens in a second
// namespace at the other end of a veth pair. Both namespaces are created
// here; nothing touches the host's network. Subnet 10.84.0.0/16 is this
// package's.
func TestNetnsCurlRange(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and a veth pair")
	}
	for _, tool := range []string{"ip", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	pid := os.Getpid()
	net24 := fmt.Sprintf("10.84.%d", pid%250+1)
	srvNS, cliNS := fmt.Sprintf("lbh%ds", pid), fmt.Sprintf("lbh%dc", pid)
	vs, vc := fmt.Sprintf("lbh%da", pid), fmt.Sprintf("lbh%db", pid)
	ip := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", srvNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", srvNS).Run() })
	ip("netns", "add", cliNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", cliNS).Run() })
	ip("link", "add", vs, "netns", srvNS, "type", "veth", "peer", "name", vc, "netns", cliNS)
	ip("-n", srvNS, "addr", "add", net24+".254/24", "dev", vs)
	ip("-n", cliNS, "addr", "add", net24+".1/24", "dev", vc)
	for _, ns := range [][2]string{{srvNS, vs}, {cliNS, vc}} {
		ip("-n", ns[0], "link", "set", "lo", "up")
		ip("-n", ns[0], "link", "set", ns[1], "up")
	}

	f := newFixtureNet(t, 3<<20, net24)
	ln := listenInNetns(t, srvNS, net24+".254:0")
	srv := NewServer(ln.Addr().String(), f.h)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	path := "/images/" + testImg + "/filesystem.squashfs"
	out := filepath.Join(t.TempDir(), "range")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", cliNS, "curl", "-sS", "--fail", "--max-time", "20",
		"-r", "1000000-2999999", "-o", out, "-w", "%{http_code} %{size_download}",
		"http://"+ln.Addr().String()+path)
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, res)
	}
	if string(res) != "206 2000000" {
		t.Errorf("curl: %q, want 206 and 2000000 bytes", res)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, f.files[path][1000000:3000000]) {
		t.Errorf("curl got %d bytes that differ from the file's range", len(got))
	}
	h := f.host(t, testMAC)
	if h.Phase != state.PhaseImage || h.ImageBytes != 2000000 {
		t.Errorf("tracker: phase %q image bytes %d, want image and 2000000 (the client at %s.1 is the host)", h.Phase, h.ImageBytes, net24)
	}
}

// listenInNetns opens a TCP listener inside the named namespace. The
// listening socket stays in that namespace whatever thread later accepts.
// The switch happens on a locked thread that is never unlocked, so Go
// retires it instead of reusing a thread left in the wrong namespace.
func listenInNetns(t *testing.T, name, addr string) net.Listener {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.GetFromName(name)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			ch <- result{err: err}
			return
		}
		ln, err := net.Listen("tcp", addr)
		ch <- result{ln, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listening on %s in netns %s: %v", addr, name, r.err)
	}
	return r.ln
}
