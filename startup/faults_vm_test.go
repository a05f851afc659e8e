package startup_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/livebootp/livebootp/internal/testbed"
	"github.com/livebootp/livebootp/startup/persist"
	"github.com/livebootp/livebootp/wire"
)

// The fault tests (issue 5): a VM boot from the registry through the real
// chain (qemu's iPXE ROM, the registry's HTTP, the kernel, livebootp-init),
// with something going wrong on the way. They boot several VMs each, so
// they run with LIVEBOOTP_FAULTS=1 (CI sets it).

// faultBed is what every fault test boots: the binaries and the busybox
// image, built once per test.
type faultBed struct {
	repo, bin, initBin string
	dir                string // the test's scratch directory
	images             string // registry images directory holding busybox/1
}

// newFaultBed builds livebootp, livebootp-init and the busybox image (with
// ballast bytes of incompressible data in it, to make its download last).
func newFaultBed(t *testing.T, ballast int64) faultBed {
	t.Helper()
	repo := testbed.NeedFaultVM(t)
	f := faultBed{repo: repo, dir: t.TempDir()}
	f.bin = testbed.BuildGo(t, repo, "./cmds/livebootp")
	f.initBin = testbed.BuildGo(t, repo, "./cmds/livebootp-init")
	f.images = filepath.Join(f.dir, "images")
	if err := testbed.BuildBusyboxImageBallast(repo, f.bin, f.initBin, t.TempDir(), f.dir, ballast); err != nil {
		t.Fatal(err)
	}
	return f
}

