package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// finish fills in defaults and auto-detected values, checks how the values
// fit together (and, for Parse, that image directories and key files
// exist) and builds the lookup maps. src is nil for New.
func (c *Config) finish(src *source) error {
	if src == nil {
		src = sourceFor(c)
	}
	v := &validator{c: c, src: src, col: src.col, images: map[string]fileResult{}, keyFiles: map[string]fileResult{}}
	v.registry()
	v.hosts()
	return src.col.err()
}

// sourceFor describes a Config built in code: values are set when not
// zero, nothing has a position, and files are not checked (programs that
// build configs in code, tests mostly, bring their own files or none).
func sourceFor(c *Config) *source {
	r := &c.Registry
	s := &source{col: &collector{}, netmaskBits: -1, hosts: make([]hostSource, len(c.Hosts))}
	s.opts.SkipFileChecks = true
	for k, ok := range map[int]bool{
		rInterface: r.Interface != "", rServerAddress: r.ServerAddress.IsValid(), rSubnet: r.Subnet.IsValid(),
		rRouters: r.Routers != nil, rDomainName: r.DomainName != "", rDomainNameServers: r.DomainNameServers != nil,
	} {
		if ok {
			s.set |= bit(k)
		}
	}
	return s
}

type validator struct {
	c        *Config
	src      *source
	col      *collector
	images   map[string]fileResult // by image name
	keyFiles map[string]fileResult // by key file name
}

type fileResult struct {
	msg, fix string
	missing  bool
}

const detectable = 1<<rInterface | 1<<rServerAddress | 1<<rSubnet | 1<<rRouters | 1<<rDomainName | 1<<rDomainNameServers

func keyList(keys uint32) string {
	var names []string
	for k := 0; k < nRegKeys; k++ {
		if keys&bit(k) != 0 {
			names = append(names, registryKeys[k])
		}
	}
	return strings.Join(names, ", ")
}

