package httpd

import (
	"net"
	"syscall"
)

// setCork sets or clears TCP_CORK on c and reports whether it could. A
// failure costs only speed, so it is not reported further.
func setCork(c *net.TCPConn, on bool) bool {
	sc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	v := 0
	if on {
		v = 1
	}
	var serr error
	if err := sc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, v)
	}); err != nil {
		return false
	}
	return serr == nil
}
