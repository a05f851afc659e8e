package startup_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livebootp/livebootp/internal/testbed"
	"github.com/livebootp/livebootp/wire"
)

// The seed's example host: its name, MAC and address in the registry.
const (
	debianHost = "my-nginx-web-server"
	debianMAC  = "52:54:00:12:34:56"
	debianIP   = "10.86.0.10"
)

// TestVMDebianNginx is the seed's own example as a real image: a Debian
// bookworm root filesystem (systemd, the Debian kernel, openssh-server,
// nginx) built by images/debian/build.sh into nginx-web-server/test and
// PXE-booted in qemu (TCG) from the registry with a blank 1 GiB disk,
// twice. Each boot passes when nginx answers over the bridge and `ssh
// root@` logs in with the key the registry serves; the second boot also
// has the first one's host keys, its file in the /var/www VOLUME and the
// squashfs from the disk's cache. Each boot's timeline (power-on -> kernel
// -> switch_root -> systemd -> nginx -> ssh) is logged next to the anchor
// of issue 3 (Debian live-boot: kernel 22.7 s, systemd 56.6 s, nginx 74 s,
// ssh 76 s).
//
// LIVEBOOTP_CONSOLE=1 copies the VM's console and the image build to
// stdout as they happen (make demo-debian).
func TestVMDebianNginx(t *testing.T) {
	if os.Getenv("LIVEBOOTP_DEBIAN_VM") != "1" {
		t.Skip("Debian nginx VM test: set LIVEBOOTP_DEBIAN_VM=1 or run `make demo-debian`; it is too slow for every CI run " +
			"(mmdebstrap of a Debian rootfs, ~1 min once, cached in build/debian; then a systemd boot under TCG, ~1-2 min)")
	}
	repo := testbed.NeedVM(t)
	// Asked for by name: a missing tool is an error, not a skip.
	for tool, pkg := range map[string]string{"mmdebstrap": "mmdebstrap", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
		"ssh-keyscan": "openssh-client", "curl": "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the Debian VM test needs %s: apt-get install %s", tool, pkg)
		}
	}
	var tee io.Writer
	if os.Getenv("LIVEBOOTP_CONSOLE") == "1" {
		tee = os.Stdout
	}
	bin := testbed.BuildGo(t, repo, "./cmds/livebootp")
	initBin := testbed.BuildGo(t, repo, "./cmds/livebootp-init")
	images := filepath.Join(repo, "build", "debian", "registry")
	buildDebianImage(t, repo, bin, initBin, images, tee)

	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "livebootp-debian-test", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}

	// The seed's example appends "console=ttyS0 debug";
	// LIVEBOOTP_DEBIAN_CMDLINE replaces it (e.g. to time a boot without
	// systemd's debug log on the serial console).
	cmdline := "console=ttyS0 debug"
	if c := os.Getenv("LIVEBOOTP_DEBIAN_CMDLINE"); c != "" {
		cmdline = c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := &testbed.Scenario{
		Repo: repo, Dir: filepath.Join(dir, "registry"), Binary: bin,
		NetName: testbed.Uniq("deb"), Server: netip.MustParsePrefix("10.86.0.1/24"),
		HostName: debianHost, MAC: debianMAC, HostIP: netip.MustParseAddr(debianIP),
		Cmdline: cmdline, MemoryMB: 1024,
		// On, as in a config that does not mention it: the registry's
		// router advertisements end iPXE's IPv6 wait (16 s without).
		RouterAdvertisements: true,
		ImagesDir:            filepath.Join(images, "images"), Image: "nginx-web-server/test", Keys: string(pub),
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	testbed.Start(t, ctx, s)
	disk := filepath.Join(dir, "disk.raw")
	sparseDisk(t, disk, 1<<30)

	// First boot: blank disk, squashfs downloaded. A file is left in the
	// /var/www VOLUME for the second boot.
	b1 := bootDebian(t, ctx, s, disk, key, tee != nil)
	b1.log(t, "first boot (blank disk)", cmdline)
	r1 := b1.report
	if r1.SquashfsCached {
		t.Error("first boot claims a cached squashfs on a blank disk")
	}
	const mark = "kept on persistent storage by livebootp"
	if out, err := debianSSH(ctx, s, key, "echo '"+mark+"' > /var/www/html/persist.txt && sync"); err != nil {
		t.Errorf("writing into the /var/www VOLUME: %v %s", err, out)
	}
	for _, c := range []string{"systemd-analyze blame | head -n 12", "systemd-analyze critical-chain ssh.service nginx.service"} {
		out, _ := debianSSH(ctx, s, key, c)
		t.Logf("guest$ %s\n%s", c, strings.TrimSpace(out))
	}
	// The squashfs went into RAM (the disk was blank when it came); a
	// background process copies it into the disk's cache from switch_root
	// on and frees the RAM. The second boot needs it there.
	cached := "ls /var/lib/livebootp/livebootp/cache/*.squashfs && test ! -e /run/livebootp/filesystem.squashfs && echo copied"
	start := time.Now()
	if _, _, err := pollNS(ctx, s, start, 2*time.Minute, func(out string) bool { return strings.Contains(out, "copied") },
		"ssh", append(sshOpts(key), "root@"+debianIP, cached)...); err != nil {
		out, _ := debianSSH(ctx, s, key, "ps -eo pid,ni,stat,etime,time,args | grep [l]ivebootp; ls -la /run/livebootp /var/lib/livebootp/livebootp/cache")
		t.Errorf("the background copy of the squashfs into the disk's cache did not finish: %v\n%s", err, out)
	} else {
		t.Logf("background copy into the disk's cache: finished within %.1f s of checking", time.Since(start).Seconds())
	}
	b1.shutdown(t, ctx, s, key)

	// Second boot: the squashfs comes from the disk's cache, the host keys
	// and the VOLUME's file are the first boot's.
	b2 := bootDebian(t, ctx, s, disk, key, tee != nil)
	b2.log(t, "second boot (squashfs cached on the disk)", cmdline)
	if !b2.report.SquashfsCached {
		t.Errorf("second boot did not use the cached squashfs: %s", stepLine(b2.report))
	}
	if !slices.Equal(b2.report.HostKeys, r1.HostKeys) {
		t.Errorf("host keys changed between boots: %q then %q", r1.HostKeys, b2.report.HostKeys)
	}
	if out, err := s.Net.Command(ctx, "curl", "-sS", "-m", "10", "http://"+debianIP+"/persist.txt").CombinedOutput(); err != nil || !strings.Contains(string(out), mark) {
		t.Errorf("second boot: the file written into the /var/www VOLUME is gone: %v %q", err, out)
	}
	b2.shutdown(t, ctx, s, key)
}

// debianBoot is one boot of the Debian image: when each milestone was
// reached, since power-on, and the boot report.
type debianBoot struct {
	vm                                        *testbed.VM
	kernel, switchRoot, systemd, nginx, sshAt time.Duration
	report                                    *wire.Report
}

// bootDebian powers the VM on and waits until nginx answers and ssh
// logs in, checking what the seed promises of a booted host.
func bootDebian(t *testing.T, ctx context.Context, s *testbed.Scenario, disk, key string, tee bool) *debianBoot {
	t.Helper()
	powerOn := time.Now()
	var console io.Writer
	if tee {
		console = &stampWriter{w: os.Stdout, start: powerOn}
	}
	before := 0
	if hosts, err := s.Client().Hosts(); err == nil && len(hosts) == 1 {
		before = hosts[0].BootCount
	}
	vm, err := s.Boot(ctx, console, disk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	b := &debianBoot{vm: vm}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\nconsole tail:\n%s\nregistry log tail:\n%s", fmt.Sprintf(format, args...), vm.Console.Tail(40), s.RegistryLogTail(20))
	}

	// nginx and ssh are polled from the registry's namespace from power-on
	// on, each on its own, so neither time waits for the other.
	var wg sync.WaitGroup
	var nginxErr, sshErr error
	var nginxBody, sshOut string
	wg.Add(2)
	go func() {
		defer wg.Done()
		nginxBody, b.nginx, nginxErr = pollNS(ctx, s, powerOn, 4*time.Minute, func(out string) bool {
			return strings.Contains(out, "nginx")
		}, "curl", "-sS", "-m", "5", "http://"+debianIP+"/")
	}()
	go func() {
		defer wg.Done()
		sshOut, b.sshAt, sshErr = pollNS(ctx, s, powerOn, 4*time.Minute, func(out string) bool {
			return strings.TrimSpace(out) != ""
		}, "ssh", append(sshOpts(key), "root@"+debianIP, "hostname")...)
	}()

	var err1 error
	if _, b.kernel, err1 = vm.Console.WaitFor(ctx, "Linux version", 3*time.Minute); err1 != nil {
		fail("the kernel did not start: %v", err1)
	}
	if _, b.switchRoot, err1 = vm.Console.WaitFor(ctx, "livebootp: switch_root", 4*time.Minute); err1 != nil {
		fail("the init helper did not reach switch_root: %v", err1)
	}
	if _, b.systemd, err1 = vm.Console.WaitFor(ctx, "Welcome to", 4*time.Minute); err1 != nil {
		fail("systemd did not start: %v", err1)
	}
	if _, at, err := vm.Console.WaitFor(ctx, "systemd[1]", time.Millisecond); err == nil && at < b.systemd {
		b.systemd = at
	}
	wg.Wait()
	if nginxErr != nil {
		fail("nginx did not answer on http://%s/: %v", debianIP, nginxErr)
	}
	if sshErr != nil {
		fail("ssh root@%s with the registry's key did not work: %v", debianIP, sshErr)
	}
	if got := strings.TrimSpace(sshOut); got != debianHost {
		t.Errorf("ssh root@%s hostname = %q, want the config's host name %q", debianIP, got, debianHost)
	}
	if !strings.Contains(nginxBody, "Welcome to nginx") {
		t.Errorf("nginx answered, but not with Debian's default page: %.200q", nginxBody)
	}

	hosts, err := s.Client().Hosts()
	if err != nil || len(hosts) != 1 || hosts[0].LastReport == nil || hosts[0].BootCount != before+1 {
		fail("the registry has no report of this boot: %v %+v", err, hosts)
	}
	b.report = hosts[0].LastReport
	if b.report.Error != "" {
		t.Errorf("boot report error: %s", b.report.Error)
	}
	// The host key sshd offers is the one the init helper installed and
	// reported.
	if fp := hostKeyFingerprint(t, ctx, s); fp != "" && !slices.Contains(b.report.HostKeys, fp) {
		t.Errorf("sshd offers %s, the boot report lists %q", fp, b.report.HostKeys)
	}
	// The address the init helper configured survived systemd, and nothing
	// failed on the way.
	for _, c := range []string{"ip -br addr", "systemctl is-system-running --wait; systemctl --failed --no-legend", "systemd-analyze"} {
		t0 := time.Now()
		out, _ := debianSSH(ctx, s, key, c)
		t.Logf("guest$ %s   (ssh round trip %.1f s)\n%s", c, time.Since(t0).Seconds(), strings.TrimSpace(out))
	}
	if out, _ := debianSSH(ctx, s, key, "ip -4 -o addr show scope global"); !strings.Contains(out, debianIP+"/") {
		t.Errorf("the guest lost the address the init helper set: %q", out)
	}
	return b
}

func (b *debianBoot) log(t *testing.T, what, cmdline string) {
	t.Helper()
	reportAt := b.kernel + b.report.Uptime
	t.Logf("boot report: %s", stepLine(b.report))
	t.Logf("%s, from power-on (TCG, 1 vCPU, 1024 MB, cmdline-append %q; console line times; anchor = Debian live-boot, issue 3):", what, cmdline)
	t.Logf("  kernel starts (\"Linux version\")        %6.1f s   anchor 22.7 s", b.kernel.Seconds())
	t.Logf("  switch_root (console)                   %6.1f s   (kernel + report uptime: %.1f s; kernel -> switch_root %.1f s, target <= 5 s)",
		b.switchRoot.Seconds(), reportAt.Seconds(), (b.switchRoot - b.kernel).Seconds())
	t.Logf("  systemd (\"systemd[1]\"/\"Welcome to\")     %6.1f s   anchor 56.6 s", b.systemd.Seconds())
	t.Logf("  nginx answers                           %6.1f s   anchor 74 s", b.nginx.Seconds())
	t.Logf("  ssh root@ login works                   %6.1f s   anchor 76 s, target <= 38 s (%.2fx the anchor)",
		b.sshAt.Seconds(), b.sshAt.Seconds()/76)
	t.Logf("DEBIAN-TIMELINE cached=%t kernel=%.1f switch_root=%.1f report=%.1f systemd=%.1f nginx=%.1f ssh=%.1f", b.report.SquashfsCached,
		b.kernel.Seconds(), b.switchRoot.Seconds(), reportAt.Seconds(), b.systemd.Seconds(), b.nginx.Seconds(), b.sshAt.Seconds())
}

// shutdown powers the guest off through systemd, so the persistent ext4
// is clean for the next boot; qemu exits (-no-reboot).
func (b *debianBoot) shutdown(t *testing.T, ctx context.Context, s *testbed.Scenario, key string) {
	t.Helper()
	_, _ = debianSSH(ctx, s, key, "systemctl --no-block poweroff")
	if err := b.vm.Wait(2 * time.Minute); err != nil {
		t.Errorf("guest did not power off: %v", err)
		b.vm.Kill()
		_ = b.vm.Wait(10 * time.Second)
	}
}

// buildDebianImage runs images/debian/build.sh with the test's own
// binaries; it reuses the cached rootfs and image when nothing changed.
func buildDebianImage(t *testing.T, repo, bin, initBin, out string, tee io.Writer) {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(filepath.Join(repo, "images", "debian", "build.sh"), out)
	cmd.Env = append(os.Environ(), "LIVEBOOTP="+bin, "LIVEBOOTP_INIT="+initBin)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if tee != nil {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&buf, tee), io.MultiWriter(&buf, tee)
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("images/debian/build.sh: %v\n%s", err, testbed.Tail(buf.String(), 40))
	}
	t.Logf("image ready in %.1f s: %s", time.Since(start).Seconds(), testbed.Tail(buf.String(), 1))
}

