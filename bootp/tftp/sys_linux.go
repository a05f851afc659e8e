package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// listener reads requests and learns which local address each was sent to.
type listener struct {
	pc      net.PacketConn
	udp     *net.UDPConn // nil when pc is not a UDP socket: no PKTINFO then
	localIP netip.Addr   // conn's bound address, used when PKTINFO is not available
	oob     []byte
}

func newListener(pc net.PacketConn) (*listener, error) {
	l := &listener{pc: pc}
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		l.localIP = ua.AddrPort().Addr()
	}
	udp, ok := pc.(*net.UDPConn)
	if !ok || (l.localIP.IsValid() && !l.localIP.IsUnspecified()) {
		return l, nil // bound to one address: replies come from it without PKTINFO
	}
	rc, err := udp.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("tftp: %v: %w", pc.LocalAddr(), err)
	}
	if err := enablePktinfo(rc); err != nil {
		return nil, fmt.Errorf("tftp: enabling IP_PKTINFO on %v (needed to answer from the address clients use on a wildcard listener; or bind to one address): %w", pc.LocalAddr(), err)
	}
	l.udp = udp
	l.oob = make([]byte, 256)
	return l, nil
}

func enablePktinfo(rc syscall.RawConn) error {
	var serr error
	cerr := rc.Control(func(fd uintptr) {
		// On an IPv6 socket, IPv4 requests (dual stack) report through IP_PKTINFO; IPv6 ones
		// through IPV6_PKTINFO. Set both; one of them is refused on a v4-only socket.
		e4 := unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		e6 := unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		if e4 != nil && e6 != nil {
			serr = e4
		}
	})
	return errors.Join(cerr, serr)
}

// ListenPacket opens a UDP socket for Serve with IP_PKTINFO enabled before it is bound, so even
// requests that arrive before Serve starts are answered from the address they were sent to.
// network is "udp", "udp4" or "udp6"; address as for net.ListenPacket ("0.0.0.0:69", ":69").
func ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error { return enablePktinfo(rc) }}
	pc, err := lc.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("tftp: listening on %s %s: %w", network, address, err)
	}
	return pc, nil
}

func (l *listener) read(buf []byte) (n int, remote netip.AddrPort, local netip.Addr, err error) {
	if l.udp == nil {
		var a net.Addr
		n, a, err = l.pc.ReadFrom(buf)
		if ua, ok := a.(*net.UDPAddr); ok {
			remote = ua.AddrPort()
		}
		return n, remote, l.localIP, err
	}
	n, oobn, _, remote, err := l.udp.ReadMsgUDPAddrPort(buf, l.oob)
	if err != nil {
		return 0, remote, local, err
	}
	return n, remote, parsePktinfo(l.oob[:oobn]), nil
}

// parsePktinfo returns the local address from IP_PKTINFO (ipi_spec_dst: the interface address
// even for a broadcast request) or IPV6_PKTINFO; invalid when absent.
func parsePktinfo(oob []byte) netip.Addr {
	var v6 netip.Addr
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Len < unix.SizeofCmsghdr || int(h.Len) > len(oob) {
			break
		}
		data := oob[unix.CmsgLen(0):h.Len]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// spec_dst is zero for packets that were queued before PKTINFO was enabled.
			if a := netip.AddrFrom4([4]byte(data[4:8])); !a.IsUnspecified() {
				return a
			}
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			ifindex := int(binary.NativeEndian.Uint32(data[16:20]))
			v6 = zoneFor(netip.AddrFrom16([16]byte(data[0:16])), ifindex)
		}
		oob = oob[min(unix.CmsgSpace(int(h.Len)-unix.CmsgLen(0)), len(oob)):]
	}
	return v6
}

// batch sends a window of DATA packets with one sendmmsg; each packet is two iovecs (header,
// file data in the chunk), so nothing is copied.
type batch struct {
	rc   syscall.RawConn
	msgs []unix.Mmsghdr
	iovs []unix.Iovec
	n    int
	sent int
	err  error
	fn   func(fd uintptr) bool // bound once: no closure allocation per send
}

func newBatch(c *net.UDPConn, size int) *batch {
	b := &batch{msgs: make([]unix.Mmsghdr, size), iovs: make([]unix.Iovec, 2*size)}
	b.rc, b.err = c.SyscallConn()
	b.fn = b.sendmmsg
	return b
}

func (b *batch) set(i int, hdr, data []byte) {
	iov := b.iovs[2*i : 2*i+2]
	iov[0].Base = &hdr[0]
	iov[0].SetLen(len(hdr))
	n := 1
	if len(data) > 0 {
		iov[1].Base = &data[0]
		iov[1].SetLen(len(data))
		n = 2
	}
	b.msgs[i].Hdr.Iov = &iov[0]
	b.msgs[i].Hdr.SetIovlen(n)
}

func (b *batch) send(n int) error {
	if b.err != nil {
		return b.err
	}
	b.n, b.sent = n, 0
	for b.sent < b.n {
		if err := b.rc.Write(b.fn); err != nil {
			return err
		}
		if b.err != nil {
			return b.err
		}
	}
	return nil
}

func (b *batch) sendmmsg(fd uintptr) bool {
	for {
		// Raw: the socket is non-blocking, so the call cannot block, and telling the runtime
		// about it (entersyscall) lets sysmon hand our P to another thread whenever the kernel
		// switches to the client mid-call, which costs more than the send itself.
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[b.sent])), uintptr(b.n-b.sent), 0, 0, 0)
		switch e {
		case 0:
			b.sent += int(r)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait for the socket to drain
		default:
			b.err = e
			return true
		}
	}
}

// reader receives on a transfer socket with a raw recvfrom (see sendmmsg for why raw); when
// nothing is queued the goroutine parks in the netpoller as net.Conn.Read would.
type reader struct {
	rc     syscall.RawConn
	buf    []byte
	n      int
	err    error
	fn     func(fd uintptr) bool
	onWait func() // called before parking: arms the deadline only when a wait is needed
}

func newReader(c *net.UDPConn, buf []byte, onWait func()) *reader {
	r := &reader{buf: buf, onWait: onWait}
	r.rc, r.err = c.SyscallConn()
	r.fn = r.recv
	return r
}

func (r *reader) read() (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if err := r.rc.Read(r.fn); err != nil {
		return 0, err
	}
	if r.err != nil {
		err := r.err
		r.err = nil
		return 0, err
	}
	return r.n, nil
}

func (r *reader) recv(fd uintptr) bool {
	yielded := false
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)), 0, 0, 0)
		switch e {
		case 0:
			r.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if !yielded {
				// The client our DATA just woke may be waiting for this very CPU (a VM or
				// a client on the same host): yielding once lets it answer before we pay for
				// parking in the netpoller. With the client elsewhere this returns at once.
				yielded = true
				unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
				continue
			}
			r.onWait()
			return false
		default:
			r.err = e
			return true
		}
	}
}
