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

// buildTargetImage builds testbed's busybox image as busybox/1.
func buildTargetImage(t *testing.T, repo, bin, initBin, out string) {
	t.Helper()
	if err := testbed.BuildBusyboxImage(repo, bin, initBin, t.TempDir(), out); err != nil {
		t.Fatal(err)
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
	t.Logf("first boot: RSA host key in /etc/ssh: %s", b1.lines["rsa"])
	if !strings.HasPrefix(b1.lines["rsa"], "yes") || len(first.HostKeys) != 3 {
		t.Errorf("first boot: RSA key %q, report's host keys %q", b1.lines["rsa"], first.HostKeys)
	}
	if first.Verification != "dm-verity" {
		t.Errorf("first boot: the image was checked by %q, want dm-verity", first.Verification)
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
	if !second.SquashfsCached || second.Verification != "dm-verity" {
		t.Errorf("second boot did not use the cached squashfs under dm-verity: %+v", second)
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
	corrupt(t, sq)
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
