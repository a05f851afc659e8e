package registry

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const baseConfig = `bootp-registry:
  interface: eth0
  server-address: 10.9.0.1
  subnet: 10.9.0.0/24
  dhcp-listen: "off"
  tftp-listen: "off"
  http-listen: "off"
  admin-socket: "off"
  router-advertisements: false
  images-dir: images
  ssh-authorized-keys-dir: keys
hosts:
  web1:
    hardware-ethernet: "52:54:00:00:00:01"
    fixed-address: 10.9.0.10
    image-name: app/1
    cmdline-append: "%s"
`

func write(t *testing.T, path, content string) {
	t.Helper()
	// Write and rename, as editors do; the watcher must see it either way.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestWatchReloads runs a registry with every server off, so only the file
// watcher works: a good edit is picked up, a broken one is refused and the
// running configuration stays.
func TestWatchReloads(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "images", "app", "1"), 0o755)
	os.MkdirAll(filepath.Join(dir, "keys"), 0o755)
	path := filepath.Join(dir, "config.yml")
	write(t, path, strings.Replace(baseConfig, "%s", "one", 1))
	r, err := New(Options{ConfigPath: path, WatchInterval: 20 * time.Millisecond, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	wait := func(what string, ok func() bool) {
		t.Helper()
		for i := 0; i < 250; i++ {
			if ok() {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%s: not seen within 5 s", what)
	}
	cmdline := func() string { return r.Config().Hosts[0].CmdlineAppend }

	write(t, path, strings.Replace(baseConfig, "%s", "two", 1))
	wait("a good edit", func() bool { return cmdline() == "two" })

	write(t, path, strings.Replace(baseConfig, "%s", "three", 1)+"  bogus-key: 1\n")
	wait("the refusal of a broken edit", func() bool { return r.Status().LastError != "" })
	if cmdline() != "two" {
		t.Errorf("a broken file replaced the running configuration: cmdline-append %q", cmdline())
	}
	if !strings.Contains(r.Status().LastError, path+":") {
		t.Errorf("the refusal does not name the file and line: %q", r.Status().LastError)
	}
	write(t, path, strings.Replace(baseConfig, "%s", "four", 1))
	wait("the fix after a broken edit", func() bool { return cmdline() == "four" && r.Status().LastError == "" })
	if n := r.Status().Loads; n != 3 {
		t.Errorf("%d loads, want 3 (start, two good edits)", n)
	}
}

func TestNewRefusesBrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yml")
	write(t, path, "bootp-registry:\n  interfce: eth0\n")
	_, err := New(Options{ConfigPath: path})
	if err == nil || !strings.Contains(err.Error(), path+":2:") || !strings.Contains(err.Error(), `did you mean "interface"`) {
		t.Errorf("New on a broken file: %v", err)
	}
}
