package dhcp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Serve answers the requests that arrive on conn (normally Listen(iface,
// ":67")) until ctx is done, then returns nil. It returns an error only when
// the socket fails for good. It sends each reply where Reply says, except
// that a relay agent announcing its own source port (RFC 8357, option 82
// sub-option 19) gets its replies on that port.
func (h *Handler) Serve(ctx context.Context, conn net.PacketConn) error {
	return h.serve(ctx, conn, false)
}

// ServeProxy is Serve for the PXE boot server port (Listen(iface, ":4011")):
// PXE firmware and iPXE send their proxyDHCP REQUEST there and get boot
// information only, answered to the address and port they sent from. Serve
// on a socket bound to port 4011 does the same.
func (h *Handler) ServeProxy(ctx context.Context, conn net.PacketConn) error {
	return h.serve(ctx, conn, true)
}

// maxReadErrors bounds how many read errors in a row Serve rides out before
// it gives up on the socket.
const maxReadErrors = 100

func (h *Handler) serve(ctx context.Context, conn net.PacketConn, pxePort bool) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	if addrPort(conn.LocalAddr()).Port() == PXEServerPort {
		pxePort = true
	}
	udp, _ := conn.(*net.UDPConn) // avoids an allocation per packet for the peer address
	buf := make([]byte, 64<<10)
	errs := 0
	var (
		lastWriteLog   time.Time
		failedSinceLog int
	)
	for {
		var (
			n    int
			peer netip.AddrPort
			err  error
		)
		if udp != nil {
			n, peer, err = udp.ReadFromUDPAddrPort(buf)
			peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
		} else {
			var a net.Addr
			n, a, err = conn.ReadFrom(buf)
			peer = addrPort(a)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			h.Metrics.fail("read")
			errs++
			if errors.Is(err, net.ErrClosed) || errs >= maxReadErrors {
				return fmt.Errorf("dhcp: reading from %s: %w", conn.LocalAddr(), err)
			}
			h.logger().Warn("dhcp: read failed; continuing", "addr", conn.LocalAddr().String(), "err", err)
			continue
		}
		errs = 0
		out, dst, ok := h.handle(buf[:n], peer, pxePort)
		if !ok {
			continue
		}
		if udp != nil {
			_, err = udp.WriteToUDPAddrPort(out, dst)
		} else {
			_, err = conn.WriteTo(out, net.UDPAddrFromAddrPort(dst))
		}
		if err != nil {
			// Logged at most every 10 s: with the link down every reply fails.
			h.Metrics.fail("write")
			failedSinceLog++
			if now := time.Now(); now.Sub(lastWriteLog) >= 10*time.Second {
				h.logger().Warn("dhcp: sending reply failed; is the interface up, and the socket made by Listen (SO_BROADCAST)?",
					"to", dst.String(), "err", err, "failures", failedSinceLog)
				lastWriteLog, failedSinceLog = now, 0
			}
		}
	}
}

// handle decodes one datagram and encodes the answer, if any.
func (h *Handler) handle(b []byte, peer netip.AddrPort, pxePort bool) ([]byte, netip.AddrPort, bool) {
	req, err := decode(b)
	if err != nil {
		h.Metrics.fail("decode")
		if log := h.logger(); log.Enabled(context.Background(), slog.LevelDebug) {
			log.Debug("dhcp: undecodable packet dropped", "from", peer.String(), "len", len(b), "err", err)
		}
		return nil, netip.AddrPort{}, false
	}
	a := h.answer(req, pxePort)
	if a.reply == nil {
		return nil, netip.AddrPort{}, false
	}
	dst := a.dst
	switch {
	case pxePort && peer.IsValid():
		dst = peer // PXE specification: the boot server answers where the request came from
	case relaySourcePort(req) && peer.IsValid() && peer.Port() != 0 && dst.Port() == ServerPort:
		// RFC 8357: a relay that says it uses another source port gets
		// its replies there.
		dst = netip.AddrPortFrom(dst.Addr(), peer.Port())
	}
	return encode(a.reply), dst, true
}

var magicCookie = []byte{99, 130, 83, 99}

// decode parses a request. RFC 951 BOOTP clients that send no RFC 1048
// vendor extensions (no magic cookie), and clients that forget the End
// option, are accepted as if they had sent an empty option list.
func decode(b []byte) (*dhcpv4.DHCPv4, error) {
	req, err := dhcpv4.FromBytes(b)
	if err == nil {
		return req, nil
	}
	switch {
	case len(b) >= headerLen+4 && !bytes.Equal(b[headerLen:headerLen+4], magicCookie),
		len(b) >= headerLen && len(b) < headerLen+4:
		fixed := append(append(append(make([]byte, 0, headerLen+5), b[:headerLen]...), magicCookie...), 255)
		return dhcpv4.FromBytes(fixed)
	case errors.Is(err, io.ErrUnexpectedEOF) && len(b) >= headerLen+4:
		return dhcpv4.FromBytes(append(bytes.Clone(b), 255))
	}
	return nil, err
}

// relaySourcePort reports whether option 82 carries the RFC 8357 relay
// source port sub-option (19).
func relaySourcePort(req *dhcpv4.DHCPv4) bool {
	rai := req.Options.Get(dhcpv4.OptionRelayAgentInformation)
	for len(rai) >= 2 {
		code, n := rai[0], int(rai[1])
		if code == 19 {
			return true
		}
		if len(rai) < 2+n {
			return false
		}
		rai = rai[2+n:]
	}
	return false
}

func addrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// encode is the reply's wire form. It differs from dhcpv4's ToBytes only in
// option order: the message type comes first, as ISC dhcpd, Kea and dnsmasq
// send it and some PXE ROMs expect, the relay agent information last (RFC
// 3046 §2.1), the rest by code.
func encode(d *dhcpv4.DHCPv4) []byte {
	b := make([]byte, 0, dhcpDefaultMax)
	hw := d.ClientHWAddr
	if len(hw) > 16 {
		hw = hw[:16]
	}
	b = append(b, byte(d.OpCode), byte(d.HWType), byte(len(hw)), d.HopCount)
	b = append(b, d.TransactionID[:]...)
	b = binary.BigEndian.AppendUint16(b, d.NumSeconds)
	b = binary.BigEndian.AppendUint16(b, d.Flags)
	for _, ip := range []net.IP{d.ClientIPAddr, d.YourIPAddr, d.ServerIPAddr, d.GatewayIPAddr} {
		if ip4 := ip.To4(); ip4 != nil {
			b = append(b, ip4...)
		} else {
			b = append(b, 0, 0, 0, 0)
		}
	}
	b = appendField(b, hw, 16)
	b = appendField(b, []byte(d.ServerHostName), 64)
	b = appendField(b, []byte(d.BootFileName), 128)
	b = append(b, magicCookie...)

	var codes [64]uint8
	n := 0
	for c := range d.Options {
		if c != 53 && c != 82 && c != 0 && c != 255 && n < len(codes) {
			codes[n] = c
			n++
		}
	}
	sorted := codes[:n]
	slices.Sort(sorted)
	b = appendOption(b, d.Options, 53)
	for _, c := range sorted {
		b = appendOption(b, d.Options, c)
	}
	b = appendOption(b, d.Options, 82)
	b = append(b, 255)
	for len(b) < bootpMax {
		b = append(b, 0)
	}
	return b
}

// appendField writes a fixed-size header field, NUL-terminated for the
// text fields (sname, file) the way clients read them.
func appendField(b, v []byte, size int) []byte {
	limit := size
	if size != 16 {
		limit = size - 1
	}
	if len(v) > limit {
		v = v[:limit]
	}
	b = append(b, v...)
	return append(b, make([]byte, size-len(v))...)
}

// appendOption writes one option, split into 255-byte pieces when longer
// (RFC 3396).
func appendOption(b []byte, opts dhcpv4.Options, code uint8) []byte {
	v, ok := opts[code]
	if !ok {
		return b
	}
	if len(v) == 0 {
		return append(b, code, 0)
	}
	for len(v) > 0 {
		n := min(len(v), 255)
		b = append(b, code, byte(n))
		b = append(b, v[:n]...)
		v = v[n:]
	}
	return b
}
