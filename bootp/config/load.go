package config

import (
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Options tune Load and Parse.
type Options struct {
	// Detector fills in the network settings the file leaves out. nil means
	// no auto-detection: then server-address and subnet must be in the file.
	// Programs pass NetlinkDetector{}; tests pass a fake.
	Detector Detector
	// SkipFileChecks skips checking that image directories and key files
	// exist, for checking a file on another machine than the registry.
	SkipFileChecks bool
}

// Load reads and validates the config file at path. Its error is always
// Problems.
func Load(path string, opts Options) (*Config, error) {
	// Relative paths in the file are relative to where it really is: the
	// appliance links the default path to its data partition.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		if pe, ok := err.(*fs.PathError); ok {
			msg = pe.Err.Error()
		}
		return nil, Problems{{File: path, Msg: "cannot read the config file: " + msg,
			Fix: "check the path; configs/config-default.yml documents every key"}}
	}
	return Parse(path, data, opts)
}

// Parse validates a config file's contents; name is the file's name, used
// in problems and as the base of relative paths. Its error is always
// Problems, each with a line number.
func Parse(name string, data []byte, opts Options) (*Config, error) {
	col := &collector{file: name}
	t, syntax := parseTree(data)
	if syntax != nil {
		reportSyntax(col, syntax)
		return nil, col.err()
	}
	w := &walker{
		t:           t,
		col:         col,
		dir:         filepath.Dir(name),
		intern:      map[string]string{},
		mergeBudget: maxMergedPairs,
		src:         &source{col: col, opts: opts, section: pos{1, 1}, netmaskBits: -1},
	}
	w.walkRoot()
	if !w.src.has(rRouterAdvertisements) {
		w.reg.RouterAdvertisements = true
	}
	c := &Config{File: name, Registry: w.reg, Hosts: w.hosts, Appliance: w.app}
	if err := c.finish(w.src); err != nil {
		return nil, err
	}
	return c, nil
}

func reportSyntax(col *collector, syntax []syntaxError) {
	for _, e := range syntax {
		col.add(pos{int32(e.line), 0}, "YAML syntax: "+e.msg,
			`indent with spaces only, keep a key and its value on one line, and quote values that contain ": " or " #" or start with one of - ? : , [ ] { } # & * ! | > ' " % @ `+"`")
	}
}

// Registry keys, in the order config-default.yml documents them.
const (
	rInterface = iota
	rServerAddress
	rSubnet
	rNetmask
	rRouters
	rDomainName
	rDomainNameServers
	rLeaseTime
	rProxyDHCP
	rBootUnknown
	rConfigDir
	rTFTPRoot
	rImagesDir
	rKeysDir
	rDHCPListen
	rTFTPListen
	rHTTPListen
	rHTTPURL
	rAdminSocket
	rRouterAdvertisements
	nRegKeys
)

// registryKeys is a read-only table: the yaml names of the registry keys.
var registryKeys = [nRegKeys]string{
	"interface", "server-address", "subnet", "netmask", "routers", "domain-name",
	"domain-name-servers", "lease-time", "proxy-dhcp", "boot-unknown", "config-dir",
	"tftp-root", "images-dir", "ssh-authorized-keys-dir", "dhcp-listen", "tftp-listen",
	"http-listen", "http-url", "admin-socket", "router-advertisements",
}

// Host keys.
const (
	hMAC = iota
	hAddress
	hImage
	hKeys
	hCmdline
	nHostKeys
)

var hostKeys = [nHostKeys]string{"hardware-ethernet", "fixed-address", "image-name", "ssh-authorized-keys", "cmdline-append"}

// topKeys are the sections, in the order walkRoot reads them.
var topKeys = []string{"bootp-registry", "hosts", "appliance"}

func lookup(keys []string, name []byte) int {
	for i, k := range keys {
		if k == string(name) {
			return i
		}
	}
	return -1
}

// source is what finish needs to know about where values came from. New
// passes none: then nothing has a position and zero values are unset.
type source struct {
	col         *collector
	opts        Options
	section     pos           // the bootp-registry: key, or 1:1
	set         uint32        // registry keys with a value in the file
	bad         uint32        // registry keys whose value was wrong (already reported)
	at          [nRegKeys]pos // where each registry value is
	netmaskBits int           // from netmask: when subnet: does not say; -1 if absent
	hosts       []hostSource  // parallel to Config.Hosts
}

