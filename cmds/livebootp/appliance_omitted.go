//go:build livebootp_appliance

package main

import (
	"context"
	"errors"
	"io"
)

// The appliance's own livebootp leaves out the commands that build images:
// they need the Go toolchain, squashfs-tools and more room than the
// appliance's 8 MB initramfs has.
var errNotOnAppliance = errors.New("not part of the appliance: run it on a workstation with livebootp's source tree, then copy the result to the data partition")

func imageCmd(context.Context, []string, io.Writer, io.Writer) error { return errNotOnAppliance }

func applianceBuild(context.Context, []string, io.Writer, io.Writer) error { return errNotOnAppliance }

func applianceFlash(context.Context, []string, io.Reader, io.Writer, io.Writer) error {
	return errNotOnAppliance
}
