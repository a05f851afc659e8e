package dhcp

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// rcvBuf is the receive buffer Listen asks for: 4 MiB, some 10,000 requests.
const rcvBuf = 4 << 20

// Listen opens the UDP socket Serve reads from: addr is ":67" (or ":4011"
// for ServeProxy), iface the interface the hosts are on ("" for all). The
// socket may send to 255.255.255.255 (SO_BROADCAST), shares the port with a
// socket of another process that asked for the same (SO_REUSEADDR), and,
// bound to iface (SO_BINDTODEVICE), receives only that interface's
// broadcasts and sends its own broadcasts out of it, whatever the routes say.
func Listen(iface, addr string) (net.PacketConn, error) {
	forced := false
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				serr = fmt.Errorf("SO_REUSEADDR: %w", serr)
				return
			}
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1); serr != nil {
				serr = fmt.Errorf("SO_BROADCAST: %w", serr)
				return
			}
			// Bursts of PXE clients powering on together must not overflow
			// the default 200 KiB receive buffer. FORCE passes
			// net.core.rmem_max as root; else SetReadBuffer below tries
			// within it.
			forced = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf) == nil
			if iface != "" {
				if serr = unix.BindToDevice(int(fd), iface); serr != nil {
					serr = fmt.Errorf("SO_BINDTODEVICE %s: %w (does the interface exist? binding to it needs root or CAP_NET_RAW)", iface, serr)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := lc.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("dhcp: listen on %s (interface %q): %w; is another DHCP server (dnsmasq, dhcpd, kea) running there, and are we root?", addr, iface, err)
	}
	if u, ok := conn.(*net.UDPConn); ok && !forced {
		_ = u.SetReadBuffer(rcvBuf)
	}
	return conn, nil
}
