// Package netconf brings a target's network up in the initrd: every
// Ethernet link up, wait (bounded) for carrier, DHCP with
// insomniacslk/dhcp's nclient4 on the links that have one (the first lease
// wins), then the address, default route and MTU set through netlink and
// resolv.conf written.
//
// It must never loop unbounded (carrier and DHCP have deadlines) and never
// touch links other than Ethernet ones and lo.
package netconf

import (
	"github.com/livebootp/livebootp/wire"

	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VendorClass is sent in DHCP option 60 so the registry can tell the init
// helper's request from the firmware's and iPXE's.
const VendorClass = wire.VendorClassInit

// Options tune Up. Zero values take the defaults in brackets.
type Options struct {
	Netlink *netlink.Handle  // [a handle on the current network namespace]
	BootIF  net.HardwareAddr // use only this NIC (BOOTIF=); nil: any Ethernet NIC with carrier
	Carrier time.Duration    // wait this long for a link to come up [20 s]
	Timeout time.Duration    // give DHCP this long in total [60 s]
	Log     func(format string, args ...any)
}

// Lease is the configuration DHCP handed out.
type Lease struct {
	Iface    string
	MAC      net.HardwareAddr
	Addr     net.IPNet
	Router   net.IP
	DNS      []net.IP
	Domain   string
	Hostname string // option 12
	Server   net.IP // server identifier
	MTU      int
	Duration time.Duration
}

// Up configures the network and returns the lease.
func Up(ctx context.Context, o Options) (*Lease, error) {
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	if o.Carrier <= 0 {
		o.Carrier = 20 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	h := o.Netlink
	if h == nil {
		var err error
		// Route only: the initrd's kernel may lack the other netlink
		// families (xfrm is a module), and NewHandle() wants them all.
		if h, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return nil, fmt.Errorf("netlink: %w", err)
		}
		defer h.Close()
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		_ = h.LinkSetUp(lo)
	}
	links, err := WaitCarrier(ctx, h, o.BootIF, o.Carrier, o.Log)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	lease, err := DHCP(ctx, names, o.Timeout, o.Log)
	if err != nil {
		return nil, err
	}
	if err := Configure(h, lease); err != nil {
		return lease, err
	}
	return lease, nil
}

// ethernet lists the Ethernet links (physical NICs and veths; not lo,
// bridges, bonds or tunnels), optionally only the one with MAC want.
func ethernet(h *netlink.Handle, want net.HardwareAddr) ([]netlink.Link, []string, error) {
	all, err := h.LinkList()
	if err != nil {
		return nil, nil, fmt.Errorf("list network links: %w", err)
	}
	var out []netlink.Link
	var seen []string
	for _, l := range all {
		a := l.Attrs()
		if a.EncapType != "ether" || len(a.HardwareAddr) != 6 {
			continue
		}
		switch l.Type() {
		case "device", "veth":
		default:
			continue
		}
		seen = append(seen, a.Name+" "+a.HardwareAddr.String())
		if want != nil && a.HardwareAddr.String() != want.String() {
			continue
		}
		out = append(out, l)
	}
	return out, seen, nil
}

// WaitCarrier sets every Ethernet link up and waits until at least one
// reports carrier (IFF_LOWER_UP), or until timeout. With bootIF, only that
// NIC counts.
func WaitCarrier(ctx context.Context, h *netlink.Handle, bootIF net.HardwareAddr, timeout time.Duration, logf func(string, ...any)) ([]netlink.Link, error) {
	deadline := time.Now().Add(timeout)
	upDone := map[int]bool{}
	var seen []string
	for i := 0; ; i++ {
		links, s, err := ethernet(h, bootIF)
		if err != nil {
			return nil, err
		}
		seen = s
		var ready []netlink.Link
		for _, l := range links {
			a := l.Attrs()
			if !upDone[a.Index] {
				if err := h.LinkSetUp(l); err != nil {
					logf("%s: link up: %v", a.Name, err)
				}
				upDone[a.Index] = true
				continue // read the flags again on the next round
			}
			if a.RawFlags&unix.IFF_LOWER_UP != 0 {
				ready = append(ready, l)
			}
		}
		if len(ready) > 0 {
			return ready, nil
		}
		if time.Now().After(deadline) {
			what := "no Ethernet interface"
			if len(seen) > 0 {
				what = "no carrier on " + strings.Join(seen, ", ")
			}
			if bootIF != nil {
				what += " (BOOTIF=" + bootIF.String() + ")"
			}
			return nil, fmt.Errorf("%s after %s", what, timeout)
		}
		// A virtual NIC has carrier as soon as it is up, a physical one
		// after autonegotiation (seconds): look again soon, then less
		// often.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(time.Duration(i+1)*5*time.Millisecond, 50*time.Millisecond)):
		}
	}
}

