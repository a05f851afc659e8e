package tftp

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want rawRequest
		err  bool
	}{
		{"plain", "\x00\x01pxelinux.0\x00octet\x00", rawRequest{op: opRRQ, filename: "pxelinux.0", mode: "octet"}, false},
		{"mode case", "\x00\x01a\x00OcTeT\x00", rawRequest{op: opRRQ, filename: "a", mode: "octet"}, false},
		{"no final NUL", "\x00\x01a\x00octet", rawRequest{op: opRRQ, filename: "a", mode: "octet"}, false},
		{"options", "\x00\x01a\x00octet\x00BLKSIZE\x001468\x00tsize\x000\x00",
			rawRequest{op: opRRQ, filename: "a", mode: "octet", options: map[string]string{"blksize": "1468", "tsize": "0"}}, false},
		{"odd option dropped", "\x00\x01a\x00octet\x00blksize\x00",
			rawRequest{op: opRRQ, filename: "a", mode: "octet"}, false},
		{"first duplicate wins", "\x00\x01a\x00octet\x00blksize\x00100\x00blksize\x00200\x00",
			rawRequest{op: opRRQ, filename: "a", mode: "octet", options: map[string]string{"blksize": "100"}}, false},
		{"wrq", "\x00\x02a\x00octet\x00", rawRequest{op: opWRQ, filename: "a", mode: "octet"}, false},
		{"empty name", "\x00\x01\x00octet\x00", rawRequest{}, true},
		{"no mode", "\x00\x01abc", rawRequest{}, true},
		{"short", "\x00\x01", rawRequest{}, true},
		{"ack is not a request", "\x00\x04\x00\x01", rawRequest{}, true},
		{"huge", "\x00\x01" + strings.Repeat("a", 2000) + "\x00octet\x00", rawRequest{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRequest([]byte(tc.in))
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if err == nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNegotiate(t *testing.T) {
	oack := func(kv ...string) []byte {
		b := []byte{0, opOACK}
		for _, s := range kv {
			b = append(append(b, s...), 0)
		}
		return b
	}
	for _, tc := range []struct {
		name       string
		opts       map[string]string
		size       int64
		bs, win, t int
		oack       []byte
	}{
		{"none", nil, 10, 512, 1, 0, nil},
		{"blksize capped", map[string]string{"blksize": "65464"}, 10, 1468, 1, 0, oack("blksize", "1468")},
		{"blksize small", map[string]string{"blksize": "8"}, 10, 8, 1, 0, oack("blksize", "8")},
		{"blksize too small ignored", map[string]string{"blksize": "7"}, 10, 512, 1, 0, nil},
		{"blksize garbage ignored", map[string]string{"blksize": "abc"}, 10, 512, 1, 0, nil},
		{"blksize negative ignored", map[string]string{"blksize": "-1"}, 10, 512, 1, 0, nil},
		{"tsize", map[string]string{"tsize": "0"}, 12345, 512, 1, 0, oack("tsize", "12345")},
		{"tsize unknown size omitted", map[string]string{"tsize": "0"}, -1, 512, 1, 0, nil},
		{"timeout", map[string]string{"timeout": "3"}, 1, 512, 1, 3, oack("timeout", "3")},
		{"timeout 0 ignored", map[string]string{"timeout": "0"}, 1, 512, 1, 0, nil},
		{"timeout 256 ignored", map[string]string{"timeout": "256"}, 1, 512, 1, 0, nil},
		{"windowsize", map[string]string{"windowsize": "16"}, 1, 512, 16, 0, oack("windowsize", "16")},
		{"windowsize capped", map[string]string{"windowsize": "65535"}, 1, 512, 64, 0, oack("windowsize", "64")},
		{"windowsize 0 ignored", map[string]string{"windowsize": "0"}, 1, 512, 1, 0, nil},
		{"unknown ignored", map[string]string{"multicast": "", "utimeout": "1000"}, 1, 512, 1, 0, nil},
		{"all in fixed order", map[string]string{"windowsize": "4", "timeout": "2", "tsize": "0", "blksize": "1024"}, 99, 1024, 4, 2,
			oack("blksize", "1024", "tsize", "99", "timeout", "2", "windowsize", "4")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := negotiate(tc.opts, tc.size, 1468, 64)
			if p.blksize != tc.bs || p.windowsize != tc.win || p.timeoutSec != tc.t || !bytes.Equal(p.oack, tc.oack) {
				t.Errorf("got bs=%d win=%d timeout=%d oack=%q, want %d %d %d %q", p.blksize, p.windowsize, p.timeoutSec, p.oack, tc.bs, tc.win, tc.t, tc.oack)
			}
		})
	}
}

func TestToNetascii(t *testing.T) {
	got := toNetascii([]byte("a\nb\rc\r\n"))
	if want := []byte("a\r\nb\r\x00c\r\x00\r\n"); !bytes.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestAppendError(t *testing.T) {
	got := appendError(nil, ErrAccessViolation, "read-only server")
	if want := "\x00\x05\x00\x02read-only server\x00"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Whatever arrives, parsing and negotiation stay within bounds: go test -fuzz=FuzzRequest.
func FuzzRequest(f *testing.F) {
	f.Add([]byte("\x00\x01pxelinux.0\x00octet\x00blksize\x001468\x00tsize\x000\x00windowsize\x0016\x00"))
	f.Add([]byte("\x00\x02a\x00netascii\x00timeout\x00300\x00"))
	f.Add([]byte("\x00\x01\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRequest(b)
		if err != nil {
			return
		}
		p := negotiate(r.options, 1<<20, DefaultMaxBlockSize, DefaultMaxWindowSize)
		if p.blksize < minBlockSize || p.blksize > DefaultMaxBlockSize || p.windowsize < 1 || p.windowsize > DefaultMaxWindowSize ||
			p.timeoutSec < 0 || p.timeoutSec > maxTimeoutSecs || len(p.oack) > 512 {
			t.Fatalf("negotiated %+v from %q", p, b)
		}
		if c, err := CleanPath(r.filename); err == nil && (strings.Contains("/"+c+"/", "/../") || strings.HasPrefix(c, "/")) {
			t.Fatalf("CleanPath(%q) = %q", r.filename, c)
		}
	})
}
