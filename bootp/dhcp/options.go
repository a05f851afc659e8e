package dhcp

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/livebootp/livebootp/bootp/config"
)

// netParams holds the encoded option values of one configuration snapshot,
// so the hot path copies references instead of encoding the same addresses
// for every packet. The slices are shared by every reply and never written.
type netParams struct {
	cfg       *config.Config
	server    netip.Addr
	serverIP  net.IP
	sname     string // server address as text: sname field and option 66
	mask      []byte
	routers   []byte
	dns       []byte
	domain    []byte
	broadcast []byte
	lease     []byte // options 51, 58 (T1 = 1/2) and 59 (T2 = 7/8, RFC 2131 §4.4.5)
	renew     []byte
	rebind    []byte
}

func (h *Handler) paramsFor(cfg *config.Config) *netParams {
	if p := h.params.Load(); p != nil && p.cfg == cfg {
		return p
	}
	r := cfg.Registry
	p := &netParams{cfg: cfg, server: r.ServerAddress.Unmap()}
	if p.server.Is4() {
		p.serverIP = net.IP(p.server.AsSlice())
		p.sname = p.server.String()
	}
	if r.Subnet.IsValid() && r.Subnet.Addr().Is4() {
		mask := net.CIDRMask(r.Subnet.Bits(), 32)
		p.mask = []byte(mask)
		base := r.Subnet.Masked().Addr().As4()
		for i := range base {
			base[i] |= ^mask[i]
		}
		p.broadcast = base[:]
	}
	p.routers = ips(r.Routers)
	p.dns = ips(r.DomainNameServers)
	if r.DomainName != "" {
		p.domain = []byte(r.DomainName)
	}
	lease := r.LeaseTime
	if lease <= 0 {
		lease = config.DefaultLeaseTime
	}
	p.lease, p.renew, p.rebind = seconds(lease), seconds(lease/2), seconds(lease*7/8)
	h.params.Store(p)
	return p
}

func ips(as []netip.Addr) []byte {
	var b []byte
	for _, a := range as {
		if a = a.Unmap(); a.Is4() {
			b = append(b, a.AsSlice()...)
		}
	}
	return b
}

func seconds(d time.Duration) []byte {
	s := d / time.Second
	if s > 0xfffffffe {
		s = 0xfffffffe
	}
	return binary.BigEndian.AppendUint32(nil, uint32(s))
}

// withBase fills the header fields every reply copies from its request
// (RFC 2131 table 3): xid, flags, chaddr, and for relayed requests giaddr,
// hops and the relay agent information (RFC 3046 §2.2: echoed unchanged).
// RFC 6842: the client identifier is echoed too.
func withBase(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		dhcpv4.WithReply(req)(d)
		d.GatewayIPAddr = req.GatewayIPAddr
		d.HopCount = req.HopCount
		if mt != dhcpv4.MessageTypeNone {
			setOpt(d, dhcpv4.OptionDHCPMessageType, msgTypeBytes[mt])
		}
		if v := req.Options.Get(dhcpv4.OptionRelayAgentInformation); v != nil {
			setOpt(d, dhcpv4.OptionRelayAgentInformation, v)
		}
		if v := req.Options.Get(dhcpv4.OptionClientIdentifier); v != nil && mt != dhcpv4.MessageTypeNone {
			setOpt(d, dhcpv4.OptionClientIdentifier, v)
		}
	}
}

// withNetwork adds the host's network settings. Mask, routers, DNS, domain
// and host name go to every client (as ISC dhcpd and Kea do, and because
// the init helper takes its host name from option 12); the broadcast address
// only to clients that ask or send no parameter request list.
func withNetwork(req *dhcpv4.DHCPv4, p *netParams, h *config.Host) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		set := func(code dhcpv4.OptionCode, v []byte) {
			if len(v) > 0 {
				setOpt(d, code, v)
			}
		}
		set(dhcpv4.OptionSubnetMask, p.mask)
		set(dhcpv4.OptionRouter, p.routers)
		set(dhcpv4.OptionDomainNameServer, p.dns)
		set(dhcpv4.OptionDomainName, p.domain)
		if h.Name != "" {
			set(dhcpv4.OptionHostName, []byte(h.Name))
		}
		if requested(req, dhcpv4.OptionBroadcastAddress, true) {
			set(dhcpv4.OptionBroadcastAddress, p.broadcast)
		}
	}
}

func withLeaseTimes(p *netParams) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		setOpt(d, dhcpv4.OptionIPAddressLeaseTime, p.lease)
		setOpt(d, dhcpv4.OptionRenewTimeValue, p.renew)
		setOpt(d, dhcpv4.OptionRebindingTimeValue, p.rebind)
	}
}

func withServerID(p *netParams) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		if p.serverIP != nil {
			setOpt(d, dhcpv4.OptionServerIdentifier, p.serverIP)
		}
	}
}

