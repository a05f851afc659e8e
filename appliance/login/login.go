// Package login is the appliance console's shell gate: a getty-like loop
// that asks for the console password (a bcrypt hash) when one is set, then
// runs the shell. It never returns while its context lives, and never logs
// or echoes what is typed at the password prompt.
package login

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"
)

// DefaultPasswordFile holds the console password hash; the appliance's
// uinit writes it from the config at boot (tmpfs, root only).
const DefaultPasswordFile = "/run/livebootp/console-password"

// PasswordPrompt is the line printed before the password is read.
const PasswordPrompt = "console password (typing is not shown):"

// Login guards a console: it asks for the console password when
// PasswordFile holds a hash, then runs the shell, and when the shell exits
// it starts over. It never returns while ctx lives, because u-root's init
// runs an unguarded /bin/sh after the default shell exits.
type Login struct {
	PasswordFile string   // bcrypt hash, written by uinit from the config
	Shell        []string // argv of the shell
	// TTY is the terminal to take over (a getty on tty1); "" uses the
	// process's own stdin/stdout (the console init gave it).
	TTY    string
	Banner string
	// In and Out, when set, replace the terminal (tests).
	In  *os.File
	Out io.Writer
	// Fail is the pause after a wrong password.
	Fail time.Duration
}

// Run serves the console until ctx ends.
func (l *Login) Run(ctx context.Context) error {
	var (
		in            = os.Stdin
		out io.Writer = os.Stdout
	)
	if _, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS); err == nil {
		// u-root's init hands its shell a pipe as stdout (it copies it to
		// every console), and that pipe breaks for good once the init has
		// moved on: talk to the terminal itself.
		out = os.Stdin
	}
	if l.TTY != "" {
		f, err := os.OpenFile(l.TTY, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		// The supervisor started us in a new session: make this terminal
		// ours so ^C reaches the shell.
		_ = unix.IoctlSetInt(int(f.Fd()), unix.TIOCSCTTY, 0)
		in, out = f, f
	}
	if l.In != nil {
		in, out = l.In, l.Out
	}
	if l.Fail == 0 {
		l.Fail = 3 * time.Second
	}
	br := bufio.NewReader(in)
	for ctx.Err() == nil {
		hash, err := os.ReadFile(l.PasswordFile)
		if err == nil && len(strings.TrimSpace(string(hash))) > 0 {
			ok, err := l.ask(in, out, br, strings.TrimSpace(string(hash)))
			if errors.Is(err, io.EOF) {
				// No terminal behind us (a closed serial line): don't spin.
				time.Sleep(l.Fail)
				continue
			}
			if !ok {
				continue
			}
		}
		if l.Banner != "" {
			fmt.Fprintln(out, l.Banner)
		}
		cmd := exec.CommandContext(ctx, l.Shell[0], l.Shell[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = in, out, out
		if err := cmd.Run(); err != nil && ctx.Err() == nil {
			fmt.Fprintf(out, "shell: %v\n", err)
			time.Sleep(time.Second)
		}
	}
	return ctx.Err()
}

// ask reads one password with echo off (when in is a terminal).
func (l *Login) ask(in *os.File, out io.Writer, br *bufio.Reader, hash string) (bool, error) {
	// Echo goes off before the prompt shows, and comes back only after a
	// wrong password's pause: whatever is typed once the prompt is up (or
	// typed ahead during the pause) never shows.
	fd := int(in.Fd())
	if t, err := unix.IoctlGetTermios(fd, unix.TCGETS); err == nil {
		quiet := *t
		quiet.Lflag &^= unix.ECHO
		if unix.IoctlSetTermios(fd, unix.TCSETS, &quiet) == nil {
			defer unix.IoctlSetTermios(fd, unix.TCSETS, t)
		}
	}
	// A whole line: a serial terminal that only sees complete lines (and
	// a test driving the console) knows when to type.
	fmt.Fprintln(out, PasswordPrompt)
	line, err := br.ReadString('\n')
	if err != nil && line == "" {
		return false, err
	}
	pw := strings.TrimRight(line, "\r\n")
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) != nil {
		fmt.Fprintln(out, "wrong password")
		time.Sleep(l.Fail)
		return false, nil
	}
	return true, nil
}
