package config

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Detector finds the network settings a config file leaves out. Load asks
// it only when something is missing, and only once.
type Detector interface {
	// Detect describes iface, or when iface is "" the interface the
	// registry should serve on.
	Detect(iface string) (Detected, error)
}

// Detected is what a Detector found.
type Detected struct {
	Interface  string
	Address    netip.Prefix // the interface's IPv4 address and prefix length, e.g. 192.168.122.1/24
	Routers    []netip.Addr // default gateways through the interface
	DomainName string
	DNS        []netip.Addr // IPv4 resolvers other hosts can reach
}

// NetlinkDetector asks the kernel over netlink and reads resolv.conf. It
// only reads; it never changes an interface, a route or a file.
type NetlinkDetector struct {
	// ResolvConf is read for DNS servers and the domain; default
	// /etc/resolv.conf.
	ResolvConf string
	// UpstreamResolvConf is read instead when ResolvConf names only
	// loopback resolvers, which targets cannot reach (127.0.0.53 of
	// systemd-resolved); default /run/systemd/resolve/resolv.conf, where
	// systemd-resolved lists its upstream servers.
	UpstreamResolvConf string
	// NetNS is the path of the network namespace to look at, e.g.
	// /run/netns/NAME; "" is the process's own.
	NetNS string
}

// Detect implements Detector.
func (d NetlinkDetector) Detect(iface string) (Detected, error) {
	h, err := d.handle()
	if err != nil {
		return Detected{}, err
	}
	defer h.Close()
	link, addr, gws, err := pickInterface(h, iface)
	if err != nil {
		return Detected{}, err
	}
	det := Detected{Interface: link, Address: addr, Routers: gws}
	det.DNS, det.DomainName, err = d.resolvers()
	return det, err
}

func (d NetlinkDetector) handle() (*netlink.Handle, error) {
	if d.NetNS == "" {
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("netlink: %w", err)
		}
		return h, nil
	}
	ns, err := netns.GetFromPath(d.NetNS)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", d.NetNS, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", d.NetNS, err)
	}
	return h, nil
}

// pickInterface finds the interface to serve on, its address and the
// default gateways through it.
func pickInterface(h *netlink.Handle, iface string) (string, netip.Prefix, []netip.Addr, error) {
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", netip.Prefix{}, nil, fmt.Errorf("listing routes: %w", err)
	}
	var defaults []defaultRoute
	for _, r := range routes {
		if r.Dst != nil && (!r.Dst.IP.IsUnspecified() || maskOnes(r.Dst) != 0) {
			continue
		}
		if len(r.MultiPath) > 0 {
			for _, nh := range r.MultiPath {
				defaults = append(defaults, defaultRoute{nh.LinkIndex, nh.Gw, r.Priority})
			}
			continue
		}
		defaults = append(defaults, defaultRoute{r.LinkIndex, r.Gw, r.Priority})
	}
	slices.SortStableFunc(defaults, func(a, b defaultRoute) int { return a.metric - b.metric })
	gateways := func(index int) []netip.Addr {
		var gws []netip.Addr
		for _, r := range defaults {
			if a, ok := netip.AddrFromSlice(r.gw); ok && r.link == index && a.Unmap().Is4() && !slices.Contains(gws, a.Unmap()) {
				gws = append(gws, a.Unmap())
			}
		}
		return gws
	}

	if iface != "" {
		l, err := h.LinkByName(iface)
		if err != nil {
			return "", netip.Prefix{}, nil, fmt.Errorf("interface %q: %w", iface, err)
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			return "", netip.Prefix{}, nil, fmt.Errorf("interface %s is down", iface)
		}
		a, err := ipv4Of(h, l)
		if err != nil {
			return "", netip.Prefix{}, nil, err
		}
		return iface, a, gateways(l.Attrs().Index), nil
	}

	for _, r := range defaults {
		l, err := h.LinkByIndex(r.link)
		if err != nil || l.Attrs().Flags&net.FlagUp == 0 {
			continue
		}
		if a, err := ipv4Of(h, l); err == nil {
			return l.Attrs().Name, a, gateways(r.link), nil
		}
	}

	links, err := h.LinkList()
	if err != nil {
		return "", netip.Prefix{}, nil, fmt.Errorf("listing interfaces: %w", err)
	}
	type cand struct {
		name string
		addr netip.Prefix
	}
	var cands []cand
	for _, l := range links {
		at := l.Attrs()
		if at.Flags&net.FlagUp == 0 || at.Flags&net.FlagLoopback != 0 {
			continue
		}
		if a, err := ipv4Of(h, l); err == nil {
			cands = append(cands, cand{at.Name, a})
		}
	}
	switch len(cands) {
	case 0:
		return "", netip.Prefix{}, nil, errors.New("no default route, and no interface is up with an IPv4 address")
	case 1:
		return cands[0].name, cands[0].addr, nil, nil
	}
	var names []string
	for _, c := range cands {
		names = append(names, fmt.Sprintf("%s (%s)", c.name, c.addr))
	}
	return "", netip.Prefix{}, nil, fmt.Errorf("no default route, and %d interfaces have IPv4 addresses: %s; say which with interface:",
		len(cands), strings.Join(names, ", "))
}

