// Package dhcp answers DHCP and BOOTP requests for the hosts of the registry's
// configuration: each known MAC address gets its fixed address, the network
// settings of the `bootp-registry:` section, its host name and what to boot
// (chosen by package boot). It also speaks proxyDHCP for networks whose DHCP
// server the operator cannot replace.
//
// It never hands out an address that is not a host's fixed address (there is
// no pool and no lease database: the configuration is the only state), never
// answers a MAC address it does not know unless the configuration says so
// (boot-unknown, proxy mode only), and never decides what to boot itself.
package dhcp

import (
	"context"
	"encoding/hex"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/livebootp/livebootp/bootp/boot"
	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/bootp/state"
)

// Ports of RFC 2131 §4.1 and of the PXE specification (boot server port, where
// PXE clients and iPXE send their proxyDHCP REQUEST).
const (
	ServerPort    = 67
	ClientPort    = 68
	PXEServerPort = 4011
)

// Backend gives the handler the configuration to answer from. The registry
// swaps the snapshot atomically on reload; the handler asks for it once per
// request so a request is answered from one consistent configuration.
type Backend interface {
	Config() *config.Config
}

// Booter decides what a client boots; boot.Booter is the production one.
// An empty file means nothing to boot: the reply then carries no boot
// information (and a proxyDHCP reply is not sent at all).
type Booter interface {
	BootFile(cfg *config.Config, h *config.Host, c boot.Client) (file string, isURL bool)
}

// Handler answers DHCP and BOOTP requests. The exported fields are its
// dependencies; the zero value of the unexported ones is ready to use, so a
// Handler is built with a struct literal. Safe for concurrent use.
type Handler struct {
	Backend Backend
	Booter  Booter           // nil: no boot information
	Tracker *state.Tracker   // may be nil
	Log     *slog.Logger     // nil: discard
	Metrics *Metrics         // may be nil
	Now     func() time.Time // nil: time.Now

	params  atomic.Pointer[netParams] // option values precomputed for one config snapshot
	unknown unknownLimiter
}

// Reply computes the answer to req: the reply, where to send it and whether to
// answer at all. It does no network I/O (it logs, counts and records in the
// Tracker), so tests drive it with tables of requests.
func (h *Handler) Reply(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, netip.AddrPort, bool) {
	a := h.answer(req, false)
	return a.reply, a.dst, a.reply != nil
}

// ReplyProxy is Reply for a request that arrived on the PXE boot server port
// (4011): such a request only ever gets boot information, never an address.
func (h *Handler) ReplyProxy(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, netip.AddrPort, bool) {
	a := h.answer(req, true)
	return a.reply, a.dst, a.reply != nil
}

// Results, the `result` label of the packet counter and the reason in logs.
const (
	resultOffer       = "offer"
	resultAck         = "ack"
	resultNak         = "nak"
	resultBootReply   = "bootreply"
	resultRecorded    = "recorded" // RELEASE, DECLINE: nothing to answer
	resultUnknownMAC  = "unknown-mac"
	resultOtherServer = "other-server"
	resultNotPXE      = "not-pxe"
	resultNoBootFile  = "no-boot-file"
	resultNoConfig    = "no-config"
	resultMalformed   = "malformed"
	resultIgnored     = "ignored"
)

// answer is everything one request produced: the reply for Serve, the rest
// for logs, metrics and the Tracker.
type answer struct {
	reply    *dhcpv4.DHCPv4
	dst      netip.AddrPort
	kind     string // request kind: DISCOVER, REQUEST, ..., BOOTP
	result   string
	exchange string // for the Tracker: "DISCOVER→OFFER", "RELEASE"
	proxy    bool
	host     *config.Host
	client   boot.Client
	bootFile string
	why      string // detail for ignored requests and NAKs
}

func (h *Handler) answer(req *dhcpv4.DHCPv4, pxePort bool) answer {
	a := h.decide(req, pxePort)
	h.record(req, &a)
	return a
}

