package config

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// The loader walks a compact document tree instead of yaml.v3's Nodes: a
// 100,000-host file is 1.2 million nodes, and as yaml.Nodes (about 200
// bytes each, full of pointers) they cost more time and garbage than the
// whole load may take. Here a node is 20 bytes without pointers, scalars
// are ranges of one text buffer, and children are ranges of one index
// slice. fastParse builds it directly for the plain YAML that configs are
// written in; anything else goes through yaml.v3 and fromYAML.

const (
	kScalar uint8 = iota + 1
	kMap
	kSeq
)

// Scalar styles: what the walker needs to know beyond the text.
const (
	sPlain  uint8 = iota // unquoted, untagged
	sQuoted              // quoted, block scalar or tagged !!str: a string whatever it looks like
	sNull                // empty, ~, null
	sMerge               // the << merge key
)

type node struct {
	kind  uint8
	style uint8
	line  int32
	col   int32
	a, b  uint32 // scalar: text[a:b]; map and seq: kids[a : a+b]
}

type tree struct {
	text  []byte
	nodes []node
	kids  []int32 // a map's kids alternate key, value
	root  int32   // -1: empty document
}

func (t *tree) pos(n int32) pos {
	return pos{t.nodes[n].line, t.nodes[n].col}
}

// bytes returns a scalar's text without copying; it must not outlive the load.
func (t *tree) bytes(n int32) []byte {
	nd := &t.nodes[n]
	return t.text[nd.a:nd.b]
}

func (t *tree) children(n int32) []int32 {
	nd := &t.nodes[n]
	return t.kids[nd.a : nd.a+nd.b]
}

// builder appends nodes; a container's children collect on a stack and are
// copied into kids when it closes, so each container's children end up
// contiguous although they are built depth first.
type builder struct {
	t       *tree
	pending []int32
}

func (b *builder) scalar(style uint8, line, col int, a, e int) int32 {
	b.t.nodes = append(b.t.nodes, node{kind: kScalar, style: style, line: int32(line), col: int32(col), a: uint32(a), b: uint32(e)})
	return int32(len(b.t.nodes) - 1)
}

// open starts a container; the returned mark is handed back to close.
func (b *builder) open(kind uint8, line, col int) (int32, int) {
	b.t.nodes = append(b.t.nodes, node{kind: kind, line: int32(line), col: int32(col)})
	return int32(len(b.t.nodes) - 1), len(b.pending)
}

func (b *builder) add(n int32) { b.pending = append(b.pending, n) }

func (b *builder) close(n int32, mark int) {
	nd := &b.t.nodes[n]
	nd.a = uint32(len(b.t.kids))
	nd.b = uint32(len(b.pending) - mark)
	b.t.kids = append(b.t.kids, b.pending[mark:]...)
	b.pending = b.pending[:mark]
}

// syntaxError is a YAML error with the line yaml.v3 put in its text.
type syntaxError struct {
	line int
	msg  string
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseTree returns the document's tree, or the syntax errors yaml.v3 found.
func parseTree(data []byte) (*tree, []syntaxError) {
	if t, ok := fastParse(data); ok {
		return t, nil
	}
	return slowParse(data)
}

func slowParse(data []byte) (t *tree, errs []syntaxError) {
	defer func() {
		// yaml.v3 still panics on a few malformed inputs; a config file
		// must never take the registry down, so that becomes a problem too.
		if r := recover(); r != nil {
			t, errs = nil, []syntaxError{{1, "the YAML parser failed on this file"}}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, []syntaxError{yamlError(err)}
	}
	var second yaml.Node
	if err := dec.Decode(&second); err == nil {
		line := second.Line
		if len(second.Content) > 0 {
			line = second.Content[0].Line
		}
		return nil, []syntaxError{{max(line, 1), "a second YAML document (after a --- line) is not allowed"}}
	} else if !errors.Is(err, io.EOF) {
		return nil, []syntaxError{yamlError(err)}
	}
	return fromYAML(&doc), nil
}

func yamlError(err error) syntaxError {
	s := err.Error()
	if m := yamlLineRE.FindStringSubmatch(s); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil && n > 0 {
			return syntaxError{n, m[2]}
		}
	}
	if len(s) > 6 && s[:6] == "yaml: " {
		s = s[6:]
	}
	return syntaxError{1, s}
}

// fromYAML converts yaml.v3's tree. Aliases become references to the
// anchored node, not copies, so an alias bomb stays as small as its text.
func fromYAML(doc *yaml.Node) *tree {
	t := &tree{root: -1}
	c := converter{b: builder{t: t}, anchors: map[*yaml.Node]int32{}}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		t.root = c.node(doc.Content[0])
	}
	return t
}

type converter struct {
	b       builder
	anchors map[*yaml.Node]int32
}

func (c *converter) node(n *yaml.Node) int32 {
	switch n.Kind {
	case yaml.AliasNode:
		if i, ok := c.anchors[n.Alias]; ok {
			return i
		}
		// Not seen before: it can only be an ancestor still being built
		// or something yaml.v3 let through; a null keeps the walk finite.
		return c.b.scalar(sNull, n.Line, n.Column, 0, 0)
	case yaml.MappingNode, yaml.SequenceNode:
		kind := kMap
		if n.Kind == yaml.SequenceNode {
			kind = kSeq
		}
		i, mark := c.b.open(kind, n.Line, n.Column)
		if n.Anchor != "" {
			c.anchors[n] = i
		}
		for _, k := range n.Content {
			c.b.add(c.node(k))
		}
		c.b.close(i, mark)
		return i
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			return c.node(n.Content[0])
		}
	case yaml.ScalarNode:
		style := sPlain
		switch tag := n.ShortTag(); {
		case tag == "!!null":
			style = sNull
		case tag == "!!merge":
			style = sMerge
		case n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0,
			tag == "!!str" && n.Style&yaml.TaggedStyle != 0:
			style = sQuoted
		}
		a := len(c.b.t.text)
		c.b.t.text = append(c.b.t.text, n.Value...)
		i := c.b.scalar(style, n.Line, n.Column, a, len(c.b.t.text))
		if n.Anchor != "" {
			c.anchors[n] = i
		}
		return i
	}
	return c.b.scalar(sNull, n.Line, n.Column, 0, 0)
}
