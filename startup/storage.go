package startup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livebootp/livebootp/startup/mount"
	"github.com/livebootp/livebootp/startup/persist"
	"github.com/livebootp/livebootp/startup/sshkeys"
)

// findStorage decides on persistent storage before the download, so the
// image can come from (and go to) the cache. A labelled filesystem is
// mounted now; a blank disk is initialised later, with the image's mkfs.
func findStorage(s *State) error {
	p, err := s.lookForStorage()
	s.Plan = p
	for _, n := range p.Notes {
		s.debugf("%s", n)
	}
	defer s.startKeygen()
	if err != nil {
		return err
	}
	switch p.Action {
	case persist.None:
		if s.Args.Persistent == "none" {
			s.infof("none (livebootp.persistent=none)")
		} else {
			s.warnf("no persistent storage: %s; SSH host keys and VOLUMEs last until reboot", p.Reason)
		}
	case persist.Use:
		if err := s.mountData(p.Device.Path, p.Sig.FSType()); err != nil {
			s.Plan = persist.Plan{Action: persist.None}
			return err
		}
		s.DataDesc = fmt.Sprintf("/dev/%s %s %s", p.Device.Name, p.Sig.Kind, p.Sig.Label)
		s.infof("%s mounted", s.DataDesc)
	case persist.Format:
		s.infof("/dev/%s is blank (%d MiB): it will be initialised as ext4 %q", p.Device.Name, p.Device.Size/persist.MiB, p.Label)
	}
	return nil
}

// peekDisks is the disks step, before DHCP: it looks for a livebootp
// filesystem on the disks the quick drivers find (virtio, NVMe, ...), and
// when there is none starts the SCSI and ATA drivers in the background, so
// they probe their controllers while DHCP runs rather than when storage
// needs them. With one there (every boot but the first) they never load.
func peekDisks(s *State) error {
	if s.modules == nil || (s.Args.Persistent != "" && s.Args.Persistent != "auto") {
		return nil // storage decides: none, or a device named on the command line
	}
	if p, ok := s.quickLook(); ok {
		s.debugf("livebootp filesystem on /dev/%s", p.Device.Name)
		return nil
	}
	// At full priority: storage waits for them right after DHCP and the
	// manifest, which mostly wait on the network; at the lowest they
	// shared that idle time with the RSA key's child and made storage
	// wait for AHCI's port probing (measured: 0.6-0.7 s).
	s.debugf("no livebootp filesystem on the disks seen so far: %d SCSI and ATA modules load in the background",
		len(s.modules.request(moduleGroup("disk-controllers"), false)))
	return nil
}

// quickLook loads the disk drivers but for SCSI and ATA, and says whether
// a disk they show holds a livebootp filesystem to use.
func (s *State) quickLook() (persist.Plan, bool) {
	disks, controllers := moduleGroup("disks"), moduleGroup("disk-controllers")
	if err := s.needModules("disk drivers", func(f string) bool { return disks(f) && !controllers(f) }); err != nil {
		s.warnf("%v", err)
	}
	p, err := persist.Decide(s.Root, s.Args.Persistent)
	return p, err == nil && p.Action == persist.Use
}

// lookForStorage looks first at the disks the quick drivers find (virtio,
// NVMe, ...) and uses a livebootp filesystem there; only without one does
// it load the SCSI and ATA drivers and decide with every disk in view (a
// blank disk is chosen only when no disk holds a livebootp filesystem).
// Where two disks hold one, the quick drivers' wins.
func (s *State) lookForStorage() (persist.Plan, error) {
	if s.Args.Persistent == "none" {
		return s.decide()
	}
	if s.Args.Persistent == "" || s.Args.Persistent == "auto" {
		if p, ok := s.quickLook(); ok {
			return p, nil
		}
	}
	if err := s.needModules("disk controllers", moduleGroup("disks")); err != nil {
		s.warnf("%v", err)
	}
	return s.decide()
}

