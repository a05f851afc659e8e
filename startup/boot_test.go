package startup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livebootp/livebootp/startup/fetch"
	"github.com/livebootp/livebootp/startup/mount"
	"github.com/livebootp/livebootp/startup/netconf"
	"github.com/livebootp/livebootp/startup/persist"
	"github.com/livebootp/livebootp/wire"
)

// The boot tests run the real steps, from the kernel command line to the
// startup scripts and the boot report, as root in a temporary root: a fake
// sysfs with a blank disk image as /dev/vdb, device nodes for loop devices,
// a real squashfs served by an httptest registry, real loop, overlay, ext4
// and bind mounts. Only what needs a VM is left out: the API filesystems,
// modules, DHCP (a fixed lease), moving mounts and switch_root.

const testMAC = "52:54:00:85:00:07"

const privateEnv = "LIVEBOOTP_PRIVATE_MOUNTS"

// inPrivateMounts runs the calling test again in a child process with a
// mount namespace of its own and reports whether the caller is that child
// (then it runs the test body). Mounts made in the host namespace get
// copied into every namespace another process creates meanwhile (ip netns
// exec, unshare) and live on there after we unmount ours: a loop device
// stays busy, and an ext4 on it stays mounted while the next "boot" mounts
// the same disk image again. In a namespace of its own the test's mounts
// are out of reach, and they all go away with the child.
func inPrivateMounts(t *testing.T) bool {
	t.Helper()
	if os.Getenv(privateEnv) == t.Name() {
		detachForeignMounts()
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices, mknod and mounts")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), privateEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS} // and / made private, recursively
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s in a private mount namespace: %v\n%s", t.Name(), err, out)
	}
	if testing.Verbose() {
		t.Logf("%s", out)
	}
	return false
}

// detachForeignMounts drops, in this private namespace only, the copies
// of other tests' temporary mounts, so this process does not keep them
// busy in turn.
func detachForeignMounts() {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	tmp := os.TempDir() + "/"
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], tmp) {
			unix.Unmount(f[4], unix.MNT_DETACH)
		}
	}
}

type registry struct {
	t        *testing.T
	mu       sync.Mutex
	squashfs []byte
	sha      string // served in the manifest
	keys     string
	keysDown bool
	gets     map[string]int
	reports  []wire.Report
	ts       *httptest.Server
}

func (r *registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gets[req.URL.Path]++
	switch p := req.URL.Path; {
	case p == "/images/web/1/filesystem.squashfs":
		http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(r.squashfs))
	case p == "/images/web/1/manifest.json":
		json.NewEncoder(w).Encode(wire.Manifest{Name: "web", Version: "1", Volumes: []string{"/var/www"},
			Files: map[string]wire.FileSum{wire.ImageSquashfs: {Size: int64(len(r.squashfs)), SHA256: r.sha}}})
	case p == "/boot/"+testMAC+".keys":
		if r.keysDown {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(r.keys))
	case p == "/api/v1/report/"+testMAC && req.Method == http.MethodPost:
		var rep wire.Report
		if err := json.NewDecoder(req.Body).Decode(&rep); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		r.reports = append(r.reports, rep)
	default:
		http.NotFound(w, req)
	}
}

// image builds the target's squashfs: a tiny root with what the steps use.
func image(t *testing.T) []byte {
	mk, err := exec.LookPath("mksquashfs")
	if err != nil {
		t.Skip("needs mksquashfs (squashfs-tools)")
	}
	src := t.TempDir()
	files := map[string]string{
		"etc/passwd":         "root:x:0:0:root:/root:/bin/sh\n",
		"etc/shadow":         "root:*:19000:0:99999:7:::\n",
		"etc/hosts":          "127.0.0.1 localhost\n",
		"var/www/index.html": "from the image\n",
		"sbin/mkfs.ext4":     "", // present in the image; tests run the host's (no chroot)
		"etc/livebootp/startup.d/10-record": "#!/bin/sh\n. \"$LIVEBOOTP_FUNCTIONS\"\n" +
			"[ -n \"$LIVEBOOTP_PERSISTENT\" ] || exit 0\n" +
			"echo \"$LIVEBOOTP_HOSTNAME $(get_cmdline_param livebootp.image) $LIVEBOOTP_MAC\" > \"$LIVEBOOTP_PERSISTENT/script-ran\"\ninfo recorded\n",
	}
	for name, content := range files {
		p := filepath.Join(src, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		mode := os.FileMode(0o644)
		if strings.Contains(name, "startup.d") || strings.HasPrefix(name, "sbin/") {
			mode = 0o755
		}
		os.WriteFile(p, []byte(content), mode)
	}
	out := filepath.Join(t.TempDir(), "fs.squashfs")
	if b, err := exec.Command(mk, src, out, "-noappend", "-quiet", "-no-progress", "-all-root").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, b)
	}
	b, _ := os.ReadFile(out)
	return b
}

