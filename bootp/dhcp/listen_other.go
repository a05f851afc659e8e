//go:build !linux

package dhcp

import (
	"fmt"
	"net"
)

// Listen opens the UDP socket Serve reads from. Binding to an interface is
// implemented on Linux only.
func Listen(iface, addr string) (net.PacketConn, error) {
	if iface != "" {
		return nil, fmt.Errorf("dhcp: binding to interface %q needs Linux (SO_BINDTODEVICE); leave the interface empty", iface)
	}
	return net.ListenPacket("udp4", addr)
}