type hostSource struct {
	key pos            // the host's name
	at  [nHostKeys]pos // each value, or its key when the value is empty
	bad uint8          // keys whose value was wrong (already reported)
}

func bit(k int) uint32 { return 1 << uint(k) }

// walker turns the tree into a Registry and Hosts, reporting what cannot be
// read; finish then checks how the values fit together.
type walker struct {
	t      *tree
	col    *collector
	dir    string
	src    *source
	reg    Registry
	hosts  []*Host
	app    Appliance
	intern map[string]string
	pairs  []pairRef
	merged []int32 // mappings merged into the current one
	// mergeBudget is what is left of maxMergedPairs.
	mergeBudget int
}

type pairRef struct {
	k, v   int32
	merged bool
}

func (w *walker) text(n int32) string { return string(w.t.bytes(n)) }

// str interns values that repeat across hosts (images, key files, kernel
// arguments): the lookup does not allocate, and the Config keeps one copy.
func (w *walker) str(n int32) string {
	b := w.t.bytes(n)
	if s, ok := w.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	w.intern[s] = s
	return s
}

func (w *walker) isNull(n int32) bool {
	nd := &w.t.nodes[n]
	return nd.kind == kScalar && nd.style == sNull
}

func (w *walker) kind(n int32) string {
	nd := &w.t.nodes[n]
	switch {
	case nd.kind == kMap:
		return "a mapping"
	case nd.kind == kSeq:
		return "a list"
	case nd.style == sNull:
		return "empty"
	}
	return "a single value"
}

// keyText returns a mapping key's text, reporting keys that are not plain
// strings (YAML allows lists and mappings as keys).
func (w *walker) keyText(k int32) ([]byte, bool) {
	if w.t.nodes[k].kind != kScalar {
		w.col.add(w.t.pos(k), "a key must be a name, not "+w.kind(k), "write name: value")
		return nil, false
	}
	return w.t.bytes(k), true
}

func (w *walker) walkRoot() {
	t := w.t
	r := t.root
	if r < 0 || w.isNull(r) {
		return
	}
	if t.nodes[r].kind != kMap {
		w.col.add(t.pos(r), "the file must be a mapping with the keys bootp-registry: and hosts:, not "+w.kind(r),
			"start the file with a bootp-registry: line and a hosts: line, as configs/config-default.yml does")
		return
	}
	// The registry first, whatever the order in the file: hosts are
	// checked against its settings.
	keys, vals := [3]int32{-1, -1, -1}, [3]int32{-1, -1, -1} // by topKeys
	kids := t.children(r)
	for i := 0; i+1 < len(kids); i += 2 {
		k, v := kids[i], kids[i+1]
		name, ok := w.keyText(k)
		if !ok {
			continue
		}
		s := lookup(topKeys, name)
		switch {
		case s >= 0 && keys[s] >= 0:
			w.col.add(t.pos(k), fmt.Sprintf("duplicate key %q (first at line %d)", name, t.nodes[keys[s]].line),
				"merge the two blocks into one")
		case s >= 0:
			keys[s], vals[s] = k, v
		case strings.HasPrefix(string(name), "x-"):
			// room for YAML anchors, as in docker-compose files
		default:
			w.unknownTop(k, v, string(name))
		}
	}
	if keys[0] >= 0 {
		w.src.section = t.pos(keys[0])
		w.registry(vals[0])
	}
	if keys[1] >= 0 {
		w.hostsSection(vals[1])
	}
	if keys[2] >= 0 {
		w.appliance(keys[2], vals[2])
	}
}

func (s *source) has(k int) bool { return s.set&bit(k) != 0 }

func (w *walker) unknownTop(k, v int32, name string) {
	msg := fmt.Sprintf("unknown key %q", name)
	switch {
	case lookup(registryKeys[:], []byte(name)) >= 0:
		w.col.add(w.t.pos(k), msg, "move it under bootp-registry: (indented)")
	case lookup(hostKeys[:], []byte(name)) >= 0:
		w.col.add(w.t.pos(k), msg, "move it into a host's block under hosts:")
	case slices.Contains(applianceKeys, name):
		w.col.add(w.t.pos(k), msg, "move it under appliance: (indented)")
	case w.looksLikeHost(v):
		w.col.add(w.t.pos(k), msg, "it looks like a host: indent it under hosts:")
	default:
		fix := "remove it; the top level holds bootp-registry:, hosts: and appliance: (keys starting with x- are ignored)"
		if s := suggest(name, topKeys, nil); s != "" {
			fix = fmt.Sprintf("did you mean %q?", s)
		}
		w.col.add(w.t.pos(k), msg, fix)
	}
}

