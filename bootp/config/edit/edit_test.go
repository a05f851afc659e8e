package edit

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livebootp/livebootp/bootp/config"
)

// registry is a bootp-registry: section that needs no detection.
const registry = `bootp-registry:
  interface: eth0
  server-address: 10.0.0.1
  subnet: 10.0.0.0/24
  routers: []
  domain-name: ""
  domain-name-servers: []
`

var opts = config.Options{SkipFileChecks: true}

func open(t *testing.T, text string) *File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(p, []byte(text), 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func web(mac, addr string) []Setting {
	return []Setting{{MAC, mac}, {Address, addr}, {Image, "app/1"}}
}

// Each edit changes exactly the lines it must: the whole expected file is
// written out, comments, blank lines and odd spacing included.
func TestEdits(t *testing.T) {
	for _, c := range []struct {
		name, in string
		edit     func(f *File) error
		want     string
	}{
		{"add after the last host, before a trailing comment",
			registry + "hosts:\n  # the web tier\n  web-1:   # first\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11\n    image-name: app/1\n\n    # cmdline-append: debug\n\n# end of hosts\n",
			func(f *File) error { return f.Add("web-2", web("52:54:00:00:00:02", "10.0.0.12")...) },
			registry + "hosts:\n  # the web tier\n  web-1:   # first\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11\n    image-name: app/1\n\n    # cmdline-append: debug\n  web-2:\n    hardware-ethernet: \"52:54:00:00:00:02\"\n    fixed-address: \"10.0.0.12\"\n    image-name: app/1\n\n# end of hosts\n"},
		{"add keeps the file's indentation",
			registry + "hosts:\n    web-1:\n          hardware-ethernet: \"52:54:00:00:00:01\"\n          fixed-address: 10.0.0.11\n          image-name: app/1\n",
			func(f *File) error {
				return f.Add("web-2", append(web("52:54:00:00:00:02", "10.0.0.12"), Setting{Cmdline, "console=ttyS0 quiet"}, Setting{Keys, "ops"})...)
			},
			registry + "hosts:\n    web-1:\n          hardware-ethernet: \"52:54:00:00:00:01\"\n          fixed-address: 10.0.0.11\n          image-name: app/1\n    web-2:\n          hardware-ethernet: \"52:54:00:00:00:02\"\n          fixed-address: \"10.0.0.12\"\n          image-name: app/1\n          ssh-authorized-keys: ops\n          cmdline-append: \"console=ttyS0 quiet\"\n"},
		{"add to an empty hosts: with a commented example",
			registry + "hosts:\n  # my-host:\n  #   hardware-ethernet: \"52:54:00:12:34:56\"\n",
			func(f *File) error { return f.Add("web-1", web("52:54:00:00:00:01", "10.0.0.11")...) },
			registry + "hosts:\n  # my-host:\n  #   hardware-ethernet: \"52:54:00:12:34:56\"\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: \"10.0.0.11\"\n    image-name: app/1\n"},
		{"add to hosts: {} before another section",
			"hosts: {}   # none yet\n" + registry,
			func(f *File) error { return f.Add("web-1", web("52:54:00:00:00:01", "10.0.0.11")...) },
			"hosts:   # none yet\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: \"10.0.0.11\"\n    image-name: app/1\n" + registry},
		{"add to a file without hosts: or a final line break",
			strings.TrimSuffix(registry, "\n"),
			func(f *File) error { return f.Add("web-1", web("52:54:00:00:00:01", "10.0.0.11")...) },
			registry + "hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: \"10.0.0.11\"\n    image-name: app/1\n"},
		{"add keeps CRLF line ends",
			strings.ReplaceAll(registry+"hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11\n    image-name: app/1\n", "\n", "\r\n"),
			func(f *File) error { return f.Add("web-2", web("52:54:00:00:00:02", "10.0.0.12")...) },
			strings.ReplaceAll(registry+"hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11\n    image-name: app/1\n  web-2:\n    hardware-ethernet: \"52:54:00:00:00:02\"\n    fixed-address: \"10.0.0.12\"\n    image-name: app/1\n", "\n", "\r\n")},
		{"set keeps CRLF line ends",
			strings.ReplaceAll(registry+"hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11 # here\n    ssh-authorized-keys: ops\n    image-name: app/1\n", "\n", "\r\n"),
			func(f *File) error {
				return f.Set("web-1", Setting{Address, "10.0.0.12"}, Setting{Keys, ""}, Setting{Cmdline, "quiet"})
			},
			strings.ReplaceAll(registry+"hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: \"10.0.0.12\" # here\n    image-name: app/1\n    cmdline-append: quiet\n", "\n", "\r\n")},
		{"set changes values in place and keeps comments and quotes",
			registry + "hosts:\n  web-1:\n    hardware-ethernet: '52:54:00:00:00:01'   # on the rack's left\n    fixed-address:   10.0.0.11 # fixed\n    image-name: app/1\n",
			func(f *File) error {
				return f.Set("web-1", Setting{MAC, "52-54-00-00-00-AA"}, Setting{Address, "10.0.0.20"}, Setting{Cmdline, "debug"})
			},
			registry + "hosts:\n  web-1:\n    hardware-ethernet: \"52-54-00-00-00-AA\"   # on the rack's left\n    fixed-address: \"10.0.0.20\" # fixed\n    image-name: app/1\n    cmdline-append: debug\n"},
		{"set removes a key with its comment lines, and replaces a block scalar",
			registry + "hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    ssh-authorized-keys: ops\n      # the ops team\n    fixed-address: 10.0.0.11\n    cmdline-append: |-\n      console=ttyS0\n    image-name: app/1\n  web-2:\n    hardware-ethernet: \"52:54:00:00:00:02\"\n    fixed-address: 10.0.0.12\n    image-name: app/1\n",
			func(f *File) error { return f.Set("web-1", Setting{Keys, ""}, Setting{Cmdline, "quiet"}) },
			registry + "hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11\n    cmdline-append: quiet\n    image-name: app/1\n  web-2:\n    hardware-ethernet: \"52:54:00:00:00:02\"\n    fixed-address: 10.0.0.12\n    image-name: app/1\n"},
		{"set on a host written as a flow mapping",
			registry + "hosts:\n  web-1: { hardware-ethernet: \"52:54:00:00:00:01\", fixed-address: 10.0.0.11, image-name: app/1, cmdline-append: debug }  # one line\n  web-2: {hardware-ethernet: \"52:54:00:00:00:02\", fixed-address: 10.0.0.12, image-name: app/1}\n",
			func(f *File) error {
				if err := f.Set("web-1", Setting{Cmdline, ""}, Setting{Image, "app/2"}, Setting{Keys, "ops"}); err != nil {
					return err
				}
				return f.Set("web-2", Setting{Address, "10.0.0.13"})
			},
			registry + "hosts:\n  web-1: { hardware-ethernet: \"52:54:00:00:00:01\", fixed-address: 10.0.0.11, image-name: app/2, ssh-authorized-keys: ops }  # one line\n  web-2: {hardware-ethernet: \"52:54:00:00:00:02\", fixed-address: \"10.0.0.13\", image-name: app/1}\n"},
		{"set keeps what a host merges, overriding one key",
			"x-base: &base\n  image-name: app/1\n  cmdline-append: debug\n" + registry + "hosts:\n  web-1:\n    <<: *base\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11\n",
			func(f *File) error { return f.Set("web-1", Setting{Image, "app/2"}) },
			"x-base: &base\n  image-name: app/1\n  cmdline-append: debug\n" + registry + "hosts:\n  web-1:\n    <<: *base\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11\n    image-name: app/2\n"},
		{"rm takes the host's lines and nothing else",
			registry + "hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11\n    image-name: app/1\n\n  # second\n  web-2:\n    hardware-ethernet: \"52:54:00:00:00:02\"\n\n    fixed-address: 10.0.0.12\n    # image-name: app/0\n    image-name: app/1\n\n  web-3:\n    hardware-ethernet: \"52:54:00:00:00:03\"\n    fixed-address: 10.0.0.13\n    image-name: app/1\n",
			func(f *File) error { return f.Remove("web-2") },
			registry + "hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11\n    image-name: app/1\n\n  # second\n\n  web-3:\n    hardware-ethernet: \"52:54:00:00:00:03\"\n    fixed-address: 10.0.0.13\n    image-name: app/1\n"},
		{"rm the last host, add it back, set it",
			registry + "hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11\n    image-name: app/1\nappliance:\n  hostname: box\n",
			func(f *File) error {
				if err := f.Remove("web-1"); err != nil {
					return err
				}
				if err := f.Add("web-1", web("52:54:00:00:00:01", "10.0.0.11")...); err != nil {
					return err
				}
				return f.Set("web-1", Setting{Image, "app/3"})
			},
			registry + "hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: \"10.0.0.11\"\n    image-name: app/3\nappliance:\n  hostname: box\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := open(t, c.in)
			if err := c.edit(f); err != nil {
				t.Fatal(err)
			}
			if got := string(f.Text()); got != c.want {
				t.Errorf("edited file:\n%s\nwant:\n%s", got, c.want)
			}
			if _, err := f.Check(opts); err != nil {
				t.Errorf("Check: %v", err)
			}
		})
	}
}

