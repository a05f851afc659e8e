package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

const applianceUsage = `usage: livebootp appliance COMMAND [flags]

commands:
  build  --out FILE [flags]                 build the appliance disk image (u-root, systemd-boot, extlinux)
  flash  --image FILE --device /dev/sdX     write it to a USB stick or SD card and grow its data partition
  passwd [-cost N]                          print the bcrypt hash of a console password

Run 'livebootp appliance COMMAND -h' for the flags of a command.
`

// applianceCmd runs the appliance subcommands.
func applianceCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, applianceUsage)
		return errors.New("appliance: no subcommand given")
	}
	switch args[0] {
	case "build":
		return applianceBuild(ctx, args[1:], stdout, stderr)
	case "flash":
		return applianceFlash(ctx, args[1:], stdin, stdout, stderr)
	case "passwd":
		return appliancePasswd(args[1:], stdin, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, applianceUsage)
		return nil
	}
	fmt.Fprint(stderr, applianceUsage)
	return fmt.Errorf("appliance: unknown subcommand %q", args[0])
}

// appliancePasswd reads a password twice and prints its bcrypt hash, the
// value of appliance: console-password:. Only the hash goes to stdout, so
// it can be captured.
func appliancePasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("appliance passwd", stderr)
	cost := fs.Int("cost", bcrypt.DefaultCost, fmt.Sprintf("bcrypt cost, %d to %d: each step doubles the time a check (and a guess) takes", bcrypt.MinCost, bcrypt.MaxCost))
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("appliance passwd takes no arguments (the password is read from the terminal, not the command line, where ps and the shell history would keep it)")
	}
	if *cost < bcrypt.MinCost || *cost > bcrypt.MaxCost {
		return fmt.Errorf("appliance passwd: -cost %d is not from %d to %d", *cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	read := readLine(stdin, stderr)
	pw, err := read("console password: ")
	if err != nil {
		return err
	}
	again, err := read("again: ")
	if err != nil {
		return err
	}
	switch {
	case pw != again:
		return errors.New("appliance passwd: the two passwords differ; nothing printed")
	case pw == "":
		return errors.New("appliance passwd: the password is empty; for no password, leave console-password: out of the config")
	case len(pw) > 72:
		return errors.New("appliance passwd: the password is longer than 72 bytes, all bcrypt uses; choose a shorter one")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), *cost)
	if err != nil {
		return fmt.Errorf("appliance passwd: %w", err)
	}
	fmt.Fprintln(stdout, string(hash))
	fmt.Fprintf(stderr, "put it in config.yml under appliance: as\n  console-password: %q\n", hash)
	return nil
}

// readLine reads a password without echo from a terminal, or a line from
// anything else (a pipe in a script or test), saying so once.
func readLine(stdin io.Reader, stderr io.Writer) func(prompt string) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return func(prompt string) (string, error) {
			fmt.Fprint(stderr, prompt)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(stderr)
			if err != nil {
				return "", fmt.Errorf("appliance passwd: reading the password: %w", err)
			}
			return string(b), nil
		}
	}
	fmt.Fprintln(stderr, "appliance passwd: standard input is not a terminal: reading the password twice, a line each")
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	r := bufio.NewReader(stdin)
	return func(string) (string, error) {
		line, err := r.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return "", errors.New("appliance passwd: standard input ended before the password was given twice")
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
}
