//go:build !linux

package tftp

import (
	"context"
	"net"
	"net/netip"
)

// Without IP_PKTINFO the server answers from the listener's own address: bind the listener to
// one address on multi-homed hosts.
type listener struct {
	pc      net.PacketConn
	localIP netip.Addr
}

func newListener(pc net.PacketConn) (*listener, error) {
	l := &listener{pc: pc}
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		l.localIP = ua.AddrPort().Addr()
	}
	return l, nil
}

func (l *listener) read(buf []byte) (int, netip.AddrPort, netip.Addr, error) {
	n, a, err := l.pc.ReadFrom(buf)
	var remote netip.AddrPort
	if ua, ok := a.(*net.UDPAddr); ok {
		remote = ua.AddrPort()
	}
	return n, remote, l.localIP, err
}

// batch copies each packet into one buffer and writes it: portable, one syscall per packet.
type batch struct {
	c    *net.UDPConn
	pkts [][2][]byte
	buf  []byte
}

func newBatch(c *net.UDPConn, size int) *batch {
	return &batch{c: c, pkts: make([][2][]byte, size)}
}

func (b *batch) set(i int, hdr, data []byte) { b.pkts[i] = [2][]byte{hdr, data} }

func (b *batch) send(n int) error {
	for _, p := range b.pkts[:n] {
		b.buf = append(append(b.buf[:0], p[0]...), p[1]...)
		if _, err := b.c.Write(b.buf); err != nil {
			return err
		}
	}
	return nil
}

// ListenPacket opens a UDP socket for Serve (no IP_PKTINFO on this platform).
func ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	var lc net.ListenConfig
	return lc.ListenPacket(ctx, network, address)
}

type reader struct {
	c      *net.UDPConn
	buf    []byte
	onWait func()
}

func newReader(c *net.UDPConn, buf []byte, onWait func()) *reader { return &reader{c, buf, onWait} }

func (r *reader) read() (int, error) {
	r.onWait()
	return r.c.Read(r.buf)
}
