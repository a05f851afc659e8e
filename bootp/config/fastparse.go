package config

import "bytes"

// fastParse builds the tree for the subset of YAML that configs are
// written in: block mappings with simple keys, block sequences, one-line
// flow sequences of scalars and one-line flow mappings of simple keys and
// scalars, plain and quoted scalars without escapes,
// comments, ASCII text with LF line ends. It reports false for anything
// else (anchors, tags, block scalars, escapes, flow mappings, multi-line
// scalars, tabs, CR, non-ASCII, odd indentation, errors), and the caller
// then asks yaml.v3, which also writes the error messages: this parser never
// decides what is an error, so it cannot disagree with yaml.v3 about one.
// FuzzFastParse checks that whatever it accepts, yaml.v3 reads the same way.
func fastParse(data []byte) (*tree, bool) {
	lines := 1
	for _, c := range data {
		if c >= 0x7f || (c < 0x20 && c != '\n') {
			return nil, false
		}
		if c == '\n' {
			lines++
		}
	}
	t := &tree{text: data, root: -1, nodes: make([]node, 0, 2*lines+1), kids: make([]int32, 0, 2*lines)}
	p := fastParser{b: builder{t: t, pending: make([]int32, 0, 64)}, stack: make([]frame, 0, 8)}
	if !p.run(data) {
		return nil, false
	}
	return t, true
}

type frame struct {
	kind   uint8
	indent int
	idx    int32
	mark   int
	// flush marks a block sequence whose dashes sit at its key's indent
	// ("key:\n- a"): a line at that indent without a dash ends it.
	flush bool
}

type fastParser struct {
	b     builder
	stack []frame

	pending    bool // a key waits for its value on later lines
	pendIndent int
	pendLine   int
	pendCol    int
}

// maxFastDepth keeps the stack small; deeper files are yaml.v3's business.
const maxFastDepth = 64

// maxSimpleKey is libyaml's limit on an implicit key's length.
const maxSimpleKey = 1024

func (p *fastParser) push(kind uint8, indent, line, col int, flush bool) bool {
	if len(p.stack) >= maxFastDepth {
		return false
	}
	idx, mark := p.b.open(kind, line, col)
	p.stack = append(p.stack, frame{kind: kind, indent: indent, idx: idx, mark: mark, flush: flush})
	return true
}

func (p *fastParser) pop() {
	f := p.stack[len(p.stack)-1]
	p.stack = p.stack[:len(p.stack)-1]
	p.b.close(f.idx, f.mark)
}

