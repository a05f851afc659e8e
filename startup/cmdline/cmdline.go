// Package cmdline reads the kernel command line the way the kernel itself
// splits it (whitespace-separated words, double quotes group, name=value)
// and turns livebootp's arguments (wire.Arg*) and live-boot's equivalents
// into a typed Args.
//
// It only parses: it must never read files or touch the system, so the init
// and its tests (and the fuzzer) call it on plain strings.
package cmdline

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/livebootp/livebootp/wire"
)

// Param is one word of the command line. Flag-style words ("debug") have
// HasValue false.
type Param struct {
	Name     string
	Value    string
	HasValue bool
}

// String quotes the value when it needs it, so that Split(p.String())
// gives p back.
func (p Param) String() string {
	w := p.Name
	if p.HasValue {
		w += "=" + p.Value
	}
	if w == "" || (p.HasValue && p.Value == "") || strings.IndexFunc(w, func(r rune) bool { return r < 0x80 && isSpace(byte(r)) }) >= 0 {
		return `"` + w + `"`
	}
	return w
}

func isSpace(c byte) bool {
	// The kernel's isspace: space, \t, \n, \v, \f, \r.
	return c == ' ' || (c >= '\t' && c <= '\r')
}

// Split cuts a command line into words following the kernel's rules
// (lib/cmdline.c next_arg): a double quote toggles quoting, spaces outside
// quotes separate words, the first '=' separates name from value, and one
// pair of quotes around the whole word or around the value is removed.
// Words after a lone "--" belong to init and are not returned.
func Split(s string) []Param {
	var out []Param
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return out
		}
		start := i
		quoted := false
		if s[i] == '"' {
			i++
			start = i
			quoted = true
		}
		inQuote := quoted
		for ; i < len(s); i++ {
			c := s[i]
			if isSpace(c) && !inQuote {
				break
			}
			if c == '"' {
				inQuote = !inQuote
			}
		}
		word := s[start:i]
		trail := len(word) > 0 && word[len(word)-1] == '"'
		name, val, has := strings.Cut(word, "=")
		if has && strings.HasPrefix(val, `"`) {
			val = val[1:]
			if trail && val != "" {
				val = val[:len(val)-1]
			}
			trail = false // that closing quote is gone, whichever rule removed it
		}
		if quoted && trail {
			if has {
				val = val[:len(val)-1]
			} else {
				name = name[:len(name)-1]
			}
		}
		p := Param{Name: name, Value: val, HasValue: has}
		if !p.HasValue && p.Name == "--" {
			return out
		}
		out = append(out, p)
	}
}

// Args is what the init needs from the command line.
type Args struct {
	Registry   string // base URL, no trailing slash
	Image      string // NAME/VERSION
	Squashfs   string // URL; see SquashfsURL for the fallback
	SHA256     string // lower-case hex, 64 digits
	Verity     string // dm-verity root hash of the squashfs, lower-case hex, 64 digits
	Persistent string // auto (default), none, LABEL=x or a device path
	Hostname   string
	Insecure   bool
	NoPasswd   bool
	Debug      bool
	// BootIF is the MAC address of the NIC the machine booted from, from
	// pxelinux's BOOTIF=01-aa-bb-... (iPXE scripts can pass it too).
	BootIF net.HardwareAddr

	Params []Param // every word, in order
}

// Lookup returns the value of the last occurrence of name, as the kernel and
// live-boot do when an argument is repeated (cmdline-append overrides).
func (a Args) Lookup(name string) (string, bool) {
	for i := len(a.Params) - 1; i >= 0; i-- {
		if a.Params[i].Name == name {
			return a.Params[i].Value, true
		}
	}
	return "", false
}

