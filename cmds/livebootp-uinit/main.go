// Command livebootp-uinit is the appliance's uinit: u-root's init runs it
// once at boot (see appliance/uinit). Run as `livebootp-uinit supervise` it
// is the background supervisor that keeps the registry running.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/livebootp/livebootp/appliance/uinit"
	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/bootp/registry"
	"github.com/livebootp/livebootp/startup"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "supervise" {
		err = supervise(ctx)
	} else {
		err = boot(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "livebootp-uinit:", err)
		os.Exit(1)
	}
}

func boot(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil || strings.HasSuffix(self, "/bb") {
		// In u-root's busybox every command is the same file: name the
		// command by its link.
		self = "/bbin/livebootp-uinit"
	}
	// Only the routing family: NewHandle() with none opens XFRM and
	// netfilter sockets too, which fail without those modules.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	e := &uinit.Env{
		Root:        "/",
		Out:         os.Stdout,
		Supervisor:  []string{self, "supervise"},
		LoadModules: startup.LoadModules,
		Mount:       unix.Mount,
		Netlink:     h,
	}
	return uinit.Run(ctx, e, uinit.Steps())
}

func supervise(ctx context.Context) error {
	// O_NOCTTY: a session leader opening a terminal would make it its
	// controlling terminal, and take the console from the shell init
	// starts next.
	console, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	reg, err := exec.LookPath("livebootp")
	if err != nil {
		reg = "/bbin/livebootp"
	}
	s := &uinit.Supervisor{
		Argv:    []string{reg, "serve", "-config", uinit.ConfigFile},
		Console: console,
		LogFile: uinit.LogDir + "/registry.log",
		Ring:    uinit.NewRing(1000),
		Ready: func() (string, bool) {
			st, err := registry.Client{Socket: config.DefaultAdminSocket}.Status()
			if err != nil {
				return "", false
			}
			return strings.Join(st.Listening, ", "), true
		},
	}
	if login, err := exec.LookPath("livebootp-login"); err == nil && secondConsole() {
		s.Getty = []string{login, "-tty", "/dev/tty1"}
	}
	return s.Run(ctx)
}

// secondConsole tells whether tty1 (a screen and keyboard) exists and is
// not already the console init gives its shell.
func secondConsole() bool {
	if _, err := os.Stat("/dev/tty1"); err != nil {
		return false
	}
	b, err := os.ReadFile("/sys/class/tty/console/active")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 0 && !strings.HasPrefix(f[len(f)-1], "tty0") && !strings.HasPrefix(f[len(f)-1], "tty1")
}
