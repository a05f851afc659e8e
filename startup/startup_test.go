package startup

import (
	"golang.org/x/sys/unix"

	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livebootp/livebootp/startup/cmdline"
	"github.com/livebootp/livebootp/wire"
)

// clock advances one second per reading, so step durations are exact.
func clock() func() time.Time {
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time { t = t.Add(time.Second); return t }
}

type hinted struct{}

func (hinted) Error() string { return "bad bytes" }
func (hinted) Hint() string  { return "the file on the server" }

func TestWalk(t *testing.T) {
	var order []string
	step := func(name string, err error, fatal bool) Step {
		return Step{Name: name, Fatal: fatal, Hint: "hint for " + name, Run: func(s *State) error {
			order = append(order, name)
			s.infof("working")
			return err
		}}
	}
	var out bytes.Buffer
	s := &State{Root: t.TempDir(), Console: &out, Now: clock()}
	err := s.Walk([]Step{
		step("one", nil, true),
		step("two", errors.New("not great"), false),
		step("three", errors.New("broken"), true),
		step("four", nil, true),
	})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "three" {
		t.Fatalf("Walk = %v", err)
	}
	if got := err.Error(); got != "FAILED: three: broken; check: hint for three" {
		t.Errorf("error %q", got)
	}
	if strings.Join(order, " ") != "one two three" {
		t.Errorf("ran %v", order)
	}
	want := []wire.Step{{Name: "one", Duration: time.Second}, {Name: "two", Duration: time.Second, Error: "not great"},
		{Name: "three", Duration: time.Second, Error: "broken"}}
	if !reflect.DeepEqual(s.Steps, want) {
		t.Errorf("steps %+v", s.Steps)
	}
	if !reflect.DeepEqual(s.Warnings, []string{"two: not great"}) {
		t.Errorf("warnings %q", s.Warnings)
	}
	wantOut := "livebootp: one ...\nlivebootp: one: working\nlivebootp: two ...\nlivebootp: two: working\n" +
		"livebootp: WARNING: two: not great\nlivebootp: three ...\nlivebootp: three: working\n"
	if out.String() != wantOut {
		t.Errorf("console:\n%s\nwant:\n%s", out.String(), wantOut)
	}

	// An error that knows where to look overrides the step's hint.
	err = (&State{Root: t.TempDir(), Console: &out}).Walk([]Step{{Name: "fetch", Fatal: true, Hint: "generic",
		Run: func(*State) error { return hinted{} }}})
	if err == nil || err.Error() != "FAILED: fetch: bad bytes; check: the file on the server" {
		t.Errorf("hinted: %v", err)
	}
}

func TestStepsTable(t *testing.T) {
	seen := map[string]bool{}
	var names []string
	for _, st := range Steps() {
		if seen[st.Name] || st.Run == nil {
			t.Errorf("step %q duplicated or without Run", st.Name)
		}
		seen[st.Name] = true
		names = append(names, st.Name)
		if st.Fatal && st.Hint == "" && st.Name != "move" {
			t.Errorf("fatal step %q has no hint", st.Name)
		}
	}
	want := "mount cmdline modules disks network manifest storage fetch rootfs persistent bootlog sshkeys hostname authorized_keys nopasswd move scripts report switch_root"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("steps %q", got)
	}
	for _, n := range []string{"mount", "cmdline", "network", "fetch", "rootfs", "move", "switch_root"} {
		for _, st := range Steps() {
			if st.Name == n && !st.Fatal {
				t.Errorf("%s must be fatal", n)
			}
		}
	}
}

func TestReadCmdline(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cmdline")
	os.WriteFile(p, []byte("console=ttyS0 livebootp.registry=http://10.85.0.1:8080 livebootp.image=web/1 debug\n"), 0o644)
	var out bytes.Buffer
	s := &State{Root: dir, ProcCmdline: p, Console: &out}
	if err := s.Walk([]Step{{Name: "cmdline", Run: readCmdline, Fatal: true}}); err != nil {
		t.Fatal(err)
	}
	if !s.Args.Debug || s.Args.Image != "web/1" || !strings.Contains(out.String(), "web/1 from http://10.85.0.1:8080/images/web/1/filesystem.squashfs") {
		t.Errorf("args %+v, console %q", s.Args, out.String())
	}
	os.WriteFile(p, []byte("console=ttyS0 quiet\n"), 0o644)
	err := (&State{Root: dir, ProcCmdline: p, Console: &out}).Walk(Steps()[1:2])
	if err == nil || !strings.Contains(err.Error(), "FAILED: cmdline: no image to boot") || !strings.Contains(err.Error(), "check: the host's boot script") {
		t.Errorf("err = %v", err)
	}
}

