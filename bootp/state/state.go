// Package state keeps what the registry has seen of each host: the last DHCP
// exchange, the loader, kernel and initrd fetched, image bytes served and the
// last boot report, plus a bounded ring of recent events. The DHCP, TFTP and
// HTTP servers write to it; the status page, the JSON API and the admin
// socket read it. It never blocks a server for longer than a map update and
// never grows without bound.
package state

import (
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/livebootp/livebootp/wire"
)

// Phases a host goes through in one boot, in order.
const (
	PhaseUnseen   = "unseen"
	PhaseDHCP     = "dhcp"
	PhaseLoader   = "loader"
	PhaseScript   = "script"
	PhaseKernel   = "kernel"
	PhaseInitrd   = "initrd"
	PhaseImage    = "image"
	PhaseReported = "reported"
)

// ArchInit is the client kind (bootp/boot.ArchInit) of the init helper's
// DHCP requests.
const ArchInit = "livebootp-init"

// MaxUnknown bounds how many unknown MACs are remembered.
const MaxUnknown = 256

// Tracker is safe for concurrent use.
type Tracker struct {
	now func() time.Time

	mu      sync.Mutex
	hosts   map[string]*wire.HostStatus // by MAC string
	events  []wire.Event                // ring
	next    int                         // next slot in events
	full    bool
	unknown int
}

// New returns a Tracker that keeps the last maxEvents events. now is the
// clock (time.Now in production).
func New(maxEvents int, now func() time.Time) *Tracker {
	if maxEvents < 1 {
		maxEvents = 1
	}
	if now == nil {
		now = time.Now
	}
	return &Tracker{now: now, hosts: map[string]*wire.HostStatus{}, events: make([]wire.Event, maxEvents)}
}

// Known describes a configured host; SetHosts takes the configured set after
// every (re)load so hosts that were never seen still show up.
type Known struct {
	Name, MAC, Address, Image string
}

// SetHosts makes the tracker's host list match the configuration: new hosts
// appear as unseen, removed ones are dropped, kept ones keep their state.
func (t *Tracker) SetHosts(known []Known) {
	t.mu.Lock()
	defer t.mu.Unlock()
	keep := make(map[string]bool, len(known))
	for _, k := range known {
		mac := strings.ToLower(k.MAC)
		keep[mac] = true
		h := t.hosts[mac]
		if h == nil {
			h = &wire.HostStatus{MAC: mac, Phase: PhaseUnseen}
			t.hosts[mac] = h
		}
		if h.Unknown {
			t.unknown--
		}
		h.Name, h.Address, h.Image, h.Unknown = k.Name, k.Address, k.Image, false
	}
	for mac, h := range t.hosts {
		if !keep[mac] && !h.Unknown {
			delete(t.hosts, mac)
		}
	}
}

// host returns the entry for mac, creating an unknown one if there is room.
// t.mu must be held.
func (t *Tracker) host(mac net.HardwareAddr) *wire.HostStatus {
	key := strings.ToLower(mac.String())
	h := t.hosts[key]
	if h == nil {
		if t.unknown >= MaxUnknown {
			return nil
		}
		t.unknown++
		h = &wire.HostStatus{MAC: key, Phase: PhaseUnseen, Unknown: true}
		t.hosts[key] = h
	}
	return h
}

// event appends to the ring. t.mu must be held.
func (t *Tracker) event(e wire.Event) {
	t.events[t.next] = e
	t.next++
	if t.next == len(t.events) {
		t.next, t.full = 0, true
	}
}

// DHCP records a DHCP or BOOTP exchange, e.g. exchange "DISCOVER→OFFER".
// A DISCOVER (or a plain BOOTP request) starts a new boot.
func (t *Tracker) DHCP(mac net.HardwareAddr, exchange, arch, bootFile string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	h := t.host(mac)
	name := nameOf(h)
	if h != nil && arch == ArchInit {
		// The booted kernel's init helper asking for its address is part
		// of the boot under way, not a new one, and not a step back.
		h.LastSeen, h.LastDHCP = now, exchange
		h.LastMessage = "dhcp " + exchange + " (init helper)"
		h = nil
	}
	if h != nil {
		if (strings.HasPrefix(exchange, "DISCOVER") || strings.HasPrefix(exchange, "BOOTP")) && newBoot(h, now) {
			h.BootCount++
			h.ImageBytes = 0
		}
		h.LastSeen, h.LastDHCP, h.Phase = now, exchange, PhaseDHCP
		if arch != "" {
			h.ClientArch = arch
		}
		if bootFile != "" {
			h.BootFile = bootFile
		}
		h.LastMessage = "dhcp " + exchange
	}
	detail := exchange
	if bootFile != "" {
		detail += " boot file " + bootFile
	}
	t.event(wire.Event{Time: now, MAC: strings.ToLower(mac.String()), Host: name, Kind: "dhcp", Detail: detail})
}

