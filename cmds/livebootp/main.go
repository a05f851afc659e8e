// Command livebootp is the registry and its administration CLI:
//
//	livebootp serve  -config FILE   run the DHCP/BOOTP, TFTP and HTTP servers
//	livebootp check  -config FILE   validate a configuration, every problem with file:line
//	livebootp status                the running registry's state (admin socket)
//	livebootp hosts                 each host's boot state, as a table
//	livebootp logs   [-f]           the registry's recent events
//	livebootp reload                load the configuration file again
//	livebootp image build ...       turn a container image or root filesystem into a bootable image
//	livebootp host add|set|rm|show  edit a host in the configuration file (checked, atomic), then reload
//	livebootp appliance build ...   build the appliance disk image (USB stick, SD card)
//	livebootp appliance flash ...   write it to a stick, with checks, and grow its data partition
//	livebootp appliance passwd      print the bcrypt hash of an appliance console password
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set by the Makefile (-ldflags -X main.version=...).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "livebootp:", err)
		}
		os.Exit(1)
	}
}

// errReported is returned by commands that already printed what went wrong
// (check prints each problem) and only need a failing exit status.
var errReported = errors.New("reported")

const usage = `usage: livebootp COMMAND [flags]

commands:
  serve   -config FILE        run the registry (DHCP/BOOTP, TFTP, HTTP)
  check   -config FILE        validate a configuration file; exit 1 on problems
  status  [-socket PATH]      state of the running registry
  hosts   [-socket PATH]      boot state of every host
  logs    [-socket PATH] [-f] recent events of the running registry
  reload  [-socket PATH]      reload the running registry's configuration
  image build --name N --version V --from SOURCE --out DIR
                              build kernel + initrd + squashfs from a container image or root filesystem
  host add|set|rm|show NAME [--mac M --address A --image N/V --keys F --cmdline S] [-config FILE]
                              edit a host in the configuration file (checked first, written atomically), then reload
  appliance build --out FILE  build the appliance disk image (USB stick, SD card)
  appliance flash --image FILE --device /dev/sdX
                              write it to a stick (with checks) and grow its data partition
  appliance passwd            read a console password twice, print its bcrypt hash (appliance: console-password:)
  version                     print the version

Run 'livebootp COMMAND -h' for the flags of a command.
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest, stderr)
	case "check":
		return check(rest, stdout, stderr)
	case "status":
		return status(rest, stdout, stderr)
	case "hosts":
		return hosts(rest, stdout, stderr)
	case "logs":
		return logs(ctx, rest, stdout, stderr)
	case "reload":
		return reload(rest, stdout, stderr)
	case "image":
		return imageCmd(ctx, rest, stdout, stderr)
	case "host":
		return hostCmd(rest, stdout, stderr)
	case "appliance":
		return applianceCmd(ctx, rest, stdin, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "livebootp", version)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