// scenario is a registry serving busybox/1 to host target1, in a fresh
// namespace named after tag, started and torn down with the test.
func (f faultBed) scenario(t *testing.T, ctx context.Context, tag, cmdline string) *testbed.Scenario {
	t.Helper()
	s := &testbed.Scenario{
		Repo: f.repo, Dir: filepath.Join(f.dir, "registry-"+tag), Binary: f.bin,
		NetName: testbed.Uniq(tag), Server: netip.MustParsePrefix("10.80.5.1/24"),
		HostName: "target1", MAC: "52:54:00:12:34:70", HostIP: netip.MustParseAddr("10.80.5.10"),
		Cmdline: cmdline, RouterAdvertisements: true,
		ImagesDir: f.images, Image: "busybox/1",
		Loaders: filepath.Join(f.repo, "build", "tftpboot"),
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	testbed.Start(t, ctx, s)
	return s
}

// power starts the guest with disks and kills it when the test ends.
func power(t *testing.T, ctx context.Context, s *testbed.Scenario, disks ...string) *testbed.VM {
	t.Helper()
	vm, err := s.Boot(ctx, nil, disks...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	return vm
}

// lastReport is the registry's last boot report of the host, or nil.
func lastReport(t *testing.T, s *testbed.Scenario) *wire.Report {
	t.Helper()
	hosts, err := s.Client().Hosts()
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 {
		t.Fatalf("the registry lists %d hosts, want 1", len(hosts))
	}
	return hosts[0].LastReport
}

// waitDone waits for the image's init to finish and the guest to power
// off, and returns when the init finished (since power-on).
func waitDone(t *testing.T, ctx context.Context, s *testbed.Scenario, vm *testbed.VM) time.Duration {
	t.Helper()
	at := testbed.Wait(t, ctx, s, vm, testbed.TargetMarker+"done", 5*time.Minute)
	if err := vm.Wait(time.Minute); err != nil {
		t.Errorf("guest did not power off: %v", err)
	}
	return at
}

// TestVMFaultRegistryRestart kills the registry (SIGKILL) at three moments
// of a boot and starts it again 3 s later; each time the boot must still
// complete on its own, with its boot report recorded by the new registry
// process:
//   - right after iPXE got its boot script: its kernel download fails, the
//     script's retry loop tries again;
//   - right after the init's DHCP lease: the manifest and squashfs requests
//     find nobody listening;
//   - in the middle of the squashfs download: the init resumes it with a
//     Range request where the connection broke.
func TestVMFaultRegistryRestart(t *testing.T) {
	f := newFaultBed(t, 48<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	s := f.scenario(t, ctx, "frr", "console=ttyS0 panic=-1")
	sq, err := os.Stat(filepath.Join(f.images, "busybox", "1", wire.ImageSquashfs))
	if err != nil {
		t.Fatal(err)
	}
	const down = 3 * time.Second

	restart := func(t *testing.T, what string) time.Time {
		t.Helper()
		killed := time.Now()
		if err := s.RestartRegistry(ctx, down); err != nil {
			t.Fatal(err)
		}
		t.Logf("registry killed %s and started again %.1f s later", what, time.Since(killed).Seconds())
		return killed
	}
	// checkReport: the restarted registry holds the boot's report, with
	// no failed step, persistent storage and the manifest's VOLUMEs.
	checkReport := func(t *testing.T) *wire.Report {
		t.Helper()
		r := lastReport(t, s)
		if r == nil {
			t.Fatal("the restarted registry has no boot report")
		}
		if r.Error != "" {
			t.Errorf("boot report has an error: %s", r.Error)
		}
		for _, st := range r.Steps {
			if st.Error != "" {
				t.Errorf("step %s failed: %s", st.Name, st.Error)
			}
		}
		if r.Persistent == "" || len(r.HostKeys) != 3 {
			t.Errorf("boot report: persistent %q, %d host keys; want the blank disk initialised and 3 keys", r.Persistent, len(r.HostKeys))
		}
		t.Logf("boot report: %s; warnings %q", stepLine(r), r.Warnings)
		return r
	}

	t.Run("after the boot script", func(t *testing.T) {
		disk := filepath.Join(t.TempDir(), "disk.raw")
		sparseDisk(t, disk, 256<<20)
		vm := power(t, ctx, s, disk)
		if _, err := s.WaitEvent(ctx, func(e wire.Event) bool {
			return e.Kind == "http" && strings.HasPrefix(e.Detail, wire.PathBoot)
		}, 3*time.Minute); err != nil {
			t.Fatalf("%v\nconsole:\n%s", err, vm.Console.Tail(20))
		}
		restart(t, "right after iPXE fetched its boot script")
		at := waitDone(t, ctx, s, vm)
		t.Logf("image init done %.1f s after power-on", at.Seconds())
		if !strings.Contains(vm.Console.String(), "retrying in 10 s") {
			t.Error("iPXE's console shows no retry: the kill did not hit the kernel download")
		}
		checkReport(t)
	})

	// restartAt boots with a blank disk, restarts the registry when the
	// console shows line, and checks the boot's report.
	restartAt := func(t *testing.T, line, what string) (*testbed.VM, *wire.Report) {
		t.Helper()
		disk := filepath.Join(t.TempDir(), "disk.raw")
		sparseDisk(t, disk, 256<<20)
		vm := power(t, ctx, s, disk)
		waitLine(t, ctx, vm, line, 4*time.Minute)
		restart(t, what)
		waitDone(t, ctx, s, vm)
		return vm, checkReport(t)
	}

	t.Run("after the init's DHCP lease", func(t *testing.T) {
		// The network step's lease line, e.g. "livebootp: network: eth0
		// 10.80.5.10/24 ...": the init is about to fetch the manifest.
		_, r := restartAt(t, "livebootp: network: ", "right after the init's DHCP lease")
		for _, w := range r.Warnings {
			if strings.Contains(w, "manifest") || strings.Contains(w, "VOLUME") {
				t.Errorf("a registry away for %s cost the boot its manifest: %s", down, w)
			}
		}
	})

	t.Run("at the boot report", func(t *testing.T) {
		// The machine stays up 12 s after its init ran, long enough for
		// the report sent again after switch_root to reach the
		// registry once it is back.
		if err := s.SetCmdline("console=ttyS0 panic=-1 target.linger=12"); err != nil {
			t.Fatal(err)
		}
		defer s.SetCmdline("console=ttyS0 panic=-1")
		// A step just before the report: the registry is gone when the
		// report is sent. checkReport wants the new registry process to
		// hold it, with the 3 host keys.
		vm, _ := restartAt(t, "livebootp: nopasswd ...", "right before the boot report")
		if line, _, err := vm.Console.WaitFor(ctx, "sent again after switch_root", 0); err == nil {
			t.Logf("%s", line)
		}
	})

	t.Run("during the squashfs download", func(t *testing.T) {
		// Unhashed (dm-verity), 50 MB arrive in 0.4 s: at 100 Mbit/s the
		// download lasts long enough to be cut in the middle.
		if err := s.Net.Throttle("tap0", 100); err != nil {
			t.Fatal(err)
		}
		disk := filepath.Join(t.TempDir(), "disk.raw")
		sparseDisk(t, disk, 256<<20)
		vm := power(t, ctx, s, disk)
		// The download's first progress line ("livebootp: fetch: 12% 6.0/50.4
		// MB 11.9 MB/s"), half a second into it.
		line, _, err := vm.Console.WaitFor(ctx, "MB/s", 4*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		restart(t, "during the squashfs download ("+line+")")
		waitDone(t, ctx, s, vm)
		checkReport(t)
		resumed, _, err := vm.Console.WaitFor(ctx, "resuming ", time.Second)
		if err != nil {
			t.Fatalf("the init did not resume the download: %v", err)
		}
		t.Logf("%s", resumed)
		hosts, err := s.Client().Hosts()
		if err != nil {
			t.Fatal(err)
		}
		// The new registry process served only the rest of the file.
		if got := hosts[0].ImageBytes; got <= 0 || got >= sq.Size() {
			t.Errorf("the restarted registry served %d squashfs bytes of %d: want the rest only (a Range request)", got, sq.Size())
		}
		t.Logf("after the restart the registry served %.1f of %.1f MB", float64(hosts[0].ImageBytes)/1e6, float64(sq.Size())/1e6)
	})
}

// TestVMFaultPacketLoss boots through 5% frame loss on the VM's link, both
// directions (nftables numgen in the test namespace), once through qemu's
// BIOS iPXE ROM (DHCP, HTTP script, kernel and initrd over HTTP, the init's
// DHCP, manifest, squashfs, report) and once through OVMF's own PXE client
// (the same with ipxe.efi over TFTP first), each next to the same boot
// without loss: every boot completes, and the slowdown is logged.
func TestVMFaultPacketLoss(t *testing.T) {
	f := newFaultBed(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	s := f.scenario(t, ctx, "floss", "console=ttyS0 panic=-1")
	const percent = 5

	type bootFn func() (*testbed.VM, error)
	bios := func() (*testbed.VM, error) { return s.Boot(ctx, nil) }
	uefi := func() (*testbed.VM, error) { return s.BootUEFI(ctx, nil) }
	boot := func(t *testing.T, start bootFn) time.Duration {
		t.Helper()
		vm, err := start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(vm.Kill)
		at := waitDone(t, ctx, s, vm)
		if r := lastReport(t, s); r == nil || r.Error != "" {
			t.Errorf("boot report: %+v", r)
		}
		return at
	}
	for _, c := range []struct {
		name  string
		start bootFn
	}{{"BIOS iPXE ROM", bios}, {"UEFI PXE", uefi}} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "UEFI PXE" {
				if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE_4M.fd"); err != nil {
					t.Skipf("needs OVMF (Debian package ovmf): %v", err)
				}
			}
			clean := boot(t, c.start)
			loss, err := s.Net.AddLoss("tap0", percent)
			if err != nil {
				t.Fatal(err)
			}
			started := time.Now()
			lossy := boot(t, c.start)
			logTimeline(t, s, started)
			n, err := loss.Counts()
			if err != nil {
				t.Fatal(err)
			}
			if err := loss.Remove(); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: power-on to the image's init done: %.1f s clean, %.1f s with %d%% loss (%.2f×); %d of %d frames dropped (%.1f%%)",
				c.name, clean.Seconds(), lossy.Seconds(), percent, lossy.Seconds()/clean.Seconds(), n.Dropped, n.Seen, n.Rate())
			// The rules must have bitten at about the rate asked for, or
			// the boot proved nothing.
			if n.Seen < 1000 || n.Rate() < percent/2.0 || n.Rate() > percent*2.0 {
				t.Errorf("%d of %d frames dropped (%.1f%%): the loss rules did not act as asked (%d%%)", n.Dropped, n.Seen, n.Rate(), percent)
			}
		})
	}
}

