package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/livebootp/livebootp/internal/testbed"
)

// runAppliance is `make demo-appliance`: the appliance image built with the
// busybox image and one host on its data partition, booted under OVMF in a
// VM, then a second VM that PXE-boots from it; the appliance's console
// answers `livebootp hosts` at the end.
func runAppliance(ctx context.Context, repo, bin, initBin, dir string, stdout io.Writer) error {
	fmt.Fprintln(stdout, "== demo: building the appliance image (u-root initramfs, systemd-boot, FAT32 data partition with busybox/1 and host target1)")
	start := time.Now()
	img, res, err := testbed.BuildAppliance(ctx, testbed.ApplianceSpec{Repo: repo, Dir: dir, Arch: "amd64", Binary: bin, Init: initBin})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "== demo: %s: %d MiB, initramfs %.1f MB zstd, built in %.0f s\n", img, res.Layout.Size>>20, float64(res.Initramfs)/1e6, time.Since(start).Seconds())
	n, err := testbed.NewNet(testbed.Uniq("demoapp"), netip.MustParsePrefix("10.88.0.254/24"))
	if err != nil {
		return err
	}
	defer n.Close()
	for _, tap := range []string{"tapa", "tapt"} {
		if err := n.AddTap(tap); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, "== demo: powering on the appliance (OVMF, the image as its virtio disk); its console:")
	app, at, err := testbed.BootAppliance(ctx, n, testbed.VMOptions{Disks: []string{img}, Dir: dir, Console: prefixed(stdout, "appliance| ")}, 3*time.Minute)
	if err != nil {
		return err
	}
	defer app.Kill()
	fmt.Fprintf(stdout, "== demo: the appliance serves %.1f s after power-on; powering on a target (iPXE ROM, a blank disk); its console:\n", at.Seconds())
	disk := filepath.Join(dir, "target-disk.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(disk, 256<<20); err != nil {
		return err
	}
	targetDir := filepath.Join(dir, "target")
	if err := os.MkdirAll(targetDir, 0o755); err != nil {
		return err
	}
	target, err := testbed.StartVM(ctx, testbed.VMOptions{Net: n, Tap: "tapt", MAC: testbed.TargetMAC, Disks: []string{disk},
		Dir: targetDir, Console: prefixed(stdout, "target| ")})
	if err != nil {
		return err
	}
	defer target.Kill()
	_, at, err = target.Console.WaitFor(ctx, testbed.TargetMarker+"done", 4*time.Minute)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "== demo: the target's image ran its init %.1f s after power-on\n", at.Seconds())
	_ = target.Wait(30 * time.Second)
	fmt.Fprintln(stdout, "== demo: typing `livebootp hosts` on the appliance's serial console:")
	// The output shows through the appliance's console.
	if _, err := testbed.RunOnConsole(ctx, app, "livebootp hosts", time.Minute); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "== demo: done; VMs and namespace removed")
	return nil
}

// prefixed writes each line to w after prefix.
func prefixed(w io.Writer, prefix string) io.Writer { return prefixWriter{w, prefix} }

type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	_, err := io.WriteString(p.w, p.prefix+strings.TrimRight(string(b), "\n")+"\n")
	return len(b), err
}
