package dhcp

import (
	"github.com/livebootp/livebootp/internal/syncbuf"

	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/livebootp/livebootp/bootp/boot"
	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/bootp/state"
)

var (
	serverAddr     = netip.MustParseAddr("10.83.0.1")
	webMAC         = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	webAddr        = netip.MustParseAddr("10.83.1.10")
	otherMAC       = net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc}
	relayAddr      = net.IP{10, 83, 200, 1}
	xid            = dhcpv4.TransactionID{0x11, 0x22, 0x33, 0x44}
	serverAddrPort = netip.MustParseAddrPort("10.83.0.1:67")
)

// testRegistry is the `bootp-registry:` section of the test configurations;
// every value the loader would auto-detect is given.
func testRegistry(root string) config.Registry {
	return config.Registry{
		ServerAddress:     serverAddr,
		Subnet:            netip.MustParsePrefix("10.83.0.0/16"),
		Routers:           []netip.Addr{netip.MustParseAddr("10.83.0.254")},
		DomainNameServers: []netip.Addr{netip.MustParseAddr("10.83.0.53"), netip.MustParseAddr("10.83.0.54")},
		DomainName:        "lab.example",
		LeaseTime:         2 * time.Hour,
		TFTPRoot:          root,
		HTTPURL:           "http://10.83.0.1",
	}
}

func testHosts() []*config.Host {
	return []*config.Host{{
		Name: "my-nginx-web-server", MAC: webMAC, Address: webAddr,
		Image: "nginx-web-server/test", SSHAuthorizedKeys: "default", CmdlineAppend: "debug",
	}}
}

// tftpRoot is a TFTP root holding every loader, so the Booter may offer any.
func tftpRoot(t testing.TB) string {
	root := t.TempDir()
	for _, f := range []string{boot.LoaderBIOS, boot.LoaderUEFI64, boot.LoaderSNP64, boot.LoaderARM64, boot.LoaderPXELinux} {
		if err := os.WriteFile(filepath.Join(root, f), []byte("loader"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func newConfig(t testing.TB, root string, edit func(*config.Registry)) *config.Config {
	t.Helper()
	reg := testRegistry(root)
	if edit != nil {
		edit(&reg)
	}
	cfg, err := config.New(reg, testHosts())
	if err != nil {
		t.Fatalf("config.New: %v", err)
	}
	return cfg
}

// testEnv is a handler over a test configuration, logging into a buffer
// the test may read, with a tracker and a clock the test controls.
type testEnv struct {
	h     *Handler
	cfg   *config.Config
	logs  *syncbuf.Buffer
	track *state.Tracker
	now   *time.Time
}

func newEnv(t testing.TB, edit func(*config.Registry)) *testEnv {
	t.Helper()
	root := tftpRoot(t)
	cfg := newConfig(t, root, edit)
	var be ConfigPointer
	be.Store(cfg)
	logs := &syncbuf.Buffer{}
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	env := &testEnv{cfg: cfg, logs: logs, now: &now}
	env.track = state.New(100, func() time.Time { return *env.now })
	env.h = &Handler{
		Backend: &be,
		Booter:  boot.Booter{Root: root},
		Tracker: env.track,
		Log:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: NewMetrics(nil),
		Now:     func() time.Time { return *env.now },
	}
	return env
}

func mustPacket(t testing.TB, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	base := []dhcpv4.Modifier{
		dhcpv4.WithTransactionID(xid),
		dhcpv4.WithHwAddr(webMAC),
		dhcpv4.WithBroadcast(true),
	}
	p, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Requests as real clients send them.
var (
	prlCommon = dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
		dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName, dhcpv4.OptionHostName)
	prlPXE = dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
		dhcpv4.OptionDomainNameServer, dhcpv4.OptionHostName, dhcpv4.OptionDomainName,
		dhcpv4.OptionVendorSpecificInformation, dhcpv4.OptionClassIdentifier,
		dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName)
)

func withArch(a iana.Arch) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		d.UpdateOption(dhcpv4.OptClientArch(a))
		d.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:0000" + string(rune('0'+int(a)%10)) + ":UNDI:002001"))
	}
}

func withClass(c string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptClassIdentifier(c))
}

var withIPXE = dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE"))

func msgType(m dhcpv4.MessageType) dhcpv4.Modifier { return dhcpv4.WithMessageType(m) }

