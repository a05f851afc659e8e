package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration, where it is and how to
// fix it. Line and Column are 1-based; 0 means unknown (a Config built with
// New has no file).
type Problem struct {
	File   string
	Line   int
	Column int
	Msg    string
	Fix    string
}

// String formats the problem the way compilers do, so editors can jump to
// it: "file:line:col: msg; fix: ...".
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(p.Line))
			if p.Column > 0 {
				b.WriteByte(':')
				b.WriteString(strconv.Itoa(p.Column))
			}
		}
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	if p.Fix != "" {
		b.WriteString("; fix: ")
		b.WriteString(p.Fix)
	}
	return b.String()
}

// Problems is the error Load, Parse and New return: every problem found, in
// file order, so an operator fixes them all in one edit.
type Problems []Problem

// Error prints one problem per line.
func (ps Problems) Error() string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// pos is a position in the file; the zero pos means "no file" (New).
type pos struct{ line, col int32 }

// collector accumulates problems of one load.
type collector struct {
	file string
	list Problems
}

func (c *collector) add(at pos, msg, fix string) {
	c.list = append(c.list, Problem{File: c.file, Line: int(at.line), Column: int(at.col), Msg: msg, Fix: fix})
}

// err returns the problems sorted by position (checks run in passes, not in
// file order) with exact repeats removed (a merged anchor's problem is met
// once per host that merges it), or nil.
func (c *collector) err() error {
	if len(c.list) == 0 {
		return nil
	}
	slices.SortStableFunc(c.list, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return slices.Compact(c.list)
}
