package dhcp

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// benchEnv is a handler as production runs it: Info logs formatted as text
// (to io.Discard), a tracker, metrics.
func benchEnv(b *testing.B) *testEnv {
	env := newEnv(b, nil)
	env.h.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	return env
}

// BenchmarkReply measures deciding and building replies (no decoding or
// encoding) for the requests of a PXE boot.
func BenchmarkReply(b *testing.B) {
	for _, c := range []struct {
		name string
		mods []dhcpv4.Modifier
	}{
		{"discover-bios", []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), withArch(iana.INTEL_X86PC), prlPXE}},
		{"request-ipxe", []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeRequest), withArch(iana.EFI_X86_64), withIPXE, prlPXE, sid(serverAddr), requestedIP(webAddr)}},
		{"relay-discover", []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), dhcpv4.WithRelay(relayAddr), prlCommon}},
		{"unknown-mac", []dhcpv4.Modifier{msgType(dhcpv4.MessageTypeDiscover), dhcpv4.WithHwAddr(otherMAC)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			env := benchEnv(b)
			req := mustPacket(b, c.mods...)
			b.ReportAllocs()
			for b.Loop() {
				env.h.Reply(req)
			}
		})
	}
}

// BenchmarkHandle measures one datagram in to one datagram out, what Serve
// does per packet besides the two system calls.
func BenchmarkHandle(b *testing.B) {
	env := benchEnv(b)
	in := mustPacket(b, msgType(dhcpv4.MessageTypeDiscover), dhcpv4.WithRelay(relayAddr), prlCommon).ToBytes()
	peer := netip.MustParseAddrPort("10.83.200.1:67")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, _, ok := env.h.handle(in, peer, false); !ok {
			b.Fatal("no answer")
		}
	}
}
