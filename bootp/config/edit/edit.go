// Package edit changes the hosts of a registry config file (livebootp host
// add|set|rm) as text: it rewrites only the lines of the host it changes,
// so every comment, blank line, quote, line ending and key order the
// operator wrote stays. Check loads the result with the real loader (the
// problems `livebootp check` prints, with lines of the edited text) and
// verifies that the edit did what it was asked and nothing else; Write
// replaces the file atomically, on FAT too.
//
// It never writes a file that does not load, never rewrites a host it
// cannot place exactly (hosts written as one flow mapping, aliases): it
// says so and leaves the file to a text editor. It never talks to a
// running registry: the CLI asks for the reload.
package edit

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/livebootp/livebootp/bootp/config"
)

// The keys of a host block, as configs/config-default.yml documents them.
const (
	MAC     = "hardware-ethernet"
	Address = "fixed-address"
	Image   = "image-name"
	Keys    = "ssh-authorized-keys"
	Cmdline = "cmdline-append"
)

// hostKeys is the order Add writes keys in.
var hostKeys = []string{MAC, Address, Image, Keys, Cmdline}

// Setting is a host key and its new value. For Set, Value "" removes the
// key; Add leaves empty ones out.
type Setting struct {
	Key, Value string
}

// File is a config file being edited: edits change its text in memory
// only, until Write.
type File struct {
	Path string // as given; problems name it
	real string // symlinks resolved: the file Write replaces
	mode fs.FileMode
	orig []byte
	text []byte
	nl   string // the file's line ending
	ops  []op   // what was asked, for Check to verify
	// checked is true when Check passed on the text as it is.
	checked bool
}

type op struct {
	remove   bool
	name     string
	settings []Setting
}