// mapping reports whether m is a mapping, reporting it otherwise as
// "what, not a list" with fix, or listFix for a list.
func (w *walker) mapping(m int32, what, fix, listFix string) bool {
	switch w.t.nodes[m].kind {
	case kMap:
		return true
	case kSeq:
		fix = listFix
	}
	w.col.add(w.t.pos(m), what+", not "+w.kind(m), fix)
	return false
}

func (w *walker) looksLikeHost(v int32) bool {
	if w.t.nodes[v].kind != kMap {
		return false
	}
	kids := w.t.children(v)
	for i := 0; i < len(kids); i += 2 {
		if w.t.nodes[kids[i]].kind == kScalar && lookup(hostKeys[:], w.t.bytes(kids[i])) >= 0 {
			return true
		}
	}
	return false
}

// maxMergeDepth bounds merge chains (<<: *a where a merges b ...).
const maxMergeDepth = 8

// collectPairs lists m's pairs, then those of the mappings it merges with
// <<: the caller skips a merged key that is already set, which gives YAML's
// precedence (the mapping's own keys first, then merges in order).
func (w *walker) collectPairs(m int32) []pairRef {
	w.pairs = w.pairs[:0]
	w.merged = w.merged[:0]
	w.appendPairs(m, false, 0)
	return w.pairs
}

// maxMergedPairs bounds the keys merges may add over a whole file: merges
// of merges fan out like an alias bomb.
const maxMergedPairs = 1 << 20

func (w *walker) appendPairs(m int32, merged bool, depth int) {
	kids := w.t.children(m)
	if merged {
		// A mapping merged twice adds nothing the first time did not.
		if slices.Contains(w.merged, m) {
			return
		}
		w.merged = append(w.merged, m)
		if w.mergeBudget -= len(kids) / 2; w.mergeBudget < 0 {
			if w.mergeBudget+len(kids)/2 >= 0 {
				w.col.add(w.t.pos(m), "merges (<<) add too many keys", "merge fewer or smaller mappings")
			}
			return
		}
	}
	merges := 0
	for i := 0; i+1 < len(kids); i += 2 {
		if nd := &w.t.nodes[kids[i]]; nd.kind == kScalar && nd.style == sMerge {
			merges++
			continue
		}
		w.pairs = append(w.pairs, pairRef{kids[i], kids[i+1], merged})
	}
	if merges == 0 {
		return
	}
	for i := 0; i+1 < len(kids); i += 2 {
		if nd := &w.t.nodes[kids[i]]; nd.kind != kScalar || nd.style != sMerge {
			continue
		}
		v := kids[i+1]
		if depth >= maxMergeDepth {
			w.col.add(w.t.pos(v), "merges (<<) nested too deeply", "merge at most 8 levels deep")
			continue
		}
		switch w.t.nodes[v].kind {
		case kMap:
			w.appendPairs(v, true, depth+1)
			continue
		case kSeq:
			ok := true
			for _, it := range w.t.children(v) {
				if w.t.nodes[it].kind == kMap {
					w.appendPairs(it, true, depth+1)
				} else {
					ok = false
				}
			}
			if ok {
				continue
			}
		}
		w.col.add(w.t.pos(v), "<< must be given a mapping to merge, not "+w.kind(v),
			"write <<: *name, where &name marks a mapping")
	}
}

