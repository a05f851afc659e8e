package config

import (
	"errors"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.want from what Load says (review the diff!)")

// fakeDetector stands in for the network: it answers like a libvirt host
// on 192.168.122.0/24 and fails for the interface "missing0".
type fakeDetector struct {
	calls []string
}

func (f *fakeDetector) Detect(iface string) (Detected, error) {
	f.calls = append(f.calls, iface)
	if iface == "missing0" {
		return Detected{}, errors.New(`interface "missing0": Link not found`)
	}
	name := iface
	if name == "" {
		name = "virbr0"
	}
	return Detected{
		Interface:  name,
		Address:    netip.MustParsePrefix("192.168.122.1/24"),
		Routers:    []netip.Addr{netip.MustParseAddr("192.168.122.1")},
		DomainName: "detected.test",
		DNS:        []netip.Addr{netip.MustParseAddr("192.168.122.1")},
	}, nil
}

func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error is %T, not Problems: %v", err, err)
	}
	return ps
}

// TestBadConfigs loads each testdata/bad/NAME.yml and compares every
// problem with NAME.want, line for line.
func TestBadConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatal("no bad configs", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yml"), func(t *testing.T) {
			_, err := Load(f, Options{Detector: &fakeDetector{}})
			if err == nil {
				t.Fatal("loaded without problems")
			}
			ps := problemsOf(t, err)
			for _, p := range ps {
				if p.Line <= 0 || p.File != f {
					t.Errorf("problem without a place: %#v", p)
				}
			}
			got := err.Error() + "\n"
			wantFile := strings.TrimSuffix(f, ".yml") + ".want"
			if *update {
				if err := os.WriteFile(wantFile, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("problems differ\ngot:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestGoodConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/good/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatal("no good configs", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yml"), func(t *testing.T) {
			if _, err := Load(f, Options{Detector: &fakeDetector{}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFullConfigValues(t *testing.T) {
	det := &fakeDetector{}
	c, err := Load("testdata/good/full.yml", Options{Detector: det})
	if err != nil {
		t.Fatal(err)
	}
	if len(det.calls) != 0 {
		t.Errorf("detector called %v although the file sets everything", det.calls)
	}
	r := c.Registry
	want := Registry{
		Interface:            "br0",
		ServerAddress:        netip.MustParseAddr("10.20.0.1"),
		Subnet:               netip.MustParsePrefix("10.20.0.0/16"),
		Routers:              []netip.Addr{netip.MustParseAddr("10.20.0.254")},
		DomainName:           "lab.example.com",
		DomainNameServers:    []netip.Addr{netip.MustParseAddr("10.20.0.53"), netip.MustParseAddr("10.20.0.54")},
		LeaseTime:            2 * time.Hour,
		BootUnknown:          "base/1.0",
		ConfigDir:            "testdata/good/etc",
		TFTPRoot:             "/srv/tftp",
		ImagesDir:            "testdata/images",
		KeysDir:              "testdata/keys",
		DHCPListen:           "10.20.0.1:67",
		TFTPListen:           ":69",
		HTTPListen:           ":8080",
		HTTPURL:              "http://boot.lab.example.com:8080",
		AdminSocket:          "testdata/good/run/admin.sock",
		RouterAdvertisements: false,
	}
	if !registryEqual(r, want) {
		t.Errorf("registry\n got %+v\nwant %+v", r, want)
	}
	if len(c.Hosts) != 2 {
		t.Fatalf("%d hosts", len(c.Hosts))
	}
	h := c.Hosts[1]
	if h.Name != "web-2.lab" || h.MAC.String() != "52:54:00:00:00:02" || h.Address != netip.MustParseAddr("10.20.1.2") ||
		h.Image != "nginx-web-server/1.0" || h.SSHAuthorizedKeys != "" || h.CmdlineAppend != "" || h.Line != 30 {
		t.Errorf("host 2 = %+v", h)
	}
	if got := c.Hosts[0].CmdlineAppend; got != "console=ttyS0,115200n8 livebootp.persistent=none" {
		t.Errorf("cmdline-append = %q", got)
	}
	mac, _ := net.ParseMAC("52:54:00:00:00:01")
	if h, ok := c.HostByMAC(mac); !ok || h.Name != "web-1" {
		t.Errorf("HostByMAC = %v %v", h, ok)
	}
	if _, ok := c.HostByMAC(net.HardwareAddr{1, 2, 3}); ok {
		t.Error("HostByMAC found a 3-byte address")
	}
	if h, ok := c.HostByAddress(netip.MustParseAddr("::ffff:10.20.1.2")); !ok || h.Name != "web-2.lab" {
		t.Errorf("HostByAddress(mapped) = %v %v", h, ok)
	}
	if got, want := c.Summary(), "testdata/good/full.yml: 2 hosts, interface br0, server 10.20.0.1, subnet 10.20.0.0/16"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}

func registryEqual(a, b Registry) bool {
	return reflect.DeepEqual(a, b) ||
		(slices.Equal(a.Routers, b.Routers) && slices.Equal(a.DomainNameServers, b.DomainNameServers) &&
			func() bool {
				a.Routers, b.Routers, a.DomainNameServers, b.DomainNameServers = nil, nil, nil, nil
				return reflect.DeepEqual(a, b)
			}())
}

// The seed's example needs only a detector: everything it leaves out is
// detected, what it sets is kept.
func TestSeedExampleDetects(t *testing.T) {
	det := &fakeDetector{}
	c, err := Load("../../configs/example.yml", Options{Detector: det, SkipFileChecks: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(det.calls, []string{""}) {
		t.Errorf("detector calls %q, want one for the default interface", det.calls)
	}
	r := c.Registry
	if r.Interface != "virbr0" || r.ServerAddress.String() != "192.168.122.1" || r.Subnet.String() != "192.168.122.0/24" ||
		r.DomainName != "detected.test" || len(r.Routers) != 1 || r.HTTPURL != "http://192.168.122.1" {
		t.Errorf("detected registry = %+v", r)
	}
	if len(r.DomainNameServers) != 1 || r.DomainNameServers[0].String() != "192.168.122.1" {
		t.Errorf("domain-name-servers = %v", r.DomainNameServers)
	}
	h, ok := c.HostByName("my-nginx-web-server")
	if !ok || h.MAC.String() != "52:54:00:12:34:56" || h.Address.String() != "192.168.122.10" ||
		h.Image != "nginx-web-server/test" || h.SSHAuthorizedKeys != "default" || h.CmdlineAppend != "debug" {
		t.Errorf("host = %+v", h)
	}
	// Without a detector, the file must say where it serves.
	_, err = Load("../../configs/example.yml", Options{SkipFileChecks: true})
	if got := problemsOf(t, err).Error(); !strings.Contains(got, "server-address is not set") {
		t.Errorf("without a detector: %v", got)
	}
}

func TestDetectOnlyWhatIsMissing(t *testing.T) {
	for _, c := range []struct {
		name, yml string
		calls     []string
		check     func(r Registry) bool
	}{
		{"interface given", "bootp-registry:\n  interface: eth7\n", []string{"eth7"},
			func(r Registry) bool { return r.Interface == "eth7" && r.ServerAddress.IsValid() }},
		{"server and subnet given", "bootp-registry:\n  server-address: 10.9.0.1\n  subnet: 10.9.0.0/24\n", []string{""},
			// the detected router is on another network: not handed out
			func(r Registry) bool {
				return r.ServerAddress.String() == "10.9.0.1" && r.Interface == "virbr0" && len(r.Routers) == 0 && r.DomainName == "detected.test"
			}},
		{"netmask alone", "bootp-registry:\n  netmask: 255.255.0.0\n", []string{""},
			func(r Registry) bool { return r.Subnet.String() == "192.168.0.0/16" }},
		{"explicit empties", "bootp-registry:\n  interface: br0\n  server-address: 10.9.0.1\n  subnet: 10.9.0.0/24\n  routers: []\n  domain-name: \"\"\n  domain-name-servers: []\n", nil,
			func(r Registry) bool { return len(r.Routers) == 0 && r.DomainName == "" && r.DomainNameServers != nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			det := &fakeDetector{}
			cfg, err := Parse("t.yml", []byte(c.yml), Options{Detector: det})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(det.calls, c.calls) {
				t.Errorf("detector calls %q, want %q", det.calls, c.calls)
			}
			if !c.check(cfg.Registry) {
				t.Errorf("registry %+v", cfg.Registry)
			}
		})
	}
}

// Relative paths are relative to the file, wherever the program runs.
func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "imgs", "a", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	yml := "bootp-registry:\n  server-address: 10.0.0.1\n  subnet: 10.0.0.0/24\n  images-dir: imgs\n  tftp-root: tftp\nhosts:\n  h:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.2\n    image-name: a/1\n"
	path := filepath.Join(dir, "sub", "..", "c.yml")
	if err := os.WriteFile(filepath.Join(dir, "c.yml"), []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Registry.ImagesDir != filepath.Join(dir, "imgs") || c.Registry.TFTPRoot != filepath.Join(dir, "tftp") ||
		c.Registry.KeysDir != filepath.Join(dir, "tftp", "ssh_authorized_keys") {
		t.Errorf("paths: images %s tftp %s keys %s", c.Registry.ImagesDir, c.Registry.TFTPRoot, c.Registry.KeysDir)
	}
	// Through a symlink (the appliance links the default config path to
	// its data partition), relative to where the file really is.
	link := filepath.Join(t.TempDir(), "config.yml")
	if err := os.Symlink(filepath.Join(dir, "c.yml"), link); err != nil {
		t.Fatal(err)
	}
	if c, err = Load(link, Options{}); err != nil {
		t.Fatal(err)
	}
	if c.Registry.ImagesDir != filepath.Join(dir, "imgs") {
		t.Errorf("through a symlink: images %s, want %s", c.Registry.ImagesDir, filepath.Join(dir, "imgs"))
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yml")
	_, err := Load(path, Options{})
	ps := problemsOf(t, err)
	if len(ps) != 1 || !strings.HasPrefix(ps[0].String(), path+": cannot read the config file: no such file or directory; fix: ") {
		t.Errorf("got %q", err)
	}
}

// config-default.yml must load and say exactly the defaults, so the
// documentation cannot drift from the code.
func TestDefaultConfigLoads(t *testing.T) {
	det := &fakeDetector{}
	c, err := Load("../../configs/config-default.yml", Options{Detector: det, SkipFileChecks: true})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := det.Detect("")
	want := Registry{
		Interface:            d.Interface,
		ServerAddress:        d.Address.Addr(),
		Subnet:               d.Address.Masked(),
		Routers:              d.Routers,
		DomainName:           d.DomainName,
		DomainNameServers:    d.DNS,
		LeaseTime:            DefaultLeaseTime,
		ConfigDir:            DefaultConfigDir,
		TFTPRoot:             DefaultTFTPRoot,
		ImagesDir:            DefaultImagesDir,
		KeysDir:              DefaultKeysDir,
		DHCPListen:           DefaultDHCPListen,
		TFTPListen:           DefaultTFTPListen,
		HTTPListen:           DefaultHTTPListen,
		HTTPURL:              "http://" + d.Address.Addr().String(),
		AdminSocket:          DefaultAdminSocket,
		RouterAdvertisements: true,
	}
	if !registryEqual(c.Registry, want) {
		t.Errorf("config-default.yml says\n%+v\nthe defaults are\n%+v", c.Registry, want)
	}
	if len(c.Hosts) != 0 {
		t.Errorf("config-default.yml has %d hosts", len(c.Hosts))
	}
	// Loading nothing at all gives the same.
	e, err := Parse("empty.yml", nil, Options{Detector: &fakeDetector{}})
	if err != nil {
		t.Fatal(err)
	}
	if !registryEqual(e.Registry, want) {
		t.Errorf("an empty file gives\n%+v\nthe defaults are\n%+v", e.Registry, want)
	}
}

// Every key of Registry (named in its field comments in config.go) is
// known to the loader and documented in config-default.yml, and the
// commented example host there is the seed's and loads.
func TestEveryKeyDocumented(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "config.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var fromComments []string
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "Registry" {
			return true
		}
		for _, fl := range ts.Type.(*ast.StructType).Fields.List {
			if fl.Comment == nil {
				t.Errorf("Registry.%s has no comment naming its key", fl.Names[0])
				continue
			}
			key := strings.Fields(strings.TrimSpace(fl.Comment.Text()))[0]
			key = strings.TrimSuffix(strings.TrimSuffix(key, ":"), ",")
			fromComments = append(fromComments, key)
		}
		return false
	})
	if len(fromComments) < 19 {
		t.Fatalf("found only %d keys in Registry's comments: %v", len(fromComments), fromComments)
	}
	doc, err := os.ReadFile("../../configs/config-default.yml")
	if err != nil {
		t.Fatal(err)
	}
	known := append(fromComments, "netmask") // subnet's other half
	for _, k := range known {
		if !slices.Contains(registryKeys[:], k) {
			t.Errorf("Registry key %q is unknown to the loader", k)
		}
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(k) + `:`).Match(doc) {
			t.Errorf("config-default.yml does not document %q", k)
		}
	}
	for _, k := range registryKeys {
		if !slices.Contains(known, k) {
			t.Errorf("the loader reads %q, which no Registry comment names", k)
		}
	}
	for _, k := range hostKeys {
		if !regexp.MustCompile(`(?m)^  #   ` + regexp.QuoteMeta(k) + `:`).Match(doc) {
			t.Errorf("config-default.yml does not document host key %q", k)
		}
	}
	// Uncomment the example host: it must load.
	i := strings.Index(string(doc), "\nhosts:\n")
	if i < 0 {
		t.Fatal("config-default.yml has no hosts: line")
	}
	example := slices.Concat(doc[:i], regexp.MustCompile(`(?m)^  # (  )?([a-z])`).ReplaceAll(doc[i:], []byte("  $1$2")))
	c, err := Parse("uncommented.yml", example, Options{Detector: &fakeDetector{}, SkipFileChecks: true})
	if err != nil {
		t.Fatalf("the example in config-default.yml does not load: %v", err)
	}
	if h, ok := c.HostByName("my-nginx-web-server"); !ok || h.MAC.String() != "52:54:00:12:34:56" || h.CmdlineAppend != "debug" {
		t.Errorf("example host = %+v", h)
	}
}

func TestNew(t *testing.T) {
	mac := func(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }
	a := netip.MustParseAddr
	reg := Registry{ServerAddress: a("10.0.0.1"), Subnet: netip.MustParsePrefix("10.0.0.7/24")}
	c, err := New(reg, []*Host{
		{Name: "a", MAC: mac("52:54:00:00:00:01"), Address: a("10.0.0.2"), Image: "x/1"},
		{Name: "mapped", MAC: mac("52:54:00:00:00:02"), Address: a("::ffff:10.0.0.3"), Image: "x/1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := c.HostByAddress(a("10.0.0.3")); !ok || h.Name != "mapped" {
		t.Errorf("HostByAddress(10.0.0.3) = %v, %v", h, ok)
	}
	r := c.Registry
	if r.Subnet.String() != "10.0.0.0/24" || r.LeaseTime != DefaultLeaseTime || r.ImagesDir != DefaultImagesDir ||
		r.HTTPListen != DefaultHTTPListen || r.HTTPURL != "http://10.0.0.1" || r.RouterAdvertisements {
		t.Errorf("defaults: %+v", r)
	}
	if h, ok := c.HostByMAC(mac("52:54:00:00:00:01")); !ok || h.Name != "a" {
		t.Error("HostByMAC")
	}
	if got := c.Summary(); got != "(built in code): 2 hosts, interface (any), server 10.0.0.1, subnet 10.0.0.0/24" {
		t.Errorf("Summary = %q", got)
	}

	_, err = New(reg, []*Host{
		{Name: "a", MAC: mac("52:54:00:00:00:01"), Address: a("10.0.0.2"), Image: "x/1"},
		{Name: "a", MAC: mac("52:54:00:00:00:01"), Address: a("10.0.1.2"), Image: "../x"},
		{Name: "b_c", MAC: mac("01:00:5e:00:00:01"), Address: a("10.0.0.2")},
	})
	want := `duplicate host "a"; fix: rename or remove one of them
hardware-ethernet 52:54:00:00:00:01 of host "a" is already used by host "a"; fix: each machine needs its own MAC address: correct or remove one of them
fixed-address 10.0.1.2 of host "a" is outside the subnet 10.0.0.0/24; fix: use an address from 10.0.0.1 to 10.0.0.254, or correct subnet:
image-name "../x" contains ".."; fix: write NAME/VERSION, a directory under /var/lib/tftpboot/images, e.g. nginx-web-server/test
host name "b_c" is not a valid hostname: "_" is not allowed; fix: use letters, digits and "-" (not at either end), with dots between labels of at most 63 characters, e.g. "b-c"
hardware-ethernet 01:00:5e:00:00:01 of host "b_c" is a multicast address; fix: write the MAC address of the machine's network card (its first byte is even)
fixed-address 10.0.0.2 of host "b_c" is already used by host "a"; fix: give each host its own address
host "b_c" has no image-name; fix: add image-name: NAME/VERSION, a directory under /var/lib/tftpboot/images`
	if got := problemsOf(t, err).Error(); got != want {
		t.Errorf("New problems:\n%s\nwant:\n%s", got, want)
	}

	_, err = New(Registry{}, nil)
	if got := problemsOf(t, err).Error(); got != "server-address is not set; fix: set server-address: under bootp-registry: (this machine's IPv4 address on the boot network)\n"+
		"subnet is not set; fix: set subnet: under bootp-registry:, e.g. subnet: 192.168.122.0/24" {
		t.Errorf("empty registry: %s", got)
	}
}

func TestProblemFormat(t *testing.T) {
	for _, c := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "c.yml", Line: 3, Column: 5, Msg: "m", Fix: "f"}, "c.yml:3:5: m; fix: f"},
		{Problem{File: "c.yml", Line: 3, Msg: "m"}, "c.yml:3: m"},
		{Problem{File: "c.yml", Msg: "m", Fix: "f"}, "c.yml: m; fix: f"},
		{Problem{Msg: "m"}, "m"},
	} {
		if got := c.p.String(); got != c.want {
			t.Errorf("%#v = %q, want %q", c.p, got, c.want)
		}
	}
	ps := Problems{{File: "a", Line: 1, Msg: "x"}, {File: "a", Line: 2, Msg: "y"}}
	if got := ps.Error(); got != "a:1: x\na:2: y" {
		t.Errorf("Problems.Error = %q", got)
	}
}

func TestSuggest(t *testing.T) {
	for in, want := range map[string]string{
		"hardware_ethernet": "hardware-ethernet",
		"hardware ethernet": "hardware-ethernet",
		"hardware-ethrenet": "hardware-ethernet",
		"mac":               "hardware-ethernet",
		"ip":                "fixed-address",
		"Image-Name":        "image-name",
		"ssh-authorized":    "ssh-authorized-keys",
		"colour":            "",
	} {
		if got := suggest(in, hostKeys[:], hostSynonym); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParse: no input may panic, and every problem must have a place.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yml")
	more, _ := filepath.Glob("../../configs/*.yml")
	for _, p := range append(files, more...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(genHosts(3, "images", "keys"))
	dir := f.TempDir()
	name := filepath.Join(dir, "fuzz.yml")
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(name, data, Options{Detector: &fakeDetector{}})
		if err == nil {
			if c == nil || c.Summary() == "" {
				t.Fatal("no config and no error")
			}
			return
		}
		var ps Problems
		if !errors.As(err, &ps) || len(ps) == 0 {
			t.Fatalf("error %T is not Problems: %v", err, err)
		}
		for _, p := range ps {
			if p.Line <= 0 || p.File != name || p.Msg == "" {
				t.Fatalf("problem without a place: %#v", p)
			}
		}
	})
}
