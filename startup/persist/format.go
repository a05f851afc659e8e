package persist

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Runner runs argv with the filesystem root chroot ("" = no chroot, used by
// tests) and returns its combined output.
type Runner func(ctx context.Context, chroot string, argv ...string) ([]byte, error)

// Exec is the real Runner.
func Exec(ctx context.Context, chroot string, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if chroot != "" {
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: chroot}
		cmd.Dir = "/"
	}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	var out bytes.Buffer
	cmd.Stdin = strings.NewReader("") // mke2fs must never wait for an answer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// mkfsCommands are the ways to make an ext4 filesystem an image may offer,
// best first: e2fsprogs, then busybox's mke2fs (ext2, which the ext4 driver
// mounts).
func mkfsCommands(dev, label string) [][]string {
	// -F: the disk was checked blank, but mke2fs asks before using a whole
	// disk rather than a partition; lazy init keeps first boot fast on
	// large disks (the kernel zeroes inode tables in the background).
	e2 := []string{"-F", "-q", "-t", "ext4", "-L", label, "-E", "lazy_itable_init=1,lazy_journal_init=1", dev}
	bb := []string{"mke2fs", "-F", "-L", label, dev}
	return [][]string{
		append([]string{"/sbin/mkfs.ext4"}, e2...),
		append([]string{"/usr/sbin/mkfs.ext4"}, e2...),
		append([]string{"/sbin/mke2fs"}, e2...),
		append([]string{"/usr/sbin/mke2fs"}, e2...),
		append([]string{"/bin/busybox"}, bb...),
		append([]string{"/usr/bin/busybox"}, bb...),
	}
}

// Initialise creates an ext4 filesystem labelled p.Label on p.Device with the
// image's own mkfs (run chrooted into imageRoot, which must have the
// device node under its /dev), after checking once more that the disk is
// blank. devPath is the device as seen inside imageRoot (/dev/vdb); with
// chroot "" (tests) it is used as is. It returns the mkfs command used.
func Initialise(ctx context.Context, p Plan, imageRoot, chroot, devPath string, run Runner) (string, error) {
	if p.Action != Format {
		return "", fmt.Errorf("initialise: plan is %q, not format", p.Action)
	}
	blank, what, err := blankDevice(p.Device)
	if err != nil {
		return "", err
	}
	if !blank {
		return "", fmt.Errorf("initialise %s: %w: it holds %s; left untouched", p.Device.Path, ErrNotBlank, what)
	}
	if run == nil {
		run = Exec
	}
	var tried []string
	for _, argv := range mkfsCommands(devPath, p.Label) {
		if _, err := os.Stat(filepath.Join(imageRoot, argv[0])); err != nil {
			continue
		}
		if argv[0] == "/bin/busybox" || argv[0] == "/usr/bin/busybox" {
			// Only a busybox built with mke2fs will do.
			out, _ := run(ctx, chroot, argv[0], "--list")
			if !bytes.Contains(out, []byte("mke2fs\n")) {
				tried = append(tried, argv[0]+" (no mke2fs applet)")
				continue
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		out, err := run(cctx, chroot, argv...)
		cancel()
		cmd := strings.Join(argv, " ")
		if err != nil {
			return cmd, fmt.Errorf("initialise %s: %s: %v: %s", p.Device.Path, cmd, err, strings.TrimSpace(string(out)))
		}
		sig, perr := probeDevice(p.Device)
		if perr != nil || !sig.Mountable() || sig.Label != p.Label {
			return cmd, fmt.Errorf("initialise %s: after %s the device shows %v (%v), not an ext filesystem labelled %q", p.Device.Path, cmd, sig, perr, p.Label)
		}
		return cmd, nil
	}
	return "", fmt.Errorf("initialise %s: the image has no mkfs.ext4, mke2fs or busybox with mke2fs (tried %s); install e2fsprogs in the image", p.Device.Path, strings.Join(append(tried, "/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4", "/sbin/mke2fs", "/usr/sbin/mke2fs"), ", "))
}