// logTimeline logs the registry's events since start, as offsets: where a
// slow boot spent its time.
func logTimeline(t *testing.T, s *testbed.Scenario, start time.Time) {
	t.Helper()
	evs, err := s.Client().Events()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range evs {
		if e.Time.After(start) {
			fmt.Fprintf(&b, "\n  %6.1f s  %-6s %s", e.Time.Sub(start).Seconds(), e.Kind, e.Detail)
		}
	}
	t.Logf("registry events of the lossy boot:%s", b.String())
	for _, l := range strings.Split(s.RegistryLogText(), "\n") {
		if strings.Contains(l, "windowsize") {
			t.Logf("registry: %s", l)
		}
	}
}

// TestVMFaultPowerCut cuts the power (kills qemu) at moments of a first
// boot on a blank disk where the init writes to it, boots again with the
// same disk, and checks that the second boot completes and is not fooled:
//   - a disk that holds the livebootp filesystem after the cut is never
//     initialised again (same filesystem UUID), and keys that reached it
//     are kept;
//   - a disk that holds something else (an interrupted mkfs) is left
//     byte-for-byte as it is, and the boot goes on without it;
//   - the boot report lists three host keys, and they are the files on
//     the disk: exactly the six of them, valid OpenSSH keys (ssh-keygen
//     reads them, each .pub matches its private key). Only when the cut
//     left the filesystem damaged (busybox's mke2fs makes ext2, without a
//     journal) may the keys be new ones for that boot, which the report
//     must then say.
func TestVMFaultPowerCut(t *testing.T) {
	f := newFaultBed(t, 0)
	for _, tool := range []string{"ssh-keygen", "debugfs", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the power cut test needs %s (openssh-client, e2fsprogs)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	s := f.scenario(t, ctx, "fcut", "console=ttyS0 panic=-1 debug")
	const (
		persistentStarts = "livebootp: persistent ..."
		formatting       = "livebootp: persistent: formatting /dev/" // with debug
		initialised      = "livebootp: persistent: initialised /dev/"
		sshkeysStarts    = "livebootp: sshkeys ..."
	)
	// How long mkfs takes, measured on the first case's second boot (a
	// first boot: the cut there comes before anything is written).
	var mkfs time.Duration
	for _, c := range []struct {
		name, line string
		delay      func() time.Duration // after the line, before the cut
	}{
		// The step's first line: mkfs starts right after it.
		{"when the persistent step starts", persistentStarts, func() time.Duration { return 0 }},
		// busybox mke2fs writes through the page cache: the disk gets
		// its blocks at the end, when it closes the device, so a cut
		// before that leaves the disk blank (seen at 1/2 of mkfs's time).
		{"during mkfs", formatting, func() time.Duration { return mkfs * 3 / 4 }},
		// The disk is formatted and mounted; the squashfs copy to its
		// cache, the VOLUMEs and the keys are to come.
		{"right after mkfs", initialised, func() time.Duration { return 0 }},
		// The persistent step's writes are done; the keys come now
		// (RSA may still be being generated in the background).
		{"when the host keys step starts", sshkeysStarts, func() time.Duration { return 0 }},
		{"300 ms into the host keys step", sshkeysStarts, func() time.Duration { return 300 * time.Millisecond }},
	} {
		t.Run(c.name, func(t *testing.T) {
			disk := filepath.Join(t.TempDir(), "disk.raw")
			sparseDisk(t, disk, 256<<20)
			vm := power(t, ctx, s, disk)
			waitLine(t, ctx, vm, c.line, 4*time.Minute)
			delay := c.delay()
			time.Sleep(delay)
			vm.Kill()
			_ = vm.Wait(30 * time.Second)
			sig, uuid := diskSignature(t, disk)
			cut := diskSum(t, disk)
			before, damaged := diskKeys(t, disk, sig)
			t.Logf("power cut %s after %q: the disk holds %q, damaged %v; key files: %v",
				delay.Round(time.Millisecond), c.line, sig, damaged, slices.Sorted(maps.Keys(before)))

			vm2 := power(t, ctx, s, disk)
			waitDone(t, ctx, s, vm2)
			defer func() {
				if t.Failed() {
					t.Logf("second boot's console:\n%s", vm2.Console.Tail(80))
				}
			}()
			if mkfs == 0 {
				if _, at0, err := vm2.Console.WaitFor(ctx, formatting, 0); err == nil {
					if _, at1, err := vm2.Console.WaitFor(ctx, initialised, 0); err == nil {
						mkfs = at1 - at0
						t.Logf("mkfs (busybox mke2fs, 256 MiB) took %s", mkfs.Round(time.Millisecond))
					}
				}
			}
			r := lastReport(t, s)
			if r == nil || r.Error != "" {
				t.Fatalf("second boot: report %+v", r)
			}
			t.Logf("second boot: %s; warnings %q", stepLine(r), r.Warnings)
			if len(r.HostKeys) != 3 {
				t.Errorf("second boot: host keys %q, want 3", r.HostKeys)
			}
			after, uuid2 := diskSignature(t, disk)
			switch {
			case sig.Kind == "":
				// Blank still: the second boot is a first boot.
			case sig.Label == persist.DefaultLabel:
				if uuid2 != uuid {
					t.Errorf("the disk held the livebootp filesystem (UUID %x) after the cut and was initialised again (UUID %x)", uuid, uuid2)
				}
			default:
				if diskSum(t, disk) != cut {
					t.Errorf("the disk held %v after the cut (not blank, not livebootp's) and the next boot changed it", sig)
				}
				if r.Persistent != "" {
					t.Errorf("the next boot used the disk that held %v as persistent storage: %s", sig, r.Persistent)
				}
				t.Logf("an interrupted mkfs leaves a disk livebootp will not touch again: the operator must wipe it (wipefs -a)")
				return
			}
			if after.Label != persist.DefaultLabel {
				t.Fatalf("after the second boot the disk holds %v, not the livebootp filesystem", after)
			}
			files, _ := diskKeys(t, disk, after)
			for name, b := range before {
				if strings.HasSuffix(name, "_key") && string(files[name]) != string(b) {
					t.Errorf("%s reached the disk before the power cut but was replaced by the next boot", name)
				}
			}
			temporary := slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, "for this boot only") })
			if !damaged && slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.Contains(w, "input/output error") }) {
				t.Errorf("the filesystem came through the cut undamaged, yet the next boot hit I/O errors: %q", r.Warnings)
			}
			switch {
			case temporary && !damaged:
				t.Errorf("the filesystem came through the cut undamaged, yet the host keys are temporary: %q", r.Warnings)
			case temporary:
				t.Logf("the damaged filesystem could not keep the keys; the boot had temporary ones and said so")
			default:
				if fps := checkKeyFiles(t, files); !slices.Equal(fps, r.HostKeys) {
					t.Errorf("boot report's fingerprints %q, the disk's keys %q", r.HostKeys, fps)
				}
			}
		})
	}
}

