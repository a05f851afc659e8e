package dhcp

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/livebootp/livebootp/bootp/config"
)

// goldenRequests are requests as real clients send them; their replies,
// byte for byte, are in testdata/<name>.golden. After a deliberate change
// of the replies refresh them with UPDATE_GOLDEN=1 go test ./bootp/dhcp/
// and review the diff.
func goldenRequests(t testing.TB) []struct {
	name  string
	proxy bool
	req   *dhcpv4.DHCPv4
} {
	return []struct {
		name  string
		proxy bool
		req   *dhcpv4.DHCPv4
	}{
		{"discover-bios-pxe", false, mustPacket(t, msgType(dhcpv4.MessageTypeDiscover), withArch(iana.INTEL_X86PC), prlPXE,
			dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1260)))},
		{"request-uefi-ipxe", false, mustPacket(t, msgType(dhcpv4.MessageTypeRequest), withArch(iana.EFI_X86_64), withIPXE, prlPXE,
			sid(serverAddr), requestedIP(webAddr))},
		{"request-http-client", false, mustPacket(t, msgType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP)),
			withClass("HTTPClient:Arch:00016:UNDI:003001"), sid(serverAddr), requestedIP(webAddr))},
		{"request-nak", false, mustPacket(t, msgType(dhcpv4.MessageTypeRequest), requestedIP(netip.MustParseAddr("10.83.9.9")))},
		{"inform", false, mustPacket(t, msgType(dhcpv4.MessageTypeInform), dhcpv4.WithClientIP(net.IP(webAddr.AsSlice())), prlCommon)},
		{"bootp", false, mustPacket(t, dhcpv4.WithBroadcast(false))},
		{"relay-discover-udhcpc", false, mustPacket(t, msgType(dhcpv4.MessageTypeDiscover), dhcpv4.WithRelay(relayAddr), prlCommon,
			withClass("udhcp 1.35.0"), dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{1}, webMAC...))),
			dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("sw1/port7")))))},
		{"proxy-discover-bios", true, mustPacket(t, msgType(dhcpv4.MessageTypeDiscover), withArch(iana.INTEL_X86PC), prlPXE)},
	}
}

func TestGolden(t *testing.T) {
	update := os.Getenv("UPDATE_GOLDEN") == "1"
	if update {
		writeFuzzSeeds(t)
	}
	for _, g := range goldenRequests(t) {
		t.Run(g.name, func(t *testing.T) {
			env := newEnv(t, func(r *config.Registry) { r.ProxyDHCP = g.proxy })
			r, dst, ok := env.h.Reply(g.req)
			if !ok {
				t.Fatalf("no answer; log:\n%s", env.logs)
			}
			got := goldenText(g.req, encode(r), dst)
			file := filepath.Join("testdata", g.name+".golden")
			if update {
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (create it with UPDATE_GOLDEN=1)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("reply differs from %s (if the change is meant, refresh with UPDATE_GOLDEN=1 and review the diff):\n--- got\n%s\n--- want\n%s", file, got, want)
			}
		})
	}
}

// goldenText shows a reply for review: destination, a decoded summary and
// the exact bytes.
func goldenText(req *dhcpv4.DHCPv4, wire []byte, dst netip.AddrPort) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# reply to %s %s from %s, sent to %s, %d bytes\n", kindOf(req), req.TransactionID, req.ClientHWAddr, dst, len(wire))
	if d, err := dhcpv4.FromBytes(wire); err == nil {
		b.WriteString(d.Summary())
	}
	b.WriteString(hex.Dump(wire))
	return b.Bytes()
}

// fuzzSeedDir holds FuzzReply's committed seed corpus: the golden requests
// and some malformed ones, refreshed with the golden files.
const fuzzSeedDir = "testdata/fuzz/FuzzReply"