func (p *fastParser) run(data []byte) bool {
	started := false // content or a document start seen
	lineNo := 0
	for off := 0; off < len(data); {
		lineNo++
		start := off
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			end = len(data)
		} else {
			end += off
		}
		off = end + 1
		line := data[start:end]

		i := 0
		for i < len(line) && line[i] == ' ' {
			i++
		}
		if i == len(line) || line[i] == '#' {
			continue
		}
		rest := line[i:]
		if i == 0 && (bytes.HasPrefix(rest, []byte("---")) || bytes.HasPrefix(rest, []byte("..."))) {
			if started || len(bytes.TrimRight(rest, " ")) != 3 || rest[0] != '-' {
				return false
			}
			started = true
			continue
		}
		started = true
		isSeq := rest[0] == '-' && (len(rest) == 1 || rest[1] == ' ')
		col := i + 1

		switch {
		case p.pending:
			p.pending = false
			kind := kMap
			if isSeq {
				kind = kSeq
			}
			switch {
			case i > p.pendIndent:
				if !p.push(kind, i, lineNo, col, false) {
					return false
				}
				p.b.add(p.stack[len(p.stack)-1].idx)
				// The parent's pending list must get the child before the
				// child collects its own: add it below the child's mark.
				p.fixChildOrder()
			case i == p.pendIndent && isSeq:
				if !p.push(kSeq, i, lineNo, col, true) {
					return false
				}
				p.b.add(p.stack[len(p.stack)-1].idx)
				p.fixChildOrder()
			default:
				p.b.add(p.b.scalar(sNull, p.pendLine, p.pendCol, 0, 0))
			}
		case len(p.stack) == 0:
			if p.b.t.root >= 0 || i != 0 || isSeq {
				return false
			}
			if !p.push(kMap, 0, lineNo, col, false) {
				return false
			}
			p.b.t.root = p.stack[0].idx
		}

		for len(p.stack) > 0 {
			top := p.stack[len(p.stack)-1]
			if top.indent > i || (top.flush && top.indent == i && !isSeq) {
				p.pop()
				continue
			}
			break
		}
		if len(p.stack) == 0 {
			return false
		}
		top := p.stack[len(p.stack)-1]
		if top.indent != i {
			return false
		}

		if top.kind == kSeq {
			if !isSeq {
				return false
			}
			k := 1
			for k < len(rest) && rest[k] == ' ' {
				k++
			}
			if k == len(rest) || rest[k] == '#' {
				return false // a nested block or a null item
			}
			n, ok := p.value(rest, k, lineNo, start+i, i)
			if !ok {
				return false
			}
			p.b.add(n)
			continue
		}
		if isSeq {
			return false
		}

		j := 0
		for j < len(rest) && keyChar(rest[j]) {
			j++
		}
		if j == 0 || j > maxSimpleKey || !alnum(rest[0]) || j == len(rest) || rest[j] != ':' || (j+1 < len(rest) && rest[j+1] != ' ') {
			return false
		}
		style := sPlain
		if isNullText(rest[:j]) {
			style = sNull
		}
		p.b.add(p.b.scalar(style, lineNo, col, start+i, start+i+j))
		k := j + 1
		for k < len(rest) && rest[k] == ' ' {
			k++
		}
		if k == len(rest) || rest[k] == '#' {
			p.pending, p.pendIndent, p.pendLine, p.pendCol = true, i, lineNo, i+j+2
			continue
		}
		n, ok := p.value(rest, k, lineNo, start+i, i)
		if !ok {
			return false
		}
		p.b.add(n)
	}
	if p.pending {
		p.b.add(p.b.scalar(sNull, p.pendLine, p.pendCol, 0, 0))
	}
	for len(p.stack) > 0 {
		p.pop()
	}
	return true
}

// fixChildOrder is called right after push+add: push recorded the child's
// mark before the child was added to its parent's list, so the child
// would collect itself; move the mark past it.
func (p *fastParser) fixChildOrder() {
	p.stack[len(p.stack)-1].mark++
}

// value parses the scalar or flow sequence at rest[k:], which must run to
// the end of the line. base is rest's offset in the text, indent its column.
func (p *fastParser) value(rest []byte, k, line, base, indent int) (int32, bool) {
	col := indent + k + 1
	switch c := rest[k]; c {
	case '"', '\'':
		a, e, next, ok := quoted(rest, k)
		if !ok || !tailOK(rest, next) {
			return 0, false
		}
		return p.b.scalar(sQuoted, line, col, base+a, base+e), true
	case '[':
		return p.flowSeq(rest, k, line, base, indent)
	case '{':
		return p.flowMap(rest, k, line, base, indent)
	case '-', '?', ':', ',', ']', '}', '#', '&', '*', '!', '|', '>', '%', '@', '`', '\\':
		return 0, false
	}
	e := len(rest)
	if h := bytes.Index(rest[k:], []byte(" #")); h >= 0 {
		e = k + h
	}
	for e > k && rest[e-1] == ' ' {
		e--
	}
	v := rest[k:e]
	if v[len(v)-1] == ':' || bytes.Contains(v, []byte(": ")) || string(v) == "<<" {
		return 0, false
	}
	style := sPlain
	if isNullText(v) {
		style = sNull
	}
	return p.b.scalar(style, line, col, base+k, base+e), true
}

// flowSeq reads a one-line flow sequence of scalars: [a, "b"].
func (p *fastParser) flowSeq(rest []byte, k, line, base, indent int) (int32, bool) {
	return p.flow(kSeq, rest, k, line, base, indent)
}