// decide is the protocol: which requests get which reply. Its only side
// effect is caching the option values of a new configuration snapshot.
func (h *Handler) decide(req *dhcpv4.DHCPv4, pxePort bool) answer {
	a := answer{kind: kindOf(req), result: resultIgnored}
	if req == nil || req.OpCode != dhcpv4.OpcodeBootRequest || len(req.ClientHWAddr) == 0 {
		a.result, a.why = resultMalformed, "not a BOOTREQUEST with a client hardware address"
		return a
	}
	var cfg *config.Config
	if h.Backend != nil {
		cfg = h.Backend.Config()
	}
	if cfg == nil {
		a.result, a.why = resultNoConfig, "no configuration loaded"
		return a
	}
	p := h.paramsFor(cfg)
	a.client = boot.ClientFromRequest(req)
	a.proxy = pxePort || cfg.Registry.ProxyDHCP

	if a.proxy && !a.client.PXEClient && !a.client.HTTPClient {
		// In proxy mode another server owns addresses: only firmware that
		// looks for boot servers is ours to answer.
		a.result, a.why = resultNotPXE, "proxy mode answers only PXEClient/HTTPClient vendor classes"
		return a
	}
	host, ok := cfg.HostByMAC(req.ClientHWAddr)
	if !ok {
		if a.proxy && cfg.Registry.BootUnknown != "" {
			// boot-unknown: boot information without an address, which only
			// makes sense where another server hands out addresses.
			host = &config.Host{MAC: req.ClientHWAddr, Image: cfg.Registry.BootUnknown}
		} else {
			a.result, a.why = resultUnknownMAC, "MAC address not in hosts:"
			if cfg.Registry.BootUnknown != "" {
				a.why += "; boot-unknown applies in proxy-dhcp mode only (there is no pool of addresses to give)"
			}
			return a
		}
	}
	a.host = host

	if a.proxy {
		return h.decideProxy(req, cfg, p, a, pxePort)
	}
	switch mt := messageType(req); mt {
	case dhcpv4.MessageTypeNone:
		return h.bootReply(req, cfg, p, a)
	case dhcpv4.MessageTypeDiscover:
		a.result, a.exchange = resultOffer, "DISCOVER→OFFER"
		a.reply = h.lease(req, cfg, p, &a, dhcpv4.MessageTypeOffer)
	case dhcpv4.MessageTypeRequest:
		return h.request(req, cfg, p, a)
	case dhcpv4.MessageTypeInform:
		a.result, a.exchange = resultAck, "INFORM→ACK"
		a.reply = h.lease(req, cfg, p, &a, dhcpv4.MessageTypeAck)
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		if sid := serverID(req); sid.IsValid() && sid != p.server {
			a.result, a.why = resultOtherServer, "server identifier "+sid.String()
			return a
		}
		a.result, a.exchange = resultRecorded, mt.String()
	default:
		a.why = "message type " + mt.String() + " is not for a server"
	}
	a.dst = destination(req, a.reply)
	return a
}

// request follows RFC 2131 §4.3.2. The client's state is told apart by
// which of server identifier, requested address and ciaddr it sends:
//
//	SELECTING:   server id, requested IP, no ciaddr
//	INIT-REBOOT: no server id, requested IP, no ciaddr
//	RENEWING / REBINDING: no server id, no requested IP, ciaddr
//
// "If the DHCPREQUEST message contains a 'server identifier' option, the
// message is in response to a DHCPOFFER message. Otherwise, the message is a
// request to verify or extend an existing lease." A server not named there
// stays silent: the client took another server's offer.
func (h *Handler) request(req *dhcpv4.DHCPv4, cfg *config.Config, p *netParams, a answer) answer {
	sid := serverID(req)
	if sid.IsValid() && sid != p.server {
		a.result, a.why = resultOtherServer, "client selected server "+sid.String()
		return a
	}
	want := addr4(req.RequestedIPAddress())
	state := "SELECTING"
	switch {
	case sid.IsValid():
		if !want.IsValid() {
			want = addr4(req.ClientIPAddr) // some clients put it in ciaddr
		}
	case want.IsValid():
		state = "INIT-REBOOT"
	default:
		want = addr4(req.ClientIPAddr)
		state = "RENEWING"
		if !want.IsValid() || want.IsUnspecified() {
			a.result, a.why = resultMalformed, "REQUEST without server identifier, requested address or ciaddr"
			return a
		}
	}
	if want != a.host.Address {
		// "If the requested address is incorrect ... the server SHOULD
		// respond with a DHCPNAK message to the client" (§4.3.2).
		a.result, a.exchange = resultNak, "REQUEST→NAK"
		a.why = state + ": client asked for " + want.String() + ", host " + a.host.Name + " has " + a.host.Address.String()
		a.reply = h.nak(req, p, a.why)
		a.dst = destination(req, a.reply)
		return a
	}
	a.result, a.exchange = resultAck, "REQUEST→ACK"
	a.reply = h.lease(req, cfg, p, &a, dhcpv4.MessageTypeAck)
	a.dst = destination(req, a.reply)
	return a
}