// Open reads the file at path for editing.
func Open(path string) (*File, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	st, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := os.ReadFile(real)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	f := &File{Path: path, real: real, mode: st.Mode().Perm(), orig: data, text: slices.Clone(data), nl: "\n"}
	if i := bytes.IndexByte(data, '\n'); i > 0 && data[i-1] == '\r' {
		f.nl = "\r\n"
	}
	return f, nil
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Text is the edited text.
func (f *File) Text() []byte { return f.text }

// Changed reports whether the edits changed the text.
func (f *File) Changed() bool { return !bytes.Equal(f.orig, f.text) }

func (f *File) outline() (*config.Outline, error) {
	return config.OutlineOf(f.Path, f.text)
}

// where names a line of the edited text.
func (f *File) where(line int) string { return fmt.Sprintf("%s:%d", f.Path, line) }

// NotFoundError is the error of Set, Remove and Show for a host the file
// does not have.
type NotFoundError struct {
	File, Name string
	Suggest    string // the closest host name, or ""
}

func (e *NotFoundError) Error() string {
	msg := fmt.Sprintf("%s: no host %q", e.File, e.Name)
	if e.Suggest != "" {
		return msg + fmt.Sprintf("; did you mean %q?", e.Suggest)
	}
	return msg + "; `livebootp hosts` or `livebootp check` list the hosts, `livebootp host add` adds one"
}

// locate outlines the text and finds the host name in it.
func (f *File) locate(name string) (*config.Outline, int, error) {
	o, err := f.outline()
	if err != nil {
		return nil, 0, err
	}
	if err := f.hostsEditable(o); err != nil {
		return nil, 0, err
	}
	i, err := f.find(o, name)
	return o, i, err
}

func (f *File) find(o *config.Outline, name string) (int, error) {
	for i := range o.Hosts {
		if o.Hosts[i].Key == name {
			return i, nil
		}
	}
	names := make([]string, len(o.Hosts))
	for i := range o.Hosts {
		names[i] = o.Hosts[i].Key
	}
	return -1, &NotFoundError{File: f.Path, Name: name, Suggest: config.Closest(name, names)}
}

func checkSettings(settings []Setting) error {
	for _, s := range settings {
		if !slices.Contains(hostKeys, s.Key) {
			return fmt.Errorf("%q is not a host key; a host has %s", s.Key, strings.Join(hostKeys, ", "))
		}
		if !utf8.ValidString(s.Value) {
			return fmt.Errorf("the value of %s is not UTF-8 text", s.Key)
		}
		if strings.ContainsAny(s.Value, "\n\r") {
			return fmt.Errorf("the value of %s has a line break; write it on one line", s.Key)
		}
	}
	return nil
}

// hostsEditable says why the hosts: section cannot be edited as text, if
// it cannot.
func (f *File) hostsEditable(o *config.Outline) error {
	if hk := o.HostsKey; hk != nil && (hk.Value == config.FlowMapping && len(o.Hosts) > 0 || hk.Value == config.Other) {
		return fmt.Errorf("%s: hosts: is written as one flow mapping or alias, which cannot be edited line by line; write each host as a block under hosts: (as configs/config-default.yml shows), or edit the file by hand",
			f.where(hk.Line))
	}
	return nil
}

// Add appends a host to hosts:, creating the section when the file has
// none. A host of that name must not exist.
func (f *File) Add(name string, settings ...Setting) error {
	if err := checkSettings(settings); err != nil {
		return err
	}
	if name == "" || !utf8.ValidString(name) || strings.ContainsAny(name, "\n\r") {
		return fmt.Errorf("%q is not a host name", name)
	}
	o, err := f.outline()
	if err != nil {
		return err
	}
	if err := f.hostsEditable(o); err != nil {
		return err
	}
	for _, h := range o.Hosts {
		if h.Key == name {
			return fmt.Errorf("%s: host %q already exists; change it with `livebootp host set %s`, or pick another name", f.where(h.Line), name, name)
		}
	}
	hk := o.HostsKey
	if hk == nil {
		if !o.Mapping {
			return fmt.Errorf("%s: the file's top level is not a mapping of bootp-registry: and hosts:; `livebootp check` says what is wrong", f.Path)
		}
		f.apply(f.insert(len(f.text), "hosts:"+f.nl+f.block(name, 2, 4, settings)))
		f.ops = append(f.ops, op{name: name, settings: settings})
		return nil
	}
	if hk.Value == config.Scalar {
		return fmt.Errorf("%s: hosts: has a single value, not a mapping of hosts; `livebootp check` says what is wrong", f.where(hk.Line))
	}
	indent, inner := hk.Col-1+2, hk.Col-1+4
	if len(o.Hosts) > 0 {
		indent = o.Hosts[0].Col - 1
		inner = indent + 2
		for i, h := range o.Hosts {
			if h.Value != config.BlockMapping {
				continue
			}
			if keys := o.Keys(i); len(keys) > 0 {
				inner = indent + keys[0].Col - h.Col
				break
			}
		}
	}
	var sp []splice
	if len(o.Hosts) == 0 {
		// "hosts:", "hosts: ~" or "hosts: {}": the value goes.
		s, ok := f.clearValue(hk)
		if !ok {
			return fmt.Errorf("%s: cannot place a host after hosts: here; edit the file by hand", f.where(hk.Line))
		}
		sp = append(sp, s)
	}
	sp = append(sp, f.insert(f.blockEnd(hk.Offset, hk.Col), f.block(name, indent, inner, settings)))
	f.apply(sp...)
	f.ops = append(f.ops, op{name: name, settings: settings})
	return nil
}

// Set changes keys of an existing host; a Setting with Value "" removes
// that key. Keys it does not name stay as they are.
func (f *File) Set(name string, settings ...Setting) error {
	if err := checkSettings(settings); err != nil {
		return err
	}
	o, i, err := f.locate(name)
	if err != nil {
		return err
	}
	h := &o.Hosts[i]
	var sp []splice
	switch h.Value {
	case config.BlockMapping, config.Null:
		sp, err = f.setBlock(h, o.Keys(i), settings)
	case config.FlowMapping:
		sp, err = f.setFlow(h, o.Keys(i), settings)
	default:
		err = fmt.Errorf("%s: host %q is not a mapping of settings here (an alias or a single value); edit it by hand", f.where(h.Line), name)
	}
	if err != nil {
		return err
	}
	f.apply(sp...)
	f.ops = append(f.ops, op{name: name, settings: settings})
	return nil
}

// Remove deletes a host's lines: its key, its settings and the comments
// indented under it.
func (f *File) Remove(name string) error {
	o, i, err := f.locate(name)
	if err != nil {
		return err
	}
	h := &o.Hosts[i]
	start, ok := f.ownLine(h.Offset)
	if !ok {
		return fmt.Errorf("%s: host %q does not start its line; edit it by hand", f.where(h.Line), name)
	}
	f.apply(splice{at: start, end: f.blockEnd(h.Offset, h.Col)})
	f.ops = append(f.ops, op{remove: true, name: name})
	return nil
}

// Show returns a host's lines as the file has them, and the line they start on.
func (f *File) Show(name string) (int, string, error) {
	o, i, err := f.locate(name)
	if err != nil {
		return 0, "", err
	}
	h := &o.Hosts[i]
	return h.Line, string(f.text[lineStart(f.text, h.Offset):f.blockEnd(h.Offset, h.Col)]), nil
}

// setBlock changes a host written as indented lines.
func (f *File) setBlock(h *config.Entry, keys []config.Entry, settings []Setting) ([]splice, error) {
	inner := h.Col - 1 + 2
	if len(keys) > 0 {
		inner = keys[0].Col - 1
	}
	var sp []splice
	var added strings.Builder
	for _, s := range settings {
		i := slices.IndexFunc(keys, func(e config.Entry) bool { return e.Key == s.Key })
		if i < 0 {
			if s.Value != "" {
				added.WriteString(strings.Repeat(" ", inner) + s.Key + ": " + render(s.Key, s.Value) + f.nl)
			}
			continue
		}
		k := keys[i]
		start, ok := f.ownLine(k.Offset)
		if !ok {
			return nil, fmt.Errorf("%s: %s of host %q does not start its line; edit it by hand", f.where(k.Line), s.Key, h.Key)
		}
		end := f.blockEnd(k.Offset, k.Col)
		if s.Value == "" {
			sp = append(sp, splice{at: start, end: end})
			continue
		}
		colon, vend, oneLine := valueSpan(f.text, k.Offset)
		if oneLine && end == nextLine(f.text, k.Offset) {
			// Only the value changes: spacing and a comment after it stay.
			sp = append(sp, splice{at: colon + 1, end: vend, with: " " + render(s.Key, s.Value)})
			continue
		}
		sp = append(sp, splice{at: start, end: end, with: strings.Repeat(" ", inner) + s.Key + ": " + render(s.Key, s.Value) + f.nl})
	}
	if added.Len() > 0 {
		if h.Value == config.Null {
			s, ok := f.clearValue(h)
			if !ok {
				return nil, fmt.Errorf("%s: cannot place settings after host %q here; edit it by hand", f.where(h.Line), h.Key)
			}
			sp = append(sp, s)
		}
		sp = append(sp, f.insert(f.blockEnd(h.Offset, h.Col), added.String()))
	}
	return sp, nil
}

// setFlow changes a host written as { key: value, ... } on one line: the
// mapping is written again, untouched keys as they were.
func (f *File) setFlow(h *config.Entry, keys []config.Entry, settings []Setting) ([]splice, error) {
	open := h.ValueOffset
	items, end, ok := splitFlow(f.text, open)
	if !ok || len(items) != len(keys) {
		return nil, fmt.Errorf("%s: host %q is a flow mapping over several lines; edit it by hand", f.where(h.Line), h.Key)
	}
	for i := range items {
		for _, s := range settings {
			if keys[i].Key == s.Key {
				items[i] = s.Key + ": " + render(s.Key, s.Value)
				if s.Value == "" {
					items[i] = ""
				}
			}
		}
	}
	for _, s := range settings {
		if s.Value != "" && !slices.ContainsFunc(keys, func(e config.Entry) bool { return e.Key == s.Key }) {
			items = append(items, s.Key+": "+render(s.Key, s.Value))
		}
	}
	items = slices.DeleteFunc(items, func(s string) bool { return s == "" })
	l, r := "{", "}"
	if open+1 < len(f.text) && f.text[open+1] == ' ' {
		l, r = "{ ", " }"
	}
	return []splice{{at: open, end: end, with: l + strings.Join(items, ", ") + r}}, nil
}

// block renders a new host.
func (f *File) block(name string, indent, inner int, settings []Setting) string {
	var b strings.Builder
	b.WriteString(strings.Repeat(" ", indent) + plainOrQuoted(name) + ":" + f.nl)
	for _, k := range hostKeys {
		for _, s := range settings {
			if s.Key == k && s.Value != "" {
				b.WriteString(strings.Repeat(" ", inner) + k + ": " + render(k, s.Value) + f.nl)
			}
		}
	}
	return b.String()
}

// render writes a value the way the seed's example does: MAC and IP
// addresses quoted (YAML 1.1 readers take 52:54:00:12:34:56 for a number),
// the rest plain when that reads back the same, else double-quoted.
func render(key, v string) string {
	if key == MAC || key == Address {
		return strconv.Quote(v)
	}
	return plainOrQuoted(v)
}

func plainOrQuoted(v string) string {
	if v == "" {
		return `""`
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._/+=@%", c) >= 0) {
			return strconv.Quote(v)
		}
	}
	// Words and numbers that a YAML reader would take for something else.
	switch strings.ToLower(v) {
	case "null", "true", "false", "yes", "no", "on", "off", "y", "n", ".nan", ".inf", "-.inf", "+.inf":
		return strconv.Quote(v)
	}
	if c := v[0]; c == '-' || c == '.' || c == '%' || c == '@' {
		return strconv.Quote(v)
	}
	if _, err := strconv.ParseFloat(strings.ReplaceAll(v, "_", ""), 64); err == nil {
		return strconv.Quote(v)
	}
	return v
}

