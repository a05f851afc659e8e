package netconf

import (
	"github.com/livebootp/livebootp/internal/syncbuf"

	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The network tests run the real client against dnsmasq across a veth pair
// between two network namespaces the test creates (subnet 10.85.1.0/24).
// The client side runs in a child process (this test binary, re-executed
// under `ip netns exec`) so that every goroutine and raw socket lives in
// the client namespace.

const helperEnv = "LIVEBOOTP_NETCONF_HELPER"

type testNet struct {
	t              *testing.T
	server, client string
	dnsmasqLog     *syncbuf.Buffer
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func setup(t *testing.T, tag string, withServer bool) *testNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	n := &testNet{t: t, server: fmt.Sprintf("lbp%d%ss", os.Getpid(), tag), client: fmt.Sprintf("lbp%d%sc", os.Getpid(), tag)}
	for _, ns := range []string{n.server, n.client} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	run(t, "ip", "-n", n.server, "link", "add", "vs", "type", "veth", "peer", "name", "eth0", "netns", n.client)
	run(t, "ip", "-n", n.client, "link", "set", "eth0", "address", "52:54:00:85:01:42")
	run(t, "ip", "-n", n.server, "addr", "add", "10.85.1.1/24", "dev", "vs")
	run(t, "ip", "-n", n.server, "link", "set", "vs", "up")
	if !withServer {
		return n
	}
	dnsmasq, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Skip("needs dnsmasq (dnsmasq-base)")
	}
	dir := t.TempDir()
	n.dnsmasqLog = &syncbuf.Buffer{}
	cmd := exec.Command("ip", "netns", "exec", n.server, dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null",
		"--port=0", "--interface=vs", "--bind-interfaces", "--pid-file="+filepath.Join(dir, "pid"),
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--log-dhcp", "--log-facility=-",
		"--dhcp-range=10.85.1.100,10.85.1.150,255.255.255.0,1h",
		"--dhcp-host=52:54:00:85:01:42,10.85.1.42,web1",
		"--dhcp-option=option:router,10.85.1.1", "--dhcp-option=option:dns-server,10.85.1.1",
		"--dhcp-option=option:domain-name,test.lan", "--dhcp-option=option:mtu,1400")
	cmd.Stdout, cmd.Stderr = n.dnsmasqLog, n.dnsmasqLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// ip netns exec execs dnsmasq in place: this PID is dnsmasq.
		cmd.Process.Kill()
		cmd.Wait()
	})
	return n
}

// runClient runs the helper in the client namespace with the given mode and
// returns its lease (or error text).
func (n *testNet) runClient(mode string) (Lease, string) {
	n.t.Helper()
	out := filepath.Join(n.t.TempDir(), "result")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.client, os.Args[0], "-test.run=^TestNetconfHelper$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode+":"+out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		n.t.Fatalf("helper: %v\n%s", err, b)
	}
	res, _ := os.ReadFile(out)
	var l Lease
	if strings.HasPrefix(string(res), "ERROR ") {
		return l, strings.TrimPrefix(string(res), "ERROR ")
	}
	if err := json.Unmarshal(res, &l); err != nil {
		n.t.Fatalf("helper result %q: %v\n%s", res, err, b)
	}
	return l, ""
}

// TestNetconfHelper is the client side; it only runs as the child process.
func TestNetconfHelper(t *testing.T) {
	v := os.Getenv(helperEnv)
	if v == "" {
		t.Skip("runs only as the network namespace child of TestUp*")
	}
	mode, out, _ := strings.Cut(v, ":")
	o := Options{Carrier: 5 * time.Second, Timeout: 20 * time.Second, Log: t.Logf}
	switch mode {
	case "noserver":
		o.Timeout = 3 * time.Second
	case "bootif":
		o.BootIF = net.HardwareAddr{0x52, 0x54, 0, 0x99, 0x99, 0x99}
		o.Carrier = time.Second
	}
	l, err := Up(context.Background(), o)
	if err != nil {
		os.WriteFile(out, []byte("ERROR "+err.Error()), 0o644)
		return
	}
	b, _ := json.Marshal(l)
	os.WriteFile(out, b, 0o644)
}

func TestUpWithDnsmasq(t *testing.T) {
	n := setup(t, "d", true)
	l, errText := n.runClient("lease")
	if errText != "" {
		t.Fatalf("Up: %s\ndnsmasq:\n%s", errText, n.dnsmasqLog.String())
	}
	if l.Iface != "eth0" || l.Addr.String() != "10.85.1.42/24" || !l.Router.Equal(net.IPv4(10, 85, 1, 1)) ||
		l.Hostname != "web1" || l.Domain != "test.lan" || l.MTU != 1400 || len(l.DNS) != 1 || l.MAC.String() != "52:54:00:85:01:42" {
		t.Errorf("lease %+v", l)
	}
	addr := run(t, "ip", "-n", n.client, "-4", "addr", "show", "eth0")
	if !strings.Contains(addr, "inet 10.85.1.42/24") || !strings.Contains(addr, "mtu 1400") {
		t.Errorf("eth0 after Up:\n%s", addr)
	}
	if rt := run(t, "ip", "-n", n.client, "route", "show", "default"); !strings.Contains(rt, "default via 10.85.1.1 dev eth0") {
		t.Errorf("default route: %q", rt)
	}
	if lo := run(t, "ip", "-n", n.client, "link", "show", "lo"); !strings.Contains(lo, "UP") {
		t.Errorf("lo not up: %s", lo)
	}
	if log := n.dnsmasqLog.String(); !strings.Contains(log, "vendor class: "+VendorClass) {
		t.Errorf("dnsmasq did not see the vendor class:\n%s", log)
	}
	if got := string(ResolvConf(&l)); got != "# written by livebootp-init from DHCP\nsearch test.lan\nnameserver 10.85.1.1\n" {
		t.Errorf("resolv.conf %q", got)
	}
}

func TestUpWithoutServerGivesUp(t *testing.T) {
	n := setup(t, "n", false)
	_, errText := n.runClient("noserver")
	if !strings.Contains(errText, "DHCP: no lease after 3s") || !strings.Contains(errText, "eth0") {
		t.Errorf("error %q", errText)
	}
}

func TestUpBootIFNotPresent(t *testing.T) {
	n := setup(t, "b", false)
	_, errText := n.runClient("bootif")
	if !strings.Contains(errText, "no carrier on eth0 52:54:00:85:01:42 (BOOTIF=52:54:00:99:99:99) after 1s") {
		t.Errorf("error %q", errText)
	}
}
