// Package ra answers IPv6 router solicitations on the boot network with a
// router advertisement that configures nothing.
//
// Why: iPXE configures IPv4 (DHCP) and IPv6 (router discovery) side by side
// and waits for both. On a network without an IPv6 router its solicitations
// go unanswered and every boot stalls ~13 s until they time out. An
// advertisement with router lifetime 0 (RFC 4861 §4.2: "not a default
// router"), the Managed and Other flags clear (no DHCPv6) and no prefix
// information (no addresses, no on-link routes) ends that wait while handing
// the target nothing: no default route, no address, no DNS.
//
// It never advertises itself as a router or a prefix, and it answers only
// solicitations that arrive on the configured interface.
package ra

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// Message builds the router advertisement body (ICMPv6 type 134, the kernel
// fills in the checksum) carrying our link-layer address.
func Message(mac net.HardwareAddr) []byte {
	b := make([]byte, 16, 16+8)
	b[0] = byte(ipv6.ICMPTypeRouterAdvertisement)
	// b[1] code 0, b[2:4] checksum, b[4] current hop limit 0 (unspecified),
	// b[5] flags: M=0 O=0, b[6:8] router lifetime 0: not a default router,
	// b[8:12] reachable time 0, b[12:16] retrans timer 0: unspecified.
	binary.BigEndian.PutUint16(b[6:8], 0)
	if len(mac) == 6 {
		// Source link-layer address option (type 1, length 1 × 8 bytes)
		// saves the client a neighbour solicitation.
		b = append(b, 1, 1)
		b = append(b, mac...)
	}
	return b
}

// Responder answers router solicitations on one interface.
type Responder struct {
	Interface string
	Log       *slog.Logger
}

// Serve answers until ctx is done. It needs CAP_NET_RAW.
func (r *Responder) Serve(ctx context.Context) error {
	ifi, err := net.InterfaceByName(r.Interface)
	if err != nil {
		return fmt.Errorf("router advertisements: interface %q: %w", r.Interface, err)
	}
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return fmt.Errorf("router advertisements on %s: %w (needs root or CAP_NET_RAW; set router-advertisements: false to turn them off)", r.Interface, err)
	}
	defer c.Close()
	pc := c.IPv6PacketConn()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	if err := pc.SetICMPFilter(&f); err != nil {
		return fmt.Errorf("router advertisements: ICMPv6 filter: %w", err)
	}
	if err := pc.JoinGroup(ifi, &net.IPAddr{IP: net.ParseIP("ff02::2")}); err != nil {
		return fmt.Errorf("router advertisements: join all-routers group on %s: %w", r.Interface, err)
	}
	// RFC 4861 §6.1.2: receivers drop advertisements whose hop limit is
	// not 255, proof they were not forwarded.
	if err := pc.SetMulticastHopLimit(255); err != nil {
		return err
	}
	if err := pc.SetHopLimit(255); err != nil {
		return err
	}
	if err := pc.SetMulticastInterface(ifi); err != nil {
		return err
	}
	if err := pc.SetControlMessage(ipv6.FlagInterface, true); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { pc.SetReadDeadline(time.Now()) })
	defer stop()
	msg := Message(ifi.HardwareAddr)
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("router advertisements: read: %w", err)
		}
		if n < 8 || buf[0] != byte(ipv6.ICMPTypeRouterSolicitation) || cm == nil || cm.IfIndex != ifi.Index {
			continue
		}
		// Reply to the all-nodes group: a soliciting host without an
		// address (src ::) can only hear that, and it is what routers do.
		dst := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: ifi.Name}
		wcm := &ipv6.ControlMessage{HopLimit: 255, IfIndex: ifi.Index}
		if _, err := pc.WriteTo(msg, wcm, dst); err != nil {
			r.Log.Warn("router advertisement not sent", "interface", r.Interface, "err", err)
			continue
		}
		r.Log.Debug("answered router solicitation", "interface", r.Interface, "from", src)
	}
}