func (w *walker) registry(m int32) {
	t := w.t
	if w.isNull(m) {
		return
	}
	if t.nodes[m].kind != kMap {
		w.col.add(t.pos(m), "bootp-registry must be a mapping of settings, not "+w.kind(m),
			"write each setting on its own line, indented under bootp-registry:")
		return
	}
	var present uint32
	var keyLine [nRegKeys]int32
	subnetAt := int32(-1)
	for _, p := range w.collectPairs(m) {
		name, ok := w.keyText(p.k)
		if !ok {
			continue
		}
		k := lookup(registryKeys[:], name)
		if k < 0 {
			if string(name) == "hosts" || w.looksLikeHost(p.v) {
				w.col.add(t.pos(p.k), fmt.Sprintf("unknown key %q in bootp-registry", name),
					"hosts go under hosts: at the top level, not under bootp-registry:")
				continue
			}
			fix := "remove it; configs/config-default.yml lists the valid keys"
			if s := suggest(string(name), registryKeys[:], registrySynonym); s != "" {
				fix = fmt.Sprintf("did you mean %q?", s)
			} else if slices.Contains(applianceKeys, string(name)) {
				fix = "move it under appliance: (the appliance's own settings)"
			}
			w.col.add(t.pos(p.k), fmt.Sprintf("unknown key %q in bootp-registry", name), fix)
			continue
		}
		if present&bit(k) != 0 {
			if !p.merged {
				w.col.add(t.pos(p.k), fmt.Sprintf("duplicate key %q (first at line %d)", name, keyLine[k]),
					"keep one of them")
			}
			continue
		}
		present |= bit(k)
		keyLine[k] = t.nodes[p.k].line
		w.src.at[k] = t.pos(p.v)
		if w.isNull(p.v) {
			w.src.at[k] = t.pos(p.k)
			continue // empty: the default, or auto-detected
		}
		if w.registryValue(k, p.v) {
			w.src.set |= bit(k)
			if k == rSubnet {
				subnetAt = p.v
			}
		} else {
			w.src.bad |= bit(k)
		}
	}
	w.combineSubnet(subnetAt)
}

// registryValue reads one registry setting; false means it was reported.
func (w *walker) registryValue(k int, v int32) bool {
	key := registryKeys[k]
	r := &w.reg
	switch k {
	case rRouters, rDomainNameServers:
		list, ok := w.addrList(key, v)
		if k == rRouters {
			r.Routers = list
		} else {
			r.DomainNameServers = list
		}
		return ok
	}
	if w.t.nodes[v].kind != kScalar {
		w.col.add(w.t.pos(v), fmt.Sprintf("%s must be a single value, not %s", key, w.kind(v)), "write "+key+": VALUE on one line")
		return false
	}
	s := w.text(v)
	at := w.t.pos(v)
	quotedEmpty := s == ""
	switch k {
	case rServerAddress:
		a, ok := w.addr(key, s, at)
		r.ServerAddress = a
		return ok
	case rSubnet:
		return true // combined with netmask once both are read
	case rNetmask:
		a, ok := w.addr(key, s, at)
		if !ok {
			return false
		}
		bits, ok := maskBits(a)
		if !ok {
			w.col.add(at, fmt.Sprintf("netmask %s is not a valid netmask", s),
				"write contiguous ones, e.g. 255.255.255.0, or give the prefix length in subnet: (10.0.0.0/24)")
			return false
		}
		w.src.netmaskBits = bits
		return true
	case rLeaseTime:
		d, ok := parseLeaseTime(s)
		if !ok {
			w.col.add(at, fmt.Sprintf("lease-time %q is not a duration", s),
				"write seconds (3600) or a duration such as 1h or 30m")
			return false
		}
		if d < time.Second || d > maxLease {
			w.col.add(at, fmt.Sprintf("lease-time %s is out of range", s), "use a duration from 1s to 136 years, e.g. 1h")
			return false
		}
		r.LeaseTime = d
		return true
	case rProxyDHCP, rRouterAdvertisements:
		b, ok := parseBool(s, w.t.nodes[v].style)
		if !ok {
			w.col.add(at, fmt.Sprintf("%s must be true or false, not %q", key, s), "write "+key+": true or "+key+": false (unquoted)")
			return false
		}
		if k == rProxyDHCP {
			r.ProxyDHCP = b
		} else {
			r.RouterAdvertisements = b
		}
		return true
	case rInterface:
		r.Interface = s
	case rDomainName:
		r.DomainName = strings.TrimSuffix(s, ".")
	case rBootUnknown:
		r.BootUnknown = s
	case rHTTPURL:
		r.HTTPURL = s
	case rDHCPListen, rTFTPListen, rHTTPListen:
		if quotedEmpty {
			w.col.add(at, key+" is empty", "remove the line to listen on the default, or write HOST:PORT such as \":67\"")
			return false
		}
		switch k {
		case rDHCPListen:
			r.DHCPListen = s
		case rTFTPListen:
			r.TFTPListen = s
		default:
			r.HTTPListen = s
		}
	case rConfigDir, rTFTPRoot, rImagesDir, rKeysDir, rAdminSocket:
		if quotedEmpty {
			w.col.add(at, key+" is empty", "remove the line to use the default path")
			return false
		}
		if k == rAdminSocket && s == Off {
			r.AdminSocket = s
			return true
		}
		if !filepath.IsAbs(s) {
			s = filepath.Join(w.dir, s)
		}
		s = filepath.Clean(s)
		switch k {
		case rConfigDir:
			r.ConfigDir = s
		case rTFTPRoot:
			r.TFTPRoot = s
		case rImagesDir:
			r.ImagesDir = s
		case rKeysDir:
			r.KeysDir = s
		default:
			r.AdminSocket = s
		}
	}
	return true
}