func requestedIP(a netip.Addr) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IP(a.AsSlice())))
}

func sid(a netip.Addr) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(a.AsSlice())))
}

func ip4(a string) net.IP { return net.ParseIP(a).To4() }

// check is one expectation on a reply.
type check func(t *testing.T, r *dhcpv4.DHCPv4, dst netip.AddrPort)

func isType(want dhcpv4.MessageType) check {
	return func(t *testing.T, r *dhcpv4.DHCPv4, _ netip.AddrPort) {
		if got := r.MessageType(); got != want {
			t.Errorf("message type %v, want %v", got, want)
		}
	}
}

func yiaddr(want string) check {
	return func(t *testing.T, r *dhcpv4.DHCPv4, _ netip.AddrPort) {
		if got := addr4(r.YourIPAddr); (want == "" && got.IsValid() && !got.IsUnspecified()) || (want != "" && got.String() != want) {
			t.Errorf("yiaddr %v, want %q", r.YourIPAddr, want)
		}
	}
}

func dstIs(want string) check {
	return func(t *testing.T, _ *dhcpv4.DHCPv4, dst netip.AddrPort) {
		if dst.String() != want {
			t.Errorf("sent to %v, want %v", dst, want)
		}
	}
}

func hasOpt(code dhcpv4.OptionCode, want []byte) check {
	return func(t *testing.T, r *dhcpv4.DHCPv4, _ netip.AddrPort) {
		got := r.Options.Get(code)
		if got == nil {
			t.Errorf("option %v missing", code)
		} else if want != nil && !bytes.Equal(got, want) {
			t.Errorf("option %v = %q (% x), want %q", code, got, got, want)
		}
	}
}

func noOpt(codes ...dhcpv4.OptionCode) check {
	return func(t *testing.T, r *dhcpv4.DHCPv4, _ netip.AddrPort) {
		for _, c := range codes {
			if v := r.Options.Get(c); v != nil {
				t.Errorf("option %v = % x present, want absent", c, v)
			}
		}
	}
}

func fileIs(want ...string) check {
	return func(t *testing.T, r *dhcpv4.DHCPv4, _ netip.AddrPort) {
		if !slices.Contains(want, r.BootFileName) {
			t.Errorf("boot file %q, want one of %q", r.BootFileName, want)
		}
	}
}

func fileHas(sub string) check {
	return func(t *testing.T, r *dhcpv4.DHCPv4, _ netip.AddrPort) {
		if !strings.Contains(r.BootFileName, sub) {
			t.Errorf("boot file %q does not contain %q", r.BootFileName, sub)
		}
	}
}

func siaddr(want string) check {
	return func(t *testing.T, r *dhcpv4.DHCPv4, _ netip.AddrPort) {
		if got := addr4(r.ServerIPAddr); got.String() != want {
			t.Errorf("siaddr %v, want %v", r.ServerIPAddr, want)
		}
	}
}

func giaddrHops(gi string, hops uint8) check {
	return func(t *testing.T, r *dhcpv4.DHCPv4, _ netip.AddrPort) {
		if !r.GatewayIPAddr.Equal(net.ParseIP(gi)) || r.HopCount != hops {
			t.Errorf("giaddr %v hops %d, want %v %d", r.GatewayIPAddr, r.HopCount, gi, hops)
		}
	}
}

var (
	mask16   = []byte{255, 255, 0, 0}
	dhcpOpts = []check{
		hasOpt(dhcpv4.OptionServerIdentifier, serverAddr.AsSlice()),
		hasOpt(dhcpv4.OptionSubnetMask, mask16),
		hasOpt(dhcpv4.OptionRouter, []byte{10, 83, 0, 254}),
		hasOpt(dhcpv4.OptionDomainNameServer, []byte{10, 83, 0, 53, 10, 83, 0, 54}),
		hasOpt(dhcpv4.OptionDomainName, []byte("lab.example")),
		hasOpt(dhcpv4.OptionHostName, []byte("my-nginx-web-server")),
	}
	leaseOpts = []check{
		hasOpt(dhcpv4.OptionIPAddressLeaseTime, []byte{0, 0, 0x1c, 0x20}), // 7200 s
		hasOpt(dhcpv4.OptionRenewTimeValue, []byte{0, 0, 0x0e, 0x10}),     // 3600 s
		hasOpt(dhcpv4.OptionRebindingTimeValue, []byte{0, 0, 0x18, 0x9c}), // 6300 s
	}
)

