package config

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestResolvConf(t *testing.T) {
	dir := t.TempDir()
	upstream := writeFile(t, dir, "upstream.conf", "# systemd-resolved's view\nnameserver 10.81.0.53\nnameserver fe80::1%eth0\nnameserver 10.81.0.54\nsearch up.example\n")
	for _, c := range []struct {
		name, conf string
		dns        []netip.Addr
		domain     string
	}{
		{"plain", "nameserver 10.81.0.2\nnameserver 10.81.0.3\ndomain lab.example\n", addrs("10.81.0.2", "10.81.0.3"), "lab.example"},
		{"first search entry", "search a.example b.example\nnameserver 10.81.0.2\n", addrs("10.81.0.2"), "a.example"},
		{"last of domain and search wins", "domain d.example\nsearch s.example\nnameserver 10.81.0.2\n", addrs("10.81.0.2"), "s.example"},
		{"loopback and IPv6 skipped", "nameserver 127.0.0.1\nnameserver ::1\nnameserver 2001:db8::53\nnameserver 10.81.0.2\n", addrs("10.81.0.2"), ""},
		{"comments and junk", "# nameserver 10.9.9.9\n; nameserver 10.9.9.8\nnameserver\nnameserver not-an-ip\noptions edns0\nnameserver 10.81.0.2 # x\n", addrs("10.81.0.2"), ""},
		// systemd-resolved's stub: the targets get its upstream servers.
		{"stub resolver", "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n", addrs("10.81.0.53", "10.81.0.54"), "corp.example"},
		{"stub without search", "nameserver 127.0.0.53\n", addrs("10.81.0.53", "10.81.0.54"), "up.example"},
		{"no nameservers", "search corp.example\n", nil, "corp.example"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := NetlinkDetector{ResolvConf: writeFile(t, t.TempDir(), "resolv.conf", c.conf), UpstreamResolvConf: upstream}
			dns, domain, err := d.resolvers()
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(dns, c.dns) || domain != c.domain {
				t.Errorf("got %v %q, want %v %q", dns, domain, c.dns, c.domain)
			}
		})
	}
	// Missing files are normal in containers: no resolvers, no error.
	d := NetlinkDetector{ResolvConf: filepath.Join(dir, "none"), UpstreamResolvConf: filepath.Join(dir, "none2")}
	if dns, domain, err := d.resolvers(); err != nil || dns != nil || domain != "" {
		t.Errorf("missing file: %v %q %v", dns, domain, err)
	}
	d = NetlinkDetector{ResolvConf: writeFile(t, dir, "stub", "nameserver 127.0.0.53\n"), UpstreamResolvConf: filepath.Join(dir, "none")}
	if dns, _, err := d.resolvers(); err != nil || dns != nil {
		t.Errorf("stub without upstream file: %v %v", dns, err)
	}
	// A directory where the file should be is an error, not silence.
	d = NetlinkDetector{ResolvConf: dir}
	if _, _, err := d.resolvers(); err == nil {
		t.Error("reading a directory as resolv.conf did not fail")
	}
}

// testNS is a network namespace this test owns, on 10.81.0.0/24.
type testNS struct {
	t    *testing.T
	name string
}

func newNetns(t *testing.T, tag string) *testNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	n := &testNS{t: t, name: fmt.Sprintf("lbcfg-%d-%s", os.Getpid(), tag)}
	run(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.name).Run() })
	return n
}

func (n *testNS) ip(args ...string) {
	n.t.Helper()
	run(n.t, "ip", append([]string{"-n", n.name}, args...)...)
}

