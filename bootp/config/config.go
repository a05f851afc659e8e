// Package config is the registry's one YAML file: its schema, strict loading
// with file:line errors, validation and auto-detection of the network
// settings an operator leaves out. It never starts a server and never
// changes the system: it reads files and asks the kernel (netlink) only.
package config

import (
	"fmt"
	"net"
	"net/netip"
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
	// DefaultConfigFile is where the container kept its config.
	DefaultConfigFile = DefaultConfigDir + "/config.yml"
)

// Off as the value of dhcp-listen, tftp-listen, http-listen or admin-socket
// turns that server off.
const Off = "off"

// Config is a loaded, validated configuration. It is immutable once Load
// returns it: a reload builds a new one and swaps it in whole.
type Config struct {
	File      string // the file it was loaded from
	Registry  Registry
	Hosts     []*Host // in file order
	Appliance Appliance

	byMAC  map[[6]byte]*Host
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

// Appliance is the `appliance:` section: how the appliance's init sets up
// its own machine (hostname, console password, network interfaces) before
// it starts the registry. The registry itself only validates it, so a file
// that would break the appliance's next boot is refused everywhere.
type Appliance struct {
	Hostname        string               // hostname: "" keeps the default "livebootp"
	ConsolePassword string               // console-password: a bcrypt hash ($2a$, $2b$, $2y$); "" means no password
	Interfaces      []ApplianceInterface // interfaces: in file order
	Line            int                  // line of the appliance: key; 0 when the file has none
}

// ApplianceInterface is one entry of `appliance: interfaces:`: exactly one
// of DHCP and Address is set.
type ApplianceInterface struct {
	Name    string       // the key: a kernel interface name (eth0, enp1s0)
	DHCP    bool         // dhcp: true runs a DHCP client on it
	Address netip.Prefix // address: a static address with its prefix length (10.0.0.1/24), not masked
	Gateway netip.Addr   // gateway: optional default route, inside Address's network
	Line    int          // line of the interface's key
}

// HostByMAC finds the host with this hardware address.
func (c *Config) HostByMAC(mac net.HardwareAddr) (*Host, bool) {
	if len(mac) != 6 {
		return nil, false
	}
	h, ok := c.byMAC[[6]byte(mac)]
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

// New builds a Config from values, as Load does after parsing: it fills in
// defaults, validates (duplicate MACs, names and addresses, addresses
// outside the subnet) and indexes. Tests and programs that build
// configurations in code use it; file and line are then empty. Unlike
// Load it detects nothing (ServerAddress and Subnet are required), does not
// check that image directories and key files exist, and takes
// RouterAdvertisements as given: a zero bool cannot say "unset". Its error
// is Problems.
func New(reg Registry, hosts []*Host) (*Config, error) {
	c := &Config{Registry: reg, Hosts: hosts}
	if err := c.finish(nil); err != nil {
		return nil, err
	}
	return c, nil
}

// Summary is the one line logs and the admin CLI show for a loaded config.
func (c *Config) Summary() string {
	file := c.File
	if file == "" {
		file = "(built in code)"
	}
	iface := c.Registry.Interface
	if iface == "" {
		iface = "(any)"
	}
	return fmt.Sprintf("%s: %d hosts, interface %s, server %s, subnet %s",
		file, len(c.Hosts), iface, c.Registry.ServerAddress, c.Registry.Subnet)
}
