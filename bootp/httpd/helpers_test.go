package httpd

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/bootp/state"
	"github.com/livebootp/livebootp/wire"
)

// staticBackend is a Backend whose configuration never changes.
type staticBackend struct{ cfg *config.Config }

func (b staticBackend) Config() *config.Config { return b.cfg }

// secret is in a file just outside every served directory; no response may
// ever contain it.
const secret = "TOP-SECRET-outside-the-root-7f3a"

const (
	testMAC  = "52:54:00:12:34:56"
	testAddr = "192.0.2.1" // httptest.NewRequest's RemoteAddr; newFixture's first host
	testImg  = "nginx-web-server/test"
)

type fixture struct {
	dir     string // t.TempDir: holds secret.txt and the served roots
	cfg     *config.Config
	tracker *state.Tracker
	h       *Handler
	files   map[string][]byte // served file contents by URL path
}

// newFixture lays out a registry's directories under a temp dir:
//
//	secret.txt                          outside every root
//	images/nginx-web-server/test/{vmlinuz,initrd.img,filesystem.squashfs,manifest.json}
//	images/nginx-web-server/test/escape -> ../../../secret.txt    (symlink out: refused)
//	images/nginx-web-server/latest      -> test                   (symlink inside: served)
//	images/outside                      -> ..                     (directory symlink out)
//	keys/default, keys/escape -> ../secret.txt
//	tftp/ipxe.efi, tftp/images -> ../images
func newFixture(t testing.TB, squashfsSize int) *fixture {
	t.Helper()
	return newFixtureNet(t, squashfsSize, "192.0.2")
}

// newFixtureNet is newFixture on the /24 net24 (e.g. "10.84.3"): the server
// is .254, the hosts .1 and .2.
func newFixtureNet(t testing.TB, squashfsSize int, net24 string) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, files: map[string][]byte{}}
	write := func(rel string, data []byte) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, rel string) {
		if err := os.Symlink(target, filepath.Join(dir, filepath.FromSlash(rel))); err != nil {
			t.Fatal(err)
		}
	}
	write("secret.txt", []byte(secret+"\n"))
	img := "images/" + testImg + "/"
	sq := make([]byte, squashfsSize)
	for i := range sq {
		sq[i] = byte(i*7 + i>>8)
	}
	for name, data := range map[string][]byte{
		"vmlinuz":             []byte("kernel image bytes\n"),
		"initrd.img":          []byte("initrd bytes, a little longer than the kernel\n"),
		"filesystem.squashfs": sq,
		"manifest.json":       []byte(`{"files":{}}` + "\n"),
	} {
		write(img+name, data)
		f.files["/"+img+name] = data
	}
	link("../../../secret.txt", img+"escape")
	link("test", "images/nginx-web-server/latest")
	link("..", "images/outside")
	write("keys/default", []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample user@laptop\n"))
	f.files["/ssh-authorized-keys/default"] = []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample user@laptop\n")
	link("../secret.txt", "keys/escape")
	write("tftp/ipxe.efi", []byte("MZ fake ipxe.efi\n"))
	f.files["/loaders/ipxe.efi"] = []byte("MZ fake ipxe.efi\n")
	link("../images", "tftp/images")

	cfg, err := config.New(config.Registry{
		Interface:         "eth0",
		ServerAddress:     netip.MustParseAddr(net24 + ".254"),
		Subnet:            netip.MustParsePrefix(net24 + ".0/24"),
		Routers:           []netip.Addr{netip.MustParseAddr(net24 + ".254")},
		DomainNameServers: []netip.Addr{netip.MustParseAddr(net24 + ".53")},
		ConfigDir:         dir,
		TFTPRoot:          filepath.Join(dir, "tftp"),
		ImagesDir:         filepath.Join(dir, "images"),
		KeysDir:           filepath.Join(dir, "keys"),
		HTTPListen:        "127.0.0.1:0",
		HTTPURL:           "http://" + net24 + ".254:8080",
	}, []*config.Host{{
		Name:              "my-nginx-web-server",
		MAC:               mustMAC(t, testMAC),
		Address:           netip.MustParseAddr(net24 + ".1"),
		Image:             testImg,
		SSHAuthorizedKeys: "default",
		CmdlineAppend:     "debug",
	}, {
		Name:    "second",
		MAC:     mustMAC(t, "52:54:00:00:00:02"),
		Address: netip.MustParseAddr(net24 + ".2"),
		Image:   testImg,
	}})
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = cfg
	f.tracker = state.New(64, time.Now)
	var known []state.Known
	for _, h := range cfg.Hosts {
		known = append(known, state.Known{Name: h.Name, MAC: h.MAC.String(), Address: h.Address.String(), Image: h.Image})
	}
	f.tracker.SetHosts(known)
	f.h = New(staticBackend{cfg}, f.tracker, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	return f
}

func mustMAC(t testing.TB, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// do serves one request through the handler.
func (f *fixture) do(t testing.TB, method, target string, hdr map[string]string, body io.Reader) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, target, body)
	for k, v := range hdr {
		if k == "RemoteAddr" {
			r.RemoteAddr = v
			continue
		}
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w.Result()
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return string(b)
}

func (f *fixture) host(t testing.TB, mac string) wire.HostStatus {
	t.Helper()
	for _, h := range f.tracker.Hosts() {
		if h.MAC == mac {
			return h
		}
	}
	t.Fatalf("tracker has no host %s; hosts: %+v", mac, f.tracker.Hosts())
	return wire.HostStatus{}
}

// rawRequest sends target exactly as written (no client-side cleaning) to a
// server at addr and returns the status and body.
func rawRequest(t testing.TB, addr, method, target string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: registry\r\nConnection: close\r\n\r\n", method, target)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %q: %v", method, target, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// servedFromRoot reports whether body is the content (or a part of the
// content) of a file the fixture put inside a served root.
func (f *fixture) servedFromRoot(body string) bool {
	for _, data := range f.files {
		if strings.Contains(string(data), body) || bytes.Contains(data, []byte(body)) {
			return true
		}
	}
	return false
}
