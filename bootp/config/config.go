// Package config is the registry's one YAML file: its schema, strict loading
// with file:line errors, validation and auto-detection of the network
// settings an operator leaves out. It never starts a server and never
// changes the system: it reads files and asks the kernel (netlink) only.
package config

import (
	"net"
	"net/netip"
	"strings"
	"time"
)

// Defaults kept from the LiveBOOTP container so existing deployments keep
// working.
const (
	DefaultConfigDir   = "/opt/livebootp/etc"
	DefaultTFTPRoot    = "/var/lib/tftpboot"
	DefaultImagesDir   = "/var/lib/tftpboot/images"
	DefaultKeysDir     = "/var/lib/tftpboot/ssh_authorized_keys"
	DefaultLeaseTime   = time.Hour
	DefaultDHCPListen  = ":67"
	DefaultTFTPListen  = ":69"
	DefaultHTTPListen  = ":80"
	DefaultAdminSocket = "/run/livebootp/admin.sock"
)

// Config is a loaded, validated configuration. It is immutable once Load
// returns it: a reload builds a new one and swaps it in whole.
type Config struct {
	File     string // the file it was loaded from
	Registry Registry
	Hosts    []*Host // in file order

	byMAC  map[string]*Host
	byAddr map[netip.Addr]*Host
	byName map[string]*Host
}

// Registry is the `bootp-registry:` section, with every auto-detected value
// filled in.
type Registry struct {
	Interface         string        // interface
	ServerAddress     netip.Addr    // server-address
	Subnet            netip.Prefix  // subnet + netmask, masked
	Routers           []netip.Addr  // routers
	DomainName        string        // domain-name
	DomainNameServers []netip.Addr  // domain-name-servers
	LeaseTime         time.Duration // lease-time
	ProxyDHCP         bool          // proxy-dhcp: answer with boot information only
	BootUnknown       string        // boot-unknown: "" (ignore unknown MACs) or an image NAME/VERSION

	ConfigDir            string // config-dir
	TFTPRoot             string // tftp-root: boot loaders and generated files live here
	ImagesDir            string // images-dir
	KeysDir              string // ssh-authorized-keys-dir
	DHCPListen           string // dhcp-listen
	TFTPListen           string // tftp-listen
	HTTPListen           string // http-listen
	HTTPURL              string // http-url: base URL the targets use; derived from server-address and http-listen
	AdminSocket          string // admin-socket
	RouterAdvertisements bool   // router-advertisements: answer IPv6 router solicitations (ends iPXE's wait)
}

// Host is one entry of `hosts:`.
type Host struct {
	Name              string // the key of the block; handed out as DHCP option 12
	MAC               net.HardwareAddr
	Address           netip.Addr
	Image             string // NAME/VERSION, a directory under ImagesDir
	SSHAuthorizedKeys string // file name under KeysDir
	CmdlineAppend     string
	Line              int // line of the host's key in File
}

// HostByMAC finds the host with this hardware address.
func (c *Config) HostByMAC(mac net.HardwareAddr) (*Host, bool) {
	h, ok := c.byMAC[strings.ToLower(mac.String())]
	return h, ok
}

// HostByAddress finds the host with this fixed address.
func (c *Config) HostByAddress(a netip.Addr) (*Host, bool) {
	h, ok := c.byAddr[a.Unmap()]
	return h, ok
}

// HostByName finds the host with this name.
func (c *Config) HostByName(name string) (*Host, bool) {
	h, ok := c.byName[name]
	return h, ok
}

// index builds the lookup maps; Load calls it after validation.
func (c *Config) index() {
	c.byMAC = make(map[string]*Host, len(c.Hosts))
	c.byAddr = make(map[netip.Addr]*Host, len(c.Hosts))
	c.byName = make(map[string]*Host, len(c.Hosts))
	for _, h := range c.Hosts {
		c.byMAC[strings.ToLower(h.MAC.String())] = h
		c.byAddr[h.Address] = h
		c.byName[h.Name] = h
	}
}

// New builds a Config from values, as Load does after parsing: it fills in
// defaults, validates (duplicate MACs, names and addresses, addresses
// outside the subnet) and indexes. Tests and programs that build
// configurations in code use it; file and line are then empty.
func New(reg Registry, hosts []*Host) (*Config, error) {
	c := &Config{Registry: reg, Hosts: hosts}
	if err := c.finish(nil); err != nil {
		return nil, err
	}
	return c, nil
}
