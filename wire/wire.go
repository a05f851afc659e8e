// Package wire holds the contracts between the registry (bootp/...) and the
// target side (startup/...): kernel argument names, HTTP paths and the JSON
// shapes they exchange. Both sides import it; it must never import either of
// them, nor anything outside the standard library, so the target's initrd
// stays small.
package wire

import "time"

// Kernel arguments the registry writes into each host's boot script and the
// init helper reads (design.md §4).
const (
	ArgRegistry   = "livebootp.registry"   // registry base URL, e.g. http://10.0.0.1:8080
	ArgImage      = "livebootp.image"      // NAME/VERSION
	ArgSquashfs   = "livebootp.squashfs"   // URL of filesystem.squashfs
	ArgSHA256     = "livebootp.sha256"     // hex sha256 of filesystem.squashfs
	ArgVerity     = "livebootp.verity"     // hex root hash of the dm-verity tree after the squashfs's data (Manifest.Verity)
	ArgPersistent = "livebootp.persistent" // auto|none|DEVICE|LABEL=x
	ArgHostname   = "livebootp.hostname"   // the host's name from the config
	ArgInsecure   = "livebootp.insecure"   // accept HTTPS certificates that do not verify
	ArgNoPasswd   = "livebootp.nopasswd"   // empty root password
	ArgDebug      = "debug"                // log every step
	// live-boot's names for the same things, accepted too.
	ArgFetch     = "fetch"    // = ArgSquashfs
	ArgHostname2 = "hostname" // = ArgHostname
)

// VendorClassInit is the DHCP vendor class (option 60) the init helper
// sends, so the registry tells its request from the firmware's.
const VendorClassInit = "livebootp-init"

// HTTP paths served by the registry. MAC addresses in paths are lower case,
// colon separated (52:54:00:12:34:56); dashes are accepted too.
const (
	PathBoot        = "/boot/"                // /boot/<mac>.ipxe, and /boot/<mac>.keys: the host's authorized_keys
	PathImages      = "/images/"              // /images/<name>/<version>/<file>
	PathKeys        = "/ssh-authorized-keys/" // /ssh-authorized-keys/<name>
	PathHosts       = "/api/v1/hosts"         // JSON list of HostStatus
	PathReport      = "/api/v1/report/"       // POST /api/v1/report/<mac>: a Report
	PathMetrics     = "/metrics"              // Prometheus text format
	PathStatus      = "/"                     // status page (HTML, or JSON with Accept: application/json)
	PathLoaders     = "/loaders/"             // boot loaders over HTTP (UEFI HTTP boot)
	ImageKernel     = "vmlinuz"
	ImageInitrd     = "initrd.img"
	ImageSquashfs   = "filesystem.squashfs"
	ImageManifest   = "manifest.json"
	DefaultHTTPPort = 80
)

// Report is what the init helper POSTs to PathReport at the end of a boot.
type Report struct {
	Hostname       string        `json:"hostname"`
	Image          string        `json:"image"`
	Kernel         string        `json:"kernel,omitempty"`
	Steps          []Step        `json:"steps"`
	Warnings       []string      `json:"warnings,omitempty"`
	HostKeys       []string      `json:"host_keys,omitempty"` // fingerprints, "ED25519 SHA256:..."
	Persistent     string        `json:"persistent,omitempty"`
	SquashfsCached bool          `json:"squashfs_cached,omitempty"`
	Verification   string        `json:"verification,omitempty"` // dm-verity (each block as read), sha256 (whole file before mounting) or none
	Uptime         time.Duration `json:"uptime_ns"`              // kernel uptime when the report was sent
	Error          string        `json:"error,omitempty"`
}

// Step is one boot step of the init helper with its duration.
type Step struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
}

// HostStatus is one row of PathHosts: what the registry knows of a host.
type HostStatus struct {
	Name        string    `json:"name"`
	MAC         string    `json:"mac"`
	Address     string    `json:"address"`
	Image       string    `json:"image"`
	Phase       string    `json:"phase"` // unseen, dhcp, loader, script, kernel, initrd, image, reported
	LastSeen    time.Time `json:"last_seen,omitzero"`
	LastDHCP    string    `json:"last_dhcp,omitempty"` // e.g. "REQUEST→ACK"
	ClientArch  string    `json:"client_arch,omitempty"`
	BootFile    string    `json:"boot_file,omitempty"`
	Kernel      time.Time `json:"kernel,omitzero"`
	Initrd      time.Time `json:"initrd,omitzero"`
	ImageBytes  int64     `json:"image_bytes"`
	LastReport  *Report   `json:"last_report,omitempty"`
	ReportTime  time.Time `json:"report_time,omitzero"`
	BootCount   int       `json:"boot_count"`
	Unknown     bool      `json:"unknown,omitempty"` // seen on the wire, not in the config
	LastMessage string    `json:"last_message,omitempty"`
}

// Event is one line of the registry's recent activity.
type Event struct {
	Time   time.Time `json:"time"`
	MAC    string    `json:"mac,omitempty"`
	Host   string    `json:"host,omitempty"`
	Kind   string    `json:"kind"` // dhcp, tftp, http, report, config
	Detail string    `json:"detail"`
}

// Manifest is images/<name>/<version>/manifest.json, written by the image
// builder and read by the registry (checksums for kernel arguments) and the
// init helper.
type Manifest struct {
	Name          string             `json:"name"`
	Version       string             `json:"version"`
	Arch          string             `json:"arch"`           // GOARCH names: amd64, arm64
	KernelVersion string             `json:"kernel_version"` // uname -r of vmlinuz
	Files         map[string]FileSum `json:"files"`          // by file name: vmlinuz, initrd.img, filesystem.squashfs
	Volumes       []string           `json:"volumes,omitempty"`
	Env           []string           `json:"env,omitempty"`
	Created       time.Time          `json:"created,omitzero"`
	Labels        map[string]string  `json:"labels,omitempty"`
	// Verity describes the dm-verity hash tree `image build` appends to
	// filesystem.squashfs (veritysetup's format, superblock at HashOffset),
	// so the target verifies each block as it reads it instead of hashing
	// the whole file before mounting it. Absent in images built before.
	Verity *Verity `json:"verity,omitempty"`
}

// Verity locates and authenticates the hash tree in filesystem.squashfs:
// `veritysetup verify --hash-offset=HashOffset filesystem.squashfs
// filesystem.squashfs RootHash` checks it by hand.
type Verity struct {
	RootHash   string `json:"root_hash"`   // hex sha256
	HashOffset int64  `json:"hash_offset"` // bytes: the squashfs's size rounded up to 4096
}

// FileSum is the size and sha256 (hex) of one image file.
type FileSum struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}
