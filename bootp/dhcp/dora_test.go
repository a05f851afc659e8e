package dhcp

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/livebootp/livebootp/bootp/config"
)

// serveLoopback runs h.Serve (or ServeProxy) on 127.0.0.1 port 0 until the
// test ends and returns the server's address.
func serveLoopback(t *testing.T, h *Handler, proxy bool) *net.UDPAddr {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveConn(t, h, proxy, conn)
}

// serveConn runs h on conn until the test ends.
func serveConn(t *testing.T, h *Handler, proxy bool, conn net.PacketConn) *net.UDPAddr {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		if proxy {
			done <- h.ServeProxy(ctx, conn)
		} else {
			done <- h.Serve(ctx, conn)
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after cancel, want nil", err)
		}
		conn.Close()
	})
	return conn.LocalAddr().(*net.UDPAddr)
}

// loopbackRelay makes the test client look like a relay agent on 127.0.0.1 that
// uses its own source port (RFC 8357 sub-option 19), so the server's
// answers to giaddr come back to the client's socket instead of port 67.
var loopbackRelay = []dhcpv4.Modifier{
	dhcpv4.WithRelay(net.IPv4(127, 0, 0, 1)),
	dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(19), nil))),
}

// client is a minimal DHCP client over a UDP socket on 127.0.0.1: it sends
// requests the way a relay agent forwards them (loopbackRelay) and matches
// answers by transaction ID, retrying a bounded number of times.
type client struct {
	t      *testing.T
	conn   *net.UDPConn
	server *net.UDPAddr
	mac    net.HardwareAddr
	wait   time.Duration // per try
}

func newClient(t *testing.T, server *net.UDPAddr, mac net.HardwareAddr) *client {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, server: server, mac: mac, wait: 500 * time.Millisecond}
}

var errNoResponse = errors.New("no response")

// exchange sends req up to 3 times, c.wait apart, and returns the first
// reply with its xid; errNoResponse if none comes.
func (c *client) exchange(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	buf := make([]byte, 1500)
	for try := 0; try < 3; try++ {
		if _, err := c.conn.WriteTo(req.ToBytes(), c.server); err != nil {
			return nil, err
		}
		deadline := time.Now().Add(c.wait)
		_ = c.conn.SetReadDeadline(deadline)
		for time.Now().Before(deadline) {
			n, _, err := c.conn.ReadFrom(buf)
			if err != nil {
				break
			}
			r, err := dhcpv4.FromBytes(buf[:n])
			if err == nil && r.TransactionID == req.TransactionID && r.OpCode == dhcpv4.OpcodeBootReply {
				return r, nil
			}
		}
	}
	return nil, errNoResponse
}

func (c *client) packet(mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	p, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(c.mac)}, append(mods, loopbackRelay...)...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// TestDORALoopback runs a full DISCOVER/OFFER/REQUEST/ACK, a renewal and a
// release through Serve on a real socket.
func TestDORALoopback(t *testing.T) {
	env := newEnv(t, nil)
	srv := serveLoopback(t, env.h, false)
	c := newClient(t, srv, webMAC)

	offer, err := c.exchange(c.packet(msgType(dhcpv4.MessageTypeDiscover), prlCommon))
	if err != nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("DISCOVER: %v %v; server log:\n%s", offer, err, env.logs)
	}
	ack, err := c.exchange(c.packet(msgType(dhcpv4.MessageTypeRequest), prlCommon,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOptionCopied(offer, dhcpv4.OptionServerIdentifier)))
	if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("REQUEST: %v %v; server log:\n%s", ack, err, env.logs)
	}
	if got := ack.YourIPAddr.String(); got != webAddr.String() {
		t.Errorf("ACK yiaddr %s, want %s", got, webAddr)
	}
	if got := ack.HostName(); got != "my-nginx-web-server" {
		t.Errorf("ACK host name %q", got)
	}
	if got := ack.IPAddressLeaseTime(0); got != 2*time.Hour {
		t.Errorf("ACK lease %v, want 2h", got)
	}
	if r := ack.Router(); len(r) != 1 || !r[0].Equal(net.IPv4(10, 83, 0, 254)) {
		t.Errorf("ACK routers %v", r)
	}
	if !offer.YourIPAddr.Equal(ack.YourIPAddr) {
		t.Errorf("OFFER %v and ACK %v disagree", offer.YourIPAddr, ack.YourIPAddr)
	}

	renew, err := c.exchange(c.packet(msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(ack.YourIPAddr)))
	if err != nil || renew.MessageType() != dhcpv4.MessageTypeAck || !renew.YourIPAddr.Equal(ack.YourIPAddr) {
		t.Fatalf("renewal: %v %v", renew, err)
	}
	release := c.packet(msgType(dhcpv4.MessageTypeRelease), dhcpv4.WithClientIP(ack.YourIPAddr),
		dhcpv4.WithOptionCopied(ack, dhcpv4.OptionServerIdentifier))
	c.wait = 100 * time.Millisecond
	if _, err := c.exchange(release); !errors.Is(err, errNoResponse) {
		t.Errorf("RELEASE answered: %v", err)
	}
	if last := lastDHCP(env, webMAC); last != "RELEASE" {
		t.Errorf("tracker's last exchange %q, want RELEASE", last)
	}
}