func all(groups ...[]check) []check {
	var out []check
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

func TestReply(t *testing.T) {
	proxy := func(r *config.Registry) { r.ProxyDHCP = true }
	proxyUnknown := func(r *config.Registry) { r.ProxyDHCP, r.BootUnknown = true, "rescue/v1" }
	bootUnknown := func(r *config.Registry) { r.BootUnknown = "rescue/v1" }
	scriptURL := "/boot/52:54:00:12:34:56.ipxe"

	tests := []struct {
		name   string
		edit   func(*config.Registry)
		mods   []dhcpv4.Modifier
		answer bool
		checks []check
	}{
		{
			name:   "DISCOVER gets OFFER with fixed address and settings",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), prlCommon},
			answer: true,
			checks: all([]check{isType(dhcpv4.MessageTypeOffer), yiaddr("10.83.1.10"), dstIs("255.255.255.255:68"),
				noOpt(dhcpv4.OptionBroadcastAddress, dhcpv4.OptionBootfileName, dhcpv4.OptionTFTPServerName)}, dhcpOpts, leaseOpts),
		},
		{
			name:   "DISCOVER without parameter request list also gets the broadcast address",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover)},
			answer: true,
			checks: []check{isType(dhcpv4.MessageTypeOffer), hasOpt(dhcpv4.OptionBroadcastAddress, []byte{10, 83, 255, 255})},
		},
		{
			name: "REQUEST selecting gets ACK",
			mods: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest), prlCommon, sid(serverAddr), requestedIP(webAddr),
				dhcpv4.WithRequestedOptions(dhcpv4.OptionBroadcastAddress)},
			answer: true,
			checks: all([]check{isType(dhcpv4.MessageTypeAck), yiaddr("10.83.1.10"), dstIs("255.255.255.255:68"),
				hasOpt(dhcpv4.OptionBroadcastAddress, []byte{10, 83, 255, 255})}, dhcpOpts, leaseOpts),
		},
		{
			name:   "REQUEST init-reboot for the right address gets ACK",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest), requestedIP(webAddr)},
			answer: true,
			checks: []check{isType(dhcpv4.MessageTypeAck), yiaddr("10.83.1.10")},
		},
		{
			name:   "REQUEST init-reboot for another address gets NAK, broadcast",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest), requestedIP(netip.MustParseAddr("10.83.9.9")), dhcpv4.WithBroadcast(false)},
			answer: true,
			checks: []check{isType(dhcpv4.MessageTypeNak), yiaddr(""), dstIs("255.255.255.255:68"),
				hasOpt(dhcpv4.OptionServerIdentifier, serverAddr.AsSlice()), hasOpt(dhcpv4.OptionMessage, nil),
				noOpt(dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionHostName, dhcpv4.OptionSubnetMask)},
		},
		{
			name:   "REQUEST selecting with a wrong address gets NAK",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest), sid(serverAddr), requestedIP(netip.MustParseAddr("10.83.9.9"))},
			answer: true,
			checks: []check{isType(dhcpv4.MessageTypeNak)},
		},
		{
			name:   "REQUEST naming another server gets silence",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest), sid(netip.MustParseAddr("10.83.0.2")), requestedIP(webAddr)},
			answer: false,
		},
		{
			name: "REQUEST renewing is answered by unicast to ciaddr",
			mods: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IP(webAddr.AsSlice())),
				dhcpv4.WithBroadcast(false)},
			answer: true,
			checks: []check{isType(dhcpv4.MessageTypeAck), dstIs("10.83.1.10:68"),
				func(t *testing.T, r *dhcpv4.DHCPv4, _ netip.AddrPort) {
					if !r.ClientIPAddr.Equal(net.IP(webAddr.AsSlice())) {
						t.Errorf("ciaddr %v, want it copied from the request", r.ClientIPAddr)
					}
				}},
		},
		{
			name:   "REQUEST rebinding from the wrong address gets NAK",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(ip4("10.83.7.7"))},
			answer: true,
			checks: []check{isType(dhcpv4.MessageTypeNak), dstIs("255.255.255.255:68")},
		},
		{
			name:   "REQUEST with nothing to go on is ignored",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest)},
			answer: false,
		},
		{
			name:   "RELEASE is recorded, not answered",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRelease), sid(serverAddr), dhcpv4.WithClientIP(net.IP(webAddr.AsSlice()))},
			answer: false,
		},
		{
			name:   "DECLINE is recorded, not answered",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDecline), sid(serverAddr), requestedIP(webAddr)},
			answer: false,
		},
		{
			name:   "INFORM gets ACK without address or lease, unicast to ciaddr",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(net.IP(webAddr.AsSlice())), prlCommon},
			answer: true,
			checks: all([]check{isType(dhcpv4.MessageTypeAck), yiaddr(""), dstIs("10.83.1.10:68"),
				noOpt(dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue)}, dhcpOpts),
		},
		{
			name:   "BOOTP gets BOOTREPLY with vendor options only",
			mods:   []dhcpv4.Modifier{dhcpv4.WithBroadcast(false)},
			answer: true,
			checks: []check{yiaddr("10.83.1.10"), siaddr("10.83.0.1"), dstIs("255.255.255.255:68"),
				func(t *testing.T, r *dhcpv4.DHCPv4, _ netip.AddrPort) {
					if r.OpCode != dhcpv4.OpcodeBootReply || r.BootFileName == "" {
						t.Errorf("op %v file %q, want BOOTREPLY with a boot file", r.OpCode, r.BootFileName)
					}
					if l := len(encode(r)); l != bootpMax {
						t.Errorf("BOOTREPLY is %d bytes, want %d (64-byte vendor area)", l, bootpMax)
					}
				},
				hasOpt(dhcpv4.OptionSubnetMask, mask16), hasOpt(dhcpv4.OptionRouter, nil), hasOpt(dhcpv4.OptionHostName, []byte("my-nginx-web-server")),
				noOpt(dhcpv4.OptionDHCPMessageType, dhcpv4.OptionServerIdentifier, dhcpv4.OptionIPAddressLeaseTime,
					dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue, dhcpv4.OptionBootfileName, dhcpv4.OptionTFTPServerName)},
		},
		{
			name:   "arch 0 (BIOS) gets the BIOS iPXE loader",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), withArch(iana.INTEL_X86PC), prlPXE},
			answer: true,
			checks: []check{fileIs(boot.LoaderBIOS), siaddr("10.83.0.1"), hasOpt(dhcpv4.OptionBootfileName, []byte(boot.LoaderBIOS)),
				hasOpt(dhcpv4.OptionTFTPServerName, []byte("10.83.0.1")), noOpt(dhcpv4.OptionClassIdentifier, dhcpv4.OptionVendorSpecificInformation)},
		},
		{
			name:   "arch 7 (UEFI x64) gets the UEFI iPXE loader",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), withArch(iana.EFI_X86_64)},
			answer: true,
			checks: []check{fileIs(boot.LoaderUEFI64, boot.LoaderSNP64), siaddr("10.83.0.1")},
		},
		{
			name:   "arch 9 (EFI BC) gets the UEFI iPXE loader",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), withArch(iana.EFI_BC)},
			answer: true,
			checks: []check{fileIs(boot.LoaderUEFI64, boot.LoaderSNP64)},
		},
		{
			name:   "arch 11 (UEFI arm64) gets the arm64 loader",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), withArch(iana.EFI_ARM64)},
			answer: true,
			checks: []check{fileIs(boot.LoaderARM64)},
		},
		{
			name:   "iPXE gets the http URL of its script",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest), withArch(iana.INTEL_X86PC), withIPXE, sid(serverAddr), requestedIP(webAddr)},
			answer: true,
			checks: []check{isType(dhcpv4.MessageTypeAck), fileHas("http://"), fileHas(scriptURL)},
		},
		{
			name:   "iPXE's OFFER tells it not to wait for ProxyDHCP (175.176 no-pxedhcp)",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), withArch(iana.INTEL_X86PC), withIPXE},
			answer: true,
			checks: []check{isType(dhcpv4.MessageTypeOffer), hasOpt(dhcpv4.GenericOptionCode(175), []byte{176, 1, 1})},
		},
		{
			name:   "firmware PXE gets no iPXE options",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), withArch(iana.INTEL_X86PC)},
			answer: true,
			checks: []check{noOpt(dhcpv4.GenericOptionCode(175))},
		},
		{
			name: "UEFI HTTP boot gets a URL and HTTPClient echoed",
			mods: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP)),
				withClass("HTTPClient:Arch:00016:UNDI:003001"), prlPXE},
			answer: true,
			checks: []check{fileHas("http://"), hasOpt(dhcpv4.OptionClassIdentifier, []byte("HTTPClient")), yiaddr("10.83.1.10")},
		},
		{
			name: "relayed DISCOVER goes to giaddr:67 keeping giaddr, hops and option 82",
			mods: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), dhcpv4.WithRelay(relayAddr), dhcpv4.WithRelay(relayAddr),
				dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("port7"))))},
			answer: true,
			checks: []check{isType(dhcpv4.MessageTypeOffer), dstIs("10.83.200.1:67"), giaddrHops("10.83.200.1", 2),
				hasOpt(dhcpv4.OptionRelayAgentInformation, []byte{1, 5, 'p', 'o', 'r', 't', '7'})},
		},
		{
			name:   "relayed NAK goes to giaddr with the broadcast bit",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithRelay(relayAddr), requestedIP(netip.MustParseAddr("10.83.9.9"))},
			answer: true,
			checks: []check{isType(dhcpv4.MessageTypeNak), dstIs("10.83.200.1:67"),
				func(t *testing.T, r *dhcpv4.DHCPv4, _ netip.AddrPort) {
					if !r.IsBroadcast() {
						t.Error("relayed NAK without broadcast bit")
					}
				}},
		},
		{
			name:   "unknown MAC gets nothing",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(otherMAC), withArch(iana.INTEL_X86PC)},
			answer: false,
		},
		{
			name:   "unknown MAC gets nothing in normal mode even with boot-unknown",
			edit:   bootUnknown,
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(otherMAC), withArch(iana.INTEL_X86PC)},
			answer: false,
		},
		{
			name:   "proxy mode: PXE DISCOVER gets a proxy OFFER without address",
			edit:   proxy,
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), withArch(iana.INTEL_X86PC), prlPXE, dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}))},
			answer: true,
			checks: []check{isType(dhcpv4.MessageTypeOffer), yiaddr(""), siaddr("10.83.0.1"), fileIs(boot.LoaderBIOS), dstIs("255.255.255.255:68"),
				hasOpt(dhcpv4.OptionClassIdentifier, []byte("PXEClient")), hasOpt(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}),
				hasOpt(dhcpv4.OptionServerIdentifier, serverAddr.AsSlice()), hasOpt(dhcpv4.OptionClientMachineIdentifier, nil),
				noOpt(dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionHostName)},
		},
		{
			name:   "proxy mode: non-PXE client is left to the address server",
			edit:   proxy,
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), withClass("udhcp 1.35.0")},
			answer: false,
		},
		{
			name:   "proxy mode: REQUEST to the address server is not ours",
			edit:   proxy,
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest), withArch(iana.INTEL_X86PC), sid(netip.MustParseAddr("10.83.0.2")), requestedIP(webAddr)},
			answer: false,
		},
		{
			name:   "proxy mode: REQUEST naming us gets a proxy ACK",
			edit:   proxy,
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest), withArch(iana.EFI_X86_64), withIPXE, sid(serverAddr), dhcpv4.WithClientIP(ip4("10.83.50.50"))},
			answer: true,
			checks: []check{isType(dhcpv4.MessageTypeAck), yiaddr(""), fileHas(scriptURL), dstIs("10.83.50.50:68")},
		},
		{
			name:   "proxy mode: unknown MAC without boot-unknown gets nothing",
			edit:   proxy,
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(otherMAC), withArch(iana.INTEL_X86PC)},
			answer: false,
		},
		{
			name:   "proxy mode: unknown MAC with boot-unknown gets boot information",
			edit:   proxyUnknown,
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(otherMAC), withArch(iana.INTEL_X86PC)},
			answer: true,
			checks: []check{isType(dhcpv4.MessageTypeOffer), yiaddr(""), fileIs(boot.LoaderBIOS)},
		},
		{
			name:   "a BOOTREPLY sent to the server port is ignored",
			mods:   []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeOffer), func(d *dhcpv4.DHCPv4) { d.OpCode = dhcpv4.OpcodeBootReply }},
			answer: false,
		},
		{
			name: "max message size: a small limit drops optional options, not the lease",
			mods: []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), withArch(iana.INTEL_X86PC), prlPXE,
				dhcpv4.WithRequestedOptions(dhcpv4.OptionBroadcastAddress), dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(576))},
			answer: true,
			checks: all([]check{func(t *testing.T, r *dhcpv4.DHCPv4, _ netip.AddrPort) {
				if n := len(encode(r)); n > 576-28 {
					t.Errorf("reply is %d bytes, client accepts %d", n, 576-28)
				}
			}}, leaseOpts),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t, tt.edit)
			req := mustPacket(t, tt.mods...)
			r, dst, ok := env.h.Reply(req)
			if ok != tt.answer {
				t.Fatalf("answered %v, want %v; log:\n%s", ok, tt.answer, env.logs)
			}
			if !ok {
				if r != nil {
					t.Errorf("no answer but reply %v", r)
				}
				return
			}
			if r.OpCode != dhcpv4.OpcodeBootReply || r.TransactionID != xid || !bytes.Equal(r.ClientHWAddr, req.ClientHWAddr) {
				t.Errorf("reply header op %v xid %v chaddr %v does not answer the request", r.OpCode, r.TransactionID, r.ClientHWAddr)
			}
			// What goes on the wire must decode to the same reply.
			back, err := dhcpv4.FromBytes(encode(r))
			if err != nil {
				t.Fatalf("reply does not decode: %v", err)
			}
			for _, c := range tt.checks {
				c(t, back, dst)
			}
		})
	}
}

