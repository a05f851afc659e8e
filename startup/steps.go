package startup

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livebootp/livebootp/startup/cmdline"
	"github.com/livebootp/livebootp/startup/fetch"
	"github.com/livebootp/livebootp/startup/netconf"
	"github.com/livebootp/livebootp/startup/report"
	"github.com/livebootp/livebootp/startup/safefile"
	"github.com/livebootp/livebootp/startup/scripts"
	"github.com/livebootp/livebootp/startup/sshkeys"
	"github.com/livebootp/livebootp/wire"
)

// Steps is the boot, in order.
func Steps() []Step {
	return []Step{
		{Name: "mount", Run: mountAPI, Fatal: true,
			Hint: "the kernel configuration: proc, sysfs, devtmpfs and tmpfs must be built in"},
		{Name: "cmdline", Run: readCmdline, Fatal: true,
			Hint: "the host's boot script on the registry (the livebootp.* kernel arguments)"},
		// The network's drivers; the others load in the background, and
		// the steps wait for those they use.
		{Name: "modules", Run: loadNetworkModules,
			Hint: "the initrd's /etc/livebootp/modules and /lib/modules/<kernel>: rebuild the image with the kernel it boots"},
		{Name: "disks", Run: peekDisks},
		{Name: "network", Run: network, Fatal: true,
			Hint: "the link (cable, bridge), the NIC's driver in the initrd's module list, and that the registry answers DHCP for this MAC"},
		{Name: "manifest", Run: fetchManifest,
			Hint: "that the registry serves images/<name>/<version>/manifest.json"},
		{Name: "storage", Run: findStorage,
			Hint: "livebootp.persistent= and what the disk holds (blkid, wipefs -n)"},
		{Name: "fetch", Run: fetchImage, Fatal: true,
			Hint: "the registry's address and that the image is there (curl -I the squashfs URL)"},
		{Name: "rootfs", Run: mountRootfs, Fatal: true, Modules: []string{"squashfs", "loop", "overlay"},
			Hint: "squashfs, loop and overlay in the initrd's module list, and enough RAM for the image"},
		{Name: "persistent", Run: persistentStorage,
			Hint: "the persistent disk (dmesg, e2fsck) and the image's VOLUMEs"},
		{Name: "bootlog", Run: openBootLog},
		{Name: "sshkeys", Run: hostKeys,
			Hint: "the files in livebootp/ssh on the persistent disk"},
		{Name: "hostname", Run: hostname},
		{Name: "authorized_keys", Run: authorizedKeys,
			Hint: "the host's ssh-authorized-keys file on the registry"},
		{Name: "nopasswd", Run: noPasswd},
		{Name: "move", Run: moveMounts, Fatal: true},
		{Name: "scripts", Run: runScripts,
			Hint: "the scripts in /etc/livebootp/startup.d (run them by hand from the rescue shell with `debug`)"},
		{Name: "report", Run: sendReport,
			Hint: "that the registry's HTTP port answers"},
		{Name: "switch_root", Run: switchRoot, Fatal: true,
			Hint: "that the image has /sbin/init (or /lib/systemd/systemd)"},
	}
}