func TestRender(t *testing.T) {
	for in, want := range map[string]string{
		"app/1.0":          "app/1.0",
		"console=ttyS0":    "console=ttyS0",
		"a b":              `"a b"`,
		"true":             `"true"`,
		"NO":               `"NO"`,
		"12":               `"12"`,
		"1e3":              `"1e3"`,
		"-x":               `"-x"`,
		"x: y":             `"x: y"`,
		"say \"hi\" #now":  `"say \"hi\" #now"`,
		"":                 `""`,
		"web-1.lab":        "web-1.lab",
		"ipv6.disable=1,2": `"ipv6.disable=1,2"`,
	} {
		if got := plainOrQuoted(in); got != want {
			t.Errorf("plainOrQuoted(%q) = %s, want %s", in, got, want)
		}
		// Whatever is written reads back as the same string.
		f := open(t, registry+"hosts:\n")
		if err := f.Add("h", Setting{MAC, "52:54:00:00:00:01"}, Setting{Address, "10.0.0.2"}, Setting{Image, "a/1"}, Setting{Cmdline, in}); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.Check(opts)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if got := cfg.Hosts[0].CmdlineAppend; got != in {
			t.Errorf("%q reads back as %q", in, got)
		}
	}
}

func TestErrors(t *testing.T) {
	base := registry + "hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11\n    image-name: app/1\n"
	f := open(t, base)
	err := f.Add("web-1", web("52:54:00:00:00:09", "10.0.0.19")...)
	if err == nil || !strings.Contains(err.Error(), f.Path+":9: host \"web-1\" already exists") || !strings.Contains(err.Error(), "livebootp host set web-1") {
		t.Errorf("add of an existing name: %v", err)
	}
	var nf *NotFoundError
	if err := f.Set("web1", Setting{Image, "app/2"}); !errors.As(err, &nf) || nf.Suggest != "web-1" || !strings.Contains(err.Error(), `did you mean "web-1"?`) {
		t.Errorf("set of an unknown host: %v", err)
	}
	if err := f.Remove("db-7"); !errors.As(err, &nf) || nf.Suggest != "" {
		t.Errorf("rm of an unknown host: %v", err)
	}
	if err := f.Set("web-1", Setting{"mac", "x"}); err == nil || !strings.Contains(err.Error(), "hardware-ethernet") {
		t.Errorf("unknown key: %v", err)
	}
	if f.Changed() {
		t.Error("failed edits changed the text")
	}

	// A duplicate MAC and address: the loader's problems, at the lines of
	// the edited text.
	if err := f.Add("web-2", web("52:54:00:00:00:01", "10.0.0.11")...); err != nil {
		t.Fatal(err)
	}
	_, err = f.Check(opts)
	var ps config.Problems
	if !errors.As(err, &ps) || len(ps) != 2 || ps[0].Line != 14 || ps[1].Line != 15 ||
		!strings.Contains(ps[0].Msg, `already used by host "web-1" (line 9)`) || !strings.Contains(ps[1].Msg, `already used by host "web-1"`) {
		t.Errorf("duplicates: %v", err)
	}

	// Hosts as one flow mapping cannot be edited line by line.
	f = open(t, registry+"hosts: {web-1: {hardware-ethernet: \"52:54:00:00:00:01\", fixed-address: 10.0.0.11, image-name: app/1}}\n")
	if err := f.Add("web-2", web("52:54:00:00:00:02", "10.0.0.12")...); err == nil || !strings.Contains(err.Error(), f.Path+":8: hosts: is written as one flow mapping") {
		t.Errorf("flow hosts: %v", err)
	}
	// A syntax error is the loader's problem, with its line.
	f = open(t, registry+"hosts:\n  web-1: [\n")
	if err := f.Add("web-2"); !errors.As(err, &ps) || !strings.Contains(err.Error(), "YAML syntax") {
		t.Errorf("syntax error: %v", err)
	}
}

