// Command livebootp-login is the appliance console's shell gate: it asks
// for the console password (appliance.console-password) when one is set
// and starts the shell, again and again (see appliance/login). With
// -line-shell it is that shell: a POSIX shell interpreted in Go that reads
// a line at a time, as a serial terminal sends them.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/livebootp/livebootp/appliance/login"
	"github.com/livebootp/livebootp/startup/rescue"
)

func main() {
	tty := flag.String("tty", "", "terminal to serve (default: this process's stdin and stdout)")
	lineShell := flag.Bool("line-shell", false, "be the shell (run by the gate after the password)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	// ^C, ^\ and ^Z at the prompt must not end the gate: u-root's init
	// would start an unguarded shell next. Caught (not ignored), so the
	// programs the shell runs still get them.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTSTP)
	if *lineShell {
		if err := rescue.Shell(ctx, os.Stdin, os.Stdout, os.Stderr, os.Environ(), "livebootp# "); err != nil {
			fmt.Fprintln(os.Stderr, "livebootp-login:", err)
			os.Exit(1)
		}
		return
	}
	self, err := os.Executable()
	if err != nil {
		self = "/bbin/livebootp-login"
	}
	if filepath.Base(self) == "bb" {
		// u-root's busybox: every command is the same file, named by its link.
		self = "/bbin/livebootp-login"
	}
	l := &login.Login{
		PasswordFile: login.DefaultPasswordFile,
		Shell:        []string{self, "-line-shell"},
		TTY:          *tty,
		Banner:       "livebootp appliance: `livebootp status`, `livebootp hosts`, `livebootp logs -f`, `livebootp help`",
	}
	if err := l.Run(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "livebootp-login:", err)
		os.Exit(1)
	}
}