// Check loads the edited text with the real loader, as `livebootp check`
// and the registry would load the written file, and verifies that the
// hosts are what the edits asked for: the edited ones changed as asked,
// every other one as it was. Its error is config.Problems when the result
// does not load.
func (f *File) Check(opts config.Options) (*config.Config, error) {
	want, complete := f.expected(opts)
	cfg, err := config.Parse(f.Path, f.text, opts)
	if err != nil {
		return nil, err
	}
	got := make([]hostValues, len(cfg.Hosts))
	for i, h := range cfg.Hosts {
		got[i] = valuesOf(h)
	}
	const bug = "%s: the edited file loads, but %s (a bug in livebootp host: nothing was written)"
	if complete {
		if !slices.Equal(got, want) {
			return nil, fmt.Errorf(bug, f.Path, fmt.Sprintf("its hosts differ from what was asked: %v instead of %v", diff(got, want), diff(want, got)))
		}
		f.checked = true
		return cfg, nil
	}
	// The original does not load (the edit may be what fixes it): only
	// what the edits set is known.
	for _, o := range f.ops {
		i := slices.IndexFunc(got, func(h hostValues) bool { return h.name == o.name })
		var removed, gone bool // some edit removed it; the last one did
		for _, p := range f.ops {
			if p.name == o.name {
				removed, gone = removed || p.remove, p.remove
			}
		}
		switch {
		case gone && i >= 0:
			return nil, fmt.Errorf(bug, f.Path, fmt.Sprintf("host %q is still there", o.name))
		case removed:
			continue // what it was before a re-add is unknown
		case i < 0:
			return nil, fmt.Errorf(bug, f.Path, fmt.Sprintf("host %q is missing", o.name))
		}
		want := got[i]
		for _, s := range o.settings {
			want.set(s)
		}
		if got[i] != want {
			return nil, fmt.Errorf(bug, f.Path, fmt.Sprintf("host %q is %v, not %v", o.name, got[i], want))
		}
	}
	f.checked = true
	return cfg, nil
}

