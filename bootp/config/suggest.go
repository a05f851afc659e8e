package config

import "strings"

// suggest finds the key an operator probably meant: the same key written
// with underscores, spaces or capitals (ISC dhcpd writes "hardware
// ethernet"), a known other name for it, a typo, or a prefix. "" if nothing
// is close.
func suggest(name string, valid []string, synonym func(string) string) string {
	norm := strings.ToLower(strings.NewReplacer("_", "-", " ", "-").Replace(strings.TrimSpace(name)))
	for _, v := range valid {
		if v == norm {
			return v
		}
	}
	if synonym != nil {
		if s := synonym(norm); s != "" {
			return s
		}
	}
	best, bestD := "", 1<<30
	for _, v := range valid {
		if d := editDistance(norm, v); d < bestD {
			best, bestD = v, d
		}
	}
	if bestD <= max(2, len(best)/4) {
		return best
	}
	if len(norm) >= 3 {
		for _, v := range valid {
			if strings.HasPrefix(v, norm) || strings.HasPrefix(norm, v) {
				return v
			}
		}
	}
	return ""
}

func hostSynonym(s string) string {
	switch s {
	case "mac", "mac-address", "macaddress", "hwaddr", "hw-address", "hardware-address", "hardware", "ethernet", "ether":
		return "hardware-ethernet"
	case "ip", "ip-address", "ipaddress", "ipv4", "address", "addr", "fixed-ip", "fixed-address-ip":
		return "fixed-address"
	case "image", "image-version", "img":
		return "image-name"
	case "ssh-keys", "ssh-key", "authorized-keys", "authorized-keys-file", "keys", "ssh":
		return "ssh-authorized-keys"
	case "cmdline", "append", "kernel-args", "kernel-cmdline", "bootargs", "kernel-parameters", "cmdline-args":
		return "cmdline-append"
	}
	return ""
}

func registrySynonym(s string) string {
	switch s {
	case "dns", "dns-servers", "dns-server", "nameservers", "nameserver", "name-servers", "resolvers":
		return "domain-name-servers"
	case "domain", "search", "dns-domain", "domain-search":
		return "domain-name"
	case "gateway", "gateways", "router", "default-gateway", "gw":
		return "routers"
	case "iface", "dev", "device", "nic", "link", "bind-interface":
		return "interface"
	case "server", "server-ip", "address", "next-server", "listen-address", "server-identifier":
		return "server-address"
	case "network", "cidr", "subnet-mask":
		return "subnet"
	case "mask":
		return "netmask"
	case "lease", "lease-duration", "default-lease-time", "max-lease-time":
		return "lease-time"
	case "proxy", "proxydhcp", "dhcp-proxy":
		return "proxy-dhcp"
	case "images", "image-dir", "images-path":
		return "images-dir"
	case "keys-dir", "authorized-keys-dir", "ssh-keys-dir", "ssh-authorized-keys":
		return "ssh-authorized-keys-dir"
	case "tftp-dir", "tftpboot", "tftp-path":
		return "tftp-root"
	case "ra", "ipv6-ra", "radvd":
		return "router-advertisements"
	}
	return ""
}

// editDistance is the Levenshtein distance, for keys of a few dozen bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Closest is the name among names an operator probably meant by name (a
// typo, other capitals, "_" for "-"), or "" when none is close: the "did
// you mean" of commands that take a host name.
func Closest(name string, names []string) string {
	return suggest(name, names, nil)
}
