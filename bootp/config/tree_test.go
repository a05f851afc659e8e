package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dumpTree prints a tree canonically; depth is bounded because aliases can
// make cycles.
func dumpTree(t *tree) string {
	if t.root < 0 || (t.nodes[t.root].kind == kScalar && t.nodes[t.root].style == sNull) {
		return "(empty)\n"
	}
	var b strings.Builder
	var walk func(n int32, depth int)
	walk = func(n int32, depth int) {
		nd := t.nodes[n]
		fmt.Fprintf(&b, "%*s%d:%d ", 2*depth, "", nd.line, nd.col)
		if depth > 20 {
			b.WriteString("...\n")
			return
		}
		switch nd.kind {
		case kScalar:
			fmt.Fprintf(&b, "scalar/%d %q\n", nd.style, t.bytes(n))
		case kMap:
			b.WriteString("map\n")
		case kSeq:
			b.WriteString("seq\n")
		}
		if nd.kind != kScalar {
			for _, c := range t.children(n) {
				walk(c, depth+1)
			}
		}
	}
	walk(t.root, 0)
	return b.String()
}

// checkFast fails if fastParse accepts data but reads it differently from
// yaml.v3.
func checkFast(t *testing.T, data []byte) (accepted bool) {
	t.Helper()
	ft, ok := fastParse(data)
	if !ok {
		return false
	}
	st, errs := slowParse(data)
	if errs != nil {
		t.Fatalf("fastParse accepted what yaml.v3 rejects (%v):\n%s", errs, data)
	}
	if got, want := dumpTree(ft), dumpTree(st); got != want {
		t.Fatalf("fastParse and yaml.v3 differ on\n%s\nfast:\n%s\nyaml.v3:\n%s", data, got, want)
	}
	return true
}

var fastCases = []struct {
	in   string
	fast bool // fastParse must accept it (the common shapes)
}{
	{"", true},
	{"# only a comment\n", true},
	{"---\nhosts:\n", true},
	{"a:\nb: x\nc:", true},
	{"a: {}\nb: []\nc: [ x , \"y\" ]\nd: ~\ne: #c\n  f: 1\n", true},
	{"k:\n- 1\n- 2\nn: 3\n", true},
	{"k:\n  - 1\n  - '2' # c\n", true},
	{"bootp-registry:\n  domain-name-servers: [\"192.168.122.1\"]\nhosts:\n  my-nginx-web-server:\n    hardware-ethernet: \"52:54:00:12:34:56\"\n    fixed-address: \"192.168.122.10\"\n    image-name: nginx-web-server/test\n    ssh-authorized-keys: default\n    cmdline-append: debug\n", true},
	{"a: 52:54:00:12:34:56\nb: console=ttyS0,115200n8 quiet\nc: a#b\nd: x   # c\n", true},
	{"a: null\nb: Null\nc: NULL\nd: nul\n", true},
	{"a: ''\nb: \"\"\n", true},
	{"c: 'it''s'\n", false},
	{"a: \"x\\ty\"\n", false},
	{"a: &x 1\nb: *x\n", false},
	{"a: |\n  text\n", false},
	{"a: b\n  c\n", false},
	{"a:\n  value\n", false},
	{"a: b: c\n", false},
	{"a:\tb\n", false},
	{"a: b\r\n", false},
	{"- a\n- b\n", false},
	{"a: [b, c,]\n", false},
	{"a: [b\n  , c]\n", false},
	{"a: 1\n---\nb: 2\n", false},
	{"  a: 1\n", false},
	{"a:\n  b: 1\n c: 2\n", false},
	{"a: <<\n", false},
	{"<<: {a: 1}\n", false},
	{"a: \"x\" y\n", false},
	{"a: \"x\"#y\n", false},
	{"a: 'x' # ok\n", true},
	{"k:\n- 1\n  - 2\n", false},
	{"k:\n-\n", false},
	{"k:\n- a: 1\n", false},
	{"é: 1\n", false},
	{"a: x #c\n   # indented comment\nb: y\n", true},
	{"a:\n\n  b: 1\n\n  c: 2\nd:\n", true},
	{"a: -1\n", false},
	{"a: b:c\n", true},
	{"a :b\n", false},
	{"a: {b: 1}\n", true},
	{"eth0: { address: 10.0.0.1/24, gateway: 10.0.0.254 }   # c\neth1: {dhcp: true}\n", true},
	{"a: {b: \"x y\", 'c': 1}\n", false},
	{"a: {b: 'x''y'}\n", false},
	{"a: {b: 1, }\n", false},
	{"a: {b:1}\n", false},
	{"a: {b: }\n", false},
	{"a: {b: c d}\n", false},
	{"a: {b: [c]}\n", false},
	{"a: {b: {c: 1}}\n", false},
	{"a: {b: c:d}\n", false},
	{"a: {b: 1 c: 2}\n", false},
	{"a: {b: 1,c: 2}\n", true},
	{"a: {null: 1, b: null, c: Null}\n", true},
	{"a: {~: 1}\n", false},
	{"a: {b: 1}#c\n", false},
	{"a: {b: 1\n", false},
	{"a: {b: 1}}\n", false},
	{"a: {<<: 1}\n", false},
	{"a: {b: 1, b: 2}\n", true},
	{"a: [x, {b: 1}]\n", false},
	{"a: {b: -1}\n", false},
	{"a: {b: x/y.z_w-1}\n", true},
	{"a: [x]\n  b: 1\n", false},
	{"a:\n  b:\n    c:\n      d: 1\ne: 2\n", true},
}

func TestFastParseMatchesYAML(t *testing.T) {
	for _, c := range fastCases {
		if got := checkFast(t, []byte(c.in)); c.fast && !got {
			t.Errorf("fastParse refused %q, which it should read", c.in)
		}
	}
	files, _ := filepath.Glob("testdata/*/*.yml")
	more, _ := filepath.Glob("../../configs/*.yml")
	for _, f := range append(files, more...) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		checkFast(t, data)
	}
	// The files a user writes and a generator writes must take the fast path.
	for _, f := range append(more, "gen") {
		var data []byte
		if f == "gen" {
			data = genHosts(100, "images", "keys")
		} else {
			data, _ = os.ReadFile(f)
		}
		if _, ok := fastParse(data); !ok {
			t.Errorf("%s does not take the fast path", f)
		}
	}
}

func FuzzFastParse(f *testing.F) {
	for _, c := range fastCases {
		f.Add([]byte(c.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFast(t, data)
	})
}
