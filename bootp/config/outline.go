package config

import (
	"unicode/utf8"
)

// Outline is where the hosts of a config file sit in its text: what
// bootp/config/edit needs to change one host as text and leave every other
// byte (comments, blank lines, quotes, order) as the operator wrote it.
// It is read with the loader's own parser, so it is as fast as a load and
// never disagrees with it about the file's structure.
type Outline struct {
	Hosts []Entry // in file order; empty unless HostsKey's value is a mapping
	// HostsKey is the top-level hosts: key; nil when the file has none.
	HostsKey *Entry
	// Mapping is false when the file's top level is not a mapping (an
	// empty file is one).
	Mapping bool

	ol     *outliner
	values []int32 // each host's value node
}

// Entry is one key of a mapping and the shape of its value. Lines are
// 1-based; offsets are byte offsets into the text that was outlined.
type Entry struct {
	Key         string
	Line        int
	Col         int // 1-based, in characters
	Offset      int // of the key's first character (its quote, if quoted)
	Value       Shape
	ValueLine   int
	ValueOffset int // of the value's first character; for Null, where the parser put it
}

// Shape is how a value is written.
type Shape uint8

const (
	Null         Shape = iota // nothing, ~ or null
	Scalar                    // one value, plain or quoted
	BlockMapping              // keys on lines of their own, indented
	FlowMapping               // { key: value, ... }
	Other                     // a list, an alias (*name), or a collection with a tag or anchor before it
)

// OutlineOf outlines data. Its error is Problems when data is not YAML.
func OutlineOf(name string, data []byte) (*Outline, error) {
	t, syntax := parseTree(data)
	if syntax != nil {
		col := &collector{file: name}
		reportSyntax(col, syntax)
		return nil, col.err()
	}
	o := &Outline{}
	if t.root < 0 || t.nodes[t.root].kind != kMap {
		o.Mapping = t.root < 0 || (t.nodes[t.root].kind == kScalar && t.nodes[t.root].style == sNull)
		return o, nil
	}
	o.Mapping = true
	ol := &outliner{t: t, data: data, lines: lineStarts(data), names: map[string]string{}}
	kids := t.children(t.root)
	hostsV := int32(-1)
	for i := 0; i+1 < len(kids); i += 2 {
		if k := kids[i]; t.nodes[k].kind == kScalar && t.nodes[k].style != sMerge && string(t.bytes(k)) == "hosts" {
			e := ol.entry(k, kids[i+1], false)
			o.HostsKey, hostsV = &e, kids[i+1]
			break // a second hosts: is the loader's problem to report
		}
	}
	if o.HostsKey == nil || (o.HostsKey.Value != BlockMapping && o.HostsKey.Value != FlowMapping) {
		return o, nil
	}
	hk := t.children(hostsV)
	o.Hosts = make([]Entry, 0, len(hk)/2)
	o.values = make([]int32, 0, len(hk)/2)
	for i := 0; i+1 < len(hk); i += 2 {
		o.Hosts = append(o.Hosts, ol.entry(hk[i], hk[i+1], false))
		o.values = append(o.values, hk[i+1])
	}
	o.ol = ol
	return o, nil
}

// Keys lists the own keys of Hosts[i] (not those it merges with <<) when
// its value is a mapping. They are outlined on demand: a file of 100,000
// hosts has half a million.
func (o *Outline) Keys(i int) []Entry {
	e := &o.Hosts[i]
	if e.Value != BlockMapping && e.Value != FlowMapping {
		return nil
	}
	t := o.ol.t
	kids := t.children(o.values[i])
	keys := make([]Entry, 0, len(kids)/2)
	for j := 0; j+1 < len(kids); j += 2 {
		keys = append(keys, o.ol.entry(kids[j], kids[j+1], true))
	}
	return keys
}

type outliner struct {
	t     *tree
	data  []byte
	lines []int // byte offset of each line's start
	names map[string]string
}

// entry describes the pair k: v; intern is for key names that repeat
// (the keys of every host), so they cost one string, not one per host.
func (ol *outliner) entry(k, v int32, intern bool) Entry {
	t := ol.t
	kn, vn := &t.nodes[k], &t.nodes[v]
	e := Entry{
		Line:        int(kn.line),
		Col:         int(kn.col),
		Offset:      ol.offset(kn.line, kn.col),
		ValueLine:   int(vn.line),
		ValueOffset: ol.offset(vn.line, vn.col),
	}
	if kn.kind == kScalar {
		b := t.bytes(k)
		s, ok := ol.names[string(b)]
		if !ok {
			s = string(b)
			if intern {
				ol.names[s] = s
			}
		}
		e.Key = s
	}
	switch {
	case vn.line < kn.line || (vn.line == kn.line && vn.col < kn.col):
		e.Value = Other // an alias: the node is written elsewhere
	case vn.kind == kScalar && vn.style == sNull:
		e.Value = Null
	case vn.kind == kScalar:
		e.Value = Scalar
	case vn.kind == kMap && e.ValueOffset < len(ol.data) && ol.data[e.ValueOffset] == '{':
		e.Value = FlowMapping
	case vn.kind == kMap && vn.b > 0 && t.nodes[t.kids[vn.a]].line == vn.line && t.nodes[t.kids[vn.a]].col == vn.col:
		e.Value = BlockMapping
	default:
		e.Value = Other
	}
	return e
}

// offset converts a 1-based line and character column to a byte offset.
func (ol *outliner) offset(line, col int32) int {
	if line < 1 || int(line) > len(ol.lines) {
		return len(ol.data)
	}
	off := ol.lines[line-1]
	for c := int32(1); c < col && off < len(ol.data) && ol.data[off] != '\n'; c++ {
		if ol.data[off] < utf8.RuneSelf {
			off++
			continue
		}
		_, n := utf8.DecodeRune(ol.data[off:])
		off += n
	}
	return off
}

func lineStarts(data []byte) []int {
	n := 1
	for _, c := range data {
		if c == '\n' {
			n++
		}
	}
	starts := make([]int, 1, n)
	for i, c := range data {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}
