// Command udprelay runs internal/udprelay for bench/tftp.sh: it relays UDP from -listen to
// -target, delaying each datagram by -delay in each direction, until SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/livebootp/livebootp/internal/udprelay"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "udprelay:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("udprelay", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:6969", "address clients send to")
	target := fs.String("target", "", "server address:port (required)")
	delay := fs.Duration("delay", 100*time.Microsecond, "one-way delay added in each direction")
	if err := fs.Parse(args); err != nil {
		return err
	}
	to, err := netip.ParseAddrPort(*target)
	if err != nil {
		return fmt.Errorf("-target %q: %w (want ip:port)", *target, err)
	}
	r, err := udprelay.New(*listen, to, *delay)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return r.Serve(ctx)
}