func (n *testNS) path() string { return "/run/netns/" + n.name }

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func TestNetlinkDetector(t *testing.T) {
	n := newNetns(t, "a")
	n.ip("link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
	n.ip("addr", "add", "10.81.0.1/24", "dev", "veth0")
	n.ip("addr", "add", "10.81.0.2/24", "dev", "veth0") // secondary: not the server's address
	n.ip("link", "set", "veth0", "up")
	n.ip("link", "set", "veth1", "up")
	n.ip("route", "add", "default", "via", "10.81.0.254", "dev", "veth0")
	n.ip("link", "add", "vd0", "type", "veth", "peer", "name", "vd1") // left down
	n.ip("addr", "add", "10.81.0.130/25", "dev", "vd0")

	resolv := writeFile(t, t.TempDir(), "resolv.conf", "nameserver 127.0.0.53\nnameserver 10.81.0.53\nsearch lab.example\n")
	d := NetlinkDetector{NetNS: n.path(), ResolvConf: resolv}

	got, err := d.Detect("")
	if err != nil {
		t.Fatal(err)
	}
	want := Detected{Interface: "veth0", Address: netip.MustParsePrefix("10.81.0.1/24"), Routers: addrs("10.81.0.254"),
		DomainName: "lab.example", DNS: addrs("10.81.0.53")}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Detect(\"\") = %+v, want %+v", got, want)
	}

	if _, err := d.Detect("veth1"); err == nil || !strings.Contains(err.Error(), "veth1 has no IPv4 address") {
		t.Errorf("Detect(veth1) error = %v", err)
	}
	if _, err := d.Detect("vd0"); err == nil || !strings.Contains(err.Error(), "vd0 is down") {
		t.Errorf("Detect(vd0) error = %v", err)
	}
	if _, err := d.Detect("nope0"); err == nil || !strings.Contains(err.Error(), `"nope0"`) {
		t.Errorf("Detect(nope0) error = %v", err)
	}
	// A named interface without the default route has no routers.
	n.ip("link", "set", "vd0", "up")
	n.ip("link", "set", "vd1", "up")
	got, err = d.Detect("vd0")
	if err != nil || got.Address.String() != "10.81.0.130/25" || len(got.Routers) != 0 {
		t.Errorf("Detect(vd0) = %+v, %v", got, err)
	}

	// Load asks only for what the file leaves out, and keeps the rest.
	yml := "bootp-registry:\n  domain-name-servers: [\"10.81.0.1\"]\nhosts:\n  my-nginx-web-server:\n    hardware-ethernet: \"52:54:00:12:34:56\"\n    fixed-address: \"10.81.0.10\"\n    image-name: nginx-web-server/test\n"
	c, err := Parse("seed.yml", []byte(yml), Options{Detector: d, SkipFileChecks: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Summary(), "seed.yml: 1 hosts, interface veth0, server 10.81.0.1, subnet 10.81.0.0/24"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	if r := c.Registry; fmt.Sprintf("%v %v %s", r.Routers, r.DomainNameServers, r.DomainName) != "[10.81.0.254] [10.81.0.1] lab.example" {
		t.Errorf("registry = %+v", r)
	}

	// Detection failures name the keys to set.
	_, err = Parse("c.yml", []byte("bootp-registry:\n  interface: veth1\n"), Options{Detector: d})
	if got := fmt.Sprint(err); got != "c.yml:1:1: cannot auto-detect server-address, subnet, routers, domain-name, domain-name-servers: interface veth1 has no IPv4 address; fix: set server-address, subnet, routers, domain-name, domain-name-servers under bootp-registry:" {
		t.Errorf("got %s", got)
	}
}

func TestNetlinkDetectorWithoutDefaultRoute(t *testing.T) {
	n := newNetns(t, "b")
	for i, a := range []string{"10.81.0.17/28", "10.81.0.33/28"} {
		name, peer := fmt.Sprintf("va%d", i), fmt.Sprintf("vb%d", i)
		n.ip("link", "add", name, "type", "veth", "peer", "name", peer)
		n.ip("addr", "add", a, "dev", name)
		n.ip("link", "set", name, "up")
		n.ip("link", "set", peer, "up")
	}
	d := NetlinkDetector{NetNS: n.path(), ResolvConf: filepath.Join(t.TempDir(), "none")}
	_, err := d.Detect("")
	if err == nil || !strings.Contains(err.Error(), "va0 (10.81.0.17/28), va1 (10.81.0.33/28)") {
		t.Fatalf("two candidates: error = %v", err)
	}
	n.ip("link", "set", "va1", "down")
	got, err := d.Detect("")
	if err != nil || got.Interface != "va0" || got.Address.String() != "10.81.0.17/28" || got.Routers != nil || got.DNS != nil {
		t.Errorf("one candidate: %+v, %v", got, err)
	}
	n.ip("link", "set", "va0", "down")
	if _, err := d.Detect(""); err == nil || !strings.Contains(err.Error(), "no interface is up with an IPv4 address") {
		t.Errorf("no candidate: error = %v", err)
	}
}
