package config

import (
	"strings"
	"testing"
)

// Offsets point at the keys and values whatever the parser (fast, or
// yaml.v3 for what the fast one leaves) and whatever comes before them on
// the line (columns count characters, offsets bytes).
func TestOutlineOffsets(t *testing.T) {
	for _, c := range []struct {
		text string
		fast bool
		last Shape
	}{
		{"bootp-registry:\n  interface: eth0\nhosts:\n  web-1:\n    image-name: a/1\n    cmdline-append: x\n  web-2: {image-name: a/1, cmdline-append: y}\n  web-3:\n  web-4: x\n", true, Scalar},
		{"x-a: &alias {}\nhosts:\n  web-1:\n    image-name: a/1\n    cmdline-append: \"é\"\n  web-2: {cmdline-append: \"ééé\", image-name: a/1}\n  web-3:\n  web-4: *alias\n", false, Other},
		{"x-a: &alias {}\r\nhosts:\r\n  web-1:\r\n    image-name: a/1\r\n    cmdline-append: x\r\n  web-2: {cmdline-append: 'é', image-name: a/1}\r\n  web-3:\r\n  web-4: [a]\r\n", false, Other},
	} {
		text := c.text
		if _, ok := fastParse([]byte(text)); ok != c.fast {
			t.Errorf("fast path %v, want %v", ok, c.fast)
		}
		o, err := OutlineOf("t.yml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		at := func(off int, want string) {
			t.Helper()
			if !strings.HasPrefix(text[off:], want) {
				t.Errorf("offset %d is at %q, want %q in\n%s", off, text[off:min(off+12, len(text))], want, text)
			}
		}
		if o.HostsKey == nil || len(o.Hosts) != 4 {
			t.Fatalf("outline %+v", o)
		}
		at(o.HostsKey.Offset, "hosts:")
		shapes := []Shape{BlockMapping, FlowMapping, Null, c.last}
		for i, h := range o.Hosts {
			at(h.Offset, h.Key+":")
			if h.Value != shapes[i] {
				t.Errorf("%s is %d, want %d", h.Key, h.Value, shapes[i])
			}
		}
		at(o.Hosts[1].ValueOffset, "{")
		for _, i := range []int{0, 1} {
			for _, k := range o.Keys(i) {
				at(k.Offset, k.Key+": ")
				if k.Value != Scalar {
					t.Errorf("%s of %s is %d", k.Key, o.Hosts[i].Key, k.Value)
				}
			}
		}
		if o.Keys(2) != nil || o.Keys(3) != nil {
			t.Error("keys of a null or an alias")
		}
	}
	if o, err := OutlineOf("t.yml", nil); err != nil || o.HostsKey != nil || !o.Mapping {
		t.Errorf("empty file: %+v %v", o, err)
	}
	if o, err := OutlineOf("t.yml", []byte("- a\n")); err != nil || o.Mapping {
		t.Errorf("a list: %+v %v", o, err)
	}
	if _, err := OutlineOf("t.yml", []byte("a: [\n")); err == nil || !strings.Contains(err.Error(), "t.yml:") {
		t.Errorf("syntax error: %v", err)
	}
}