// expected is the original file's hosts with the edits replayed on them,
// kept as values only (a file of 100,000 hosts should not be in memory
// twice as a Config). complete is false when the original does not load.
func (f *File) expected(opts config.Options) (want []hostValues, complete bool) {
	orig, err := config.Parse(f.Path, f.orig, opts)
	if err != nil {
		return nil, false
	}
	want = make([]hostValues, len(orig.Hosts))
	for i, h := range orig.Hosts {
		want[i] = valuesOf(h)
	}
	return f.replay(want), true
}

// replay applies the edits to hosts.
func (f *File) replay(hosts []hostValues) []hostValues {
	for _, o := range f.ops {
		i := slices.IndexFunc(hosts, func(h hostValues) bool { return h.name == o.name })
		switch {
		case o.remove:
			if i >= 0 {
				hosts = slices.Delete(hosts, i, i+1)
			}
			continue
		case i < 0:
			hosts = append(hosts, hostValues{name: o.name})
			i = len(hosts) - 1
		}
		for _, s := range o.settings {
			hosts[i].set(s)
		}
	}
	return hosts
}

// hostValues is a host as compared by Check, without allocating: the
// strings are the loaded Config's.
type hostValues struct {
	name                 string
	mac                  [6]byte
	addr                 netip.Addr
	image, keys, cmdline string
}

func (v hostValues) String() string {
	return fmt.Sprintf("{%s %s %s %s %s %q}", v.name, net.HardwareAddr(v.mac[:]), v.addr, v.image, v.keys, v.cmdline)
}

func valuesOf(h *config.Host) hostValues {
	v := hostValues{name: h.Name, addr: h.Address, image: h.Image, keys: h.SSHAuthorizedKeys, cmdline: h.CmdlineAppend}
	copy(v.mac[:], h.MAC)
	return v
}

func (v *hostValues) set(s Setting) {
	switch s.Key {
	case MAC:
		v.mac = [6]byte{}
		if m, err := net.ParseMAC(s.Value); err == nil {
			copy(v.mac[:], m)
		}
	case Address:
		v.addr, _ = netip.ParseAddr(s.Value)
		v.addr = v.addr.Unmap()
	case Image:
		v.image = s.Value
	case Keys:
		v.keys = s.Value
	case Cmdline:
		v.cmdline = s.Value
	}
}

func diff(a, b []hostValues) []hostValues {
	var d []hostValues
	for _, h := range a {
		if !slices.Contains(b, h) {
			d = append(d, h)
		}
	}
	return d
}

// Write replaces the file with the edited text, atomically, once Check
// passed on it. It refuses when the file changed on disk since Open
// (another edit): nothing of either is lost, the command is run again.
func (f *File) Write() error {
	if !f.checked {
		return fmt.Errorf("%s: the edited text was not checked (Check before Write); nothing was written", f.Path)
	}
	now, err := os.ReadFile(f.real)
	if err != nil {
		return fmt.Errorf("%s: %w", f.Path, unwrapPath(err))
	}
	if !bytes.Equal(now, f.orig) {
		return fmt.Errorf("%s changed while it was being edited (another edit?); nothing was written: run the command again", f.Path)
	}
	return WriteFile(f.real, f.text, f.mode)
}