func TestReplyTracksAndLogs(t *testing.T) {
	env := newEnv(t, nil)
	req := mustPacket(t, msgType(dhcpv4.MessageTypeDiscover), withArch(iana.INTEL_X86PC))
	if _, _, ok := env.h.Reply(req); !ok {
		t.Fatal("no OFFER")
	}
	hosts := env.track.Hosts()
	var got *string
	for _, h := range hosts {
		if h.MAC == webMAC.String() {
			got = &h.LastDHCP
			if h.BootFile != boot.LoaderBIOS || h.ClientArch == "" {
				t.Errorf("tracked boot file %q arch %q, want %q and an arch", h.BootFile, h.ClientArch, boot.LoaderBIOS)
			}
		}
	}
	if got == nil || *got != "DISCOVER→OFFER" {
		t.Errorf("tracker has %+v, want DISCOVER→OFFER for %s", hosts, webMAC)
	}
	log := env.logs.String()
	for _, want := range []string{"level=INFO", "mac=52:54:00:12:34:56", "xid=0x11223344", "type=DISCOVER→OFFER", "ip=10.83.1.10"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}

	env.logs.Reset()
	decline := mustPacket(t, msgType(dhcpv4.MessageTypeDecline), sid(serverAddr), requestedIP(webAddr))
	if _, _, ok := env.h.Reply(decline); ok {
		t.Error("DECLINE answered")
	}
	if log := env.logs.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "declined") {
		t.Errorf("DECLINE not logged as a warning:\n%s", log)
	}
	if last := env.track.Events(); len(last) == 0 || !strings.Contains(last[len(last)-1].Detail, "DECLINE") {
		t.Errorf("DECLINE not tracked: %+v", last)
	}
}