func (v *validator) registry() {
	r := &v.c.Registry
	s := v.src
	at := func(k int) pos {
		if s.has(k) || s.bad&bit(k) != 0 {
			return s.at[k]
		}
		return s.section
	}

	need := detectable &^ (s.set | s.bad)
	if s.netmaskBits >= 0 && r.ServerAddress.IsValid() {
		need &^= bit(rSubnet)
	}
	detected := uint32(0)
	if need != 0 && s.opts.Detector != nil {
		d, err := s.opts.Detector.Detect(r.Interface)
		if err != nil {
			names := keyList(need)
			v.col.add(s.section, fmt.Sprintf("cannot auto-detect %s: %v", names, err),
				fmt.Sprintf("set %s under bootp-registry:", names))
			s.bad |= need
		} else {
			detected = need
			if need&bit(rInterface) != 0 {
				r.Interface = d.Interface
			}
			if need&bit(rServerAddress) != 0 {
				r.ServerAddress = d.Address.Addr().Unmap()
			}
			if need&bit(rSubnet) != 0 {
				if s.netmaskBits >= 0 {
					r.Subnet = netip.PrefixFrom(r.ServerAddress, s.netmaskBits).Masked()
				} else {
					r.Subnet = d.Address.Masked()
				}
			}
			if need&bit(rRouters) != 0 {
				// A detected default gateway on another network is no
				// router for these hosts (the registry may serve them
				// through a DHCP relay).
				r.Routers = nil
				for _, a := range d.Routers {
					if a.Is4() && (!r.Subnet.IsValid() || r.Subnet.Contains(a)) {
						r.Routers = append(r.Routers, a)
					}
				}
			}
			if need&bit(rDomainName) != 0 {
				r.DomainName = d.DomainName
			}
			if need&bit(rDomainNameServers) != 0 {
				r.DomainNameServers = slices.DeleteFunc(slices.Clone(d.DNS), func(a netip.Addr) bool { return !a.Is4() })
			}
		}
	}
	from := func(k int) string {
		if detected&bit(k) != 0 {
			return " (auto-detected)"
		}
		return ""
	}

	if s.has(rInterface) || detected&bit(rInterface) != 0 {
		if r.Interface != "" && interfaceNameProblem(r.Interface) != "" {
			v.col.add(at(rInterface), fmt.Sprintf("interface %q is not an interface name", r.Interface),
				"write the name ip link shows, e.g. eth0")
		}
	}

	r.ServerAddress = r.ServerAddress.Unmap()
	switch a := r.ServerAddress; {
	case !a.IsValid():
		if s.bad&bit(rServerAddress) == 0 {
			v.col.add(s.section, "server-address is not set",
				"set server-address: under bootp-registry: (this machine's IPv4 address on the boot network)")
		}
	case !a.Is4():
		v.col.add(at(rServerAddress), fmt.Sprintf("server-address %s is not an IPv4 address", a), "write this machine's IPv4 address on the boot network")
	case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		v.col.add(at(rServerAddress), fmt.Sprintf("server-address %s cannot be this machine's address on a network", a),
			"write this machine's IPv4 address on the boot network")
	}

	if s.netmaskBits >= 0 && !r.Subnet.IsValid() && r.ServerAddress.Is4() {
		r.Subnet = netip.PrefixFrom(r.ServerAddress, s.netmaskBits).Masked()
	}
	switch p := r.Subnet; {
	case !p.IsValid():
		if s.bad&bit(rSubnet) == 0 && s.bad&bit(rServerAddress) == 0 {
			v.col.add(s.section, "subnet is not set", "set subnet: under bootp-registry:, e.g. subnet: 192.168.122.0/24")
		}
	case !p.Addr().Is4() || p.Bits() < 1 || p.Bits() > 30:
		v.col.add(at(rSubnet), fmt.Sprintf("subnet %s is not an IPv4 network with room for hosts", p), "use an IPv4 network from /1 to /30, e.g. 192.168.122.0/24")
		r.Subnet = netip.Prefix{}
	default:
		r.Subnet = p.Masked()
	}

	for _, a := range r.Routers {
		switch {
		case !a.Is4():
			v.col.add(at(rRouters), fmt.Sprintf("router %s is not an IPv4 address", a), "list IPv4 addresses in routers:")
		case r.Subnet.IsValid() && !r.Subnet.Contains(a):
			v.col.add(at(rRouters), fmt.Sprintf("router %s is outside the subnet %s%s", a, r.Subnet, from(rSubnet)),
				"a router must be on the hosts' network: correct routers: or subnet:")
		case r.Subnet.IsValid() && (a == r.Subnet.Addr() || a == broadcast(r.Subnet)):
			v.col.add(at(rRouters), fmt.Sprintf("router %s is the network or broadcast address of %s", a, r.Subnet), "correct routers:")
		}
	}
	for _, a := range r.DomainNameServers {
		if !a.Is4() {
			v.col.add(at(rDomainNameServers), fmt.Sprintf("domain name server %s is not an IPv4 address", a), "list IPv4 addresses in domain-name-servers:")
		}
	}
	if r.DomainName != "" {
		if why := hostnameProblem(r.DomainName); why != "" {
			v.col.add(at(rDomainName), fmt.Sprintf("domain-name %q is not a valid domain name: %s", r.DomainName, why),
				"write a DNS domain such as lab.example.com")
		}
	}

	if r.LeaseTime == 0 {
		r.LeaseTime = DefaultLeaseTime
	} else if r.LeaseTime < time.Second || r.LeaseTime > maxLease {
		v.col.add(at(rLeaseTime), fmt.Sprintf("lease-time %s is out of range", r.LeaseTime), "use a duration from 1s to 136 years, e.g. 1h")
	}

	setDefault(&r.ConfigDir, DefaultConfigDir)
	setDefault(&r.TFTPRoot, DefaultTFTPRoot)
	setDefault(&r.ImagesDir, filepath.Join(r.TFTPRoot, "images"))
	setDefault(&r.KeysDir, filepath.Join(r.TFTPRoot, "ssh_authorized_keys"))
	setDefault(&r.DHCPListen, DefaultDHCPListen)
	setDefault(&r.TFTPListen, DefaultTFTPListen)
	setDefault(&r.HTTPListen, DefaultHTTPListen)
	setDefault(&r.AdminSocket, DefaultAdminSocket)
	for _, l := range []struct {
		k   int
		val string
	}{{rDHCPListen, r.DHCPListen}, {rTFTPListen, r.TFTPListen}, {rHTTPListen, r.HTTPListen}} {
		if s.bad&bit(l.k) == 0 {
			if msg, fix := listenProblem(registryKeys[l.k], l.val); msg != "" {
				v.col.add(at(l.k), msg, fix)
				s.bad |= bit(l.k)
			}
		}
	}

	if r.HTTPURL == "" {
		r.HTTPURL = deriveURL(r.ServerAddress, r.HTTPListen)
	} else if msg, fix := urlProblem(r.HTTPURL); msg != "" {
		v.col.add(at(rHTTPURL), msg, fix)
	} else {
		r.HTTPURL = strings.TrimRight(r.HTTPURL, "/")
	}

	if r.BootUnknown != "" {
		v.image(r.BootUnknown, at(rBootUnknown), "boot-unknown")
	}
}