// maxLease is the largest lease DHCP can say (32-bit seconds, minus the
// all-ones value that means infinite).
const maxLease = time.Duration(1<<32-2) * time.Second

func parseLeaseTime(s string) (time.Duration, bool) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, true
	}
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}

func parseBool(s string, style uint8) (bool, bool) {
	if style != sPlain {
		return false, false
	}
	switch s {
	case "true", "True", "TRUE":
		return true, true
	case "false", "False", "FALSE":
		return false, true
	}
	return false, false
}

// combineSubnet reads subnet: with netmask:, once both are known.
func (w *walker) combineSubnet(v int32) {
	src := w.src
	if v < 0 {
		return // netmask alone applies to the server's address, in finish
	}
	s := w.text(v)
	at := w.t.pos(v)
	fail := func(msg, fix string) {
		w.col.add(at, msg, fix)
		src.set &^= bit(rSubnet)
		src.bad |= bit(rSubnet)
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			fail(fmt.Sprintf("subnet %q is not an IPv4 network", s), "write NETWORK/BITS, e.g. 192.168.122.0/24")
			return
		}
		if src.netmaskBits >= 0 && src.netmaskBits != p.Bits() {
			w.col.add(src.at[rNetmask], fmt.Sprintf("netmask /%d contradicts subnet %s", src.netmaskBits, s),
				"remove netmask: (subnet: already gives the prefix length)")
			src.bad |= bit(rNetmask)
		}
	} else {
		a, ok := w.addr("subnet", s, at)
		if !ok {
			src.set &^= bit(rSubnet)
			src.bad |= bit(rSubnet)
			return
		}
		if src.netmaskBits < 0 {
			hint := "add netmask: 255.255.255.0"
			if src.bad&bit(rNetmask) != 0 {
				hint = "fix netmask:"
			}
			fail(fmt.Sprintf("subnet %s has no prefix length", s), fmt.Sprintf("write %s/24 (with the right length), or %s", s, hint))
			return
		}
		p = netip.PrefixFrom(a, src.netmaskBits)
	}
	if p.Bits() < 1 || p.Bits() > 30 {
		fail(fmt.Sprintf("subnet %s leaves no room for hosts", p), "use a prefix length from /1 to /30, e.g. /24")
		return
	}
	if m := p.Masked(); m != p {
		w.col.add(at, fmt.Sprintf("subnet %s has host bits set", s), fmt.Sprintf("write the network address: %s", m))
		src.bad |= bit(rSubnet)
		p = m
	}
	w.reg.Subnet = p
	src.netmaskBits = -1
}

// addr parses an IPv4 address, saying what is wrong with it otherwise.
func (w *walker) addr(key, s string, at pos) (netip.Addr, bool) {
	if a, ok := parseIPv4([]byte(s)); ok {
		return a, true
	}
	msg, fix := addrProblem(key, s, "")
	w.col.add(at, msg, fix)
	return netip.Addr{}, false
}