// decide runs persist.Decide, waiting a little for disks that are still
// being probed (SCSI scans asynchronously): up to 10 s for a device or
// label named on the command line, up to 2 s under auto when no disk at
// all has shown up yet.
func (s *State) decide() (persist.Plan, error) {
	explicit := s.Args.Persistent != "" && s.Args.Persistent != "auto" && s.Args.Persistent != "none"
	wait := 2 * time.Second
	if explicit {
		wait = 10 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		p, err := persist.Decide(s.Root, s.Args.Persistent)
		retry := false
		switch {
		case explicit:
			retry = (err != nil && strings.Contains(err.Error(), "no such block device")) || (err == nil && p.Action == persist.None)
		case err == nil && p.Action == persist.None && s.Args.Persistent != "none":
			devs, _ := persist.Scan(s.Root)
			retry = true
			for _, d := range devs {
				if d.Hardware {
					retry = false
				}
			}
		}
		if !retry || time.Now().After(deadline) {
			return p, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startKeygen begins generating host keys in the background when they will
// be needed (none on persistent storage yet), overlapping RSA's seconds of
// work with the download. Not earlier: on one CPU, RSA started at the disks
// step took the CPU from the SCSI and ATA drivers' loading and made the
// storage step wait 1.4 s longer (measured), for 0.4 s less waiting at the
// keys.
func (s *State) startKeygen() {
	if s.Data != "" {
		if _, err := os.Stat(filepath.Join(s.Data, persist.DirSSH, "ssh_host_rsa_key")); err == nil {
			return
		}
	}
	if s.Root != "/" {
		s.keygen = sshkeys.Pregenerate() // tests: no child processes
		return
	}
	if err := s.startRSA(); err != nil {
		s.warnf("RSA host key in a child process: %v; generating it here", err)
		s.keygen = sshkeys.Pregenerate()
	}
}

// mountData mounts persistent storage at /run/livebootp/data. A regular
// file (a disk image, in tests) is attached to a loop device first.
func (s *State) mountData(dev, fstype string) error {
	if err := s.needModules(fstype, moduleGroup(fstype)); err != nil {
		s.warnf("%v", err)
	}
	target := s.work("data")
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	src := dev
	if st, err := os.Stat(dev); err == nil && st.Mode().IsRegular() {
		l, err := mount.AttachLoop(filepath.Join(s.Root, "dev"), dev, true)
		if err != nil {
			return err
		}
		defer l.Close()
		src = l.Path
	}
	if err := s.Mounter.Mount(src, target, fstype, unix.MS_NOATIME, ""); err != nil {
		return err
	}
	s.Data = target
	return nil
}

// persistentStorage initialises a blank disk if one was chosen, caches the
// image on it, makes it visible in the image at /var/lib/livebootp and
// mounts the image's VOLUMEs from it.
func persistentStorage(s *State) error {
	if s.Plan.Action == persist.Format {
		if err := s.initialise(); err != nil {
			return err
		}
	}
	if s.Data == "" {
		s.infof("none: the image's VOLUMEs stay in RAM")
		return nil
	}
	var errs []error
	if err := cacheImage(s); err != nil {
		errs = append(errs, err)
	}
	inImage := filepath.Join(s.NewRoot(), "var", "lib", "livebootp")
	if err := os.MkdirAll(inImage, 0o755); err != nil {
		return err
	}
	if err := s.Mounter.Mount(s.Data, inImage, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	if s.Manifest == nil {
		s.infof("no manifest: no VOLUMEs")
	} else {
		for _, v := range s.Manifest.Volumes {
			created, err := persist.Apply(s.Mounter, s.Data, s.NewRoot(), persist.Volume{Path: v})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			state := "kept"
			if created {
				state = "new, copied from the image"
			}
			s.infof("%s (bind, %s)", v, state)
		}
	}
	s.syncData()
	return errors.Join(errs...)
}

// syncData flushes persistent storage (syncfs). fsync alone is not enough
// on a filesystem without a journal (busybox's mke2fs makes ext2): the
// block and inode bitmaps are written back later, and a power cut before
// that leaves inodes "doubly allocated" and directories that fail with EIO
// on the next boot.
func (s *State) syncData() {
	if s.Data == "" {
		return
	}
	f, err := os.Open(s.Data)
	if err != nil {
		s.warnf("sync persistent storage: %v", err)
		return
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		s.warnf("sync persistent storage %s: %v", s.Data, err)
	}
}

// initialise formats the blank disk chosen by findStorage with the image's
// own mkfs, chrooted into the new root with /dev, /proc and /sys bound in
// for the time it runs.
func (s *State) initialise() error {
	p := s.Plan
	root := s.NewRoot()
	chroot, dev := "", p.Device.Path
	if s.Chroot {
		chroot, dev = root, "/dev/"+p.Device.Name
		var bound []string
		defer func() {
			for i := len(bound) - 1; i >= 0; i-- {
				s.Mounter.Unmount(bound[i], unix.MNT_DETACH)
			}
		}()
		for _, d := range []string{"dev", "proc", "sys"} {
			t := filepath.Join(root, d)
			os.MkdirAll(t, 0o755)
			if err := s.Mounter.Mount(filepath.Join(s.Root, d), t, "", unix.MS_BIND, ""); err != nil {
				return err
			}
			bound = append(bound, t)
		}
	}
	// The moment a power cut would leave a half-made filesystem: shown,
	// so the fault test can aim at it.
	s.debugf("formatting /dev/%s", p.Device.Name)
	cmd, err := persist.Initialise(s.Context, p, root, chroot, dev, nil)
	if err != nil {
		return err
	}
	s.infof("initialised /dev/%s: %s", p.Device.Name, strings.Fields(cmd)[0])
	if strings.Contains(cmd, "busybox") {
		s.warnf("/dev/%s is ext2 without a journal (busybox mke2fs): a power cut while it is written can damage it; e2fsprogs in the image gives ext4 with a journal", p.Device.Name)
	}
	if err := s.mountData(p.Device.Path, "ext4"); err != nil {
		return err
	}
	s.DataDesc = fmt.Sprintf("/dev/%s ext4 %s (initialised this boot)", p.Device.Name, p.Label)
	return nil
}