func setDefault(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func listenProblem(key, s string) (string, string) {
	def := map[string]string{"dhcp-listen": ":67", "tftp-listen": ":69", "http-listen": ":80"}[key]
	fix := fmt.Sprintf("write HOST:PORT, e.g. %q for every address or \"10.0.0.1%s\", or off", def, def)
	if s == Off {
		return "", ""
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("%s %q is not HOST:PORT", key, s), fix
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Sprintf("%s %q: %q is not an IP address", key, s, host), fix
		}
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Sprintf("%s %q: port %q is not a number from 0 to 65535", key, s, port), fix
	}
	return "", ""
}

// deriveURL is the base URL targets use when the file does not give one:
// the server's address and the HTTP port.
func deriveURL(server netip.Addr, listen string) string {
	if !server.IsValid() {
		return ""
	}
	_, port, err := net.SplitHostPort(listen)
	if err != nil || port == "80" {
		return "http://" + server.String()
	}
	return "http://" + net.JoinHostPort(server.String(), port)
}

func urlProblem(s string) (string, string) {
	const fix = "write the registry's base URL as the targets reach it, e.g. http://192.168.122.1:8080"
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Sprintf("http-url %q is not a URL", s), fix
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Sprintf("http-url %q must start with http:// or https:// and name a host", s), fix
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Sprintf("http-url %q must not have a user, query or fragment", s), fix
	}
	return "", ""
}