// waitLine waits for want on the console; when qemu ended first, the
// failure says why.
func waitLine(t *testing.T, ctx context.Context, vm *testbed.VM, want string, timeout time.Duration) {
	t.Helper()
	if _, _, err := vm.Console.WaitFor(ctx, want, timeout); err != nil {
		t.Fatalf("%v\nqemu: %v", err, vm.Wait(time.Second))
	}
}

// diskSum is the sha256 of a disk image.
func diskSum(t *testing.T, disk string) [32]byte {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// diskSignature is what the init's own probe sees at the start of disk,
// and the ext superblock's UUID (zero without one).
func diskSignature(t *testing.T, disk string) (persist.Signature, [16]byte) {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, persist.MiB)
	if _, err := f.ReadAt(head, 0); err != nil {
		t.Fatal(err)
	}
	sig, _ := persist.Probe(head)
	var uuid [16]byte
	if strings.HasPrefix(sig.Kind, "ext") {
		copy(uuid[:], head[1024+0x68:])
	}
	return sig, uuid
}

// diskKeys reads livebootp/ssh from the disk's filesystem, from a copy
// that e2fsck has repaired (a journal replayed). It returns file name ->
// content (empty for a disk without the filesystem) and whether e2fsck
// found damage beyond the free block and inode counts, which are always
// stale after an unclean stop and harmless.
func diskKeys(t *testing.T, disk string, sig persist.Signature) (map[string][]byte, bool) {
	t.Helper()
	files := map[string][]byte{}
	if !sig.Mountable() {
		return files, false
	}
	dir := t.TempDir()
	cp := filepath.Join(dir, "disk.raw")
	if out, err := exec.Command("cp", "--sparse=always", disk, cp).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	// Replay a journal (as the kernel would at mount), then check without
	// changing anything, then repair so the files can be read.
	if out, err := exec.Command("e2fsck", "-p", "-E", "journal_only", cp).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() >= 2 {
			t.Errorf("e2fsck journal replay: %v\n%s", err, out)
		}
	}
	check, _ := exec.Command("e2fsck", "-fn", cp).CombinedOutput()
	damaged := false
	lines := strings.Split(string(check), "\n")
	for i, l := range lines {
		// e2fsck -n answers each question "? no"; the problem is on the
		// line before or the same line.
		if !strings.HasSuffix(strings.TrimSpace(l), "? no") {
			continue
		}
		problem := l
		if i > 0 {
			problem = lines[i-1] + " " + l
		}
		if !strings.Contains(problem, "count wrong") {
			damaged = true
		}
	}
	if damaged {
		t.Logf("e2fsck -fn of the disk:\n%s", testbed.Tail(string(check), 12))
	}
	if out, err := exec.Command("e2fsck", "-fy", cp).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() >= 4 {
			t.Errorf("e2fsck -fy of the disk: %v\n%s", err, out)
		}
	}
	ls, err := exec.Command("debugfs", "-R", "ls -p /"+persist.DirSSH, cp).Output()
	if err != nil {
		t.Fatalf("debugfs ls: %v", err)
	}
	// ls -p: /inode/mode/uid/gid/name/size/
	sc := bufio.NewScanner(strings.NewReader(string(ls)))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "/")
		if len(fields) < 7 || fields[5] == "." || fields[5] == ".." {
			continue
		}
		name := fields[5]
		dst := filepath.Join(dir, "dump")
		if out, err := exec.Command("debugfs", "-R", fmt.Sprintf("dump /%s/%s %s", persist.DirSSH, name, dst), cp).CombinedOutput(); err != nil {
			t.Fatalf("debugfs dump %s: %v %s", name, err, out)
		}
		b, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
		os.Remove(dst)
	}
	return files, damaged
}