func TestUnknownMACLoggedOncePerMinute(t *testing.T) {
	env := newEnv(t, nil)
	req := mustPacket(t, msgType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(otherMAC))
	count := func() int { return strings.Count(env.logs.String(), "unknown MAC") }
	for range 5 {
		env.h.Reply(req)
	}
	if n := count(); n != 1 {
		t.Errorf("5 requests in the same minute logged %d times, want 1:\n%s", n, env.logs)
	}
	*env.now = env.now.Add(61 * time.Second)
	env.h.Reply(req)
	if n := count(); n != 2 {
		t.Errorf("after a minute: logged %d times, want 2", n)
	}
	var tracked bool
	for _, h := range env.track.Hosts() {
		tracked = tracked || (h.Unknown && h.MAC == otherMAC.String())
	}
	if !tracked {
		t.Error("unknown MAC not in the tracker")
	}
}

func TestUnknownLimiterBounded(t *testing.T) {
	var u unknownLimiter
	now := time.Unix(1000, 0)
	mac := func(i int) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)} }
	for i := range unknownMax + 100 {
		u.allow(mac(i), now)
	}
	if len(u.seen) > unknownMax {
		t.Fatalf("limiter holds %d MACs, bound is %d", len(u.seen), unknownMax)
	}
	if u.allow(mac(unknownMax+200), now.Add(time.Second)) {
		t.Error("a new MAC was logged while the limiter is full of fresh entries")
	}
	if !u.allow(mac(unknownMax+200), now.Add(2*time.Minute)) {
		t.Error("a new MAC was not logged after the old entries expired")
	}
	if len(u.seen) != 1 {
		t.Errorf("expired entries not dropped: %d left", len(u.seen))
	}
}