// Parse splits s and checks livebootp's arguments. An error names the
// argument and what a valid value looks like; unknown words are kept in
// Params and otherwise ignored (they belong to the kernel or the image).
func Parse(s string) (Args, error) {
	a := Args{Params: Split(s), Persistent: "auto"}
	get := func(names ...string) (string, bool) {
		for _, n := range names {
			if v, ok := a.Lookup(n); ok {
				return v, true
			}
		}
		return "", false
	}
	flag := func(name string) (bool, error) {
		v, ok := a.Lookup(name)
		if !ok {
			return false, nil
		}
		switch strings.ToLower(v) {
		case "", "1", "y", "yes", "true", "on":
			return true, nil
		case "0", "n", "no", "false", "off":
			return false, nil
		}
		return false, fmt.Errorf("kernel argument %s=%q: want %s (flag) or %s=0/1", name, v, name, name)
	}
	var errs []string
	if v, ok := get(wire.ArgRegistry); ok {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Sprintf("kernel argument %s=%q: want an http:// or https:// URL such as http://10.0.0.1:8080", wire.ArgRegistry, v))
		}
		a.Registry = strings.TrimRight(v, "/")
	}
	if v, ok := get(wire.ArgImage); ok {
		if n, ver, ok := strings.Cut(v, "/"); !ok || n == "" || ver == "" || strings.Contains(ver, "/") {
			errs = append(errs, fmt.Sprintf("kernel argument %s=%q: want NAME/VERSION such as nginx-web-server/1.0.0", wire.ArgImage, v))
		}
		a.Image = v
	}
	if v, ok := get(wire.ArgSquashfs, wire.ArgFetch); ok {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Sprintf("kernel argument %s=%q: want the http:// or https:// URL of filesystem.squashfs", wire.ArgSquashfs, v))
		}
		a.Squashfs = v
	}
	if v, ok := get(wire.ArgSHA256); ok {
		v = strings.ToLower(v)
		if b, err := hex.DecodeString(v); err != nil || len(b) != 32 {
			errs = append(errs, fmt.Sprintf("kernel argument %s=%q: want 64 hexadecimal digits (sha256sum filesystem.squashfs)", wire.ArgSHA256, v))
		}
		a.SHA256 = v
	}
	if v, ok := get(wire.ArgVerity); ok {
		v = strings.ToLower(v)
		if b, err := hex.DecodeString(v); err != nil || len(b) != 32 {
			errs = append(errs, fmt.Sprintf("kernel argument %s=%q: want 64 hexadecimal digits (the manifest's verity root_hash)", wire.ArgVerity, v))
		}
		a.Verity = v
	}
	if v, ok := get(wire.ArgPersistent); ok {
		switch {
		case v == "auto" || v == "none":
		case strings.HasPrefix(v, "LABEL=") && len(v) > len("LABEL="):
		case strings.HasPrefix(v, "/dev/") && len(v) > len("/dev/"):
		default:
			errs = append(errs, fmt.Sprintf("kernel argument %s=%q: want auto, none, LABEL=NAME or a device such as /dev/vdb", wire.ArgPersistent, v))
		}
		a.Persistent = v
	}
	if v, ok := get(wire.ArgHostname, wire.ArgHostname2); ok {
		if !validHostname(v) {
			errs = append(errs, fmt.Sprintf("kernel argument %s=%q: want a host name (letters, digits, '-' and '.', at most 253 characters)", wire.ArgHostname, v))
		}
		a.Hostname = v
	}
	if v, ok := a.Lookup("BOOTIF"); ok {
		// pxelinux's form: ARP hardware type, then the MAC, dash separated.
		hw := v
		if len(v) == 20 && strings.HasPrefix(v, "01-") {
			hw = v[3:]
		}
		mac, err := net.ParseMAC(strings.ReplaceAll(hw, "-", ":"))
		if err != nil || len(mac) != 6 {
			errs = append(errs, fmt.Sprintf("kernel argument BOOTIF=%q: want 01-aa-bb-cc-dd-ee-ff", v))
		}
		a.BootIF = mac
	}
	var err error
	for _, f := range []struct {
		name string
		dst  *bool
	}{{wire.ArgInsecure, &a.Insecure}, {wire.ArgNoPasswd, &a.NoPasswd}, {wire.ArgDebug, &a.Debug}} {
		if *f.dst, err = flag(f.name); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return a, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return a, nil
}

// SquashfsURL is the image to fetch: livebootp.squashfs (or fetch=), else
// derived from livebootp.registry and livebootp.image.
func (a Args) SquashfsURL() (string, error) {
	if a.Squashfs != "" {
		return a.Squashfs, nil
	}
	if a.Registry != "" && a.Image != "" {
		return a.Registry + wire.PathImages + a.Image + "/" + wire.ImageSquashfs, nil
	}
	return "", fmt.Errorf("no image to boot: the kernel command line has neither %s= (or fetch=) nor %s= with %s=",
		wire.ArgSquashfs, wire.ArgRegistry, wire.ArgImage)
}

// ManifestURL is where the image's manifest.json lives: next to the
// squashfs when its URL ends in filesystem.squashfs, else on the registry.
// Empty when neither is known.
func (a Args) ManifestURL() string {
	if sq, err := a.SquashfsURL(); err == nil && strings.HasSuffix(sq, "/"+wire.ImageSquashfs) {
		return strings.TrimSuffix(sq, wire.ImageSquashfs) + wire.ImageManifest
	}
	if a.Registry != "" && a.Image != "" {
		return a.Registry + wire.PathImages + a.Image + "/" + wire.ImageManifest
	}
	return ""
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// ValidHostname reports whether h can be used as the machine's host name.
func ValidHostname(h string) bool { return validHostname(h) }