// pollNS runs a command in the registry's namespace every half second
// until ok accepts its output, for at most limit; it returns that output and
// when it came, since start.
func pollNS(ctx context.Context, s *testbed.Scenario, start time.Time, limit time.Duration, ok func(string) bool, name string, args ...string) (string, time.Duration, error) {
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		out, err := s.Net.Command(cctx, name, args...).CombinedOutput()
		cancel()
		if err == nil && ok(string(out)) {
			return string(out), time.Since(start), nil
		}
		last = fmt.Sprintf("%v: %s", err, bytes.TrimSpace(out))
		select {
		case <-ctx.Done():
			return "", 0, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return "", 0, fmt.Errorf("%s: no answer within %s; last: %s", name, limit, last)
}

func debianSSH(ctx context.Context, s *testbed.Scenario, key, command string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := s.Net.Command(cctx, "ssh", append(sshOpts(key), "root@"+debianIP, command)...).CombinedOutput()
	return string(out), err
}

// sshOpts: the test's key, no host key checks (every first boot makes new
// ones), no prompts.
func sshOpts(key string) []string {
	return []string{"-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"}
}

// hostKeyFingerprint is "ED25519 SHA256:..." of the key sshd offers, as the
// boot report writes it ("" with a logged reason when it cannot tell).
func hostKeyFingerprint(t *testing.T, ctx context.Context, s *testbed.Scenario) string {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	scan, err := s.Net.Command(cctx, "ssh-keyscan", "-t", "ed25519", debianIP).Output()
	if err != nil || len(scan) == 0 {
		t.Logf("ssh-keyscan %s: %v", debianIP, err)
		return ""
	}
	cmd := exec.CommandContext(cctx, "ssh-keygen", "-l", "-f", "-")
	cmd.Stdin = bytes.NewReader(scan)
	out, err := cmd.Output()
	if err != nil {
		t.Logf("ssh-keygen -l: %v", err)
		return ""
	}
	// "256 SHA256:... 10.86.0.10 (ED25519)"
	f := strings.Fields(string(out))
	if len(f) < 4 {
		return ""
	}
	return strings.Trim(f[len(f)-1], "()") + " " + f[1]
}

// stampWriter prefixes each console line (one Write each) with the time
// since power-on, so the demo shows where the boot spends its time.
type stampWriter struct {
	w     io.Writer
	start time.Time
}

func (s *stampWriter) Write(p []byte) (int, error) {
	if _, err := fmt.Fprintf(s.w, "[%6.1fs] %s", time.Since(s.start).Seconds(), p); err != nil {
		return 0, err
	}
	return len(p), nil
}