// Fetch records a file served to a known host over TFTP or HTTP. phase is
// one of the Phase constants; bytes is what was sent (for PhaseImage it is
// added to the running total, so partial range requests add up).
func (t *Tracker) Fetch(mac net.HardwareAddr, proto, path, phase string, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	h := t.host(mac)
	if h != nil {
		h.LastSeen = now
		h.LastMessage = proto + " " + path
		switch phase {
		case PhaseKernel:
			h.Kernel = now
		case PhaseInitrd:
			h.Initrd = now
		case PhaseImage:
			h.ImageBytes += bytes
		}
		if phaseRank(phase) >= phaseRank(h.Phase) || h.Phase == PhaseReported {
			h.Phase = phase
		}
	}
	if phase == PhaseImage && h != nil && h.ImageBytes != bytes {
		return // one event per image download, not per range request
	}
	t.event(wire.Event{Time: now, MAC: strings.ToLower(mac.String()), Host: nameOf(h), Kind: proto, Detail: path})
}

// Report records a boot report from a host's init helper.
func (t *Tracker) Report(mac net.HardwareAddr, r *wire.Report) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	h := t.host(mac)
	detail := "boot report"
	if r.Error != "" {
		detail += ": " + r.Error
	} else if len(r.Warnings) > 0 {
		detail += ", " + r.Warnings[0]
	}
	if h != nil {
		h.LastSeen, h.LastReport, h.ReportTime, h.Phase = now, r, now, PhaseReported
		h.LastMessage = detail
	}
	t.event(wire.Event{Time: now, MAC: strings.ToLower(mac.String()), Host: nameOf(h), Kind: "report", Detail: detail})
}

// Note records an event that belongs to no host's state (config reloads,
// refused requests).
func (t *Tracker) Note(kind, detail string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.event(wire.Event{Time: t.now(), Kind: kind, Detail: detail})
}

// Hosts returns a copy of every host's state, configured hosts first in name
// order, then unknown ones by MAC.
func (t *Tracker) Hosts() []wire.HostStatus {
	t.mu.Lock()
	out := make([]wire.HostStatus, 0, len(t.hosts))
	for _, h := range t.hosts {
		out = append(out, *h)
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b wire.HostStatus) int {
		if a.Unknown != b.Unknown {
			if a.Unknown {
				return 1
			}
			return -1
		}
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.MAC, b.MAC)
	})
	return out
}

// Events returns the recent events, oldest first.
func (t *Tracker) Events() []wire.Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []wire.Event
	if t.full {
		out = append(out, t.events[t.next:]...)
	}
	return append(out, t.events[:t.next]...)
}

// BootGap is how long a host must have been quiet for its next DISCOVER to
// count as a new boot even if it never got past DHCP.
const BootGap = 5 * time.Minute

// newBoot tells a DISCOVER that starts a boot from the ones that belong to
// the boot under way: firmware retransmits its DISCOVER, and each stage of
// a chain (PXE ROM, then iPXE) asks again. A boot is new once the last one
// reached the kernel, or after BootGap of silence.
func newBoot(h *wire.HostStatus, now time.Time) bool {
	return h.Phase == PhaseUnseen || phaseRank(h.Phase) >= phaseRank(PhaseKernel) || now.Sub(h.LastSeen) > BootGap
}

func nameOf(h *wire.HostStatus) string {
	if h == nil {
		return ""
	}
	return h.Name
}

func phaseRank(p string) int {
	return slices.Index([]string{PhaseUnseen, PhaseDHCP, PhaseLoader, PhaseScript, PhaseKernel, PhaseInitrd, PhaseImage, PhaseReported}, p)
}