// decideProxy answers as a proxyDHCP server (PXE specification 2.1, §2.2.5):
// boot information only, on DISCOVER (port 67) and on REQUEST (port 67 when
// it names this server, or port 4011).
func (h *Handler) decideProxy(req *dhcpv4.DHCPv4, cfg *config.Config, p *netParams, a answer, pxePort bool) answer {
	mt := messageType(req)
	switch {
	case mt == dhcpv4.MessageTypeDiscover && !pxePort:
		a.result, a.exchange = resultOffer, "DISCOVER→OFFER"
		a.reply = h.proxyReply(req, cfg, p, &a, dhcpv4.MessageTypeOffer)
	case mt == dhcpv4.MessageTypeRequest || (pxePort && mt == dhcpv4.MessageTypeInform):
		if sid := serverID(req); (sid.IsValid() && sid != p.server) || (!sid.IsValid() && !pxePort) {
			a.result, a.why = resultOtherServer, "REQUEST for the address server, not the proxy"
			return a
		}
		a.result, a.exchange = resultAck, mt.String()+"→ACK"
		a.reply = h.proxyReply(req, cfg, p, &a, dhcpv4.MessageTypeAck)
	default:
		a.why = "proxy mode answers only DISCOVER and REQUEST"
		return a
	}
	if a.reply == nil {
		a.result, a.why, a.exchange = resultNoBootFile, "nothing to boot for this client", ""
		return a
	}
	a.dst = destination(req, a.reply)
	return a
}

// record logs, counts and tracks one answer. Unknown MACs are logged and
// tracked at most once per MAC per minute so a flood of them costs little.
func (h *Handler) record(req *dhcpv4.DHCPv4, a *answer) {
	h.Metrics.count(a.kind, a.result)
	log := h.logger()
	ctx := context.Background()
	switch {
	case a.result == resultUnknownMAC:
		if !h.unknown.allow(req.ClientHWAddr, h.now()) {
			return
		}
		if h.Tracker != nil {
			h.Tracker.DHCP(req.ClientHWAddr, a.kind+" (unknown MAC, ignored)", a.client.ArchName(), "")
		}
		log.LogAttrs(ctx, slog.LevelInfo, "ignoring unknown MAC address; add it under hosts: to boot it (logged once a minute per MAC)",
			slog.String("mac", req.ClientHWAddr.String()), slog.String("xid", xidString(req.TransactionID)),
			slog.String("type", a.kind), slog.String("arch", a.client.ArchName()), slog.String("reason", a.why))
	case a.exchange != "":
		if h.Tracker != nil {
			h.Tracker.DHCP(req.ClientHWAddr, a.exchange, a.client.ArchName(), a.bootFile)
		}
		level := slog.LevelInfo
		if a.kind == "DECLINE" {
			level = slog.LevelWarn // someone else uses the host's address
		}
		if !log.Enabled(ctx, level) {
			return
		}
		attrs := make([]slog.Attr, 0, 12)
		attrs = append(attrs, slog.String("mac", req.ClientHWAddr.String()), slog.String("xid", xidString(req.TransactionID)),
			slog.String("type", a.exchange))
		if a.host != nil {
			attrs = append(attrs, slog.String("host", a.host.Name))
			if a.host.Address.IsValid() {
				attrs = append(attrs, slog.String("ip", a.host.Address.String()))
			}
		}
		if a.bootFile != "" {
			attrs = append(attrs, slog.String("arch", a.client.ArchName()), slog.String("file", a.bootFile))
		}
		if a.proxy {
			attrs = append(attrs, slog.Bool("proxy", true))
		}
		if a.why != "" {
			attrs = append(attrs, slog.String("reason", a.why))
		}
		if a.reply != nil {
			attrs = append(attrs, slog.String("to", a.dst.String()))
		}
		msg := "dhcp answer"
		switch a.kind {
		case "DECLINE":
			msg = "client declined its address: another machine uses it; find it (arping) or change fixed-address"
		case "RELEASE":
			msg = "client released its address"
		}
		log.LogAttrs(ctx, level, msg, attrs...)
	default:
		if log.Enabled(ctx, slog.LevelDebug) {
			log.LogAttrs(ctx, slog.LevelDebug, "dhcp request not answered",
				slog.String("mac", req.ClientHWAddr.String()), slog.String("xid", xidString(req.TransactionID)),
				slog.String("type", a.kind), slog.String("result", a.result), slog.String("reason", a.why))
		}
	}
}

