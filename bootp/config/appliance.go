package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// CheckPassword reports whether pw is the console password, comparing in
// constant time (bcrypt). With no console-password there is nothing to
// guard and every pw passes: callers decide whether to ask at all by
// looking at ConsolePassword.
func (a Appliance) CheckPassword(pw string) bool {
	if a.ConsolePassword == "" {
		return true
	}
	return bcrypt.CompareHashAndPassword([]byte(a.ConsolePassword), []byte(pw)) == nil
}

// Appliance keys.
var (
	applianceKeys = []string{"hostname", "console-password", "interfaces"}
	ifaceKeys     = []string{"dhcp", "address", "gateway"}
)

func applianceSynonym(s string) string {
	switch s {
	case "host-name", "name", "host", "system-name":
		return "hostname"
	case "hash", "secret":
		return "console-password"
	case "interface", "nics", "network", "networks", "links", "ifaces", "netdevs":
		return "interfaces"
	}
	if strings.Contains(s, "passw") || strings.Contains(s, "pasw") {
		return "console-password"
	}
	return ""
}

func ifaceSynonym(s string) string {
	switch s {
	case "dhcp4", "dhcp-client", "auto", "dynamic":
		return "dhcp"
	case "ip", "ip-address", "addr", "static", "cidr", "ipv4", "addresses":
		return "address"
	case "gw", "router", "default-gateway", "default-route", "via", "routers":
		return "gateway"
	}
	return ""
}

// bcryptPrefixes are the hash versions Go's bcrypt checks; "$2x$" and
// others are hashes of a buggy era that other tools may still write.
var bcryptPrefixes = []string{"$2a$", "$2b$", "$2y$"}

const passwdFix = "run `livebootp appliance passwd`, which prints the hash of a password, and write it in quotes: console-password: \"$2b$10$...\"; or remove the line for no password"

// appliance reads the appliance: section. It needs nothing from the other
// sections, so it is checked in full here.
func (w *walker) appliance(k, m int32) {
	t := w.t
	w.app.Line = int(t.nodes[k].line)
	if w.isNull(m) {
		return
	}
	const fix = "write hostname:, console-password: and interfaces: indented under appliance:"
	if !w.mapping(m, "appliance must be a mapping of settings", fix, fix) {
		return
	}
	// interfaces walks mappings of its own: keep this one's pairs.
	pairs := slices.Clone(w.collectPairs(m))
	seen := map[string]int32{}
	for _, p := range pairs {
		name, ok := w.keyText(p.k)
		if !ok {
			continue
		}
		key := string(name)
		if !slices.Contains(applianceKeys, key) {
			fix := "remove it; appliance: holds hostname, console-password and interfaces"
			switch {
			case lookup(registryKeys[:], name) >= 0:
				fix = "move it under bootp-registry:"
			default:
				if s := suggest(key, applianceKeys, applianceSynonym); s != "" {
					fix = fmt.Sprintf("did you mean %q?", s)
				}
			}
			w.col.add(t.pos(p.k), fmt.Sprintf("unknown key %q in appliance", key), fix)
			continue
		}
		if line, dup := seen[key]; dup {
			if !p.merged {
				w.col.add(t.pos(p.k), fmt.Sprintf("duplicate key %q in appliance (first at line %d)", key, line), "keep one of them")
			}
			continue
		}
		seen[key] = t.nodes[p.k].line
		if w.isNull(p.v) {
			continue // the default: no hostname, password or interfaces
		}
		if key == "interfaces" {
			w.interfaces(p.v)
			continue
		}
		if t.nodes[p.v].kind != kScalar {
			w.col.add(t.pos(p.v), fmt.Sprintf("%s must be a single value, not %s", key, w.kind(p.v)), "write "+key+": VALUE on one line")
			continue
		}
		s, at := w.text(p.v), t.pos(p.v)
		switch key {
		case "hostname":
			if why := applianceHostnameProblem(s); why != "" {
				w.col.add(at, fmt.Sprintf("appliance hostname %q is not a valid host name: %s", s, why),
					`use one DNS label: letters, digits and "-" (not at either end), at most 63 characters, e.g. pxe-box`)
				continue
			}
			w.app.Hostname = s
		case "console-password":
			if s == "" {
				continue
			}
			// The value is never printed: it may be a password written
			// in clear by mistake.
			if why := passwordHashProblem(s); why != "" {
				w.col.add(at, "console-password is not a bcrypt hash: "+why, passwdFix)
				continue
			}
			w.app.ConsolePassword = s
		}
	}
}

