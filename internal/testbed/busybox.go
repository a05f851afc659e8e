package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// TargetMarker prefixes the lines the busybox image's init prints; its last
// line is TargetMarker + "done".
const TargetMarker = "TARGET: "

// busyboxInit is the image's /sbin/init: it prints what the init helper set
// up, waits for the RSA host key as sshd would, counts boots in a VOLUME,
// and powers off so qemu exits.
const busyboxInit = `#!/bin/sh
mount -t proc proc /proc 2>/dev/null
echo "TARGET: init reached"
echo "TARGET: hostname=$(hostname) etc=$(cat /etc/hostname)"
echo "TARGET: authorized_keys=$(tr '\n' '|' < /root/.ssh/authorized_keys)"
echo "TARGET: hostkey=$(cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub)"
# As sshd does under systemd: wait (at most a minute) for the RSA host key
# livebootp-init may finish after switch_root on a first boot.
i=0
while [ ! -e /etc/ssh/ssh_host_rsa_key ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
echo "TARGET: rsa=$(test -e /etc/ssh/ssh_host_rsa_key && echo yes || echo no) after $i waits"
n=$(cat /srv/data/boots 2>/dev/null || echo 0)
n=$((n+1))
echo $n > /srv/data/boots
echo "TARGET: boots=$n"
echo "TARGET: startupd=$(cat /etc/startupd-ran 2>/dev/null)"
# target.linger=N keeps the machine up N seconds more (for what
# livebootp-init left running after switch_root).
n=$(sed -n 's/.*target\.linger=\([0-9]*\).*/\1/p' /proc/cmdline)
[ -n "$n" ] && sleep "$n"
echo "TARGET: done"
sync
poweroff -f
`

const busyboxStartup = `#!/bin/sh
. "$LIVEBOOTP_FUNCTIONS"
info "test startup script running"
echo "ran as $(id -u) with hostname $(cat /etc/hostname)" > /etc/startupd-ran
`

// BuildBusyboxImage makes a small root filesystem under scratch (busybox,
// the test kernel and its modules, a startup.d script, the VOLUME
// /srv/data) and runs `livebootp image build` on it, writing
// out/images/busybox/1. bin is livebootp, initBin livebootp-init.
func BuildBusyboxImage(repo, bin, initBin, scratch, out string) error {
	return buildBusyboxImage(repo, bin, initBin, scratch, out, nil)
}

// buildBusyboxImage is BuildBusyboxImage; extra, when set, adds to the
// root filesystem before the build.
func buildBusyboxImage(repo, bin, initBin, scratch, out string, extra func(root string) error) error {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("needs busybox (Debian package busybox-static): %w", err)
	}
	root := filepath.Join(scratch, "rootfs")
	kdir := filepath.Dir(KernelPath(repo))
	kver, err := os.ReadFile(filepath.Join(kdir, "version"))
	if err != nil {
		return fmt.Errorf("kernel version: %w (make kernel)", err)
	}
	v := strings.TrimSpace(string(kver))
	for _, d := range []string{"bin", "sbin", "etc/ssh", "etc/livebootp/startup.d", "root", "proc", "sys", "dev", "run", "tmp", "srv/data", "boot", "lib/modules", "var/log"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := copyFile(busybox, filepath.Join(root, "bin", "busybox")); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(root, "bin", "busybox"), 0o755); err != nil {
		return err
	}
	for _, a := range []string{"sh", "mount", "cat", "cut", "tr", "hostname", "echo", "id", "poweroff", "sync", "ls", "mkdir", "cp", "sleep", "mke2fs", "grep", "sed", "wget", "test", "["} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		path, content string
		mode          os.FileMode
	}{
		{"sbin/init", busyboxInit, 0o755},
		{"etc/livebootp/startup.d/10-test", busyboxStartup, 0o755},
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644},
		{"etc/shadow", "root:*:19000:0:99999:7:::\n", 0o600},
		{"srv/data/from-image", "shipped in the image\n", 0o644},
	} {
		if err := os.WriteFile(filepath.Join(root, f.path), []byte(f.content), f.mode); err != nil {
			return err
		}
	}
	if err := copyFile(KernelPath(repo), filepath.Join(root, "boot", "vmlinuz-"+v)); err != nil {
		return err
	}
	// The modules: hard-linked, not copied (400 MB), where the file system
	// allows; left out of the squashfs, since the initrd carries what the
	// init loads.
	src, dst := filepath.Join(kdir, "lib", "modules", v), filepath.Join(root, "lib", "modules", v)
	if err := exec.Command("cp", "-al", src, dst).Run(); err != nil {
		os.RemoveAll(dst)
		if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
			return fmt.Errorf("copying the modules: %v %s", err, out)
		}
	}
	if extra != nil {
		if err := extra(root); err != nil {
			return err
		}
	}
	cmd := exec.Command(bin, "image", "build", "--name", "busybox", "--version", "1", "--from", root, "--out", out,
		"--init", initBin, "--volume", "/srv/data", "--exclude", "boot/*,lib/modules/*", "-q")
	if o, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("livebootp image build: %v\n%s", err, o)
	}
	return nil
}
