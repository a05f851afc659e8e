package startup_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livebootp/livebootp/internal/testbed"
	"github.com/livebootp/livebootp/wire"
)

// targetInit is the image's /sbin/init: it prints what the init helper set
// up, counts boots in a VOLUME, and powers off so qemu exits.
const targetInit = `#!/bin/sh
mount -t proc proc /proc 2>/dev/null
echo "TARGET: init reached"
echo "TARGET: hostname=$(hostname) etc=$(cat /etc/hostname)"
echo "TARGET: authorized_keys=$(tr '\n' '|' < /root/.ssh/authorized_keys)"
echo "TARGET: hostkey=$(cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub)"
n=$(cat /srv/data/boots 2>/dev/null || echo 0)
n=$((n+1))
echo $n > /srv/data/boots
echo "TARGET: boots=$n"
echo "TARGET: startupd=$(cat /etc/startupd-ran 2>/dev/null)"
echo "TARGET: done"
sync
poweroff -f
`

const startupScript = `#!/bin/sh
. "$LIVEBOOTP_FUNCTIONS"
info "test startup script running"
echo "ran as $(id -u) with hostname $(cat /etc/hostname)" > /etc/startupd-ran
`

// buildTargetImage makes a busybox root filesystem with the test kernel and
// its modules, and runs `livebootp image build` on it.
func buildTargetImage(t *testing.T, repo, bin, initBin, out string) {
	t.Helper()
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("needs busybox (Debian package busybox-static): %v", err)
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	kdir := filepath.Dir(testbed.KernelPath(repo))
	kver, err := os.ReadFile(filepath.Join(kdir, "version"))
	if err != nil {
		t.Fatalf("kernel version: %v (make kernel)", err)
	}
	v := strings.TrimSpace(string(kver))
	for _, d := range []string{"bin", "sbin", "etc/ssh", "etc/livebootp/startup.d", "root", "proc", "sys", "dev", "run", "tmp", "srv/data", "boot", "lib/modules", "var/log"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyTo := func(src, dst string, mode os.FileMode) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, mode); err != nil {
			t.Fatal(err)
		}
	}
	copyTo(busybox, filepath.Join(root, "bin", "busybox"), 0o755)
	for _, a := range []string{"sh", "mount", "cat", "cut", "tr", "hostname", "echo", "id", "poweroff", "sync", "ls", "mkdir", "cp", "sleep", "mke2fs", "grep", "sed", "wget", "test", "["} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "sbin", "init"), []byte(targetInit), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "livebootp", "startup.d", "10-test"), []byte(startupScript), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "shadow"), []byte("root:*:19000:0:99999:7:::\n"), 0o600)
	os.WriteFile(filepath.Join(root, "srv", "data", "from-image"), []byte("shipped in the image\n"), 0o644)
	copyTo(testbed.KernelPath(repo), filepath.Join(root, "boot", "vmlinuz-"+v), 0o644)
	// The modules: hard-linked, not copied (400 MB), where the file system
	// allows; left out of the squashfs below, since the initrd carries
	// what the init loads.
	src, dst := filepath.Join(kdir, "lib", "modules", v), filepath.Join(root, "lib", "modules", v)
	if err := exec.Command("cp", "-al", src, dst).Run(); err != nil {
		os.RemoveAll(dst)
		if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
			t.Fatalf("copying the modules: %v %s", err, out)
		}
	}
	cmd := exec.Command(bin, "image", "build", "--name", "busybox", "--version", "1", "--from", root, "--out", out,
		"--init", initBin, "--volume", "/srv/data", "--exclude", "boot/*,lib/modules/*", "-q")
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("livebootp image build: %v\n%s", err, o)
	}
}

type boot struct {
	vm      *testbed.VM
	console *testbed.Console
	lines   map[string]string
}