func applianceHostnameProblem(s string) string {
	if strings.Contains(s, ".") {
		return "it has a dot: the appliance's hostname is one label (its domain is bootp-registry's domain-name)"
	}
	return hostnameProblem(s)
}

// passwordHashProblem says why s is not a bcrypt hash Go can check, or "".
func passwordHashProblem(s string) string {
	if !slices.ContainsFunc(bcryptPrefixes, func(p string) bool { return strings.HasPrefix(s, p) }) {
		return "it does not start with $2a$, $2b$ or $2y$"
	}
	if _, err := bcrypt.Cost([]byte(s)); err != nil {
		return err.Error()
	}
	// bcrypt.Cost reads only the header: the rest must be the 53 characters
	// of salt and digest in bcrypt's base64 alphabet.
	if len(s) != 60 || s[6] != '$' ||
		strings.IndexFunc(s[7:], func(r rune) bool { return !(r < 0x80 && (alnum(byte(r)) || r == '.' || r == '/')) }) >= 0 {
		return "it is not 60 characters of $2b$NN$ followed by salt and digest"
	}
	return ""
}

func (w *walker) interfaces(m int32) {
	t := w.t
	if !w.mapping(m, "interfaces must be a mapping keyed by interface name",
		"write each interface's name followed by a colon and its settings, e.g. eth0: { dhcp: true }",
		`write "eth0:" with its settings indented under it, without "- "`) {
		return
	}
	kids := t.children(m)
	seen := map[string]int32{}
	gateway := int32(0) // line of the first interface with a gateway
	for i := 0; i+1 < len(kids); i += 2 {
		k, v := kids[i], kids[i+1]
		name, ok := w.keyText(k)
		if !ok {
			continue
		}
		ifc := ApplianceInterface{Name: string(name), Line: int(t.nodes[k].line)}
		if why := interfaceNameProblem(ifc.Name); why != "" || t.nodes[k].style == sNull || t.nodes[k].style == sMerge {
			if why == "" {
				why = "it is not a name"
			}
			w.col.add(t.pos(k), fmt.Sprintf("%q is not an interface name: %s", ifc.Name, why), "write the name ip link shows, e.g. eth0 or enp1s0")
			continue
		}
		if line, dup := seen[ifc.Name]; dup {
			w.col.add(t.pos(k), fmt.Sprintf("duplicate interface %q (first at line %d)", ifc.Name, line), "merge the two blocks into one")
			continue
		}
		seen[ifc.Name] = t.nodes[k].line
		if !w.iface(&ifc, k, v) {
			continue
		}
		if ifc.Gateway.IsValid() {
			if gateway != 0 {
				w.col.add(t.pos(k), fmt.Sprintf("interface %q has a gateway, and so has the interface at line %d", ifc.Name, gateway),
					"keep one gateway: the appliance has one default route")
			}
			gateway = t.nodes[k].line
		}
		w.app.Interfaces = append(w.app.Interfaces, ifc)
	}
}