func (v *validator) hosts() {
	c := v.c
	r := &c.Registry
	n := len(c.Hosts)
	byMAC := make(map[[6]byte]*Host, n)
	byAddr := make(map[netip.Addr]*Host, n)
	byName := make(map[string]*Host, n)
	var byLower map[string]*Host // only names with capitals: few, if any
	var noAddr []int
	reserved := v.reserved()
	bcast := netip.Addr{}
	if r.Subnet.IsValid() {
		bcast = broadcast(r.Subnet)
	}
	for i, h := range c.Hosts {
		hs := &v.src.hosts[i]
		if h == nil {
			v.col.add(pos{}, fmt.Sprintf("host %d is nil", i), "remove it from the list")
			continue
		}
		// quoted is only for messages: building it for every host would
		// cost more than the checks.
		quoted := quoteLazy(h.Name)
		h.Address = h.Address.Unmap() // New may be handed ::ffff:a.b.c.d

		if why := hostnameProblem(h.Name); why != "" {
			v.col.add(hs.key, fmt.Sprintf("host name %s is not a valid hostname: %s", quoted, why), hostnameFix(h.Name))
		}
		if prev, ok := byName[h.Name]; ok {
			v.col.add(hs.key, fmt.Sprintf("duplicate host %s%s", quoted, strings.Replace(firstAt(prev), "(line", "(first at line", 1)), "rename or remove one of them")
		} else {
			lower := h.Name
			if hasUpper(h.Name) {
				lower = strings.ToLower(h.Name)
			}
			prev, ok := byLower[lower]
			if !ok && lower != h.Name {
				prev, ok = byName[lower]
			}
			if ok {
				v.col.add(hs.key, fmt.Sprintf("host %s differs from host %q%s only in case", quoted, prev.Name, firstAt(prev)),
					"host names are case-insensitive: rename one of them")
			} else if lower != h.Name {
				if byLower == nil {
					byLower = map[string]*Host{}
				}
				byLower[lower] = h
			}
			byName[h.Name] = h
		}

		switch mac := h.MAC; {
		case mac == nil:
			if hs.bad&(1<<hMAC) == 0 {
				v.col.add(hs.at[hMAC].or(hs.key), fmt.Sprintf("host %s has no hardware-ethernet", quoted),
					`add hardware-ethernet: "52:54:00:12:34:56" with the MAC address of the machine's boot network card`)
			}
		case len(mac) != 6:
			v.col.add(hs.at[hMAC].or(hs.key), fmt.Sprintf("hardware-ethernet %s of host %s is not an Ethernet address", mac, quoted),
				`write six bytes, e.g. "52:54:00:12:34:56"`)
		case mac[0]&1 != 0:
			v.col.add(hs.at[hMAC], fmt.Sprintf("hardware-ethernet %s of host %s is a multicast address", mac, quoted),
				"write the MAC address of the machine's network card (its first byte is even)")
		case [6]byte(mac) == [6]byte{}:
			v.col.add(hs.at[hMAC], fmt.Sprintf("hardware-ethernet %s of host %s is all zeros", mac, quoted),
				"write the MAC address of the machine's network card")
		default:
			if prev, ok := byMAC[[6]byte(mac)]; ok {
				v.col.add(hs.at[hMAC], fmt.Sprintf("hardware-ethernet %s of host %s is already used by host %q%s", mac, quoted, prev.Name, firstAt(prev)),
					"each machine needs its own MAC address: correct or remove one of them")
			} else {
				byMAC[[6]byte(mac)] = h
			}
		}

		switch a := h.Address; {
		case !a.IsValid():
			if hs.bad&(1<<hAddress) == 0 && !r.ProxyDHCP {
				noAddr = append(noAddr, i)
			}
		case !a.Is4():
			v.col.add(hs.at[hAddress].or(hs.key), fmt.Sprintf("fixed-address %s of host %s is not an IPv4 address", a, quoted), "write an IPv4 address")
		case r.Subnet.IsValid() && !r.Subnet.Contains(a):
			v.col.add(hs.at[hAddress], fmt.Sprintf("fixed-address %s of host %s is outside the subnet %s", a, quoted, v.subnetWhere()),
				fmt.Sprintf("use an address from %s to %s, or correct subnet:", r.Subnet.Addr().Next(), bcast.Prev()))
		case r.Subnet.IsValid() && a == r.Subnet.Addr():
			v.col.add(hs.at[hAddress], fmt.Sprintf("fixed-address %s of host %s is the network address of %s", a, quoted, r.Subnet),
				fmt.Sprintf("use an address from %s to %s", r.Subnet.Addr().Next(), bcast.Prev()))
		case r.Subnet.IsValid() && a == bcast:
			v.col.add(hs.at[hAddress], fmt.Sprintf("fixed-address %s of host %s is the broadcast address of %s", a, quoted, r.Subnet),
				fmt.Sprintf("use an address from %s to %s", r.Subnet.Addr().Next(), bcast.Prev()))
		case reserved[a] != "":
			v.col.add(hs.at[hAddress], fmt.Sprintf("fixed-address %s of host %s is %s", a, quoted, reserved[a]),
				"give the host an address of its own")
		default:
			if prev, ok := byAddr[a]; ok {
				v.col.add(hs.at[hAddress], fmt.Sprintf("fixed-address %s of host %s is already used by host %q%s", a, quoted, prev.Name, firstAt(prev)),
					"give each host its own address")
			} else {
				byAddr[a] = h
			}
		}

		if h.Image == "" {
			if hs.bad&(1<<hImage) == 0 {
				v.col.add(hs.at[hImage].or(hs.key), fmt.Sprintf("host %s has no image-name", quoted),
					fmt.Sprintf("add image-name: NAME/VERSION, a directory under %s", r.ImagesDir))
			}
		} else {
			v.image(h.Image, hs.at[hImage], "image-name")
		}
		if h.SSHAuthorizedKeys != "" {
			v.keys(h.SSHAuthorizedKeys, hs.at[hKeys])
		}
		if strings.ContainsFunc(h.CmdlineAppend, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			v.col.add(hs.at[hCmdline], fmt.Sprintf("cmdline-append of host %s contains a control character", quoted),
				"keep the kernel arguments on one line, separated by spaces")
		}
		// iPXE reads its kernel line as a command: && and || chain
		// other commands and ${...} expands its settings, so the text
		// would not reach the kernel as written.
		for _, op := range []string{"&&", "||", "${"} {
			if strings.Contains(h.CmdlineAppend, op) {
				v.col.add(hs.at[hCmdline], fmt.Sprintf("cmdline-append of host %s contains %q, which iPXE's boot script would run or expand instead of passing to the kernel", quoted, op),
					"remove it; kernel arguments are NAME or NAME=VALUE words")
				break
			}
		}
	}
	v.suggestAddresses(noAddr, byAddr, reserved, bcast)
	c.byMAC, c.byAddr, c.byName = byMAC, byAddr, byName
}