// plainConn hides *net.UDPConn so Serve takes its generic PacketConn path.
type plainConn struct{ net.PacketConn }

func TestServeGenericPacketConn(t *testing.T) {
	env := newEnv(t, nil)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := serveConn(t, env.h, false, plainConn{conn})
	c := newClient(t, srv, webMAC)
	offer, err := c.exchange(c.packet(msgType(dhcpv4.MessageTypeDiscover)))
	if err != nil || offer.MessageType() != dhcpv4.MessageTypeOffer || offer.YourIPAddr.String() != webAddr.String() {
		t.Fatalf("DISCOVER: %v %v; server log:\n%s", offer, err, env.logs)
	}
}

func TestDORALoopbackUnknownMAC(t *testing.T) {
	env := newEnv(t, nil)
	srv := serveLoopback(t, env.h, false)
	c := newClient(t, srv, otherMAC)
	c.wait = 100 * time.Millisecond
	if r, err := c.exchange(c.packet(msgType(dhcpv4.MessageTypeDiscover))); !errors.Is(err, errNoResponse) {
		t.Errorf("unknown MAC: got %v %v, want no response", r, err)
	}
	if n := strings.Count(env.logs.String(), "unknown MAC"); n != 1 {
		t.Errorf("unknown MAC logged %d times over 3 tries, want once:\n%s", n, env.logs)
	}
}

// TestServeProxyLoopback sends a PXE boot server REQUEST to ServeProxy and
// expects the answer at the address it came from.
func TestServeProxyLoopback(t *testing.T) {
	env := newEnv(t, func(r *config.Registry) { r.ProxyDHCP = true })
	srv := serveLoopback(t, env.h, true)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := mustPacket(t, msgType(dhcpv4.MessageTypeRequest), withArch(iana.EFI_X86_64), sid(serverAddr),
		dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1)))
	var reply *dhcpv4.DHCPv4
	buf := make([]byte, 1500)
	for try := 0; try < 3 && reply == nil; try++ {
		if _, err := conn.WriteTo(req.ToBytes(), srv); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			continue
		}
		if reply, err = dhcpv4.FromBytes(buf[:n]); err != nil {
			t.Fatal(err)
		}
	}
	if reply == nil {
		t.Fatalf("no proxy ACK; server log:\n%s", env.logs)
	}
	if reply.MessageType() != dhcpv4.MessageTypeAck || reply.BootFileName == "" || !reply.YourIPAddr.IsUnspecified() {
		t.Errorf("not a proxy ACK with a boot file:\n%s", reply.Summary())
	}
}

// lastDHCP is the tracker's last exchange with mac.
func lastDHCP(env *testEnv, mac net.HardwareAddr) string {
	for _, h := range env.track.Hosts() {
		if h.MAC == mac.String() {
			return h.LastDHCP
		}
	}
	return ""
}