// flowMap reads a one-line flow mapping of simple keys and scalars:
// { address: 10.0.0.1/24, gateway: 10.0.0.254 }.
func (p *fastParser) flowMap(rest []byte, k, line, base, indent int) (int32, bool) {
	return p.flow(kMap, rest, k, line, base, indent)
}

func (p *fastParser) flow(kind uint8, rest []byte, k, line, base, indent int) (int32, bool) {
	closer := byte(']')
	if kind == kMap {
		closer = '}'
	}
	n, mark := p.b.open(kind, line, indent+k+1)
	m := k + 1
	items, comma := 0, false
	for {
		for m < len(rest) && rest[m] == ' ' {
			m++
		}
		if m == len(rest) {
			return 0, false
		}
		if rest[m] == closer {
			if comma {
				return 0, false // a trailing comma: leave it to yaml.v3
			}
			m++
			break
		}
		if items > 0 && !comma {
			return 0, false
		}
		if kind == kMap {
			// A key as in block mappings, then ": " (a plain "a:b" would
			// be one scalar).
			j := m
			for j < len(rest) && keyChar(rest[j]) {
				j++
			}
			if j == m || j-m > maxSimpleKey || !alnum(rest[m]) || j+1 >= len(rest) || rest[j] != ':' || rest[j+1] != ' ' {
				return 0, false
			}
			style := sPlain
			if isNullText(rest[m:j]) {
				style = sNull
			}
			p.b.add(p.b.scalar(style, line, indent+m+1, base+m, base+j))
			m = j + 1
			for m < len(rest) && rest[m] == ' ' {
				m++
			}
			if m == len(rest) {
				return 0, false
			}
		}
		col := indent + m + 1
		switch c := rest[m]; {
		case c == '"' || c == '\'':
			a, e, next, ok := quoted(rest, m)
			if !ok {
				return 0, false
			}
			p.b.add(p.b.scalar(sQuoted, line, col, base+a, base+e))
			m = next
		case alnum(c):
			e := m
			for e < len(rest) && flowChar(rest[e]) {
				e++
			}
			style := sPlain
			if isNullText(rest[m:e]) {
				style = sNull
			}
			p.b.add(p.b.scalar(style, line, col, base+m, base+e))
			m = e
		default:
			return 0, false
		}
		items++
		for m < len(rest) && rest[m] == ' ' {
			m++
		}
		comma = m < len(rest) && rest[m] == ','
		if comma {
			m++
		} else if m == len(rest) || rest[m] != closer {
			return 0, false
		}
	}
	if !tailOK(rest, m) {
		return 0, false
	}
	p.b.close(n, mark)
	return n, true
}

// quoted finds a quoted scalar without escapes at rest[k]: its content is
// rest[a:e] and next is just past the closing quote.
func quoted(rest []byte, k int) (a, e, next int, ok bool) {
	q := rest[k]
	e = bytes.IndexByte(rest[k+1:], q)
	if e < 0 {
		return 0, 0, 0, false
	}
	a, e = k+1, k+1+e
	if q == '"' && bytes.IndexByte(rest[a:e], '\\') >= 0 {
		return 0, 0, 0, false
	}
	if q == '\'' && e+1 < len(rest) && rest[e+1] == '\'' {
		return 0, 0, 0, false
	}
	return a, e, e + 1, true
}

// tailOK: after a value, only spaces and a comment may follow.
func tailOK(rest []byte, m int) bool {
	s := m
	for m < len(rest) && rest[m] == ' ' {
		m++
	}
	return m == len(rest) || (rest[m] == '#' && m > s)
}

func isNullText(b []byte) bool {
	switch string(b) {
	case "~", "null", "Null", "NULL":
		return true
	}
	return false
}

func alnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func keyChar(c byte) bool { return alnum(c) || c == '-' || c == '_' || c == '.' }

func flowChar(c byte) bool { return alnum(c) || c == '-' || c == '_' || c == '.' || c == '/' }