// quoteLazy formats as %q only when printed.
type quoteLazy string

func (q quoteLazy) String() string { return strconv.Quote(string(q)) }

func (p pos) or(q pos) pos {
	if p.line == 0 {
		return q
	}
	return p
}

func firstAt(h *Host) string {
	if h.Line > 0 {
		return fmt.Sprintf(" (line %d)", h.Line)
	}
	return ""
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

func (v *validator) subnetWhere() string {
	r := &v.c.Registry
	if v.src.has(rSubnet) || v.src.netmaskBits >= 0 || v.src.opts.Detector == nil {
		return r.Subnet.String()
	}
	return fmt.Sprintf("%s (auto-detected on %s)", r.Subnet, r.Interface)
}

// reserved names the addresses no host may take.
func (v *validator) reserved() map[netip.Addr]string {
	r := &v.c.Registry
	m := map[netip.Addr]string{}
	for _, a := range r.DomainNameServers {
		m[a] = "a DNS server's address (domain-name-servers:)"
	}
	for _, a := range r.Routers {
		m[a] = "a router's address (routers:)"
	}
	if r.ServerAddress.IsValid() {
		m[r.ServerAddress] = "the registry's own address (server-address:)"
	}
	return m
}

// suggestAddresses reports hosts without an address, offering each a free
// one so the fix can be pasted.
func (v *validator) suggestAddresses(idx []int, used map[netip.Addr]*Host, reserved map[netip.Addr]string, bcast netip.Addr) {
	r := &v.c.Registry
	next := netip.Addr{}
	if r.Subnet.IsValid() {
		next = r.Subnet.Addr().Next()
	}
	budget := 1 << 16
	for _, i := range idx {
		h := v.c.Hosts[i]
		hs := &v.src.hosts[i]
		fix := "add fixed-address: with the host's IPv4 address"
		for next.IsValid() && budget > 0 && next != bcast && r.Subnet.Contains(next) {
			budget--
			a := next
			next = next.Next()
			if used[a] == nil && reserved[a] == "" {
				fix = fmt.Sprintf("add fixed-address: %q (free in %s)", a.String(), r.Subnet)
				break
			}
		}
		v.col.add(hs.at[hAddress].or(hs.key), fmt.Sprintf("host %q has no fixed-address", h.Name), fix)
	}
}

// image checks an image name and, unless told not to, that its directory
// exists. Results are kept by name: a few images serve many hosts.
func (v *validator) image(name string, at pos, key string) {
	res, ok := v.images[name]
	if !ok {
		res = v.checkImage(name, key)
		v.images[name] = res
	}
	if res.msg != "" {
		v.col.add(at, res.msg, res.fix)
	}
}

func (v *validator) checkImage(name, key string) fileResult {
	r := &v.c.Registry
	if msg, fix := imageNameProblem(name, r.ImagesDir); msg != "" {
		return fileResult{msg: key + " " + msg, fix: fix}
	}
	if v.src.opts.SkipFileChecks {
		return fileResult{}
	}
	res := checkPath(filepath.Join(r.ImagesDir, name), true)
	if res.msg == "" {
		return res
	}
	res.fix = "build or copy the image there (vmlinuz, initrd.img, filesystem.squashfs), or correct " + key + " or images-dir"
	if res.missing {
		parent := filepath.Join(r.ImagesDir, filepath.Dir(name))
		if have := listDir(parent, 5); have != "" {
			res.fix = fmt.Sprintf("correct the version (%s has %s), or build or copy the image there", parent, have)
		} else if have := listDir(r.ImagesDir, 5); have != "" {
			res.fix = fmt.Sprintf("correct the name (%s has %s), or build or copy the image there", r.ImagesDir, have)
		}
	}
	what := "image"
	if key != "image-name" {
		what = key + " image"
	}
	res.msg = fmt.Sprintf("%s %s: %s", what, name, res.msg)
	return res
}

func (v *validator) keys(name string, at pos) {
	res, ok := v.keyFiles[name]
	if !ok {
		res = v.checkKeys(name)
		v.keyFiles[name] = res
	}
	if res.msg != "" {
		v.col.add(at, res.msg, res.fix)
	}
}

func (v *validator) checkKeys(name string) fileResult {
	if msg, fix := fileNameProblem(name); msg != "" {
		return fileResult{msg: "ssh-authorized-keys " + msg, fix: fix}
	}
	if v.src.opts.SkipFileChecks {
		return fileResult{}
	}
	res := checkPath(filepath.Join(v.c.Registry.KeysDir, name), false)
	if res.msg != "" {
		res.msg = "ssh-authorized-keys " + name + ": " + res.msg
		res.fix = "put the public keys there (one per line, as in ~/.ssh/authorized_keys), or correct ssh-authorized-keys or ssh-authorized-keys-dir"
	}
	return res
}

// checkPath stats path once; fix is filled in by the caller.
func checkPath(path string, wantDir bool) fileResult {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fileResult{msg: path + " does not exist", missing: true}
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fileResult{msg: fmt.Sprintf("cannot read %s: %v", path, err)}
	case wantDir && !st.IsDir():
		return fileResult{msg: path + " is not a directory"}
	case !wantDir && st.IsDir():
		return fileResult{msg: path + " is a directory, not a file"}
	}
	return fileResult{}
}