// machine is the target's root: fake sysfs, /dev with loop nodes and a
// blank 80 MiB disk vdb.
func machine(t *testing.T) string {
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices, mknod and mounts")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("needs /dev/loop-control")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		if _, err := os.Stat("/sbin/mkfs.ext4"); err != nil {
			t.Skip("needs mkfs.ext4 (e2fsprogs)")
		}
	}
	root := t.TempDir()
	dev := filepath.Join(root, "dev")
	os.MkdirAll(dev, 0o755)
	if err := unix.Mknod(filepath.Join(dev, "loop-control"), unix.S_IFCHR|0o600, int(unix.Mkdev(10, 237))); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 256; i++ {
		unix.Mknod(filepath.Join(dev, "loop"+strconv.Itoa(i)), unix.S_IFBLK|0o600, int(unix.Mkdev(7, uint32(i))))
	}
	blk := filepath.Join(root, "sys", "class", "block", "vdb")
	os.MkdirAll(filepath.Join(blk, "device"), 0o755)
	os.MkdirAll(filepath.Join(blk, "holders"), 0o755)
	os.WriteFile(filepath.Join(blk, "size"), []byte(strconv.Itoa(80*persist.MiB/512)), 0o644)
	f, _ := os.Create(filepath.Join(dev, "vdb"))
	f.Truncate(80 * persist.MiB)
	f.Close()
	t.Cleanup(func() { unmountUnder(t, root) })
	// /run is a tmpfs, as the mount step leaves it.
	os.MkdirAll(filepath.Join(root, "run"), 0o755)
	if err := unix.Mount("tmpfs", filepath.Join(root, "run"), "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	return root
}

// unmountUnder unmounts every mount below dir, newest first, in passes:
// a filesystem stays busy while a loop device backed by a file on it is
// still in use (the squashfs cached on the data disk), and a loop device
// lets go of its file a moment after its filesystem is unmounted.
// Not lazily: the next boot must find the disk written and released.
func unmountUnder(t *testing.T, dir string) {
	var left []string
	for pass := 0; pass < 500; pass++ { // up to 10 s: loop teardown is slow on a loaded machine
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		left = nil
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
				left = append([]string{f[4]}, left...) // mountinfo is in mount order
			}
		}
		if len(left) == 0 {
			return
		}
		for _, m := range left {
			unix.Unmount(m, 0)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, m := range left {
		t.Errorf("%s still mounted", m)
		unix.Unmount(m, unix.MNT_DETACH)
	}
}