// mountAPI mounts /proc, /sys, /dev (devtmpfs: there is no udev in the
// initrd) and /run.
func mountAPI(s *State) error {
	for _, m := range []struct {
		fstype, dir string
		flags       uintptr
		data        string
	}{
		{"proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "sys", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "dev", unix.MS_NOSUID, "mode=0755"},
		{"tmpfs", "run", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	} {
		dir := filepath.Join(s.Root, m.dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := s.Mounter.Mount(m.fstype, dir, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return err
		}
	}
	for _, d := range []string{dirNewRoot, dirWork} {
		if err := os.MkdirAll(filepath.Join(s.Root, d), 0o755); err != nil {
			return err
		}
	}
	return nil
}

func readCmdline(s *State) error {
	b, err := os.ReadFile(s.ProcCmdline)
	if err != nil {
		return err
	}
	a, err := cmdline.Parse(strings.TrimSpace(string(b)))
	s.Args = a
	if err != nil {
		return err
	}
	s.out.mu.Lock()
	s.out.debug = a.Debug
	s.out.mu.Unlock()
	sq, err := a.SquashfsURL()
	if err != nil {
		return err
	}
	s.HTTP = fetch.NewClient(a.Insecure)
	what := a.Image
	if what == "" {
		what = "image"
	}
	s.infof("%s from %s", what, sq)
	if a.Insecure {
		s.infof("livebootp.insecure: HTTPS certificates are not verified")
	}
	return nil
}

func network(s *State) error {
	l, err := s.Network(s.Context, netconf.Options{BootIF: s.Args.BootIF, Log: s.debugf})
	if err != nil {
		return err
	}
	s.Lease = l
	s.MAC = strings.ToLower(l.MAC.String())
	s.infof("%s", l)
	if len(l.DNS) > 0 {
		// For the init's own name lookups (a registry given by name).
		etc := filepath.Join(s.Root, "etc")
		os.MkdirAll(etc, 0o755)
		if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), netconf.ResolvConf(l), 0o644); err != nil {
			s.warnf("%v", err)
		}
	}
	s.Hostname = chooseHostname(l.Hostname, s.Args.Hostname, l.MAC)
	if err := s.SetHostname(s.Hostname); err != nil {
		s.warnf("set host name %q: %v", s.Hostname, err)
	}
	return nil
}

// chooseHostname: the registry's DHCP option 12 first, then the kernel
// argument, else one derived from the MAC so hosts stay distinguishable.
func chooseHostname(dhcp, arg string, mac net.HardwareAddr) string {
	for _, h := range []string{dhcp, arg} {
		if h != "" && cmdline.ValidHostname(h) {
			return h
		}
	}
	return "livebootp-" + strings.ReplaceAll(mac.String(), ":", "")
}

// manifestAttempts bounds the manifest's retries: 8 attempts wait 14 s in
// all, enough for a registry being restarted; 2 cost a boot its
// persistent VOLUMEs over a 3 s restart (TestVMFaultRegistryRestart). A
// 404 still ends them at once.
const manifestAttempts = 8

func fetchManifest(s *State) error {
	url := s.Args.ManifestURL()
	s.SHA256, s.VerityRoot = s.Args.SHA256, s.Args.Verity
	if url == "" {
		s.infof("no manifest URL (livebootp.squashfs does not end in %s): no volumes", wire.ImageSquashfs)
		return nil
	}
	b, err := fetch.Get(s.Context, s.HTTP, url, 1<<20, manifestAttempts)
	if err != nil {
		return fmt.Errorf("%w; the image's VOLUMEs will not be persistent", err)
	}
	var m wire.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %v; the image's VOLUMEs will not be persistent", url, err)
	}
	s.Manifest = &m
	if f, ok := m.Files[wire.ImageSquashfs]; ok && f.SHA256 != "" {
		switch {
		case s.SHA256 == "":
			s.SHA256 = strings.ToLower(f.SHA256)
			s.infof("sha256 of the squashfs from the manifest")
		case !strings.EqualFold(s.SHA256, f.SHA256):
			s.warnf("livebootp.sha256 %s differs from the manifest's %s; the kernel argument wins", s.SHA256, f.SHA256)
		}
	}
	if m.Verity != nil && m.Verity.RootHash != "" {
		root := strings.ToLower(m.Verity.RootHash)
		b, err := hex.DecodeString(root)
		switch {
		case err != nil || len(b) != 32:
			s.warnf("the manifest's verity root_hash %q is not 64 hexadecimal digits: ignored", m.Verity.RootHash)
		case s.VerityRoot == "" && s.Args.SHA256 != "":
			// A checksum pinned on the command line is checked as it
			// is: the manifest comes from beside the image and must not
			// vouch for it in its place.
			s.debugf("livebootp.sha256 given without livebootp.verity: the whole image is hashed")
		case s.VerityRoot == "":
			s.VerityRoot = root
		case s.VerityRoot != root:
			s.warnf("livebootp.verity %s differs from the manifest's %s; the kernel argument wins", s.VerityRoot, root)
		}
	}
	s.infof("%s/%s, volumes: %s", m.Name, m.Version, orNone(m.Volumes))
	return nil
}

func orNone(v []string) string {
	if len(v) == 0 {
		return "none"
	}
	return strings.Join(v, " ")
}