func TestModulePlan(t *testing.T) {
	dir := t.TempDir()
	dep := "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n" +
		"kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n" +
		"kernel/net/core/failover.ko:\n" +
		"kernel/fs/overlayfs/overlay.ko:\n" +
		"kernel/drivers/block/virtio_blk.ko.xz:\n"
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644)
	p, err := modulePlan(dir, []string{"virtio-net", "overlay", "failover", "virtio_blk", "squashfs"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko",
		"kernel/fs/overlayfs/overlay.ko", "kernel/drivers/block/virtio_blk.ko.xz"}
	if !reflect.DeepEqual(p.Order, want) || !reflect.DeepEqual(p.Missing, []string{"squashfs"}) {
		t.Errorf("plan %q missing %q", p.Order, p.Missing)
	}

	// The step loads each module after its dependencies, from
	// <root>/lib/modules/<release>; a failure is reported, the rest loads.
	root := t.TempDir()
	mods := filepath.Join(root, "lib", "modules", "6.1.0-test")
	os.MkdirAll(mods, 0o755)
	os.WriteFile(filepath.Join(mods, "modules.dep"), []byte(dep), 0o644)
	os.MkdirAll(filepath.Join(root, "etc", "livebootp"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "livebootp", "modules"), []byte("# NICs\nvirtio_net\n\noverlay\n"), 0o644)
	var mu sync.Mutex
	var loaded []string
	s := &State{Root: root, KernelRelease: "6.1.0-test", Console: &bytes.Buffer{}, LoadModule: func(p string) error {
		rel, _ := filepath.Rel(mods, p)
		mu.Lock()
		loaded = append(loaded, rel)
		mu.Unlock()
		if strings.Contains(p, "overlay") {
			return errors.New("exec format error")
		}
		if strings.Contains(p, "net_failover") {
			return unix.ENODEV // no such hardware: not a problem
		}
		return nil
	}}
	err = loadModules(s)
	pos := map[string]int{}
	for i, f := range loaded {
		pos[f] = i
	}
	if len(loaded) != 4 || pos["kernel/net/core/failover.ko"] > pos["kernel/drivers/net/net_failover.ko"] ||
		pos["kernel/drivers/net/net_failover.ko"] > pos["kernel/drivers/net/virtio_net.ko"] {
		t.Errorf("loaded in the order %q", loaded)
	}
	if err == nil || err.Error() != "overlay: exec format error" {
		t.Errorf("err = %v", err)
	}
	// Without modules.dep the files are found by name, loaded one by one.
	os.Remove(filepath.Join(mods, "modules.dep"))
	os.MkdirAll(filepath.Join(mods, "kernel", "fs"), 0o755)
	os.WriteFile(filepath.Join(mods, "kernel", "fs", "squashfs.ko"), nil, 0o644)
	os.WriteFile(filepath.Join(mods, "kernel", "fs", "loop.ko"), nil, 0o644)
	p, _ = modulePlan(mods, []string{"squashfs", "loop"})
	if !reflect.DeepEqual(p.Order, []string{"kernel/fs/squashfs.ko", "kernel/fs/loop.ko"}) ||
		!reflect.DeepEqual(p.Deps["kernel/fs/loop.ko"], []string{"kernel/fs/squashfs.ko"}) {
		t.Errorf("plan without modules.dep: %+v", p)
	}
}