type defaultRoute struct {
	link   int
	gw     net.IP
	metric int
}

func maskOnes(n *net.IPNet) int {
	ones, _ := n.Mask.Size()
	return ones
}

// ipv4Of returns the interface's primary IPv4 address, preferring one that
// is not link-local.
func ipv4Of(h *netlink.Handle, l netlink.Link) (netip.Prefix, error) {
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("addresses of %s: %w", l.Attrs().Name, err)
	}
	var best netip.Prefix
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !ip.Unmap().Is4() || a.Flags&unix.IFA_F_SECONDARY != 0 {
			continue
		}
		p := netip.PrefixFrom(ip.Unmap(), maskOnes(a.IPNet))
		if !ip.Unmap().IsLinkLocalUnicast() {
			return p, nil
		}
		if !best.IsValid() {
			best = p
		}
	}
	if best.IsValid() {
		return best, nil
	}
	return netip.Prefix{}, fmt.Errorf("interface %s has no IPv4 address", l.Attrs().Name)
}

func (d NetlinkDetector) resolvers() ([]netip.Addr, string, error) {
	path := d.ResolvConf
	if path == "" {
		path = "/etc/resolv.conf"
	}
	all, domain, err := readResolvConf(path)
	if err != nil {
		return nil, "", err
	}
	dns := usableResolvers(all)
	if len(dns) == 0 && len(all) > 0 {
		// Only a local stub (systemd-resolved, dnsmasq): its upstreams,
		// which the stub publishes, are what targets can use.
		up := d.UpstreamResolvConf
		if up == "" {
			up = "/run/systemd/resolve/resolv.conf"
		}
		upAll, upDomain, err := readResolvConf(up)
		if err != nil {
			return nil, "", err
		}
		dns = usableResolvers(upAll)
		if domain == "" {
			domain = upDomain
		}
	}
	return dns, domain, nil
}

// readResolvConf returns the nameservers and the domain (from "domain", or
// the first "search" entry; the last of the two lines wins, as in
// resolv.conf(5)). A missing file is no error: containers often have none.
func readResolvConf(path string) ([]netip.Addr, string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	dns, domain, err := parseResolvConf(f)
	if err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", path, err)
	}
	return dns, domain, nil
}

func parseResolvConf(r io.Reader) ([]netip.Addr, string, error) {
	var dns []netip.Addr
	domain := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil {
				dns = append(dns, a)
			}
		case "domain", "search":
			domain = strings.TrimSuffix(f[1], ".")
		}
	}
	return dns, domain, sc.Err()
}

// usableResolvers keeps the IPv4 resolvers other machines can reach.
func usableResolvers(all []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range all {
		a = a.Unmap()
		if a.Is4() && !a.IsLoopback() && !a.IsUnspecified() && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
