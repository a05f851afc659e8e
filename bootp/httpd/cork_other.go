//go:build !linux

package httpd

import "net"

// setCork does nothing where TCP_CORK does not exist; see cork_linux.go.
func setCork(*net.TCPConn, bool) bool { return false }