// The modules step returns once the network's modules are in (NIC
// drivers, the virtio bus, their dependencies) and starts the others in
// the background, but for the SCSI and ATA stacks; a step that needs a
// module waits for it (a filesystem with the crypto modules it may ask
// for); the disk controllers load when asked for.
func TestModulesOnDemand(t *testing.T) {
	root, mods := moduleTree(t, map[string]string{"modules.dep": "kernel/fs/jbd2/jbd2.ko:\n" +
		"kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\n" +
		"kernel/crypto/crc32c_generic.ko:\n" +
		"kernel/drivers/virtio/virtio.ko:\n" +
		"kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko\n" +
		"kernel/net/core/failover.ko:\n" +
		"kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko\n" +
		"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko\n" +
		"kernel/drivers/scsi/scsi_mod.ko:\n"})
	os.MkdirAll(filepath.Join(root, "etc", "livebootp"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "livebootp", "modules"),
		[]byte("ext4\ncrc32c_generic\nvirtio_blk\nvirtio_pci\nvirtio_net\nscsi_mod\n"), 0o644)
	var mu sync.Mutex
	var loaded []string
	release := make(chan struct{})
	var out bytes.Buffer
	s := &State{Root: root, KernelRelease: "6.1.0-test", Console: &out, LoadModule: func(p string) error {
		if !networkModule(strings.TrimPrefix(p, mods+"/")) && !strings.Contains(p, "net/core") {
			<-release // disk and filesystem modules take their time
		}
		mu.Lock()
		loaded = append(loaded, filepath.Base(p))
		mu.Unlock()
		return nil
	}}
	have := func() []string {
		mu.Lock()
		defer mu.Unlock()
		got := slices.Clone(loaded)
		slices.Sort(got)
		return got
	}
	if err := s.Walk([]Step{{Name: "modules", Run: loadNetworkModules}}); err != nil {
		t.Fatal(err)
	}
	if got, want := have(), []string{"failover.ko", "virtio.ko", "virtio_net.ko", "virtio_pci.ko"}; !reflect.DeepEqual(got, want) {
		t.Errorf("loaded when the modules step ended: %q, want %q", got, want)
	}
	close(release)
	if err := s.Walk([]Step{{Name: "persistent", Run: func(*State) error { return nil }, Modules: []string{"ext4"}}}); err != nil {
		t.Fatal(err)
	}
	if got := have(); !slices.Contains(got, "ext4.ko") || !slices.Contains(got, "jbd2.ko") || !slices.Contains(got, "crc32c_generic.ko") {
		t.Errorf("loaded after a step needed ext4: %q, want ext4, jbd2 and crc32c_generic among them", got)
	}
	s.modules.collect(s, s.modules.request(func(f string) bool { return !moduleGroup("disk-controllers")(f) }, true), "")
	if got := have(); slices.Contains(got, "scsi_mod.ko") {
		t.Errorf("a disk controller driver loaded before anything asked for it: %q", got)
	}
	if err := s.needModules("disk controllers", moduleGroup("disks")); err != nil || !slices.Contains(have(), "scsi_mod.ko") {
		t.Errorf("asked for the disk controllers: %v, loaded %q", err, have())
	}
	for _, line := range []string{"modules: 4 loaded for 6.1.0-test (network drivers)", "persistent: 3 loaded for 6.1.0-test (ext4)",
		"1 loaded for 6.1.0-test (disk controllers)"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("console lacks %q:\n%s", line, out.String())
		}
	}
}

func TestHostsFile(t *testing.T) {
	for _, tc := range []struct{ old, name, want string }{
		{"", "web1", "127.0.0.1\tlocalhost\n127.0.1.1\tweb1\n"},
		{"127.0.0.1 localhost\n127.0.1.1 old\n::1 localhost ip6-localhost\n", "web1.example.org",
			"127.0.0.1 localhost\n127.0.1.1\tweb1.example.org web1\n::1 localhost ip6-localhost\n"},
		{"10.0.0.5 db\n", "web1", "127.0.0.1\tlocalhost\n127.0.1.1\tweb1\n10.0.0.5 db\n"},
	} {
		if got := string(hostsFile([]byte(tc.old), tc.name)); got != tc.want {
			t.Errorf("hostsFile(%q, %q) = %q, want %q", tc.old, tc.name, got, tc.want)
		}
	}
}

func TestChooseHostname(t *testing.T) {
	mac := []byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	for _, tc := range []struct{ dhcp, arg, want string }{
		{"web1", "other", "web1"}, {"", "other", "other"}, {"", "", "livebootp-525400123456"}, {"bad name", "", "livebootp-525400123456"},
	} {
		if got := chooseHostname(tc.dhcp, tc.arg, mac); got != tc.want {
			t.Errorf("chooseHostname(%q, %q) = %q", tc.dhcp, tc.arg, got)
		}
	}
}