// DHCP runs DISCOVER/OFFER/REQUEST/ACK on every interface in ifaces at
// once and returns the first lease; the others are abandoned. It retries
// until timeout.
func DHCP(ctx context.Context, ifaces []string, timeout time.Duration, logf func(string, ...any)) (*Lease, error) {
	if len(ifaces) == 0 {
		return nil, errors.New("DHCP: no interface")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		l   *Lease
		err error
	}
	ch := make(chan result, len(ifaces))
	for _, ifc := range ifaces {
		go func() {
			l, err := dhcpLoop(ctx, ifc, logf)
			ch <- result{l, err}
		}()
	}
	var errs []error
	for range ifaces {
		r := <-ch
		if r.err == nil {
			return r.l, nil
		}
		errs = append(errs, r.err)
	}
	return nil, fmt.Errorf("DHCP: no lease after %s: %w", timeout, errors.Join(errs...))
}

func dhcpLoop(ctx context.Context, ifc string, logf func(string, ...any)) (*Lease, error) {
	var last error
	for attempt := 1; ; attempt++ {
		l, err := dhcpOnce(ctx, ifc)
		if err == nil {
			return l, nil
		}
		last = err
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", ifc, last)
		}
		logf("%s: DHCP attempt %d: %v", ifc, attempt, err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: %w", ifc, last)
		case <-time.After(time.Duration(min(attempt, 4)) * 500 * time.Millisecond):
		}
	}
}

func dhcpOnce(ctx context.Context, ifc string) (*Lease, error) {
	c, err := nclient4.New(ifc, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	mods := []dhcpv4.Modifier{
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
			dhcpv4.OptionHostName, dhcpv4.OptionDomainName, dhcpv4.OptionInterfaceMTU, dhcpv4.OptionBroadcastAddress),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(VendorClass)),
	}
	ack, err := dora(ctx, c, mods)
	if err != nil {
		return nil, err
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	l := &Lease{
		Iface:    ifc,
		MAC:      c.InterfaceAddr(),
		Addr:     net.IPNet{IP: ack.YourIPAddr.To4(), Mask: mask},
		DNS:      ack.DNS(),
		Domain:   ack.DomainName(),
		Hostname: ack.HostName(),
		Server:   ack.ServerIdentifier(),
		Duration: ack.IPAddressLeaseTime(0),
	}
	if r := ack.Router(); len(r) > 0 {
		l.Router = r[0]
	}
	if mtu, err := dhcpv4.GetUint16(dhcpv4.OptionInterfaceMTU, ack.Options); err == nil && mtu >= 576 {
		l.MTU = int(mtu)
	}
	return l, nil
}