// checkKeyFiles asserts the disk holds exactly the three host keys and
// their .pub files, each readable by ssh-keygen with the .pub matching the
// private key, and returns their fingerprints in the boot report's form.
func checkKeyFiles(t *testing.T, files map[string][]byte) []string {
	t.Helper()
	var want []string
	for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
		want = append(want, "ssh_host_"+typ+"_key", "ssh_host_"+typ+"_key.pub")
	}
	if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("livebootp/ssh holds %q, want exactly %q (no half-written file)", got, want)
	}
	dir := t.TempDir()
	var fps []string
	for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
		name := "ssh_host_" + typ + "_key"
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, files[name], 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("ssh-keygen", "-l", "-f", p).CombinedOutput()
		if err != nil {
			t.Errorf("ssh-keygen -l %s: %v %s", name, err, out)
			continue
		}
		// "3072 SHA256:... root@target1 (RSA)" -> "RSA SHA256:..."
		fl := strings.Fields(string(out))
		fps = append(fps, strings.ToUpper(typ)+" "+fl[1])
		pub, err := exec.Command("ssh-keygen", "-y", "-f", p).Output()
		if err != nil {
			t.Errorf("ssh-keygen -y %s: %v", name, err)
			continue
		}
		if got := strings.Fields(string(files[name+".pub"])); len(got) < 2 || !strings.HasPrefix(string(pub), got[0]+" "+got[1]) {
			t.Errorf("%s.pub %q does not match its private key (%q)", name, files[name+".pub"], pub)
		}
	}
	return fps
}