func TestNoPasswd(t *testing.T) {
	root := t.TempDir()
	etc := filepath.Join(root, dirNewRoot, "etc")
	os.MkdirAll(etc, 0o755)
	os.WriteFile(filepath.Join(etc, "shadow"), []byte("root:$6$abc:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"), 0o640)
	os.WriteFile(filepath.Join(etc, "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	s := &State{Root: root, Console: &bytes.Buffer{}, Args: cmdline.Args{NoPasswd: true}}
	if err := noPasswd(s); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(etc, "shadow"))
	st, _ := os.Stat(filepath.Join(etc, "shadow"))
	if string(b) != "root::19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n" || st.Mode().Perm() != 0o640 {
		t.Errorf("shadow %q mode %v", b, st.Mode())
	}
	if len(s.Warnings) != 1 {
		t.Errorf("warnings %q", s.Warnings)
	}
	// busybox images without shadow: passwd's field is emptied instead.
	os.Remove(filepath.Join(etc, "shadow"))
	os.WriteFile(filepath.Join(etc, "passwd"), []byte("root:abc:0:0:root:/root:/bin/sh\n"), 0o644)
	noPasswd(s)
	if b, _ := os.ReadFile(filepath.Join(etc, "passwd")); string(b) != "root::0:0:root:/root:/bin/sh\n" {
		t.Errorf("passwd %q", b)
	}
	// Not asked: untouched.
	os.WriteFile(filepath.Join(etc, "passwd"), []byte("root:abc:0:0::/:/bin/sh\n"), 0o644)
	noPasswd(&State{Root: root, Console: &bytes.Buffer{}})
	if b, _ := os.ReadFile(filepath.Join(etc, "passwd")); string(b) != "root:abc:0:0::/:/bin/sh\n" {
		t.Errorf("passwd changed without livebootp.nopasswd: %q", b)
	}
}

func TestAuthorizedKeys(t *testing.T) {
	keys := "ssh-ed25519 AAAAC3 alice\n# comment\nssh-ed25519 AAAAC3 bob\n"
	up := true
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !up:
			http.Error(w, "down", http.StatusBadGateway)
		case r.URL.Path == "/boot/52:54:00:12:34:56.keys":
			w.Write([]byte(keys))
		default:
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()
	root := t.TempDir()
	data := filepath.Join(root, "data")
	os.MkdirAll(filepath.Join(data, "livebootp"), 0o755)
	newState := func(mac string) *State {
		s := &State{Root: root, Console: &bytes.Buffer{}, HTTP: ts.Client(), MAC: mac, Data: data,
			Args: cmdline.Args{Registry: ts.URL}}
		s.defaults()
		return s
	}
	dst := filepath.Join(root, dirNewRoot, "root", ".ssh", "authorized_keys")

	s := newState("52:54:00:12:34:56")
	if err := authorizedKeys(s); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(dst)
	st, _ := os.Stat(dst)
	dst2, _ := os.Stat(filepath.Dir(dst))
	if string(b) != keys || st.Mode().Perm() != 0o600 || dst2.Mode().Perm() != 0o700 {
		t.Errorf("authorized_keys %q mode %v dir %v", b, st.Mode(), dst2.Mode())
	}

	// Registry unreachable: the copy from the last boot, with a warning.
	os.Remove(dst)
	up = false
	s = newState("52:54:00:12:34:56")
	if err := authorizedKeys(s); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != keys || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "using the 2 keys from the last boot") {
		t.Errorf("fallback: %q, warnings %q", b, s.Warnings)
	}
	// Unreachable and no earlier copy: an error for the warning list.
	os.Remove(filepath.Join(data, "livebootp", "authorized_keys"))
	if err := authorizedKeys(newState("52:54:00:12:34:56")); err == nil || !strings.Contains(err.Error(), "no copy from an earlier boot") {
		t.Errorf("no copy: %v", err)
	}
	// Unknown to the registry.
	up = true
	if err := authorizedKeys(newState("52:54:00:00:00:01")); err == nil || !strings.Contains(err.Error(), "no authorized_keys for 52:54:00:00:00:01") {
		t.Errorf("404: %v", err)
	}
}
