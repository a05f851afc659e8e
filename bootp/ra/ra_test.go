package ra

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

func TestMessage(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	m := Message(mac)
	if len(m) != 24 || m[0] != 134 || m[1] != 0 {
		t.Fatalf("message % x: want a 24-byte type 134 code 0 advertisement", m)
	}
	if m[5] != 0 {
		t.Errorf("flags %#x: Managed/Other set would start DHCPv6", m[5])
	}
	if lt := binary.BigEndian.Uint16(m[6:8]); lt != 0 {
		t.Errorf("router lifetime %d: non-zero makes us the default router", lt)
	}
	if m[16] != 1 || m[17] != 1 || net.HardwareAddr(m[18:24]).String() != mac.String() {
		t.Errorf("source link-layer option % x", m[16:])
	}
	for i := 16; i+1 < len(m); i += int(m[i+1]) * 8 {
		if m[i] == 3 {
			t.Error("prefix information option present: it would hand out addresses")
		}
	}
}

// TestSolicitationAnswered runs in a network namespace (as a child process
// re-executed by `ip netns exec`): a veth pair, the responder on one end,
// a router solicitation sent from the other. The answer must arrive, and
// the kernel on the soliciting side must still have no IPv6 default route.
func TestSolicitationAnswered(t *testing.T) {
	if os.Getenv("LIVEBOOTP_RA_CHILD") == "1" {
		child(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	ns := fmt.Sprintf("lbra%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("-n", ns, "link", "add", "rasrv", "type", "veth", "peer", "name", "racli")
	run("-n", ns, "link", "set", "rasrv", "up")
	run("-n", ns, "link", "set", "racli", "up")
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestSolicitationAnswered$", "-test.v")
	cmd.Env = append(os.Environ(), "LIVEBOOTP_RA_CHILD=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("child failed: %v", err)
	}
	routes, _ := exec.Command("ip", "-n", ns, "-6", "route", "show", "default").CombinedOutput()
	if strings.TrimSpace(string(routes)) != "" {
		t.Errorf("the advertisement installed a default route: %s", routes)
	}
}

func child(t *testing.T) {
	srv, err := net.InterfaceByName("rasrv")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := net.InterfaceByName("racli")
	if err != nil {
		t.Fatal(err)
	}
	// Link-local addresses appear after duplicate address detection.
	for i := 0; i < 50; i++ {
		a, _ := srv.Addrs()
		b, _ := cli.Addrs()
		if len(a) > 0 && len(b) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &Responder{Interface: "rasrv", Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()

	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc := c.IPv6PacketConn()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterAdvertisement)
	pc.SetICMPFilter(&f)
	pc.JoinGroup(cli, &net.IPAddr{IP: net.ParseIP("ff02::1")})
	pc.SetMulticastHopLimit(255)
	pc.SetMulticastInterface(cli)
	pc.SetControlMessage(ipv6.FlagInterface|ipv6.FlagHopLimit, true)
	rs, _ := (&icmp.Message{Type: ipv6.ICMPTypeRouterSolicitation, Body: &icmp.RawBody{Data: make([]byte, 4)}}).Marshal(nil)
	buf := make([]byte, 1500)
	for try := 0; try < 20; try++ {
		if _, err := pc.WriteTo(rs, nil, &net.IPAddr{IP: net.ParseIP("ff02::2"), Zone: "racli"}); err != nil {
			// The link-local address is still tentative (duplicate
			// address detection): try again shortly.
			t.Logf("solicitation %d: %v", try+1, err)
			time.Sleep(250 * time.Millisecond)
			continue
		}
		pc.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, cm, src, err := pc.ReadFrom(buf)
		if err != nil {
			continue
		}
		if cm == nil || cm.IfIndex != cli.Index || buf[0] != 134 {
			continue
		}
		if cm.HopLimit != 255 {
			t.Errorf("hop limit %d, receivers drop anything but 255", cm.HopLimit)
		}
		if lt := binary.BigEndian.Uint16(buf[6:8]); lt != 0 || buf[5] != 0 {
			t.Errorf("advertisement lifetime %d flags %#x", lt, buf[5])
		}
		t.Logf("advertisement of %d bytes from %v after %d solicitation(s)", n, src, try+1)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		return
	}
	t.Fatal("no router advertisement in answer to 20 solicitations")
}