func writeFuzzSeeds(t *testing.T) {
	seeds := map[string][]byte{}
	for _, g := range goldenRequests(t) {
		seeds[g.name] = g.req.ToBytes()
	}
	b := mustPacket(t, msgType(dhcpv4.MessageTypeDiscover)).ToBytes()
	seeds["truncated-header"] = b[:100]
	seeds["bootp-no-cookie"] = append(bytes.Clone(b[:236]), make([]byte, 64)...)
	seeds["options-without-end"] = append(bytes.Clone(b[:240]), 53, 1, 1, 55, 3, 1, 3)
	seeds["option-length-past-end"] = append(bytes.Clone(b[:240]), 53, 1, 3, 82, 200, 1)
	seeds["relay-source-port-truncated"] = append(bytes.Clone(b[:240]), 53, 1, 1, 82, 3, 1, 9, 0, 255)
	long := mustPacket(t, msgType(dhcpv4.MessageTypeDiscover), dhcpv4.WithRelay(relayAddr),
		dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), bytes.Repeat([]byte{'x'}, 250)))),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(bytes.Repeat([]byte{7}, 255))),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(576)))
	seeds["oversized-echoed-options"] = long.ToBytes()
	if err := os.MkdirAll(fuzzSeedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range seeds {
		text := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(fuzzSeedDir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzReply feeds arbitrary datagrams through decoding, Reply in normal and
// proxy mode, the PXE port and encoding: nothing may panic, and whatever is
// sent must decode again and answer the request's transaction.
func FuzzReply(f *testing.F) {
	for _, g := range goldenRequests(f) {
		f.Add(g.req.ToBytes())
	}
	normal := newEnv(f, nil)
	proxy := newEnv(f, func(r *config.Registry) { r.ProxyDHCP, r.BootUnknown = true, "rescue/v1" })
	for _, e := range []*testEnv{normal, proxy} {
		e.h.Log = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	peer := netip.MustParseAddrPort("10.83.5.5:68")
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, e := range []*testEnv{normal, proxy} {
			for _, pxePort := range []bool{false, true} {
				out, dst, ok := e.h.handle(data, peer, pxePort)
				if !ok {
					continue
				}
				if !dst.IsValid() || dst.Port() == 0 {
					t.Fatalf("reply with destination %v", dst)
				}
				back, err := dhcpv4.FromBytes(out)
				if err != nil {
					t.Fatalf("reply does not decode: %v", err)
				}
				req, _ := decode(data)
				if back.TransactionID != req.TransactionID || back.OpCode != dhcpv4.OpcodeBootReply {
					t.Fatalf("reply xid %v op %v for request xid %v", back.TransactionID, back.OpCode, req.TransactionID)
				}
			}
		}
	})
}

// TestEncode checks the wire form against the library's encoder: the same
// packet, with the message type as first option and option 82 last.
func TestEncode(t *testing.T) {
	for _, g := range goldenRequests(t) {
		env := newEnv(t, func(r *config.Registry) { r.ProxyDHCP = g.proxy })
		r, _, ok := env.h.Reply(g.req)
		if !ok {
			t.Fatalf("%s: no answer", g.name)
		}
		mine, lib := encode(r), r.ToBytes()
		if len(mine) != len(lib) {
			t.Errorf("%s: encode gives %d bytes, ToBytes %d", g.name, len(mine), len(lib))
		}
		a, err1 := dhcpv4.FromBytes(mine)
		b, err2 := dhcpv4.FromBytes(lib)
		if err1 != nil || err2 != nil || a.Summary() != b.Summary() {
			t.Errorf("%s: encode and ToBytes disagree (%v, %v):\n%v\n%v", g.name, err1, err2, a, b)
		}
		if r.MessageType() != dhcpv4.MessageTypeNone && mine[240] != 53 {
			t.Errorf("%s: first option is %d, want 53", g.name, mine[240])
		}
		if v := r.Options.Get(dhcpv4.OptionRelayAgentInformation); v != nil {
			if i := bytes.LastIndexByte(mine, 255); !bytes.Equal(mine[i-len(v)-2:i], append([]byte{82, byte(len(v))}, v...)) {
				t.Errorf("%s: option 82 is not the last option", g.name)
			}
		}
	}
}
