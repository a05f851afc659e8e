// Command livebootp-login is the appliance console's shell gate: it asks
// for the console password (appliance.console-password) when one is set
// and starts the shell, again and again (see appliance/login).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/livebootp/livebootp/appliance/login"
)

func main() {
	tty := flag.String("tty", "", "terminal to serve (default: this process's stdin and stdout)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	l := &login.Login{
		PasswordFile: login.DefaultPasswordFile,
		Shell:        []string{"/bin/sh"},
		TTY:          *tty,
		Banner:       "livebootp appliance: `livebootp status`, `livebootp hosts`, `livebootp logs -f`, `livebootp help`",
	}
	if err := l.Run(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "livebootp-login:", err)
		os.Exit(1)
	}
}