// Check compares every host with what the edits asked: an edit that
// loads but changed another host is refused.
func TestCheckCatchesWrongEdits(t *testing.T) {
	f := open(t, registry+"hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11\n    image-name: app/1\n")
	if err := f.Set("web-1", Setting{Image, "app/2"}); err != nil {
		t.Fatal(err)
	}
	f.text = []byte(strings.Replace(string(f.text), "10.0.0.11", "10.0.0.12", 1)) // what a splicing bug could do
	if _, err := f.Check(opts); err == nil || !strings.Contains(err.Error(), "a bug in livebootp host") {
		t.Errorf("Check of a wrong edit: %v", err)
	}
	// When the original does not load, the edited host is still checked.
	f = open(t, registry+"hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11\n    image-name: /etc\n")
	if err := f.Set("web-1", Setting{Image, "app/2"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.Check(opts)
	if err != nil || cfg.Hosts[0].Image != "app/2" || cfg.Hosts[0].Address != netip.MustParseAddr("10.0.0.11") {
		t.Errorf("an edit that fixes the file: %v", err)
	}
	f.text = []byte(strings.Replace(string(f.text), "app/2", "app/3", 1))
	if _, err := f.Check(opts); err == nil || !strings.Contains(err.Error(), "a bug in livebootp host") {
		t.Errorf("Check of a wrong fix: %v", err)
	}
}

func TestShow(t *testing.T) {
	f := open(t, registry+"hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    # note\n    image-name: app/1\n  web-2: {}\n")
	line, block, err := f.Show("web-1")
	if err != nil || line != 9 || block != "  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    # note\n    image-name: app/1\n" {
		t.Errorf("Show = %d %q %v", line, block, err)
	}
}

func TestWrite(t *testing.T) {
	f := open(t, registry+"hosts:\n")
	if err := f.Add("web-1", web("52:54:00:00:00:01", "10.0.0.11")...); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Check(opts); err != nil {
		t.Fatal(err)
	}
	if err := f.Write(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(f.Path)
	if err != nil || string(data) != string(f.Text()) {
		t.Fatalf("written %q, %v", data, err)
	}
	st, _ := os.Stat(f.Path)
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 as before", st.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(f.Path), ".*tmp")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// Another edit in between: nothing is written.
	g, err := Open(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Remove("web-1"); err != nil {
		t.Fatal(err)
	}
	if err := g.Write(); err == nil || !strings.Contains(err.Error(), "Check before Write") {
		t.Errorf("Write without Check: %v", err)
	}
	if _, err := g.Check(opts); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(f.Path, append(data, "# another edit\n"...), 0o640)
	if err := g.Write(); err == nil || !strings.Contains(err.Error(), "changed while it was being edited") {
		t.Errorf("Write over another edit: %v", err)
	}

	// A symlink stays a symlink; the file it points to is replaced.
	link := filepath.Join(t.TempDir(), "link.yml")
	if err := os.Symlink(f.Path, link); err != nil {
		t.Fatal(err)
	}
	h, err := Open(link)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Remove("web-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Check(opts); err != nil {
		t.Fatal(err)
	}
	if err := h.Write(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced: %v %v", fi, err)
	}
	if data, _ := os.ReadFile(f.Path); strings.Contains(string(data), "web-1") {
		t.Errorf("the target was not edited:\n%s", data)
	}
}

// BenchmarkAddTo100k is `host add` on a file of 100,000 hosts: outline,
// splice, load the result and the original, compare every host.
func BenchmarkAddTo100k(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(registry)
	sb.WriteString("hosts:\n")
	for i := 0; i < 100_000; i++ {
		a := 10<<24 + 1<<16 + i
		fmt.Fprintf(&sb, "  node-%06d:\n    hardware-ethernet: \"52:54:00:%02x:%02x:%02x\"\n    fixed-address: \"%d.%d.%d.%d\"\n    image-name: app-%d/1.0\n    cmdline-append: console=ttyS0,115200n8 quiet\n",
			i, byte(i>>16), byte(i>>8), byte(i), byte(a>>24), byte(a>>16), byte(a>>8), byte(a), i%4)
	}
	text := strings.Replace(sb.String(), "subnet: 10.0.0.0/24", "subnet: 10.0.0.0/8", 1)
	p := filepath.Join(b.TempDir(), "config.yml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		f, err := Open(p)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Add("new", web("52:54:01:00:00:01", "10.200.0.1")...); err != nil {
			b.Fatal(err)
		}
		if _, err := f.Check(opts); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzEdit: no file makes an edit panic, and whatever edit loads is the
// edit that was asked (Check compares every host).
func FuzzEdit(f *testing.F) {
	f.Add([]byte(registry + "hosts:\n  web-1:\n    hardware-ethernet: \"52:54:00:00:00:01\"\n    fixed-address: 10.0.0.11 # c\n    image-name: app/1\n"))
	f.Add([]byte(registry + "hosts:\n  web-1: { hardware-ethernet: \"52:54:00:00:00:01\", fixed-address: 10.0.0.11, image-name: app/1 }\n"))
	f.Add([]byte("hosts: {}\n" + registry))
	f.Add([]byte(registry + "hosts:\n  web-1:\n    image-name: |\n      app/1\n    <<: {hardware-ethernet: \"52:54:00:00:00:01\", fixed-address: 10.0.0.11}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, edit := range []func(*File) error{
			func(f *File) error { return f.Add("new", web("52:54:00:00:00:99", "10.0.0.99")...) },
			func(f *File) error {
				return f.Set("web-1", Setting{Image, "app/2"}, Setting{Cmdline, "a b"}, Setting{Keys, ""})
			},
			func(f *File) error { return f.Remove("web-1") },
		} {
			ed, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			if edit(ed) != nil {
				continue
			}
			if _, err := ed.Check(opts); err != nil && strings.Contains(err.Error(), "a bug in livebootp host") {
				t.Fatalf("%v\nbefore:\n%s\nafter:\n%s", err, data, ed.Text())
			}
		}
	})
}
