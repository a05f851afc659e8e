//go:build !livebootp_appliance

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/livebootp/livebootp/appliance/disk"
)

const applianceFlashUsage = `usage: livebootp appliance flash --image FILE --device /dev/sdX [--yes]

Writes an appliance image (livebootp appliance build) to a whole disk, a USB
stick or SD card, and grows its data partition (LIVEBOOTP) to the end of the
disk. It refuses a partition, a mounted disk, a disk holding swap or the
running system's root, and a disk smaller than the image; it asks before
writing unless --yes. lsblk lists the disks.

flags:
`

// applianceFlash runs `livebootp appliance flash`.
func applianceFlash(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("appliance flash", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() {
		fmt.Fprint(stderr, applianceFlashUsage)
		fl.PrintDefaults()
	}
	var image, device string
	var yes, quiet, verbose bool
	var o disk.FlashOptions
	fl.StringVar(&image, "image", "", "appliance image `FILE`")
	fl.StringVar(&device, "device", "", "whole disk to write, e.g. /dev/sdb or /dev/mmcblk0 (`DEVICE`)")
	fl.BoolVar(&yes, "yes", false, "do not ask before writing")
	fl.BoolVar(&o.ForceFile, "force-file", false, "allow a regular file as DEVICE (a VM's disk image, already of the size wanted)")
	fl.BoolVar(&o.NoGrow, "no-grow", false, "keep the data partition at the image's size")
	fl.BoolVar(&quiet, "q", false, "no progress lines")
	fl.BoolVar(&verbose, "v", false, "log details")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("appliance flash: unexpected arguments %q", fl.Args())
	}
	if image == "" || device == "" {
		fl.Usage()
		return errors.New("appliance flash: --image and --device are required")
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	o.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if !yes {
		answers := bufio.NewReader(stdin)
		o.Confirm = func(question string) (bool, error) {
			fmt.Fprintf(stderr, "%s? [y/N] ", question)
			line, err := answers.ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return false, err
			}
			a := strings.ToLower(strings.TrimSpace(line))
			return a == "y" || a == "yes", nil
		}
	}
	var last disk.FlashProgress
	o.Progress = func(p disk.FlashProgress) {
		last = p
		if !quiet {
			fmt.Fprintf(stderr, "%s %5.1f%%  %s of %s  %s/s\n", p.Step, p.Percent(), flashMiB(p.Done), flashMiB(p.Total), flashMiB(int64(p.Rate())))
		}
	}
	if err := disk.Flash(ctx, image, device, o); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s to %s: %s in %s (%s/s)\n", image, device, flashMiB(last.Done),
		last.Elapsed.Round(100*time.Millisecond), flashMiB(int64(last.Rate())))
	return nil
}

func flashMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
