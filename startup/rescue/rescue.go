// Package rescue is the shell livebootp-init falls back on when a boot with
// `debug` fails before the image is mounted and the initrd holds no
// /bin/sh (image build puts none there): a POSIX shell interpreted in Go
// (mvdan.cc/sh, as u-root's gosh), with cat, ls and dmesg built in since
// the initrd has no other programs. Programs found in PATH still run.
//
// It must never be started without `debug`: it hands root to whoever is at
// the console. It never exits the process: Shell returns when the shell
// exits (or its input ends) and the caller decides what comes next.
package rescue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// Builtins are the commands the shell has without any program on disk.
func Builtins() []string { return []string{"cat", "dmesg", "ls"} }

// Shell reads commands from in (the console: an *os.File, shared with the
// commands it runs, as a shell's stdin is), one line or complete statement
// at a time, and runs them, printing prompt before each. A syntax error is
// reported and the shell goes on. It returns nil when the shell exits or
// in ends.
func Shell(ctx context.Context, in *os.File, out, errOut io.Writer, env []string, prompt string) error {
	r, err := interp.New(
		interp.StdIO(in, out, errOut),
		interp.Env(expand.ListEnviron(env...)),
		interp.Dir("/"),
		interp.Interactive(true),
		interp.ExecHandlers(builtins),
	)
	if err != nil {
		return fmt.Errorf("rescue shell: %w", err)
	}
	p := syntax.NewParser()
	fmt.Fprint(out, prompt)
	exited := false
	run := func(stmts []*syntax.Stmt) bool {
		if p.Incomplete() {
			fmt.Fprint(out, "> ")
			return true
		}
		for _, st := range stmts {
			if err := r.Run(ctx, st); err != nil {
				if _, ok := interp.IsExitStatus(err); !ok {
					fmt.Fprintln(errOut, err)
				}
			}
			if r.Exited() {
				exited = true
				return false
			}
		}
		fmt.Fprint(out, prompt)
		return true
	}
	// Each round parses until the input ends, the shell exits or a syntax
	// error; the bound only stops a console that fails every read.
	for range 10000 {
		perr := p.Interactive(lineReader{in}, run)
		if exited || perr == nil {
			return nil
		}
		if errors.Is(perr, io.EOF) || errors.Is(perr, os.ErrClosed) {
			return nil
		}
		fmt.Fprintln(errOut, perr)
		fmt.Fprint(out, prompt)
	}
	return errors.New("rescue shell: the console keeps failing")
}

// lineReader hands the parser at most one line per read, as a terminal in
// canonical mode does, so what follows the line stays in the file for the
// command it runs (`read`, `cat`) and a syntax error loses that line only.
type lineReader struct{ f *os.File }

func (l lineReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := l.f.Read(p[n : n+1])
		n += m
		if err != nil {
			return n, err
		}
		if m == 0 || p[n-1] == '\n' {
			break
		}
	}
	return n, nil
}

// builtins runs cat, ls and dmesg in Go unless PATH has the real program.
func builtins(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
	return func(ctx context.Context, args []string) error {
		hc := interp.HandlerCtx(ctx)
		if !slices.Contains(Builtins(), args[0]) {
			return next(ctx, args)
		}
		if _, err := interp.LookPathDir(hc.Dir, hc.Env, args[0]); err == nil {
			return next(ctx, args)
		}
		var err error
		switch args[0] {
		case "cat":
			err = cat(hc, args[1:])
		case "ls":
			err = ls(hc, args[1:])
		case "dmesg":
			err = dmesg(hc.Stdout)
		}
		if err != nil {
			fmt.Fprintf(hc.Stderr, "%s: %v\n", args[0], err)
			return interp.NewExitStatus(1)
		}
		return nil
	}
}

func abs(hc interp.HandlerContext, p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	return filepath.Join(hc.Dir, p)
}

func cat(hc interp.HandlerContext, files []string) error {
	if len(files) == 0 {
		_, err := io.Copy(hc.Stdout, hc.Stdin)
		return err
	}
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(abs(hc, f))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		hc.Stdout.Write(b)
	}
	return errors.Join(errs...)
}

// ls lists directories (a file names itself), one entry a line with a
// trailing / on directories.
func ls(hc interp.HandlerContext, paths []string) error {
	if len(paths) == 0 {
		paths = []string{"."}
	}
	var errs []error
	for _, p := range paths {
		full := abs(hc, p)
		st, err := os.Stat(full)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !st.IsDir() {
			fmt.Fprintln(hc.Stdout, p)
			continue
		}
		ents, err := os.ReadDir(full)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(paths) > 1 {
			fmt.Fprintf(hc.Stdout, "%s:\n", p)
		}
		for _, e := range ents {
			suffix := ""
			if e.IsDir() {
				suffix = "/"
			}
			fmt.Fprintln(hc.Stdout, e.Name()+suffix)
		}
	}
	return errors.Join(errs...)
}

// dmesg prints the kernel's log buffer.
func dmesg(w io.Writer) error {
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil {
		return err
	}
	buf := make([]byte, n)
	m, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		return err
	}
	_, err = w.Write(buf[:m])
	return err
}
