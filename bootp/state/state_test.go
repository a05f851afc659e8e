package state

import (
	"net"
	"testing"
	"time"

	"github.com/livebootp/livebootp/wire"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func mac(t *testing.T, s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBootLifecycle(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	tr := New(100, c.now)
	m := mac(t, "52:54:00:12:34:56")
	tr.SetHosts([]Known{{Name: "web1", MAC: "52:54:00:12:34:56", Address: "10.0.0.10", Image: "nginx/1"}})
	if h := tr.Hosts(); len(h) != 1 || h[0].Phase != PhaseUnseen || h[0].Name != "web1" {
		t.Fatalf("before any traffic: %+v", h)
	}
	// PXE ROM: two DISCOVERs (retransmission), REQUEST, loader over TFTP,
	// then iPXE asks again: one boot.
	tr.DHCP(m, "DISCOVER→OFFER", "bios", "undionly.kpxe")
	tr.DHCP(m, "DISCOVER→OFFER", "bios", "undionly.kpxe")
	tr.DHCP(m, "REQUEST→ACK", "bios", "undionly.kpxe")
	tr.Fetch(m, "tftp", "undionly.kpxe", PhaseLoader, 70000)
	tr.DHCP(m, "DISCOVER→OFFER", "ipxe-bios", "http://x/boot/52:54:00:12:34:56.ipxe")
	tr.Fetch(m, "http", "/boot/52:54:00:12:34:56.ipxe", PhaseScript, 300)
	tr.Fetch(m, "http", "images/nginx/1/vmlinuz", PhaseKernel, 8<<20)
	tr.Fetch(m, "http", "images/nginx/1/initrd.img", PhaseInitrd, 4<<20)
	tr.Fetch(m, "http", "images/nginx/1/filesystem.squashfs", PhaseImage, 1<<20)
	tr.Fetch(m, "http", "images/nginx/1/filesystem.squashfs", PhaseImage, 2<<20)
	// The booted kernel's init helper asks for its address: same boot.
	tr.DHCP(m, "DISCOVER→OFFER", ArchInit, "")
	tr.DHCP(m, "REQUEST→ACK", ArchInit, "")
	h := tr.Hosts()[0]
	if h.BootCount != 1 || h.Phase != PhaseImage || h.ImageBytes != 3<<20 || h.ClientArch != "ipxe-bios" || h.Kernel.IsZero() {
		t.Fatalf("after one boot: %+v", h)
	}
	tr.Report(m, &wire.Report{Hostname: "web1", Warnings: []string{"no persistent storage"}})
	if h := tr.Hosts()[0]; h.Phase != PhaseReported || h.LastReport == nil {
		t.Fatalf("after the report: %+v", h)
	}
	// The next DISCOVER after a boot that reached the kernel is a new boot.
	c.t = c.t.Add(time.Minute)
	tr.DHCP(m, "DISCOVER→OFFER", "bios", "undionly.kpxe")
	if h := tr.Hosts()[0]; h.BootCount != 2 || h.ImageBytes != 0 || h.Phase != PhaseDHCP {
		t.Fatalf("second boot: %+v", h)
	}
	// A host stuck in DHCP starts a new boot only after BootGap.
	tr.DHCP(m, "DISCOVER→OFFER", "bios", "")
	c.t = c.t.Add(BootGap + time.Second)
	tr.DHCP(m, "DISCOVER→OFFER", "bios", "")
	if h := tr.Hosts()[0]; h.BootCount != 3 {
		t.Fatalf("after a long silence: %d boots", h.BootCount)
	}
	// One event per image download, not one per range request.
	n := 0
	for _, e := range tr.Events() {
		if e.Detail == "images/nginx/1/filesystem.squashfs" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d events for one image download", n)
	}
}

func TestSetHostsKeepsState(t *testing.T) {
	tr := New(10, nil)
	m := mac(t, "52:54:00:00:00:01")
	tr.SetHosts([]Known{{Name: "a", MAC: "52:54:00:00:00:01"}, {Name: "b", MAC: "52:54:00:00:00:02"}})
	tr.DHCP(m, "DISCOVER→OFFER", "bios", "")
	tr.SetHosts([]Known{{Name: "a-renamed", MAC: "52:54:00:00:00:01"}})
	hs := tr.Hosts()
	if len(hs) != 1 || hs[0].Name != "a-renamed" || hs[0].BootCount != 1 {
		t.Fatalf("after reload: %+v", hs)
	}
}

func TestBounds(t *testing.T) {
	tr := New(5, nil)
	for i := 0; i < MaxUnknown+50; i++ {
		tr.DHCP(net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)}, "DISCOVER→(ignored)", "", "")
	}
	if n := len(tr.Hosts()); n != MaxUnknown {
		t.Errorf("%d unknown hosts remembered, want the bound %d", n, MaxUnknown)
	}
	ev := tr.Events()
	if len(ev) != 5 {
		t.Fatalf("%d events kept, want 5", len(ev))
	}
	n := MaxUnknown + 49
	last := net.HardwareAddr{2, 0, 0, 0, byte(n >> 8), byte(n)}
	if ev[4].MAC != last.String() {
		t.Errorf("newest event %+v, want the last MAC %s", ev[4], last)
	}
	for i := 1; i < len(ev); i++ {
		if ev[i].Time.Before(ev[i-1].Time) {
			t.Errorf("events out of order: %v", ev)
		}
	}
	// Unknown hosts that become known stop counting against the bound.
	tr.SetHosts([]Known{{Name: "x", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 0}.String()}})
	tr.DHCP(net.HardwareAddr{2, 1, 1, 1, 1, 1}, "DISCOVER→(ignored)", "", "")
	found := false
	for _, h := range tr.Hosts() {
		if h.MAC == "02:01:01:01:01:01" {
			found = true
		}
	}
	if !found {
		t.Error("a new unknown MAC was not recorded after a slot was freed")
	}
}
