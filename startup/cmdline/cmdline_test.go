package cmdline

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Param
	}{
		{"", nil},
		{"  debug  ", []Param{{Name: "debug"}}},
		{"ro root=/dev/sda1", []Param{{Name: "ro"}, {Name: "root", Value: "/dev/sda1", HasValue: true}}},
		{`a="b c" d`, []Param{{Name: "a", Value: "b c", HasValue: true}, {Name: "d"}}},
		{`"a=b c" d`, []Param{{Name: "a", Value: "b c", HasValue: true}, {Name: "d"}}},
		{`a=b=c`, []Param{{Name: "a", Value: "b=c", HasValue: true}}},
		{`a= b`, []Param{{Name: "a", HasValue: true}, {Name: "b"}}},
		{`a="" b`, []Param{{Name: "a", HasValue: true}, {Name: "b"}}},
		{"a\tb\nc", []Param{{Name: "a"}, {Name: "b"}, {Name: "c"}}},
		{`x=a"b c"d e`, []Param{{Name: "x", Value: `a"b c"d`, HasValue: true}, {Name: "e"}}},
		{`x="unterminated value`, []Param{{Name: "x", Value: "unterminated value", HasValue: true}}},
		{`debug -- single init args`, []Param{{Name: "debug"}}},
		{`"--" after`, nil},
		{`--x`, []Param{{Name: "--x"}}},
	} {
		got := Split(tc.in)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Split(%q) = %#v, want %#v", tc.in, got, tc.want)
		}
	}
}

const sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestParse(t *testing.T) {
	in := `BOOT_IMAGE=vmlinuz initrd=initrd.img livebootp.registry=http://10.85.0.1:8080/ livebootp.image=nginx-web-server/1.0.0 ` +
		`livebootp.sha256=` + strings.ToUpper(sha) + ` livebootp.verity=` + sha + ` hostname=old livebootp.hostname=web1 livebootp.persistent=LABEL=data ` +
		`debug livebootp.insecure livebootp.nopasswd=0 BOOTIF=01-52-54-00-12-34-56 quiet`
	a, err := Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	if a.Registry != "http://10.85.0.1:8080" || a.Image != "nginx-web-server/1.0.0" || a.SHA256 != sha || a.Verity != sha ||
		a.Hostname != "web1" || a.Persistent != "LABEL=data" || !a.Debug || !a.Insecure || a.NoPasswd ||
		a.BootIF.String() != "52:54:00:12:34:56" {
		t.Errorf("Parse = %+v", a)
	}
	sq, err := a.SquashfsURL()
	if want := "http://10.85.0.1:8080/images/nginx-web-server/1.0.0/filesystem.squashfs"; err != nil || sq != want {
		t.Errorf("SquashfsURL = %q, %v; want %q", sq, err, want)
	}
	if got, want := a.ManifestURL(), "http://10.85.0.1:8080/images/nginx-web-server/1.0.0/manifest.json"; got != want {
		t.Errorf("ManifestURL = %q, want %q", got, want)
	}
	if v, ok := a.Lookup("quiet"); !ok || v != "" {
		t.Errorf("Lookup(quiet) = %q, %v", v, ok)
	}
}

func TestParseLiveBootNames(t *testing.T) {
	a, err := Parse(`fetch=https://r.example/x/filesystem.squashfs hostname=web2`)
	if err != nil {
		t.Fatal(err)
	}
	if a.Squashfs != "https://r.example/x/filesystem.squashfs" || a.Hostname != "web2" || a.Persistent != "auto" {
		t.Errorf("Parse = %+v", a)
	}
	if got := a.ManifestURL(); got != "https://r.example/x/manifest.json" {
		t.Errorf("ManifestURL = %q", got)
	}
	// livebootp's own name wins over live-boot's whatever the order.
	a, _ = Parse(`livebootp.squashfs=http://a/f.squashfs fetch=http://b/f.squashfs`)
	if a.Squashfs != "http://a/f.squashfs" || a.ManifestURL() != "" {
		t.Errorf("Parse = %+v, manifest %q", a, a.ManifestURL())
	}
	// The last occurrence wins, so cmdline-append can override.
	a, _ = Parse(`livebootp.persistent=auto livebootp.persistent=none`)
	if a.Persistent != "none" {
		t.Errorf("Persistent = %q", a.Persistent)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"livebootp.registry=10.0.0.1", "livebootp.registry"},
		{"livebootp.registry=ftp://x", "http:// or https://"},
		{"livebootp.image=nginx", "NAME/VERSION"},
		{"livebootp.sha256=abc", "64 hexadecimal digits"},
		{"livebootp.verity=" + sha + "00", "the manifest's verity root_hash"},
		{"livebootp.persistent=sdb", "auto, none, LABEL=NAME"},
		{"livebootp.hostname=-bad", "host name"},
		{"debug=maybe", "debug=0/1"},
		{"BOOTIF=zz", "BOOTIF"},
		{"fetch=file:///x", "filesystem.squashfs"},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error = %v, want it to mention %q", tc.in, err, tc.want)
		}
	}
	a, err := Parse("quiet")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.SquashfsURL(); err == nil || !strings.Contains(err.Error(), "fetch=") {
		t.Errorf("SquashfsURL without arguments: %v", err)
	}
}

func FuzzCmdline(f *testing.F) {
	for _, s := range []string{
		"", "debug", `a="b c" d`, `"a=b c"`, `x=a"b`, `livebootp.registry=http://h:1 livebootp.sha256=` + sha,
		"-- a b", `""`, `a="`, "\t\n\v", `BOOTIF=01-52-54-00-12-34-56`, `livebootp.persistent=LABEL= x`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = Parse(s) // must not panic
		ps := Split(s)
		for _, p := range ps {
			if strings.Contains(p.Name+p.Value, `"`) {
				return // quotes inside values cannot be re-quoted on a kernel command line
			}
		}
		var words []string
		for _, p := range ps {
			words = append(words, p.String())
		}
		again := Split(strings.Join(words, " "))
		if !reflect.DeepEqual(again, ps) && !(len(again) == 0 && len(ps) == 0) {
			t.Fatalf("Split(%q) = %#v; joined %q splits to %#v", s, ps, strings.Join(words, " "), again)
		}
	})
}