func TestReplyProxyPort(t *testing.T) {
	env := newEnv(t, nil) // normal mode: port 4011 still answers as a boot server
	req := mustPacket(t, msgType(dhcpv4.MessageTypeRequest), withArch(iana.EFI_X86_64), sid(serverAddr),
		dhcpv4.WithClientIP(net.IP(webAddr.AsSlice())))
	r, _, ok := env.h.ReplyProxy(req)
	if !ok {
		t.Fatalf("no answer on the PXE port; log:\n%s", env.logs)
	}
	if r.MessageType() != dhcpv4.MessageTypeAck || r.YourIPAddr.To4() != nil && !r.YourIPAddr.IsUnspecified() ||
		r.BootFileName == "" || string(r.Options.Get(dhcpv4.OptionClassIdentifier)) != "PXEClient" {
		t.Errorf("PXE port reply is not a proxy ACK:\n%s", r.Summary())
	}
	// A REQUEST without server identifier on port 4011 is still for us.
	req.Options.Del(dhcpv4.OptionServerIdentifier)
	if _, _, ok := env.h.ReplyProxy(req); !ok {
		t.Error("REQUEST without server identifier on the PXE port not answered")
	}
}

func TestReplyFollowsConfigSwap(t *testing.T) {
	env := newEnv(t, nil)
	req := mustPacket(t, msgType(dhcpv4.MessageTypeDiscover))
	if r, _, _ := env.h.Reply(req); r == nil || !bytes.Equal(r.Options.Get(dhcpv4.OptionRouter), []byte{10, 83, 0, 254}) {
		t.Fatal("first config not used")
	}
	next := newConfig(t, t.TempDir(), func(r *config.Registry) { r.Routers = []netip.Addr{netip.MustParseAddr("10.83.0.253")} })
	env.h.Backend.(*ConfigPointer).Store(next)
	if r, _, _ := env.h.Reply(req); r == nil || !bytes.Equal(r.Options.Get(dhcpv4.OptionRouter), []byte{10, 83, 0, 253}) {
		t.Error("reloaded config not used: the cached option values went stale")
	}
	env.h.Backend.(*ConfigPointer).Store(nil)
	if _, _, ok := env.h.Reply(req); ok {
		t.Error("answered without a configuration")
	}
}

func TestDecodeLenient(t *testing.T) {
	req := mustPacket(t)
	b := req.ToBytes()
	// RFC 951 client: zero vendor area, no magic cookie.
	plain := slices.Clone(b[:300])
	clear(plain[236:])
	got, err := decode(plain)
	if err != nil || !bytes.Equal(got.ClientHWAddr, webMAC) || got.MessageType() != dhcpv4.MessageTypeNone {
		t.Errorf("BOOTP without cookie: %v, %v", got, err)
	}
	// Options without End.
	noEnd := slices.Clone(b[:240])
	noEnd = append(noEnd, 53, 1, 1)
	if got, err := decode(noEnd); err != nil || got.MessageType() != dhcpv4.MessageTypeDiscover {
		t.Errorf("options without End: %v, %v", got, err)
	}
	if _, err := decode(b[:100]); err == nil {
		t.Error("a 100-byte packet decoded")
	}
}

func TestXIDString(t *testing.T) {
	for _, x := range []dhcpv4.TransactionID{{}, xid, {0xde, 0xad, 0xbe, 0xef}} {
		if got, want := xidString(x), x.String(); got != want {
			t.Errorf("xidString(%v) = %q, want %q", x, got, want)
		}
	}
}
