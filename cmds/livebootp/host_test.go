package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/bootp/registry"
	"golang.org/x/crypto/bcrypt"
)

// hostConfig writes a configuration that needs no detection and serves
// nothing but the admin socket sock ("off" for none), with one host.
func hostConfig(t *testing.T, sock string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"images/app/1", "images/app/2", "keys"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "keys", "ops"), []byte("ssh-ed25519 AAAA test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := `# lab registry
bootp-registry:
  interface: eth0
  server-address: 10.9.0.1
  subnet: 10.9.0.0/24
  routers: []
  domain-name: lab.example
  domain-name-servers: []
  dhcp-listen: "off"
  tftp-listen: "off"
  http-listen: "off"
  admin-socket: "` + sock + `"
  images-dir: images
  ssh-authorized-keys-dir: keys

hosts:
  web-1:   # the first one
    hardware-ethernet: "52:54:00:00:00:01"
    fixed-address: 10.9.0.11
    image-name: app/1
`
	p := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, nil, &out, &errb)
	return out.String() + errb.String(), err
}

func TestHostEdits(t *testing.T) {
	path := hostConfig(t, "off")
	read := func() string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	orig := read()

	out, err := runCLI(t, "host", "add", "web-2", "--mac", "52:54:00:00:00:02", "--address", "10.9.0.12", "--image", "app/1", "--keys", "ops", "-config", path)
	if err != nil {
		t.Fatalf("host add: %v\n%s", err, out)
	}
	want := orig + "  web-2:\n    hardware-ethernet: \"52:54:00:00:00:02\"\n    fixed-address: \"10.9.0.12\"\n    image-name: app/1\n    ssh-authorized-keys: ops\n"
	if got := read(); got != want {
		t.Fatalf("after host add:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(out, path+":21: added host web-2 (52:54:00:00:00:02, 10.9.0.12, app/1)") || !strings.Contains(out, "admin-socket is off") {
		t.Errorf("host add said:\n%s", out)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 as before", st.Mode().Perm())
	}

	// Flags before the name work too; an image that does not exist is
	// the loader's problem, at the line of the edited text, and nothing
	// is written.
	before := read()
	out, err = runCLI(t, "host", "set", "-config", path, "--image", "app/9", "web-2")
	if !errors.Is(err, errReported) || !strings.Contains(out, path+":24:17: image app/9:") || !strings.Contains(out, "nothing was written") {
		t.Errorf("set to a missing image: %v\n%s", err, out)
	}
	// A MAC already used: the problem names the other host and its line.
	out, err = runCLI(t, "host", "add", "web-3", "--mac", "52:54:00:00:00:01", "--address", "10.9.0.13", "--image", "app/1", "-config", path)
	if !errors.Is(err, errReported) || !strings.Contains(out, path+":27:24: hardware-ethernet 52:54:00:00:00:01 of host \"web-3\" is already used by host \"web-1\" (line 17)") {
		t.Errorf("add with a used MAC: %v\n%s", err, out)
	}
	// The same name twice, an unknown host, missing flags: errors that
	// say what to do.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"host", "add", "web-1", "--mac", "52:54:00:00:00:09", "--image", "app/1"}, "livebootp host set web-1"},
		{[]string{"host", "rm", "web2"}, `did you mean "web-2"?`},
		{[]string{"host", "set", "web-2"}, "nothing to set"},
		{[]string{"host", "add", "web-4", "--mac", "52:54:00:00:00:04"}, "--mac and --image are required"},
		{[]string{"host", "add", "web-4", "web-5"}, "give one host name, not 2"},
		{[]string{"host", "frob"}, `unknown subcommand "frob"`},
	} {
		out, err := runCLI(t, append(c.args, "-config", path)...)
		if err == nil || !strings.Contains(err.Error()+out, c.want) {
			t.Errorf("%q: %v\n%s", c.args, err, out)
		}
	}
	if read() != before {
		t.Fatal("a refused edit changed the file")
	}

	out, err = runCLI(t, "host", "set", "web-2", "--cmdline", "console=ttyS0 quiet", "--keys", "", "--image", "app/2", "-config", path)
	if err != nil {
		t.Fatalf("host set: %v\n%s", err, out)
	}
	want = orig + "  web-2:\n    hardware-ethernet: \"52:54:00:00:00:02\"\n    fixed-address: \"10.9.0.12\"\n    image-name: app/2\n    cmdline-append: \"console=ttyS0 quiet\"\n"
	if got := read(); got != want {
		t.Fatalf("after host set:\n%s\nwant:\n%s", got, want)
	}
	out, err = runCLI(t, "host", "show", "web-2", "-config", path)
	if err != nil || out != path+":21:\n"+strings.TrimPrefix(want, orig) {
		t.Errorf("host show: %v\n%s", err, out)
	}
	out, err = runCLI(t, "host", "set", "web-2", "--image", "app/2", "-config", path)
	if err != nil || !strings.Contains(out, "nothing to write") {
		t.Errorf("a set that changes nothing: %v\n%s", err, out)
	}

	if out, err := runCLI(t, "host", "rm", "web-2", "-config", path); err != nil {
		t.Fatalf("host rm: %v\n%s", err, out)
	}
	if got := read(); got != orig {
		t.Errorf("after add, set and rm the file is\n%s\nnot as it was:\n%s", got, orig)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// host add against a running registry: the new host shows in its hosts
// after the reload host add asks for (its file watcher is off, so nothing
// else can have loaded it). Without -config, the command edits the file
// that registry serves.
func TestHostAddReloadsRegistry(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	path := hostConfig(t, sock)
	r, err := registry.New(registry.Options{ConfigPath: path, WatchInterval: -1, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("registry: %v", err)
		}
	})
	client := registry.Client{Socket: sock}
	for i := 0; ; i++ {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if i == 250 {
			t.Fatal("the admin socket did not answer within 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	names := func() []string {
		hs, err := client.Hosts()
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, h := range hs {
			n = append(n, h.Name)
		}
		slices.Sort(n)
		return n
	}
	if got := names(); !slices.Equal(got, []string{"web-1"}) {
		t.Fatalf("hosts before: %v", got)
	}

	out, err := runCLI(t, "host", "add", "web-2", "--mac", "52:54:00:00:00:02", "--address", "10.9.0.12", "--image", "app/1", "-config", path)
	if err != nil {
		t.Fatalf("host add: %v\n%s", err, out)
	}
	if !strings.Contains(out, "reloaded: "+path+": 2 hosts") {
		t.Errorf("host add said:\n%s", out)
	}
	if got := names(); !slices.Equal(got, []string{"web-1", "web-2"}) {
		t.Errorf("hosts after host add: %v", got)
	}

	out, err = runCLI(t, "host", "rm", "web-1", "-socket", sock)
	if err != nil || !strings.Contains(out, path+": removed host web-1") || !strings.Contains(out, "reloaded: "+path+": 1 hosts") {
		t.Fatalf("host rm without -config: %v\n%s", err, out)
	}
	if got := names(); !slices.Equal(got, []string{"web-2"}) {
		t.Errorf("hosts after host rm: %v", got)
	}
}

func TestAppliancePasswd(t *testing.T) {
	passwd := func(input string, args ...string) (string, string, error) {
		var out, errb bytes.Buffer
		err := run(context.Background(), append([]string{"appliance", "passwd"}, args...), strings.NewReader(input), &out, &errb)
		return out.String(), errb.String(), err
	}
	out, msg, err := passwd("s3cret pass\ns3cret pass\n", "-cost", "4")
	if err != nil {
		t.Fatalf("%v\n%s", err, msg)
	}
	hash := strings.TrimSpace(out)
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret pass")) != nil || strings.Count(out, "\n") != 1 {
		t.Errorf("stdout %q is not the hash of the password", out)
	}
	if !strings.Contains(msg, "not a terminal") || !strings.Contains(msg, `console-password: "`+hash+`"`) {
		t.Errorf("stderr: %q", msg)
	}
	// What it prints is what the loader takes, and the password checks.
	yml := "bootp-registry:\n  server-address: 10.0.0.1\n  subnet: 10.0.0.0/24\nappliance:\n  console-password: \"" + hash + "\"\n"
	c, err := config.Parse("c.yml", []byte(yml), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Appliance.CheckPassword("s3cret pass") || c.Appliance.CheckPassword("s3cret") {
		t.Error("CheckPassword disagrees with appliance passwd")
	}

	for _, c := range []struct{ in, want string }{
		{"a\nb\n", "differ"},
		{"\n\n", "empty"},
		{"only once\n", "ended before"},
		{strings.Repeat("x", 73) + "\n" + strings.Repeat("x", 73) + "\n", "72 bytes"},
	} {
		if out, _, err := passwd(c.in, "-cost", "4"); err == nil || !strings.Contains(err.Error(), c.want) || out != "" {
			t.Errorf("input %q: %v, stdout %q", c.in, err, out)
		}
	}
	if _, _, err := passwd("", "secret"); err == nil || !strings.Contains(err.Error(), "no arguments") {
		t.Errorf("a password as an argument: %v", err)
	}
}