// reboot unmounts everything and gives the machine a fresh /run.
func reboot(t *testing.T, root string) {
	unmountUnder(t, root)
	if err := unix.Mount("tmpfs", filepath.Join(root, "run"), "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
}

func bootSteps(skip ...string) []Step {
	skip = append(skip, "mount", "modules", "move", "switch_root")
	var out []Step
	for _, s := range Steps() {
		if !contains(skip, s.Name) {
			out = append(out, s)
		}
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// boot runs the steps once on root and returns the state and console.
func boot(t *testing.T, root string, reg *registry, args string) (*State, string, error) {
	cmd := filepath.Join(t.TempDir(), "cmdline")
	os.WriteFile(cmd, []byte("console=ttyS0 livebootp.registry="+reg.ts.URL+" livebootp.image=web/1 "+args+"\n"), 0o644)
	var out bytes.Buffer
	s := &State{Root: root, ProcCmdline: cmd, Console: &out, KernelRelease: "test",
		Network: func(context.Context, netconf.Options) (*netconf.Lease, error) {
			mac, _ := net.ParseMAC(testMAC)
			return &netconf.Lease{Iface: "eth0", MAC: mac, Hostname: "web1", DNS: []net.IP{net.IPv4(10, 85, 0, 1)},
				Addr: net.IPNet{IP: net.IPv4(10, 85, 0, 7), Mask: net.CIDRMask(24, 32)}}, nil
		},
		SetHostname: func(string) error { return nil },
	}
	err := s.Walk(bootSteps())
	s.out.closeFile() // as switch_root does; an open log would keep the mounts busy
	t.Logf("console:\n%s", out.String())
	return s, out.String(), err
}

func newRegistry(t *testing.T) *registry {
	reg := &registry{t: t, squashfs: image(t), keys: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFirst first@test\n", gets: map[string]int{}}
	s := sha256.Sum256(reg.squashfs)
	reg.sha = hex.EncodeToString(s[:])
	reg.ts = httptest.NewServer(reg)
	t.Cleanup(reg.ts.Close)
	return reg
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBootTwiceWithABlankDisk(t *testing.T) {
	if !inPrivateMounts(t) {
		return
	}
	root := machine(t)
	reg := newRegistry(t)
	vdbBefore := read(t, filepath.Join(root, "dev", "vdb"))
	_ = vdbBefore

	// First boot: the blank disk is initialised, the image cached on it,
	// keys generated, the VOLUME filled from the image.
	s, console, err := boot(t, root, reg, "debug livebootp.nopasswd")
	if err != nil {
		t.Fatal(err)
	}
	nr := s.NewRoot()
	if s.Plan.Action != persist.Format || s.Data == "" || s.Cached {
		t.Fatalf("plan %+v data %q cached %v", s.Plan, s.Data, s.Cached)
	}
	cache := persist.CachePath(s.Data, reg.sha)
	if bf, err := mount.BackingFile("/sys", s.Loop); err != nil || bf != cache {
		t.Errorf("loop device %s backed by %q (%v), want the cache %s", s.Loop, bf, err, cache)
	}
	if _, err := os.Stat(filepath.Join(root, dirWork, "filesystem.squashfs")); !os.IsNotExist(err) {
		t.Errorf("RAM copy of the squashfs still there: %v", err)
	}
	if got := read(t, filepath.Join(nr, "etc", "hostname")); got != "web1\n" {
		t.Errorf("hostname %q", got)
	}
	if got := read(t, filepath.Join(nr, "etc", "hosts")); !strings.Contains(got, "127.0.1.1\tweb1\n") {
		t.Errorf("hosts %q", got)
	}
	if got := read(t, filepath.Join(nr, "root", ".ssh", "authorized_keys")); got != reg.keys {
		t.Errorf("authorized_keys %q", got)
	}
	if got := read(t, filepath.Join(nr, "etc", "resolv.conf")); !strings.Contains(got, "nameserver 10.85.0.1\n") {
		t.Errorf("resolv.conf %q", got)
	}
	if got := read(t, filepath.Join(nr, "etc", "shadow")); !strings.HasPrefix(got, "root::") {
		t.Errorf("shadow %q", got)
	}
	if got := read(t, filepath.Join(s.Data, "script-ran")); got != "web1 web/1 "+testMAC+"\n" {
		t.Errorf("startup.d script wrote %q", got)
	}
	if got := read(t, filepath.Join(nr, "var", "log", "live", "livebootp-startup.log")); !strings.Contains(got, "livebootp: cmdline ...") ||
		!strings.Contains(got, "livebootp: scripts: 10-record ok") {
		t.Errorf("boot log:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(nr, "usr", "lib", "livebootp", "functions.sh")); err != nil {
		t.Error(err)
	}
	os.WriteFile(filepath.Join(nr, "var", "www", "index.html"), []byte("written on the target\n"), 0o644)
	fps := append([]string(nil), s.Report().HostKeys...)
	for _, k := range []string{"ssh_host_ed25519_key", "ssh_host_ecdsa_key.pub", "ssh_host_rsa_key"} {
		if _, err := os.Stat(filepath.Join(nr, "etc", "ssh", k)); err != nil {
			t.Error(err)
		}
	}
	if len(reg.reports) != 1 {
		t.Fatalf("%d reports", len(reg.reports))
	}
	r := reg.reports[0]
	if r.Hostname != "web1" || r.Image != "web/1" || len(r.HostKeys) != 3 || r.SquashfsCached ||
		!strings.Contains(r.Persistent, "initialised this boot") || r.Uptime <= 0 || len(r.Steps) != len(bootSteps())-1 {
		t.Errorf("report %+v", r)
	}
	if !strings.Contains(console, "livebootp: fetch: ") || !strings.Contains(console, "sha256 verified") {
		t.Errorf("console lacks the fetch lines")
	}
	for _, w := range r.Warnings {
		if !strings.Contains(w, "nopasswd") {
			t.Errorf("unexpected warning %q", w)
		}
	}

	// Reboot: everything unmounted; the registry's key file changes.
	reboot(t, root)
	reg.mu.Lock()
	reg.keys = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAISecond second@test\n"
	squashGets := reg.gets["/images/web/1/filesystem.squashfs"]
	reg.mu.Unlock()

	s, _, err = boot(t, root, reg, "")
	if err != nil {
		t.Fatal(err)
	}
	nr = s.NewRoot()
	if s.Plan.Action != persist.Use || !s.Cached {
		t.Errorf("second boot: plan %+v cached %v", s.Plan.Action, s.Cached)
	}
	if reg.gets["/images/web/1/filesystem.squashfs"] != squashGets {
		t.Error("second boot downloaded the squashfs again")
	}
	if got := s.Report().HostKeys; !reflect.DeepEqual(got, fps) {
		t.Errorf("host keys changed: %v -> %v", fps, got)
	}
	if got := read(t, filepath.Join(nr, "var", "www", "index.html")); got != "written on the target\n" {
		t.Errorf("VOLUME after reboot: %q", got)
	}
	if got := read(t, filepath.Join(nr, "root", ".ssh", "authorized_keys")); got != reg.keys {
		t.Errorf("authorized_keys after the change: %q", got)
	}
	if got := read(t, filepath.Join(nr, "etc", "shadow")); !strings.HasPrefix(got, "root:*:") {
		t.Errorf("shadow without nopasswd: %q", got)
	}
	if r := reg.reports[1]; !r.SquashfsCached || len(r.Warnings) != 0 {
		t.Errorf("second report: cached %v warnings %q", r.SquashfsCached, r.Warnings)
	}

	// Third boot with the registry's key endpoint failing: last boot's keys.
	reboot(t, root)
	reg.mu.Lock()
	reg.keysDown = true
	reg.mu.Unlock()
	s, _, err = boot(t, root, reg, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(s.NewRoot(), "root", ".ssh", "authorized_keys")); got != reg.keys {
		t.Errorf("authorized_keys fallback: %q", got)
	}
	if w := reg.reports[2].Warnings; len(w) != 1 || !strings.Contains(w[0], "from the last boot") {
		t.Errorf("warnings %q", w)
	}

	// Fourth boot with a new image on the registry: it is downloaded
	// straight into the disk's cache, mounted from there, and replaces the
	// old one in the cache.
	reboot(t, root)
	reg.mu.Lock()
	reg.keysDown = false
	oldSHA := reg.sha
	reg.squashfs = append(slices.Clone(reg.squashfs), make([]byte, 4096)...) // trailing bytes: a squashfs all the same
	sum := sha256.Sum256(reg.squashfs)
	reg.sha = hex.EncodeToString(sum[:])
	reg.mu.Unlock()
	s, _, err = boot(t, root, reg, "")
	if err != nil {
		t.Fatal(err)
	}
	newCache := persist.CachePath(s.Data, reg.sha)
	if s.Cached || s.Squashfs != newCache {
		t.Errorf("new image: cached %v, squashfs %s, want downloaded into %s", s.Cached, s.Squashfs, newCache)
	}
	if bf, err := mount.BackingFile("/sys", s.Loop); err != nil || bf != newCache {
		t.Errorf("new image: loop device %s backed by %q (%v), want %s", s.Loop, bf, err, newCache)
	}
	if st, err := os.Stat(newCache); err != nil || st.Size() != int64(len(reg.squashfs)) {
		t.Errorf("new image in the cache: %v", err)
	}
	if _, err := os.Stat(persist.CachePath(s.Data, oldSHA)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old image is still in the cache: %v", err)
	}
}

func TestBootRefusesACorruptSquashfs(t *testing.T) {
	if !inPrivateMounts(t) {
		return
	}
	root := machine(t)
	reg := newRegistry(t)
	reg.squashfs = append([]byte(nil), reg.squashfs...)
	reg.squashfs[len(reg.squashfs)/2] ^= 0xff // the manifest still has the good sum
	_, console, err := boot(t, root, reg, "livebootp.persistent=none")
	var se *StepError
	if !errors.As(err, &se) || se.Step != "fetch" {
		t.Fatalf("err = %v", err)
	}
	var ce *fetch.ChecksumError
	if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "FAILED: fetch: squashfs checksum mismatch: got ") ||
		!strings.Contains(err.Error(), "want "+reg.sha+"; the image on the registry is corrupt or changed: rebuild or re-upload it; check: ") {
		t.Errorf("err = %v", err)
	}
	if strings.Contains(console, "rootfs") {
		t.Error("went on after the checksum mismatch")
	}
}

// A disk that holds a filesystem without the label is never touched.
func TestBootLeavesAnUnlabelledDiskAlone(t *testing.T) {
	if !inPrivateMounts(t) {
		return
	}
	root := machine(t)
	vdb := filepath.Join(root, "dev", "vdb")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", vdb).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	before := sha256.Sum256([]byte(read(t, vdb)))
	reg := newRegistry(t)
	s, _, err := boot(t, root, reg, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Data != "" || s.Plan.Action != persist.None {
		t.Errorf("plan %+v", s.Plan)
	}
	unmountUnder(t, root)
	if sha256.Sum256([]byte(read(t, vdb))) != before {
		t.Error("the unlabelled disk changed")
	}
	w := strings.Join(reg.reports[0].Warnings, "\n")
	if !strings.Contains(w, "no persistent storage: no filesystem labelled \"livebootp-data\" and no blank disk") ||
		!strings.Contains(w, "new SSH host keys this boot") {
		t.Errorf("warnings:\n%s", w)
	}
}
