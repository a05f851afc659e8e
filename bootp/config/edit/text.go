package edit

import (
	"bytes"
	"slices"
	"strings"

	"github.com/livebootp/livebootp/bootp/config"
)

// splice replaces text[at:end] with with.
type splice struct {
	at, end int
	with    string
}

// apply makes non-overlapping splices, all placed in the current text.
func (f *File) apply(sp ...splice) {
	slices.SortStableFunc(sp, func(a, b splice) int { return a.at - b.at })
	var b bytes.Buffer
	b.Grow(len(f.text) + 256)
	prev := 0
	for _, s := range sp {
		b.Write(f.text[prev:s.at])
		b.WriteString(s.with)
		prev = s.end
	}
	b.Write(f.text[prev:])
	f.text = b.Bytes()
	f.checked = false
}

// insert places whole lines at the start of a line; at the end of a file
// without a final line break it adds one first.
func (f *File) insert(at int, lines string) splice {
	if at > 0 && f.text[at-1] != '\n' {
		lines = f.nl + lines
	}
	return splice{at: at, end: at, with: lines}
}

func nextLine(text []byte, off int) int {
	if i := bytes.IndexByte(text[off:], '\n'); i >= 0 {
		return off + i + 1
	}
	return len(text)
}

func lineStart(text []byte, off int) int {
	return bytes.LastIndexByte(text[:off], '\n') + 1
}

// ownLine returns the start of off's line if only spaces come before off
// on it: a key there owns its lines.
func (f *File) ownLine(off int) (int, bool) {
	start := lineStart(f.text, off)
	return start, strings.Trim(string(f.text[start:off]), " ") == ""
}

// blockEnd is where the block of the key at off (column col) ends: after
// its line and every later line indented deeper, comments included. Blank
// lines inside the block belong to it, blank lines after it do not.
func (f *File) blockEnd(off, col int) int {
	end := nextLine(f.text, off)
	for p := end; p < len(f.text); {
		q := nextLine(f.text, p)
		line := f.text[p:q]
		indent := len(line) - len(bytes.TrimLeft(line, " "))
		if len(bytes.TrimSpace(line)) > 0 {
			if indent < col {
				break
			}
			end = q
		}
		p = q
	}
	return end
}

// valueSpan finds, on the line of the key at off, the colon after the key
// and the end of its value (before spaces and a comment). oneLine is false
// when the value goes on past the line (a block scalar, an open quote or
// bracket).
func valueSpan(text []byte, off int) (colon, end int, oneLine bool) {
	eol := nextLine(text, off)
	line := text[:eol]
	p := off
	if c := text[p]; c == '"' || c == '\'' {
		if p = closeQuote(line, p); p < 0 {
			return 0, 0, false
		}
		p++
	}
	for p < len(line) && !(line[p] == ':' && (p+1 == len(line) || isSpace(line[p+1]))) {
		p++
	}
	if p == len(line) {
		return 0, 0, false
	}
	colon = p
	p++
	for p < len(line) && (line[p] == ' ' || line[p] == '\t') {
		p++
	}
	if p == len(line) || isSpace(line[p]) || line[p] == '#' {
		return colon, colon + 1, true // no value
	}
	switch line[p] {
	case '"', '\'':
		if p = closeQuote(line, p); p < 0 {
			return 0, 0, false
		}
		return colon, p + 1, true
	case '[', '{':
		if _, e, ok := splitFlow(line, p); ok {
			return colon, e, true
		}
		return 0, 0, false
	case '|', '>':
		return 0, 0, false
	}
	e := p
	for e < len(line) && line[e] != '\n' && !(line[e] == '#' && (line[e-1] == ' ' || line[e-1] == '\t')) {
		e++
	}
	for e > p && isSpace(line[e-1]) {
		e--
	}
	return colon, e, true
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// closeQuote returns the offset of the quote closing the one at p, on the
// same line, or -1.
func closeQuote(line []byte, p int) int {
	q := line[p]
	for i := p + 1; i < len(line) && line[i] != '\n'; i++ {
		switch {
		case q == '"' && line[i] == '\\':
			i++
		case line[i] == q && q == '\'' && i+1 < len(line) && line[i+1] == '\'':
			i++
		case line[i] == q:
			return i
		}
	}
	return -1
}

// splitFlow reads the flow collection opening at text[open] on one line:
// its items as written (trimmed) and the offset just past its closing
// bracket.
func splitFlow(text []byte, open int) (items []string, end int, ok bool) {
	depth, start := 0, open+1
	for i := open; i < len(text) && text[i] != '\n'; i++ {
		switch c := text[i]; c {
		case '"', '\'':
			if i = closeQuote(text, i); i < 0 {
				return nil, 0, false
			}
		case '[', '{':
			depth++
		case ']', '}', ',':
			if depth == 1 {
				if s := strings.TrimSpace(string(text[start:i])); s != "" {
					items = append(items, s)
				}
				start = i + 1
			}
			if c != ',' {
				if depth--; depth == 0 {
					return items, i + 1, true
				}
			}
		case '#':
			if text[i-1] == ' ' {
				return nil, 0, false // a comment: the collection goes on below
			}
		}
	}
	return nil, 0, false
}

// clearValue removes an empty value written on its key's line ("hosts: ~",
// "web-1: {}"), leaving the key and any comment, so lines can go under it.
func (f *File) clearValue(e *config.Entry) (splice, bool) {
	colon, end, ok := valueSpan(f.text, e.Offset)
	if !ok {
		return splice{}, false
	}
	return splice{at: colon + 1, end: end}, true
}