// withBootFile adds what to boot: siaddr (next server) and sname name this
// server, the file field holds the loader or URL. Options 66 and 67 repeat
// them for clients that ask (some UEFI firmware reads only the options); a
// name too long for the 128-byte file field goes in option 67 regardless.
// dhcp selects whether the DHCP-only options (66, 67, 60) may be used.
func withBootFile(req *dhcpv4.DHCPv4, p *netParams, file string, dhcp, httpClient bool) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		d.ServerIPAddr = p.serverIP
		d.ServerHostName = p.sname
		if len(file) < 128 {
			d.BootFileName = file
		}
		if !dhcp {
			return
		}
		if requested(req, dhcpv4.OptionTFTPServerName, false) && p.sname != "" {
			setOpt(d, dhcpv4.OptionTFTPServerName, []byte(p.sname))
		}
		if requested(req, dhcpv4.OptionBootfileName, false) || len(file) >= 128 {
			setOpt(d, dhcpv4.OptionBootfileName, []byte(file))
		}
		if httpClient {
			// UEFI HTTP boot takes an offer only if it carries this class.
			setOpt(d, dhcpv4.OptionClassIdentifier, []byte("HTTPClient"))
		}
	}
}

// pxeDiscoveryControl is option 43 for proxyDHCP replies: PXE sub-option 6
// (PXE_DISCOVERY_CONTROL) with bit 3 set, "download the boot file named in
// this offer", so BIOS PXE skips boot server discovery and menus; then End.
var pxeDiscoveryControl = []byte{6, 1, 8, 255}

// setOpt sets an option without the boxing of dhcpv4.OptGeneric, which
// costs an allocation per option per reply. v is never written afterwards.
func setOpt(d *dhcpv4.DHCPv4, code dhcpv4.OptionCode, v []byte) {
	d.Options[code.Code()] = v
}

// msgTypeBytes holds option 53's value for each message type.
var msgTypeBytes = func() (t [256][]byte) {
	for i := range t {
		t[i] = []byte{byte(i)}
	}
	return t
}()

// messageType is req.MessageType() without its decoder's allocations.
func messageType(d *dhcpv4.DHCPv4) dhcpv4.MessageType {
	if v := d.Options.Get(dhcpv4.OptionDHCPMessageType); len(v) == 1 {
		return dhcpv4.MessageType(v[0])
	}
	return dhcpv4.MessageTypeNone
}

// requested reports whether the client listed code in its parameter request
// list (option 55); without a list, whether ifNoList.
func requested(req *dhcpv4.DHCPv4, code dhcpv4.OptionCode, ifNoList bool) bool {
	prl := req.Options.Get(dhcpv4.OptionParameterRequestList)
	if prl == nil {
		return ifNoList
	}
	return bytes.IndexByte(prl, code.Code()) >= 0
}

// lease builds a DHCPOFFER or DHCPACK for a known host. An ACK to a
// DHCPINFORM carries no address and no lease times (RFC 2131 §4.3.5).
func (h *Handler) lease(req *dhcpv4.DHCPv4, cfg *config.Config, p *netParams, a *answer, mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	inform := messageType(req) == dhcpv4.MessageTypeInform
	mods := make([]dhcpv4.Modifier, 0, 8)
	mods = append(mods, withBase(req, mt), withServerID(p), withNetwork(req, p, a.host))
	if mt == dhcpv4.MessageTypeAck {
		mods = append(mods, dhcpv4.WithClientIP(req.ClientIPAddr))
	}
	if !inform {
		mods = append(mods, dhcpv4.WithYourIP(net.IP(a.host.Address.AsSlice())), withLeaseTimes(p))
	}
	if file := h.bootFile(cfg, a); file != "" {
		a.bootFile = file
		mods = append(mods, withBootFile(req, p, file, true, a.client.HTTPClient))
	}
	if a.client.IPXE && mt == dhcpv4.MessageTypeOffer {
		mods = append(mods, withNoProxyDHCP)
	}
	return build(req, mods...)
}

// ipxeNoProxyDHCP is iPXE's encapsulated option 175, sub-option 176
// ("no-pxedhcp") set to 1. Holding an OFFER, iPXE otherwise waits up to
// a few seconds for a ProxyDHCP offer in case a separate PXE server exists;
// in normal mode the registry is that server, so there is none to wait for.
var ipxeNoProxyDHCP = []byte{176, 1, 1}

func withNoProxyDHCP(d *dhcpv4.DHCPv4) {
	setOpt(d, dhcpv4.GenericOptionCode(175), ipxeNoProxyDHCP)
}

func (h *Handler) bootFile(cfg *config.Config, a *answer) string {
	if h.Booter == nil {
		return ""
	}
	file, _ := h.Booter.BootFile(cfg, a.host, a.client)
	return file
}

// bootReply answers a plain BOOTP request (RFC 951, no option 53) with the
// address, next server, boot file and the RFC 1497 vendor extensions; none
// of the DHCP-only options (lease, server identifier, 66/67).
func (h *Handler) bootReply(req *dhcpv4.DHCPv4, cfg *config.Config, p *netParams, a answer) answer {
	a.result, a.exchange = resultBootReply, "BOOTP→BOOTREPLY"
	mods := []dhcpv4.Modifier{
		withBase(req, dhcpv4.MessageTypeNone),
		dhcpv4.WithYourIP(net.IP(a.host.Address.AsSlice())),
		withNetwork(req, p, a.host),
	}
	if file := h.bootFile(cfg, &a); file != "" {
		a.bootFile = file
		mods = append(mods, withBootFile(req, p, file, false, false))
	} else {
		mods = append(mods, dhcpv4.WithServerIP(p.serverIP))
	}
	a.reply = build(req, mods...)
	a.dst = destination(req, a.reply)
	return a
}