// iface reads one interface's settings; false means it was reported.
func (w *walker) iface(ifc *ApplianceInterface, k, m int32) bool {
	t := w.t
	q := fmt.Sprintf("interface %q", ifc.Name)
	const settingsFix = "write dhcp: true, or address: 10.0.0.1/24 (and optionally gateway:), e.g. eth0: { dhcp: true }"
	if w.isNull(m) {
		w.col.add(t.pos(k), q+" has no settings", settingsFix)
		return false
	}
	if !w.mapping(m, q+" must be a mapping of settings", settingsFix, settingsFix) {
		return false
	}
	ok := true
	var at [3]pos // where dhcp, address, gateway were given
	var dhcpSet bool
	for _, p := range w.collectPairs(m) {
		name, good := w.keyText(p.k)
		if !good {
			ok = false
			continue
		}
		key := string(name)
		i := slices.Index(ifaceKeys, key)
		if i < 0 {
			fix := "remove it; an interface has dhcp, address and gateway"
			if s := suggest(key, ifaceKeys, ifaceSynonym); s != "" {
				fix = fmt.Sprintf("did you mean %q?", s)
			}
			w.col.add(t.pos(p.k), fmt.Sprintf("unknown key %q in %s", key, q), fix)
			ok = false
			continue
		}
		if at[i].line != 0 {
			if !p.merged {
				w.col.add(t.pos(p.k), fmt.Sprintf("duplicate key %q in %s (first at line %d)", key, q, at[i].line), "keep one of them")
				ok = false
			}
			continue
		}
		at[i] = t.pos(p.k)
		if w.isNull(p.v) {
			continue
		}
		if t.nodes[p.v].kind != kScalar {
			w.col.add(t.pos(p.v), fmt.Sprintf("%s of %s must be a single value, not %s", key, q, w.kind(p.v)), "write "+key+": VALUE")
			ok = false
			continue
		}
		s, vat := w.text(p.v), t.pos(p.v)
		at[i] = vat
		switch key {
		case "dhcp":
			b, good := parseBool(s, t.nodes[p.v].style)
			if !good {
				w.col.add(vat, fmt.Sprintf("dhcp of %s must be true or false, not %q", q, s), "write dhcp: true (unquoted)")
				ok = false
				continue
			}
			ifc.DHCP, dhcpSet = b, true
		case "address":
			pfx, msg, fix := parseInterfaceAddress(s)
			if msg != "" {
				w.col.add(vat, fmt.Sprintf("address %q of %s %s", s, q, msg), fix)
				ok = false
				continue
			}
			ifc.Address = pfx
		case "gateway":
			a, good := parseIPv4([]byte(s))
			if !good {
				msg, fix := addrProblem("gateway", s, " of "+q)
				w.col.add(vat, msg, fix)
				ok = false
				continue
			}
			ifc.Gateway = a
		}
	}
	if !ok {
		return false
	}
	switch {
	case ifc.DHCP && ifc.Address.IsValid():
		w.col.add(at[1], q+" has both dhcp: true and an address", "keep one: dhcp: true asks a DHCP server, address: sets a static one")
		return false
	case !ifc.DHCP && !ifc.Address.IsValid():
		where := t.pos(k)
		if dhcpSet {
			where = at[0]
		}
		w.col.add(where, q+" has neither dhcp: true nor an address", settingsFix)
		return false
	case ifc.Gateway.IsValid() && ifc.DHCP:
		w.col.add(at[2], fmt.Sprintf("%s has a gateway and dhcp: true", q), "remove gateway: (the DHCP server hands out the router), or set a static address:")
		return false
	case ifc.Gateway.IsValid() && !ifc.Address.Masked().Contains(ifc.Gateway):
		w.col.add(at[2], fmt.Sprintf("gateway %s of %s is outside its network %s", ifc.Gateway, q, ifc.Address.Masked()),
			"a gateway must be on the interface's network: correct gateway: or the prefix length of address:")
		return false
	case ifc.Gateway.IsValid() && ifc.Gateway == ifc.Address.Addr():
		w.col.add(at[2], fmt.Sprintf("gateway %s of %s is the interface's own address", ifc.Gateway, q), "write the router's address, or remove gateway:")
		return false
	}
	return true
}

// parseInterfaceAddress reads ADDRESS/BITS, keeping the host part.
func parseInterfaceAddress(s string) (netip.Prefix, string, string) {
	const fix = "write the interface's IPv4 address with its prefix length, e.g. 10.0.0.1/24"
	if !strings.Contains(s, "/") {
		if a, ok := parseIPv4([]byte(s)); ok {
			return netip.Prefix{}, "has no prefix length", fmt.Sprintf("write %s/24 (with the right length)", a)
		}
		return netip.Prefix{}, "is not ADDRESS/BITS", fix
	}
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return netip.Prefix{}, "is not ADDRESS/BITS", fix
	case !p.Addr().Is4():
		return netip.Prefix{}, "is not an IPv4 address", fix
	case p.Bits() < 1:
		return netip.Prefix{}, "has a prefix length of 0", fix
	}
	a := p.Addr()
	if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Prefix{}, "cannot be an interface's address", fix
	}
	if p.Bits() <= 30 {
		switch a {
		case p.Masked().Addr():
			return netip.Prefix{}, "is the network address of " + p.Masked().String(), "use a host address, e.g. " + netip.PrefixFrom(a.Next(), p.Bits()).String()
		case broadcast(p):
			return netip.Prefix{}, "is the broadcast address of " + p.Masked().String(), "use a host address, e.g. " + netip.PrefixFrom(a.Prev(), p.Bits()).String()
		}
	}
	return p, "", ""
}

// interfaceNameProblem applies the kernel's rule for interface names
// (dev_valid_name), so a name the appliance cannot configure never loads.
func interfaceNameProblem(s string) string {
	switch {
	case s == "":
		return "it is empty"
	case len(s) > 15:
		return "it is longer than 15 characters"
	case s == "." || s == "..":
		return "it is a dot name"
	case strings.ContainsAny(s, "/:") || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return `it contains "/", ":", a space or a control character`
	}
	return ""
}