// bootTarget PXE-boots the host once and collects the TARGET: lines.
func bootTarget(t *testing.T, ctx context.Context, s *testbed.Scenario, disks ...string) boot {
	t.Helper()
	vm, err := s.Boot(ctx, nil, disks...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	at := testbed.Wait(t, ctx, s, vm, "TARGET: done", 4*time.Minute)
	t.Logf("image init done %.1f s after power-on", at.Seconds())
	if err := vm.Wait(time.Minute); err != nil {
		t.Errorf("guest did not power off: %v", err)
	}
	b := boot{vm: vm, console: vm.Console, lines: map[string]string{}}
	for _, l := range strings.Split(vm.Console.String(), "\n") {
		l = strings.TrimRight(l, "\r")
		if i := strings.Index(l, "TARGET: "); i >= 0 {
			kv := l[i+len("TARGET: "):]
			if k, v, ok := strings.Cut(kv, "="); ok {
				b.lines[k] = v
			}
		}
	}
	return b
}

func sparseDisk(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func fileSum(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestVMTargetBoots is the target side end to end: an image built by
// `livebootp image build` from a busybox root filesystem, PXE-booted by
// qemu's iPXE from the registry with a blank disk, twice.
func TestVMTargetBoots(t *testing.T) {
	repo := testbed.NeedVM(t)
	bin := testbed.BuildGo(t, repo, "./cmds/livebootp")
	initBin := testbed.BuildGo(t, repo, "./cmds/livebootp-init")
	dir := t.TempDir()
	buildTargetImage(t, repo, bin, initBin, dir)

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	keys1 := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEtleU9uZUtleU9uZUtleU9uZUtleU9uZUtleU9u first@key\n"
	keys2 := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEtleVR3b0tleVR3b0tleVR3b0tleVR3b0tleVR3 second@key\n"
	s := &testbed.Scenario{
		Repo: repo, Dir: filepath.Join(dir, "registry"), Binary: bin,
		NetName: testbed.Uniq("tgt"), Server: netip.MustParsePrefix("10.80.3.1/24"),
		HostName: "target1", MAC: "52:54:00:12:34:60", HostIP: netip.MustParseAddr("10.80.3.10"),
		Cmdline: "console=ttyS0 panic=-1", RouterAdvertisements: true,
		ImagesDir: filepath.Join(dir, "images"), Image: "busybox/1", Keys: keys1,
	}
	os.MkdirAll(s.Dir, 0o755)
	testbed.Start(t, ctx, s)
	disk := filepath.Join(dir, "disk.raw")
	sparseDisk(t, disk, 256<<20)

	// First boot: the blank disk is initialised, keys generated.
	b1 := bootTarget(t, ctx, s, disk)
	if got := b1.lines["hostname"]; got != "target1 etc=target1" {
		t.Errorf("first boot: hostname %q, want the config's host name target1", got)
	}
	if got := b1.lines["authorized_keys"]; got != strings.TrimSpace(keys1)+"|" {
		t.Errorf("first boot: authorized_keys %q, want the registry's file", got)
	}
	if b1.lines["hostkey"] == "" || b1.lines["boots"] != "1" {
		t.Errorf("first boot: host key %q, boots %q", b1.lines["hostkey"], b1.lines["boots"])
	}
	if !strings.Contains(b1.lines["startupd"], "ran as 0 with hostname target1") {
		t.Errorf("first boot: startup.d script: %q", b1.lines["startupd"])
	}
	first := hostReport(t, s)
	if first.SquashfsCached {
		t.Error("first boot claims a cached squashfs on a blank disk")
	}

	// Between boots the operator changes the key file on the registry.
	if err := s.SetKeys(keys2); err != nil {
		t.Fatal(err)
	}
	b2 := bootTarget(t, ctx, s, disk)
	if b2.lines["hostkey"] != b1.lines["hostkey"] {
		t.Errorf("second boot: host key changed: %q then %q", b1.lines["hostkey"], b2.lines["hostkey"])
	}
	if b2.lines["boots"] != "2" {
		t.Errorf("second boot: the VOLUME lost its data: boots=%q, want 2", b2.lines["boots"])
	}
	if got := b2.lines["authorized_keys"]; got != strings.TrimSpace(keys2)+"|" {
		t.Errorf("second boot: authorized_keys %q, want the new file", got)
	}
	second := hostReport(t, s)
	if !second.SquashfsCached {
		t.Errorf("second boot did not use the cached squashfs: %+v", second)
	}
	hosts, err := s.Client().Hosts()
	if err != nil {
		t.Fatal(err)
	}
	if hosts[0].BootCount != 2 || hosts[0].ImageBytes != 0 {
		t.Errorf("registry after two boots: %d boots, %d image bytes in the last (want 2 and 0: cached)", hosts[0].BootCount, hosts[0].ImageBytes)
	}
	t.Logf("boot report timings (second boot): %s", stepLine(second))

	// A disk that holds an unlabelled filesystem is never touched.
	used := filepath.Join(dir, "used.raw")
	sparseDisk(t, used, 128<<20)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", used).CombinedOutput(); err != nil {
		if _, lerr := exec.LookPath("mkfs.ext4"); lerr != nil {
			t.Skipf("needs mkfs.ext4 (e2fsprogs): %v", lerr)
		}
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	before := fileSum(t, used)
	b3 := bootTarget(t, ctx, s, used)
	if fileSum(t, used) != before {
		t.Error("a disk holding an unlabelled ext4 filesystem was changed")
	}
	if b3.lines["boots"] != "1" {
		t.Errorf("third boot (no persistent storage): boots=%q, want 1", b3.lines["boots"])
	}
	third := hostReport(t, s)
	if len(third.Warnings) == 0 {
		t.Error("a boot without persistent storage gave no warning")
	}
	t.Logf("warnings without persistent storage: %q", third.Warnings)

	// A corrupted squashfs (same manifest checksum) is refused.
	sq := filepath.Join(s.ImagesDir, "busybox", "1", wire.ImageSquashfs)
	data, err := os.ReadFile(sq)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(sq, data, 0o644); err != nil {
		t.Fatal(err)
	}
	vm, err := s.Boot(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	line, _, err := vm.Console.WaitFor(ctx, "checksum mismatch", 4*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("corrupted squashfs: %s", line)
	vm.Kill()
	if strings.Contains(vm.Console.String(), "TARGET: init reached") {
		t.Error("the corrupted image was booted")
	}
}

func hostReport(t *testing.T, s *testbed.Scenario) *wire.Report {
	t.Helper()
	hosts, err := s.Client().Hosts()
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || hosts[0].LastReport == nil {
		t.Fatalf("the registry has no boot report: %+v", hosts)
	}
	return hosts[0].LastReport
}

func stepLine(r *wire.Report) string {
	var b bytes.Buffer
	var total time.Duration
	for _, st := range r.Steps {
		total += st.Duration
		fmt.Fprintf(&b, "%s=%s ", st.Name, st.Duration.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "(steps %s, uptime at report %s)", total.Round(time.Millisecond), r.Uptime.Round(time.Millisecond))
	return b.String()
}