// proxyReply builds a proxyDHCP offer or ack: no address and no network
// settings (the address server gives those), option 60 naming the class the
// client booted with, option 43 for PXE firmware and the client's UUID
// (option 97) echoed as the PXE specification asks. nil: nothing to boot.
func (h *Handler) proxyReply(req *dhcpv4.DHCPv4, cfg *config.Config, p *netParams, a *answer, mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	file := h.bootFile(cfg, a)
	if file == "" {
		return nil
	}
	a.bootFile = file
	class := "PXEClient"
	if a.client.HTTPClient {
		class = "HTTPClient"
	}
	return build(req,
		withBase(req, mt),
		withServerID(p),
		dhcpv4.WithClientIP(req.ClientIPAddr),
		withBootFile(req, p, file, true, false),
		func(d *dhcpv4.DHCPv4) {
			setOpt(d, dhcpv4.OptionClassIdentifier, []byte(class))
			if !a.client.HTTPClient {
				setOpt(d, dhcpv4.OptionVendorSpecificInformation, pxeDiscoveryControl)
			}
			if v := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); v != nil {
				setOpt(d, dhcpv4.OptionClientMachineIdentifier, v)
			}
		},
	)
}

// nak refuses a REQUEST. Through a relay the broadcast bit is set so the
// relay broadcasts it to a client that may have no usable address (§4.1).
func (h *Handler) nak(req *dhcpv4.DHCPv4, p *netParams, why string) *dhcpv4.DHCPv4 {
	return build(req,
		withBase(req, dhcpv4.MessageTypeNak),
		withServerID(p),
		dhcpv4.WithOption(dhcpv4.OptMessage(why)),
		func(d *dhcpv4.DHCPv4) {
			if gi := addr4(req.GatewayIPAddr); gi.IsValid() && !gi.IsUnspecified() {
				d.SetBroadcast()
			}
		},
	)
}

// build applies the modifiers to an empty reply, then fits it into the size
// the client accepts.
func build(req *dhcpv4.DHCPv4, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	d := &dhcpv4.DHCPv4{Options: make(dhcpv4.Options, 16)}
	for _, m := range mods {
		m(d)
	}
	fit(d, maxSize(req))
	return d
}

// Sizes of RFC 2131 and RFC 951: the fixed header before the options, what a
// DHCP client must accept without option 57 (576-byte IP datagrams, §2) and
// what a BOOTP client expects (a 64-byte vendor area).
const (
	headerLen      = 236
	ipUDPHeaders   = 28
	dhcpDefaultMax = 576 - ipUDPHeaders
	bootpMax       = 300
)

// maxSize is the largest reply the client accepts, from option 57 (which
// counts the IP and UDP headers, RFC 2132 §9.10).
func maxSize(req *dhcpv4.DHCPv4) int {
	if v := req.Options.Get(dhcpv4.OptionMaximumDHCPMessageSize); len(v) == 2 {
		if n := int(binary.BigEndian.Uint16(v)); n >= 576 {
			return n - ipUDPHeaders
		}
	}
	if messageType(req) == dhcpv4.MessageTypeNone {
		return bootpMax
	}
	return dhcpDefaultMax
}

// dropOrder lists the options fit may leave out, least needed first: the
// copies of header fields, then what a client can live without.
var dropOrder = []dhcpv4.OptionCode{
	dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName, dhcpv4.OptionBroadcastAddress,
	dhcpv4.OptionDomainName, dhcpv4.OptionDomainNameServer, dhcpv4.OptionHostName,
	dhcpv4.OptionRouter, dhcpv4.OptionSubnetMask,
}

// fit drops options until the encoded reply is at most max bytes (option
// overload, RFC 2132 §9.3, is not used: few clients need it).
func fit(d *dhcpv4.DHCPv4, max int) {
	size := encodedLen(d)
	for _, code := range dropOrder {
		if size <= max {
			return
		}
		if v, ok := d.Options[code.Code()]; ok {
			if code == dhcpv4.OptionBootfileName && len(d.BootFileName) == 0 {
				continue // the only copy of a long boot file name
			}
			size -= optionLen(v)
			delete(d.Options, code.Code())
		}
	}
}

func encodedLen(d *dhcpv4.DHCPv4) int {
	n := headerLen + 4 + 1 // magic cookie, End
	for _, v := range d.Options {
		n += optionLen(v)
	}
	return n
}

// optionLen is an option's encoded size; longer than 255 bytes it is split
// into several (RFC 3396).
func optionLen(v []byte) int {
	if len(v) == 0 {
		return 2
	}
	return len(v) + 2*((len(v)+254)/255)
}