// listDir names up to max entries of dir, for a fix that shows what is there.
func listDir(dir string, max int) string {
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		return ""
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && len(names) < max {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return ""
	}
	return strings.Join(names, ", ")
}

// imageNameProblem checks NAME/VERSION: two plain path components, so an
// image can never name a directory outside images-dir.
func imageNameProblem(name, imagesDir string) (string, string) {
	fix := fmt.Sprintf("write NAME/VERSION, a directory under %s, e.g. nginx-web-server/test", imagesDir)
	q := strconv.Quote(name)
	if strings.HasPrefix(name, "/") {
		return q + " is an absolute path", fix
	}
	parts := strings.Split(name, "/")
	for _, p := range parts {
		if p == "." || p == ".." {
			return q + " contains " + strconv.Quote(p), fix
		}
	}
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		if len(parts) == 1 {
			return q + " has no version: it must be NAME/VERSION", fmt.Sprintf("add the version directory under %s, e.g. %s/test", filepath.Join(imagesDir, name), name)
		}
		return q + " must be NAME/VERSION", fix
	}
	for _, c := range name {
		if !(c < 0x80 && (alnum(byte(c)) || strings.ContainsRune("._+-/", c))) {
			return fmt.Sprintf("%s contains %q", q, string(c)), `use letters, digits, ".", "_", "+" and "-" in NAME and VERSION`
		}
	}
	return "", ""
}

// fileNameProblem checks a key file's name: one plain name inside its
// directory.
func fileNameProblem(name string) (string, string) {
	q := strconv.Quote(name)
	const fix = "write the name of a file in ssh-authorized-keys-dir, e.g. default"
	if name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return q + " is not a file name", fix
	}
	for _, c := range name {
		if !(c < 0x80 && (alnum(byte(c)) || strings.ContainsRune("._+-@", c))) {
			return fmt.Sprintf("%s contains %q", q, string(c)), `use letters, digits, ".", "_", "+", "-" and "@"`
		}
	}
	return "", ""
}

// hostnameProblem says why name is not an RFC 1123 host name, or "".
func hostnameProblem(name string) string {
	if name == "" {
		return "it is empty"
	}
	if len(name) > 253 {
		return "it is longer than 253 characters"
	}
	for label := range strings.SplitSeq(name, ".") {
		switch {
		case label == "":
			return "it has an empty label (two dots, or a dot at an end)"
		case len(label) > 63:
			return "a label is longer than 63 characters"
		case label[0] == '-' || label[len(label)-1] == '-':
			return `a label starts or ends with "-"`
		}
		for _, c := range label {
			if !(c < 0x80 && (alnum(byte(c)) || c == '-')) {
				return fmt.Sprintf("%q is not allowed", string(c))
			}
		}
	}
	return ""
}

// hostnameFix offers a valid name close to the given one.
func hostnameFix(name string) string {
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(name) {
		if c < 0x80 && (alnum(byte(c)) || c == '.') {
			b.WriteRune(c)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.Trim(b.String(), "-.")
	const rule = `use letters, digits and "-" (not at either end), with dots between labels of at most 63 characters`
	if s == "" || hostnameProblem(s) != "" {
		return rule
	}
	return fmt.Sprintf("%s, e.g. %q", rule, s)
}