// dora is DISCOVER, OFFER, REQUEST, ACK with a transaction ID from
// math/rand: nclient4's Request takes it from crypto/rand, which early in
// boot waits for the kernel's CRNG (over a second of jitter entropy on a
// machine without a hardware RNG, such as an emulated one), for a number
// that only has to tell this exchange from others on the link. The
// messages are RFC 2131's (section 4.4.1, table 5); nclient4 sends them,
// retries and matches the answers.
func dora(ctx context.Context, c *nclient4.Client, mods []dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	var xid dhcpv4.TransactionID
	binary.BigEndian.PutUint32(xid[:], rand.Uint32())
	common := append([]dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(nclient4.MaxMessageSize))}, mods...)
	discover := request(xid, append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(c.InterfaceAddr()),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover)}, common...))
	offer, err := c.SendAndRead(ctx, nclient4.DefaultServers, discover, nclient4.IsMessageType(dhcpv4.MessageTypeOffer))
	if err != nil {
		return nil, fmt.Errorf("no offer: %w", err)
	}
	req := request(xid, append([]dhcpv4.Modifier{dhcpv4.WithReply(offer), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(offer.ClientIPAddr), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOptionCopied(offer, dhcpv4.OptionServerIdentifier)}, common...))
	ack, err := c.SendAndRead(ctx, nclient4.DefaultServers, req, nclient4.IsAll(
		nclient4.IsCorrectServer(offer.ServerIdentifier()), nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)))
	if err != nil {
		return nil, fmt.Errorf("no answer to the request for %s from %s: %w", offer.YourIPAddr, offer.ServerIdentifier(), err)
	}
	if ack.MessageType() == dhcpv4.MessageTypeNak {
		return nil, fmt.Errorf("%s refused %s (NAK): %s", offer.ServerIdentifier(), offer.YourIPAddr, ack.Message())
	}
	return ack, nil
}

// request is a client message: a BOOTREQUEST from an Ethernet NIC with
// no addresses set, then the modifiers.
func request(xid dhcpv4.TransactionID, mods []dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{
		OpCode: dhcpv4.OpcodeBootRequest, HWType: iana.HWTypeEthernet, ClientHWAddr: make(net.HardwareAddr, 6),
		TransactionID: xid, ClientIPAddr: net.IPv4zero, YourIPAddr: net.IPv4zero, ServerIPAddr: net.IPv4zero,
		GatewayIPAddr: net.IPv4zero, Options: dhcpv4.Options{},
	}
	for _, m := range mods {
		m(d)
	}
	return d
}

// Configure applies the lease: MTU, address (valid for the whole boot: the
// image's own network setup takes over after switch_root), default route.
func Configure(h *netlink.Handle, l *Lease) error {
	link, err := h.LinkByName(l.Iface)
	if err != nil {
		return fmt.Errorf("configure %s: %w", l.Iface, err)
	}
	if l.MTU > 0 && l.MTU != link.Attrs().MTU {
		if err := h.LinkSetMTU(link, l.MTU); err != nil {
			return fmt.Errorf("configure %s: MTU %d: %w", l.Iface, l.MTU, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: l.Addr.IP, Mask: l.Addr.Mask}}
	if err := h.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("configure %s: address %s: %w", l.Iface, l.Addr.String(), err)
	}
	if l.Router != nil && !l.Router.IsUnspecified() {
		rt := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: l.Router}
		if err := h.RouteReplace(rt); err != nil {
			return fmt.Errorf("configure %s: default route via %s: %w", l.Iface, l.Router, err)
		}
	}
	return nil
}

// ResolvConf renders /etc/resolv.conf for the lease.
func ResolvConf(l *Lease) []byte {
	var b strings.Builder
	b.WriteString("# written by livebootp-init from DHCP\n")
	if l.Domain != "" {
		b.WriteString("search " + l.Domain + "\n")
	}
	for _, d := range l.DNS {
		b.WriteString("nameserver " + d.String() + "\n")
	}
	return []byte(b.String())
}

// String is the console line for a lease.
func (l *Lease) String() string {
	s := fmt.Sprintf("%s %s", l.Iface, (&net.IPNet{IP: l.Addr.IP, Mask: l.Addr.Mask}).String())
	if l.Router != nil {
		s += " via " + l.Router.String()
	}
	if len(l.DNS) > 0 {
		var d []string
		for _, ip := range l.DNS {
			d = append(d, ip.String())
		}
		s += " dns " + strings.Join(d, ",")
	}
	if l.Hostname != "" {
		s += " host " + l.Hostname
	}
	if l.Server != nil {
		s += " from " + l.Server.String()
	}
	return s
}