func hostKeys(s *State) error {
	dir := ""
	if s.Data != "" {
		dir = filepath.Join(s.Data, "livebootp", "ssh")
	}
	keys, created, err := sshkeys.Ensure(dir, "root@"+s.Hostname, s.keygen)
	want := len(sshkeys.Types())
	if s.rsaLater {
		want-- // finished after switch_root (see hostkeys.go)
	}
	if len(keys) < want {
		// Persistent storage could not give every key (a damaged disk):
		// new ones in RAM for this boot, so sshd still starts; the files
		// on the disk stay as they are for the operator.
		var temp []string
		var terr error
		keys, temp, terr = completeKeys(keys, s.keygen, "root@"+s.Hostname)
		if len(temp) > 0 {
			s.warnf("%s host keys for this boot only: %v", strings.Join(temp, ", "), err)
		}
		err = errors.Join(err, terr)
	}
	s.Keys = keys
	s.syncData()
	etcSSH := filepath.Join(s.NewRoot(), "etc", "ssh")
	if ierr := sshkeys.Install(etcSSH, keys); ierr != nil {
		err = errors.Join(err, ierr)
	}
	if s.rsaLater {
		// An RSA key the image itself carries would be every host's, and
		// sshd would not wait for this one's.
		for _, f := range []string{"ssh_host_rsa_key", "ssh_host_rsa_key.pub"} {
			if rerr := os.Remove(filepath.Join(etcSSH, f)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
		s.infof("rsa host key: still being generated; it is kept and installed after switch_root (sshd waits for it)")
	}
	switch {
	case dir == "":
		s.warnf("no persistent storage: new SSH host keys this boot (%s)", strings.Join(created, ", "))
	case len(created) > 0:
		s.infof("generated %s host keys, kept in %s", strings.Join(created, ", "), dir)
	default:
		s.infof("host keys from %s", dir)
	}
	for _, k := range keys {
		s.debugf("%s", k.Fingerprint)
	}
	return err
}

// completeKeys adds a new key for each type missing from keys, in
// sshkeys.Types() order, and names the types it added.
func completeKeys(keys []sshkeys.Key, gen sshkeys.Generator, comment string) ([]sshkeys.Key, []string, error) {
	if gen == nil {
		gen = sshkeys.Generate
	}
	var out []sshkeys.Key
	var added []string
	var errs []error
	for _, typ := range sshkeys.Types() {
		i := slices.IndexFunc(keys, func(k sshkeys.Key) bool { return k.Type == typ })
		if i >= 0 {
			out = append(out, keys[i])
			continue
		}
		k, err := gen(typ, comment)
		if errors.Is(err, sshkeys.ErrLater) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, k)
		added = append(added, typ)
	}
	return out, added, errors.Join(errs...)
}

// hostname writes /etc/hostname, the 127.0.1.1 line of /etc/hosts (the
// Debian convention for a host without a fixed address in DNS) and
// /etc/resolv.conf from DHCP.
func hostname(s *State) error {
	root := s.NewRoot()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		return err
	}
	if err := safefile.WriteFile(filepath.Join(root, "etc", "hostname"), []byte(s.Hostname+"\n"), 0o644); err != nil {
		return err
	}
	hostsPath := filepath.Join(root, "etc", "hosts")
	old, err := os.ReadFile(hostsPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := safefile.WriteFile(hostsPath, hostsFile(old, s.Hostname), 0o644); err != nil {
		return err
	}
	s.infof("%s", s.Hostname)
	// The DHCP servers for the image too, unless it manages resolv.conf
	// itself (a symlink into systemd-resolved or resolvconf).
	if s.Lease != nil && len(s.Lease.DNS) > 0 {
		rc := filepath.Join(root, "etc", "resolv.conf")
		if st, err := os.Lstat(rc); err == nil && st.Mode()&os.ModeSymlink != 0 {
			s.debugf("/etc/resolv.conf is a symlink: left to the image")
		} else if err := safefile.WriteFile(rc, netconf.ResolvConf(s.Lease), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func hostsFile(old []byte, name string) []byte {
	entry := "127.0.1.1\t" + name
	if short, _, ok := strings.Cut(name, "."); ok {
		entry += " " + short
	}
	var out []string
	haveLocal := false
	for _, line := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "127.0.1.1" {
			continue
		}
		if len(f) > 1 && f[0] == "127.0.0.1" {
			haveLocal = true
		}
		if line != "" || len(out) > 0 {
			out = append(out, line)
		}
	}
	if !haveLocal {
		out = append([]string{"127.0.0.1\tlocalhost"}, out...)
	}
	// Right after the localhost line, where Debian puts it.
	for i, line := range out {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "127.0.0.1" {
			out = append(out[:i+1], append([]string{entry}, out[i+1:]...)...)
			break
		}
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// authorizedKeys installs root's authorized_keys from the registry
// (GET {registry}/boot/<mac>.keys), keeping a copy on persistent storage
// for boots where the registry cannot be reached.
func authorizedKeys(s *State) error {
	dst := filepath.Join(s.NewRoot(), "root", ".ssh", "authorized_keys")
	var keep string
	if s.Data != "" {
		keep = filepath.Join(s.Data, "livebootp", "authorized_keys")
	}
	if s.Args.Registry == "" {
		s.infof("no livebootp.registry: the image's own authorized_keys, if any")
		return nil
	}
	url := s.Args.Registry + wire.PathBoot + s.MAC + ".keys"
	b, err := fetch.Get(s.Context, s.HTTP, url, 1<<20, 3)
	var he *fetch.HTTPError
	switch {
	case err == nil:
		if err := installKeys(dst, b); err != nil {
			return err
		}
		if keep != "" {
			if err := safefile.WriteFile(keep, b, 0o600); err != nil {
				s.warnf("keep a copy for the next boot: %v", err)
			}
		}
		s.infof("%d keys from %s", countKeys(b), url)
		return nil
	case errors.As(err, &he) && he.Status == 404:
		return fmt.Errorf("the registry has no authorized_keys for %s (%v): root has no key from the registry", s.MAC, err)
	case keep != "":
		prev, rerr := os.ReadFile(keep)
		if rerr != nil {
			return fmt.Errorf("%v; and no copy from an earlier boot", err)
		}
		if err2 := installKeys(dst, prev); err2 != nil {
			return err2
		}
		s.warnf("%v; using the %d keys from the last boot", err, countKeys(prev))
		return nil
	default:
		return fmt.Errorf("%v; no persistent storage holds an earlier copy", err)
	}
}

func installKeys(dst string, b []byte) error {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	if err := os.Lchown(dir, 0, 0); err != nil && !errors.Is(err, unix.EPERM) {
		return err
	}
	return safefile.WriteFile(dst, b, 0o600)
}

func countKeys(b []byte) int {
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			n++
		}
	}
	return n
}

// noPasswd empties root's password (livebootp.nopasswd), for debugging.
func noPasswd(s *State) error {
	if !s.Args.NoPasswd {
		s.debugf("not asked (livebootp.nopasswd)")
		return nil
	}
	for _, f := range []string{"shadow", "passwd"} {
		p := filepath.Join(s.NewRoot(), "etc", f)
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		out, changed := emptyRootPassword(b, f == "passwd")
		if !changed {
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if err := safefile.WriteFile(p, out, st.Mode().Perm()); err != nil {
			return err
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			os.Chown(p, int(sys.Uid), int(sys.Gid))
		}
		s.warnf("root has no password (livebootp.nopasswd): anyone on the console can log in")
		return nil
	}
	return errors.New("no /etc/shadow or /etc/passwd with a root entry in the image")
}

// emptyRootPassword clears the second field of root's line. In passwd it
// only does so when the field is not "x" (the password is then in shadow).
func emptyRootPassword(b []byte, passwd bool) ([]byte, bool) {
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 && f[0] == "root" {
			if passwd && f[1] == "x" {
				return b, false
			}
			lines[i] = "root::" + f[2]
			return []byte(strings.Join(lines, "\n")), true
		}
	}
	return b, false
}

// openBootLog starts /var/log/live/livebootp-startup.log in the image with
// everything printed so far (debug only), after the persistent volumes so
// a persistent /var/log keeps it.
func openBootLog(s *State) error {
	if !s.Args.Debug {
		return nil
	}
	p := filepath.Join(s.NewRoot(), "var", "log", "live", "livebootp-startup.log")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	s.out.mu.Lock()
	f.Write(s.out.buf)
	s.out.file, s.out.buf = f, nil
	s.out.mu.Unlock()
	s.infof("logging to /var/log/live/livebootp-startup.log")
	return nil
}

func runScripts(s *State) error {
	root := s.NewRoot()
	if err := scripts.InstallLibrary(root); err != nil {
		return err
	}
	cmdlineFile := "/run/livebootp/cmdline"
	if err := scripts.WriteCmdline(filepath.Join(root, cmdlineFile), s.Args.Params); err != nil {
		return err
	}
	persistent := ""
	if s.Data != "" {
		persistent = "/var/lib/livebootp"
	}
	libPath, cmdPath := scripts.LibraryPath, cmdlineFile
	if !s.Chroot {
		libPath, cmdPath = filepath.Join(root, libPath), filepath.Join(root, cmdPath)
		if persistent != "" {
			persistent = filepath.Join(root, persistent)
		}
	}
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=linux", "LANG=C.UTF-8",
		"LIVEBOOTP_FUNCTIONS=" + libPath, "LIVEBOOTP_CMDLINE=" + cmdPath, "LIVEBOOTP_PERSISTENT=" + persistent,
		"LIVEBOOTP_REGISTRY=" + s.Args.Registry, "LIVEBOOTP_IMAGE=" + s.Args.Image,
		"LIVEBOOTP_HOSTNAME=" + s.Hostname, "LIVEBOOTP_MAC=" + s.MAC,
	}
	if s.Args.Debug {
		env = append(env, "LIVEBOOTP_DEBUG=1")
	}
	if s.Args.Insecure {
		env = append(env, "LIVEBOOTP_INSECURE=1")
	}
	if s.Manifest != nil {
		env = append(env, s.Manifest.Env...)
	}
	r := scripts.Runner{Root: root, Chroot: s.Chroot, Env: env, Output: s.out}
	names, skipped, err := r.List()
	if err != nil {
		return err
	}
	for _, sk := range skipped {
		s.warnf("skipped %s", sk)
	}
	if len(names) == 0 {
		s.infof("none in %s", scripts.Dir)
		return nil
	}
	// Scripts may use any disk: every driver of the initrd, as before
	// the steps started loading only what they use.
	if err := s.needModules("for the scripts", func(string) bool { return true }); err != nil {
		s.warnf("%v", err)
	}
	res, err := r.Run(s.Context)
	var failed []string
	for _, x := range res {
		if x.Err != nil {
			failed = append(failed, x.Err.Error())
			continue
		}
		s.infof("%s ok (%s)", x.Name, x.Duration.Round(time.Millisecond))
	}
	if len(failed) > 0 {
		err = errors.Join(err, errors.New(strings.Join(failed, "; ")))
	}
	return err
}

func sendReport(s *State) error {
	s.finishRSA()
	r := s.Report()
	// After this report: the child's, with the RSA key, must come last.
	defer s.handOverRSA(r)
	if s.Args.Registry == "" || s.MAC == "" {
		s.infof("no registry to report to")
		return nil
	}
	ctx, cancel := context.WithTimeout(s.Context, 15*time.Second)
	defer cancel()
	if err := report.Send(ctx, s.HTTP, s.Args.Registry, s.MAC, r); err != nil {
		switch {
		case s.Root != "/": // tests: no child processes
		case s.rsaLater && s.rsa != nil:
			s.rsaRetry = true // the RSA key's child carries it
			err = fmt.Errorf("%w; sent again after switch_root with the RSA host key, for up to %s", err, lateFor)
		default:
			if lerr := s.reportLater(r); lerr != nil {
				err = fmt.Errorf("%w; and it cannot be sent later: %v", err, lerr)
			} else {
				err = fmt.Errorf("%w; sent again after switch_root, for up to %s", err, lateFor)
			}
		}
		return err
	}
	s.infof("sent to %s (uptime %s)", report.URL(s.Args.Registry, s.MAC), r.Uptime.Round(10*time.Millisecond))
	return nil
}

// Report is the boot report as it stands.
func (s *State) Report() wire.Report {
	img := s.Args.Image
	if img == "" && s.Manifest != nil {
		img = s.Manifest.Name + "/" + s.Manifest.Version
	}
	return wire.Report{
		Hostname:       s.Hostname,
		Image:          img,
		Kernel:         s.kernelRelease(),
		Steps:          append([]wire.Step(nil), s.Steps...),
		Warnings:       append([]string(nil), s.Warnings...),
		HostKeys:       sshkeys.Fingerprints(s.Keys),
		Persistent:     s.DataDesc,
		SquashfsCached: s.Cached,
		Verification:   s.Verification,
		Uptime:         report.Uptime(),
	}
}