// addrProblem says what is wrong with an address; owner is "" or
// ` of host "name"`.
func addrProblem(key, s, owner string) (string, string) {
	if s == "" {
		return key + owner + " is empty", "write an IPv4 address such as 192.168.122.10"
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is6() && !a.Is4In6() {
		return fmt.Sprintf("%s %s%s is an IPv6 address", key, s, owner), "write an IPv4 address: the registry serves DHCPv4"
	}
	return fmt.Sprintf("%s %q%s is not an IPv4 address", key, s, owner), "write four numbers from 0 to 255 separated by dots, e.g. 192.168.122.10"
}

func (w *walker) addrList(key string, v int32) ([]netip.Addr, bool) {
	var items []int32
	switch w.t.nodes[v].kind {
	case kScalar:
		items = []int32{v}
	case kSeq:
		items = w.t.children(v)
	default:
		w.col.add(w.t.pos(v), key+" must be a list of addresses, not a mapping", "write "+key+": [10.0.0.1, 10.0.0.2]")
		return nil, false
	}
	list := make([]netip.Addr, 0, len(items))
	ok := true
	for _, it := range items {
		if w.t.nodes[it].kind != kScalar {
			w.col.add(w.t.pos(it), fmt.Sprintf("%s must be a list of addresses, but an item is %s", key, w.kind(it)), "write "+key+": [10.0.0.1, 10.0.0.2]")
			ok = false
			continue
		}
		text := w.text(it)
		if strings.Contains(text, ",") && w.t.nodes[v].kind == kScalar {
			w.col.add(w.t.pos(it), fmt.Sprintf("%s %q is not an IPv4 address", key, text), "write a list: "+key+": ["+text+"]")
			ok = false
			continue
		}
		a, good := w.addr(key, text, w.t.pos(it))
		if !good {
			ok = false
			continue
		}
		list = append(list, a)
	}
	return list, ok
}

func (w *walker) hostsSection(m int32) {
	t := w.t
	if w.isNull(m) {
		return
	}
	if !w.mapping(m, "hosts must be a mapping keyed by host name",
		"write each host's name followed by a colon, with its settings indented under it",
		`write "  my-host:" and its settings indented under it, without "- "`) {
		return
	}
	kids := t.children(m)
	n := len(kids) / 2
	// One allocation each for all hosts, their MACs and their sources.
	arr := make([]Host, n)
	macs := make([]byte, 6*n)
	w.hosts = make([]*Host, 0, n)
	w.src.hosts = make([]hostSource, 0, n)
	// All names in one string, too.
	total := 0
	for i := 0; i < n; i++ {
		if k := kids[2*i]; t.nodes[k].kind == kScalar {
			total += int(t.nodes[k].b - t.nodes[k].a)
		}
	}
	var nb strings.Builder
	nb.Grow(total)
	for i := 0; i < n; i++ {
		if k := kids[2*i]; t.nodes[k].kind == kScalar {
			nb.Write(t.bytes(k))
		}
	}
	names, off := nb.String(), 0
	for i := 0; i < n; i++ {
		k, v := kids[2*i], kids[2*i+1]
		name, ok := w.keyText(k)
		if !ok {
			continue
		}
		hostName := names[off : off+len(name)]
		off += len(name)
		if nd := &t.nodes[k]; nd.style == sNull || nd.style == sMerge {
			w.col.add(t.pos(k), fmt.Sprintf("%q is not a host name", name), "name each host with its hostname, e.g. web-1:")
			continue
		}
		h := &arr[len(w.hosts)]
		h.Name = hostName
		h.Line = int(t.nodes[k].line)
		hs := hostSource{key: t.pos(k)}
		mac := macs[6*len(w.hosts) : 6*len(w.hosts)+6 : 6*len(w.hosts)+6]
		w.host(h, &hs, v, mac)
		w.hosts = append(w.hosts, h)
		w.src.hosts = append(w.src.hosts, hs)
	}
}

const allHostKeys = 1<<nHostKeys - 1

func (w *walker) host(h *Host, hs *hostSource, m int32, mac []byte) {
	t := w.t
	if w.isNull(m) {
		w.col.add(hs.key, fmt.Sprintf("host %q has no settings", h.Name), "add hardware-ethernet:, fixed-address: and image-name: indented under it")
		hs.bad = allHostKeys
		return
	}
	if t.nodes[m].kind != kMap { // checked first: the message is built only when it is needed
		w.mapping(m, fmt.Sprintf("host %q must be a mapping of settings", h.Name),
			"add hardware-ethernet:, fixed-address: and image-name: indented under it",
			`write its settings as key: value lines, without "- "`)
		hs.bad = allHostKeys
		return
	}
	var present uint8
	var keyLine [nHostKeys]int32
	for _, p := range w.collectPairs(m) {
		name, ok := w.keyText(p.k)
		if !ok {
			continue
		}
		k := lookupHostKey(name)
		if k < 0 {
			fix := "remove it; a host has hardware-ethernet, fixed-address, image-name, ssh-authorized-keys and cmdline-append"
			if s := suggest(string(name), hostKeys[:], hostSynonym); s != "" {
				fix = fmt.Sprintf("did you mean %q?", s)
			} else if lookup(registryKeys[:], name) >= 0 {
				fix = "move it under bootp-registry:"
			}
			where := fmt.Sprintf("in host %q", h.Name)
			if p.merged {
				where = "in a mapping merged into hosts" // once, not once per host that merges it
			}
			w.col.add(t.pos(p.k), fmt.Sprintf("unknown key %q %s", name, where), fix)
			continue
		}
		if present&(1<<k) != 0 {
			if !p.merged {
				w.col.add(t.pos(p.k), fmt.Sprintf("duplicate key %q in host %q (first at line %d)", name, h.Name, keyLine[k]),
					"keep one of them")
			}
			continue
		}
		present |= 1 << k
		keyLine[k] = t.nodes[p.k].line
		v := p.v
		if t.nodes[v].kind != kScalar {
			w.col.add(t.pos(v), fmt.Sprintf("%s of host %q must be a single value, not %s", hostKeys[k], h.Name, w.kind(v)),
				"write "+hostKeys[k]+": VALUE on one line")
			hs.at[k] = t.pos(v)
			hs.bad |= 1 << k
			continue
		}
		if t.nodes[v].style == sNull || t.nodes[v].a == t.nodes[v].b {
			hs.at[k] = t.pos(p.k) // empty: finish says it is missing
			continue
		}
		hs.at[k] = t.pos(v)
		switch k {
		case hMAC:
			hw, ok := parseMAC(t.bytes(v))
			if !ok {
				w.col.add(t.pos(v), fmt.Sprintf("hardware-ethernet %q of host %q is not a MAC address", t.bytes(v), h.Name),
					`write six two-digit hex bytes separated by colons, e.g. "52:54:00:12:34:56"`)
				hs.bad |= 1 << k
				continue
			}
			copy(mac, hw[:])
			h.MAC = mac
		case hAddress:
			a, ok := parseIPv4(t.bytes(v))
			if !ok {
				msg, fix := addrProblem("fixed-address", w.text(v), " of host "+strconv.Quote(h.Name))
				w.col.add(t.pos(v), msg, fix)
				hs.bad |= 1 << k
				continue
			}
			h.Address = a
		case hImage:
			h.Image = w.str(v)
		case hKeys:
			h.SSHAuthorizedKeys = w.str(v)
		case hCmdline:
			h.CmdlineAppend = w.str(v)
		}
	}
}

func lookupHostKey(name []byte) int {
	switch string(name) {
	case "hardware-ethernet":
		return hMAC
	case "fixed-address":
		return hAddress
	case "image-name":
		return hImage
	case "ssh-authorized-keys":
		return hKeys
	case "cmdline-append":
		return hCmdline
	}
	return -1
}

// parseMAC reads an Ethernet address: six two-digit hex bytes separated by
// colons or dashes, without allocating.
func parseMAC(b []byte) ([6]byte, bool) {
	var m [6]byte
	if len(b) != 17 {
		return m, false
	}
	sep := b[2]
	if sep != ':' && sep != '-' {
		return m, false
	}
	for i := 0; i < 6; i++ {
		if i > 0 && b[3*i-1] != sep {
			return m, false
		}
		hi, ok1 := unhex(b[3*i])
		lo, ok2 := unhex(b[3*i+1])
		if !ok1 || !ok2 {
			return m, false
		}
		m[i] = hi<<4 | lo
	}
	return m, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// parseIPv4 reads a dotted quad as netip.ParseAddr does (no leading zeros),
// without allocating.
func parseIPv4(b []byte) (netip.Addr, bool) {
	var a [4]byte
	field, digits, val := 0, 0, 0
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			if digits == 0 || field > 3 {
				return netip.Addr{}, false
			}
			a[field] = byte(val)
			field++
			digits, val = 0, 0
			continue
		}
		c := b[i]
		if c < '0' || c > '9' || (digits == 1 && val == 0) {
			return netip.Addr{}, false
		}
		val = val*10 + int(c-'0')
		digits++
		if val > 255 {
			return netip.Addr{}, false
		}
	}
	if field != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(a), true
}

// maskBits returns the prefix length of a contiguous netmask.
func maskBits(a netip.Addr) (int, bool) {
	b := a.As4()
	m := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := 0
	for m&(1<<31) != 0 {
		ones++
		m <<= 1
	}
	return ones, m == 0
}