// xidString is TransactionID.String ("0x" and 8 hex digits) without fmt,
// which costs more than the rest of a log line.
func xidString(x dhcpv4.TransactionID) string {
	var b [10]byte
	b[0], b[1] = '0', 'x'
	hex.Encode(b[2:], x[:])
	return string(b[:])
}

func (h *Handler) logger() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}

func (h *Handler) now() time.Time {
	if h.Now == nil {
		return time.Now()
	}
	return h.Now()
}

// kindOf names a request for logs and metrics; BOOTP is a request without
// option 53.
func kindOf(req *dhcpv4.DHCPv4) string {
	if req == nil {
		return "INVALID"
	}
	switch mt := messageType(req); mt {
	case dhcpv4.MessageTypeNone:
		return "BOOTP"
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeDecline,
		dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeInform:
		return mt.String()
	default:
		return "OTHER"
	}
}

// destination is RFC 2131 §4.1: "If the 'giaddr' field in a DHCP message from
// a client is non-zero, the server sends any return messages to the 'DHCP
// server' port on the BOOTP relay agent whose address appears in 'giaddr'. If
// the 'giaddr' field is zero and the 'ciaddr' field is nonzero, then the
// server unicasts DHCPOFFER and DHCPACK messages to the address in 'ciaddr'.
// ... In all cases, when 'giaddr' is zero, the server broadcasts any DHCPNAK
// messages to 0xffffffff." A client without an address is sent a broadcast
// whether or not it set the broadcast bit: unicasting to an address it does
// not have yet would need an ARP entry injected by hand.
func destination(req, reply *dhcpv4.DHCPv4) netip.AddrPort {
	if reply == nil {
		return netip.AddrPort{}
	}
	if gi := addr4(req.GatewayIPAddr); gi.IsValid() && !gi.IsUnspecified() {
		return netip.AddrPortFrom(gi, ServerPort)
	}
	if messageType(reply) != dhcpv4.MessageTypeNak {
		if ci := addr4(req.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() {
			return netip.AddrPortFrom(ci, ClientPort)
		}
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), ClientPort)
}

func serverID(req *dhcpv4.DHCPv4) netip.Addr {
	return addr4(req.Options.Get(dhcpv4.OptionServerIdentifier))
}

// addr4 converts a 4-byte (or 16-byte mapped) IP; anything else is invalid.
func addr4(ip []byte) netip.Addr {
	switch len(ip) {
	case 4:
		return netip.AddrFrom4([4]byte(ip))
	case 16:
		if a := netip.AddrFrom16([16]byte(ip)); a.Is4In6() {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// unknownLimiter remembers when each unknown MAC was last logged. It is
// bounded: when full, entries older than the interval go, and if none has
// expired new MACs are not logged until one does.
type unknownLimiter struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

const (
	unknownEvery = time.Minute
	unknownMax   = 4096
)

func (u *unknownLimiter) allow(mac net.HardwareAddr, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if last, ok := u.seen[string(mac)]; ok {
		if now.Sub(last) < unknownEvery {
			return false
		}
		u.seen[string(mac)] = now
		return true
	}
	if u.seen == nil {
		u.seen = make(map[string]time.Time)
	}
	if len(u.seen) >= unknownMax {
		for k, t := range u.seen {
			if now.Sub(t) >= unknownEvery {
				delete(u.seen, k)
			}
		}
		if len(u.seen) >= unknownMax {
			return false
		}
	}
	u.seen[string(mac)] = now
	return true
}

// ConfigPointer is a Backend over an atomic pointer: whoever loads the
// configuration Stores each new snapshot and requests in flight finish with
// the one they started with.
type ConfigPointer struct {
	atomic.Pointer[config.Config]
}

// Config returns the current snapshot (nil before the first Store).
func (c *ConfigPointer) Config() *config.Config { return c.Load() }
