package disk

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeSys builds a sysfs, mountinfo and swaps fixture: the running system's
// root on an NVMe disk, a USB stick mounted (with a space in its mount
// point), a disk under LUKS mounted through device-mapper, a disk holding
// swap, one with btrfs (an anonymous device number in mountinfo), one with
// 4 KiB sectors, a read-only SD card, and a free SanDisk stick.
func fakeSys(t *testing.T) System {
	t.Helper()
	root := t.TempDir()
	sys := filepath.Join(root, "sys")
	write := func(p, v string) {
		t.Helper()
		writeFile(t, filepath.Join(sys, p), []byte(v+"\n"))
	}
	link := func(p, target string) {
		t.Helper()
		full := filepath.Join(sys, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		rel, err := filepath.Rel(filepath.Dir(full), filepath.Join(sys, target))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(rel, full); err != nil {
			t.Fatal(err)
		}
	}
	dev := func(dir, name, devnum string) {
		p := filepath.Join(dir, name)
		write(p+"/dev", devnum)
		link("dev/block/"+devnum, p)
		link("class/block/"+name, p)
	}
	disk := func(bus, name, devnum string, sectors int64, parts ...string) {
		dir := "devices/" + bus + "/block"
		dev(dir, name, devnum)
		write(dir+"/"+name+"/size", fmt.Sprint(sectors))
		write(dir+"/"+name+"/queue/logical_block_size", "512")
		write(dir+"/"+name+"/ro", "0")
		write(dir+"/"+name+"/removable", "0")
		for i, p := range parts {
			major, minor, _ := strings.Cut(devnum, ":")
			var m int
			fmt.Sscan(minor, &m)
			dev(dir+"/"+name, p, fmt.Sprintf("%s:%d", major, m+i+1))
			write(dir+"/"+name+"/"+p+"/partition", fmt.Sprint(i+1))
		}
	}
	disk("pci0000:00/nvme", "nvme0n1", "259:0", 1000215216, "nvme0n1p1", "nvme0n1p2")
	disk("usb1", "sda", "8:0", 15633408, "sda1")
	disk("usb2", "sdb", "8:16", 30031872, "sdb1")
	write("devices/usb2/block/sdb/device/vendor", "SanDisk ")
	write("devices/usb2/block/sdb/device/model", "Ultra           ")
	write("devices/usb2/block/sdb/removable", "1")
	disk("ata3", "sdc", "8:32", 3907029168, "sdc1")
	dev("devices/virtual/block", "dm-0", "254:0")
	link("devices/virtual/block/dm-0/slaves/sdc1", "devices/ata3/block/sdc/sdc1")
	disk("ata4", "sdd", "8:48", 1953525168, "sdd1", "sdd2")
	disk("ata5", "sde", "8:64", 1953525168, "sde1")
	disk("usb3", "sdf", "8:80", 1953525168)
	write("devices/usb3/block/sdf/queue/logical_block_size", "4096")
	disk("mmc", "mmcblk0", "179:0", 31116288, "mmcblk0p1")
	write("devices/mmc/block/mmcblk0/ro", "1")

	mountinfo := filepath.Join(root, "mountinfo")
	writeFile(t, mountinfo, []byte(`21 1 0:20 / /sys rw,nosuid - sysfs sysfs rw
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
23 22 259:1 / /boot/efi rw,relatime shared:2 - vfat /dev/nvme0n1p1 rw
30 22 8:1 / /media/me/my\040stick rw,nosuid,nodev shared:40 - vfat /dev/sda1 rw,uid=1000
31 22 254:0 / /home rw,relatime shared:41 - ext4 /dev/mapper/luks-home rw
32 22 0:45 / /srv rw,relatime shared:42 - btrfs /dev/sde1 rw,subvolid=5
`))
	swaps := filepath.Join(root, "swaps")
	writeFile(t, swaps, []byte("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/sdd2                               partition\t8388604\t\t0\t\t-2\n"))
	return System{Mountinfo: mountinfo, Swaps: swaps, Sys: sys}
}

func TestCheckDiskFixture(t *testing.T) {
	s := fakeSys(t)
	cases := []struct {
		devnum, want string // want "" = may be written
	}{
		{"259:0", "the running system's root filesystem (/) is on this disk (/dev/nvme0n1p2)"},
		{"259:1", "is partition nvme0n1p1 of /dev/nvme0n1: give the whole disk, /dev/nvme0n1"},
		{"8:0", "/dev/sda1 is mounted on /media/me/my stick: unmount it first"},
		{"8:1", "partition sda1 of /dev/sda"},
		{"8:16", ""},
		{"8:32", "/dev/mapper/luks-home is mounted on /home"},
		{"8:48", "/dev/sdd2 is in use as swap: swapoff /dev/sdd2 first"},
		{"8:64", "/dev/sde1 is mounted on /srv"},
		{"8:80", "4096-byte sectors"},
		{"179:0", "read-only"},
		{"8:240", "not a block device the kernel lists"},
	}
	for _, c := range cases {
		t.Run(c.devnum, func(t *testing.T) {
			tg, err := s.checkDisk("/dev/x", c.devnum)
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("checkDisk = %+v, %v; want an error containing %q", tg, err, c.want)
			}
		})
	}
	tg, err := s.checkDisk("/dev/sdb", "8:16")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Target{Path: "/dev/sdb", Disk: "sdb", Size: 30031872 * 512, Description: "SanDisk Ultra removable"}); tg != want {
		t.Errorf("target = %+v, want %+v", tg, want)
	}
	if got, want := tg.String(), "/dev/sdb (SanDisk Ultra removable, 14.3 GiB)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestCheckFilesAndNonDisks(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small.img")
	writeFile(t, small, make([]byte, 4096))
	if _, err := Check(System{}, small, 1024, false); err == nil || !strings.Contains(err.Error(), "--force-file") {
		t.Errorf("regular file without force: %v", err)
	}
	tg, err := Check(System{}, small, 1024, true)
	if err != nil || tg.Size != 4096 || tg.Disk != "" {
		t.Errorf("regular file with force: %+v %v", tg, err)
	}
	if _, err := Check(System{}, small, 8192, true); err == nil || !strings.Contains(err.Error(), "smaller than the image") {
		t.Errorf("file smaller than the image: %v", err)
	}
	if _, err := Check(System{}, "/dev/null", 0, true); err == nil || !strings.Contains(err.Error(), "not a block device") {
		t.Errorf("/dev/null: %v", err)
	}
	if _, err := Check(System{}, filepath.Join(dir, "nope"), 0, true); err == nil {
		t.Error("a missing device passed")
	}
}

// TestCheckRefusesRootDisk finds the disk under / by stat (not through the
// mount table Check reads) and expects Check to refuse it.
func TestCheckRefusesRootDisk(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	devnum := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	_, _, disk, err := System{Sys: "/sys"}.lookup(devnum)
	if err != nil {
		t.Skipf("/ is on %s, not a block device (overlay or network root): %v", devnum, err)
	}
	dev := "/dev/" + disk
	if _, err := os.Stat(dev); err != nil {
		t.Skipf("no device node for the root disk: %v", err)
	}
	_, err = Check(System{}, dev, 0, false)
	if err == nil || !strings.Contains(err.Error(), "running system's root filesystem") {
		t.Fatalf("Check(%s) = %v, want a refusal naming the root filesystem", dev, err)
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/tab\011x`: "/tab\tx", `/end\04`: `/end\04`, `/plain`: "/plain", `\134`: `\`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