// TestVMFaultRescueShell boots an image whose squashfs is corrupt in the
// block the kernel reads to mount it (dm-verity refuses it): with `debug` the console says
// what failed and what to check, the rescue shell built into
// livebootp-init comes up (the initrd has no /bin/sh), runs what is typed
// on the console, and reboots when it exits; without `debug` the same
// failure prints the same message and reboots after 30 s, and the kernel
// never panics. The registry gets a boot report with the error each time.
func TestVMFaultRescueShell(t *testing.T) {
	f := newFaultBed(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	sq := filepath.Join(f.images, "busybox", "1", wire.ImageSquashfs)
	corrupt(t, sq)
	s := f.scenario(t, ctx, "fresc", "console=ttyS0 panic=-1 debug")

	// failed waits for the FAILED line and checks it names the step, the
	// cause and what to check; then for next, the line after the boot
	// report was sent, and checks the registry got the error.
	failed := func(t *testing.T, vm *testbed.VM, next string) {
		t.Helper()
		line, _, err := vm.Console.WaitFor(ctx, "livebootp: FAILED: ", 4*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s", line)
		for _, want := range []string{"FAILED: rootfs: ", "checksum mismatch", "dm-verity", "; check: on the registry, veritysetup verify --hash-offset="} {
			if !strings.Contains(line, want) {
				t.Errorf("the failure line lacks %q: %s", want, line)
			}
		}
		if _, _, err := vm.Console.WaitFor(ctx, next, time.Minute); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(vm.Console.String(), "boot report not sent") {
			t.Errorf("the boot report was not sent: %s", vm.Console.Tail(10))
		}
		if r := lastReport(t, s); r == nil || !strings.Contains(r.Error, "checksum mismatch") {
			t.Errorf("the registry's boot report does not carry the error: %+v", r)
		}
	}

	t.Run("debug", func(t *testing.T) {
		vm := power(t, ctx, s)
		failed(t, vm, "livebootp: rescue shell (debug)")
		// Give the shell a moment to print its prompt before the typed
		// command's echo.
		time.Sleep(time.Second)
		mark := vm.Console.Mark()
		if err := vm.Type("echo rescue-$((40+2)); cat /proc/cmdline\n"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := vm.Console.WaitFrom(ctx, mark, "rescue-42", time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, _, err := vm.Console.WaitFrom(ctx, mark, "livebootp.registry=", 30*time.Second); err != nil {
			t.Errorf("cat /proc/cmdline in the rescue shell: %v", err)
		}
		// The prompt ends no line, so a kernel message may complete its
		// line before the typed command's echo does.
		if !strings.Contains(vm.Console.String(), "livebootp-rescue# ") {
			t.Errorf("the rescue shell printed no prompt:\n%s", vm.Console.Tail(10))
		}
		t.Logf("rescue shell session:\n%s", vm.Console.Since(mark))
		if err := vm.Type("exit\n"); err != nil {
			t.Fatal(err)
		}
		if err := vm.Wait(time.Minute); err != nil {
			t.Errorf("the guest did not reboot when the rescue shell exited: %v\n%s", err, vm.Console.Tail(10))
		}
		if strings.Contains(vm.Console.String(), "Kernel panic") {
			t.Error("kernel panic")
		}
	})

	t.Run("without debug", func(t *testing.T) {
		if err := s.SetCmdline("console=ttyS0 panic=-1"); err != nil {
			t.Fatal(err)
		}
		vm := power(t, ctx, s)
		failed(t, vm, "rebooting in 30 s")
		// -no-reboot: the guest's reboot ends qemu.
		if err := vm.Wait(2 * time.Minute); err != nil {
			t.Errorf("the guest did not reboot: %v", err)
		}
		out := vm.Console.String()
		if strings.Contains(out, "Kernel panic") || strings.Contains(out, "livebootp-rescue#") {
			t.Errorf("without debug: a kernel panic or a rescue shell:\n%s", vm.Console.Tail(20))
		}
	})
}

// TestVMFaultCorruptBlockNotRead: dm-verity checks the image as it is
// read, so a corrupt block the boot never reads (in /opt/ballast) does
// not stop it; but the image is read back whole through dm-verity before
// it is cached, so the corruption is found, the boot report says so, and
// nothing is cached: the first boot (disk initialised after the download,
// image copied from RAM) and the second (downloaded into the cache)
// alike.
func TestVMFaultCorruptBlockNotRead(t *testing.T) {
	f := newFaultBed(t, 16<<20) // below backgroundCacheAbove: cached before switch_root
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	sq := filepath.Join(f.images, "busybox", "1", wire.ImageSquashfs)
	data, err := os.ReadFile(sq)
	if err != nil {
		t.Fatal(err)
	}
	// The ballast is incompressible, so squashfs stores it as it is.
	off := bytes.Index(data, testbed.Ballast(1 << 20)[700000:700064])
	if off < 0 {
		t.Fatal("the ballast is not stored as it is in the squashfs")
	}
	corruptAt(t, sq, int64(off))
	s := f.scenario(t, ctx, "fcnr", "console=ttyS0 panic=-1")
	disk := filepath.Join(t.TempDir(), "disk.img")
	sparseDisk(t, disk, 256<<20)
	for boot := 1; boot <= 2; boot++ {
		vm := power(t, ctx, s, disk)
		waitDone(t, ctx, s, vm)
		r := lastReport(t, s)
		if r == nil || r.Error != "" || r.Verification != "dm-verity" || r.SquashfsCached {
			t.Fatalf("boot %d: report %+v", boot, r)
		}
		found := false
		for _, w := range r.Warnings {
			found = found || strings.Contains(w, "does not match its dm-verity hash")
		}
		if !found {
			t.Errorf("boot %d: no warning of the corrupt block: %q", boot, r.Warnings)
		}
		t.Logf("boot %d: %q", boot, r.Warnings)
	}
	// Repaired on the registry: the next boot downloads it into the cache
	// (as .part), reads it back whole and keeps it; the one after uses it.
	corruptAt(t, sq, int64(off))
	for boot, cached := range []bool{false, true} {
		vm := power(t, ctx, s, disk)
		waitDone(t, ctx, s, vm)
		r := lastReport(t, s)
		if r == nil || r.Error != "" || len(r.Warnings) != 0 || r.SquashfsCached != cached {
			t.Errorf("boot %d after the repair: report %+v", boot+3, r)
		}
	}
}

// corrupt flips the bits of one byte in the squashfs's first block, which
// the kernel reads to mount it: dm-verity refuses it at once, as the
// whole-file sha256 of an image without a tree does.
func corrupt(t *testing.T, path string) { corruptAt(t, path, 100) }

// corruptAt flips the bits of the byte at off.
func corruptAt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
