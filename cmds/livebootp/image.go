//go:build !livebootp_appliance

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/livebootp/livebootp/imagebuild"
	"github.com/livebootp/livebootp/wire"
)

const imageUsage = `usage: livebootp image build --name NAME --version VERSION --from SOURCE --out DIR [flags]

Builds DIR/images/NAME/VERSION/{vmlinuz,initrd.img,filesystem.squashfs,manifest.json}
from SOURCE, which is one of:
  an OCI image layout directory (skopeo copy ... oci:DIR, docker buildx --output type=oci)
  a docker save / podman save archive (.tar, optionally compressed)
  a root filesystem directory (debootstrap, mmdebstrap)
  a root filesystem tarball (.tar, .tar.gz, .tar.zst, .tar.xz)
Append :TAG to pick one image of an archive or layout that holds several.
The image must contain a kernel (/boot/vmlinuz-*) and its modules.
SOURCE_DATE_EPOCH, if set, is the time stamped on what the build creates.

flags:
`

// imageCmd runs `livebootp image SUBCOMMAND`.
func imageCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "build" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "help" || args[0] == "--help") {
			fmt.Fprint(stdout, imageUsage)
			return nil
		}
		fmt.Fprint(stderr, imageUsage)
		return errors.New("image: the only subcommand is build")
	}
	fl := flag.NewFlagSet("image build", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() {
		fmt.Fprint(stderr, imageUsage)
		fl.PrintDefaults()
	}
	var o imagebuild.Options
	var modules, onlyModules string
	var quiet, verbose bool
	fl.StringVar(&o.Name, "name", "", "image `NAME` (e.g. nginx-web-server)")
	fl.StringVar(&o.Version, "version", "", "image `VERSION` (e.g. 1.0.0)")
	fl.StringVar(&o.From, "from", "", "`SOURCE` image or root filesystem")
	fl.StringVar(&o.Out, "out", "", "registry data `DIR`; the image goes to DIR/images/NAME/VERSION")
	fl.StringVar(&o.Init, "init", "", "livebootp-init `PATH` (default: next to this program, else from $PATH)")
	fl.StringVar(&o.KernelVersion, "kernel-version", "", "`KVER` of the image's kernel to use (default: the newest)")
	fl.StringVar(&modules, "modules", "", "comma-separated extra `MODULES` for the initrd (names or aliases)")
	fl.StringVar(&onlyModules, "only-modules", "", "comma-separated `MODULES`: the initrd's whole set, replacing the defaults")
	fl.StringVar(&o.Compression, "compression", "", "squashfs `COMP`ressor: zstd, gzip, xz (default: zstd if the kernel reads it, else gzip)")
	fl.StringVar(&o.Mksquashfs, "mksquashfs", "", "mksquashfs `PATH` (default: from $PATH)")
	fl.Func("volume", "comma-separated absolute `DIRS` kept on persistent storage, besides the image's own VOLUMEs", func(v string) error {
		o.Volumes = append(o.Volumes, splitList(v)...)
		return nil
	})
	fl.Func("exclude", "comma-separated `GLOBS` (relative to the image root) to leave out of the squashfs,\nreplacing the default "+strings.Join(imagebuild.DefaultExclude, ",")+"; empty keeps everything", func(v string) error {
		o.Exclude = append([]string{}, splitList(v)...)
		return nil
	})
	fl.BoolVar(&o.Force, "force", false, "replace an existing NAME/VERSION")
	fl.BoolVar(&quiet, "q", false, "no progress bar")
	fl.BoolVar(&verbose, "v", false, "log details")
	if err := fl.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("image build: unexpected arguments %q", fl.Args())
	}
	for _, req := range []struct{ flag, v string }{{"name", o.Name}, {"version", o.Version}, {"from", o.From}, {"out", o.Out}} {
		if req.v == "" {
			fl.Usage()
			return fmt.Errorf("image build: --%s is required", req.flag)
		}
	}
	if onlyModules != "" {
		o.Modules = splitList(onlyModules)
	}
	if modules != "" {
		base := o.Modules
		if base == nil {
			base = imagebuild.DefaultModules
		}
		o.Modules = append(append([]string{}, base...), splitList(modules)...)
	}
	if o.Init == "" {
		p, err := findInit()
		if err != nil {
			return err
		}
		o.Init = p
	}
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: not a number of seconds", s)
		}
		o.Epoch = time.Unix(n, 0)
	}
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	o.Log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if !quiet {
		o.Progress = stderr
	}
	start := time.Now()
	m, err := imagebuild.Build(ctx, o)
	if err != nil {
		return err
	}
	dir := filepath.Join(o.Out, "images", o.Name, o.Version)
	fmt.Fprintf(stdout, "%s/%s (%s, kernel %s) in %s, built in %s\n", m.Name, m.Version, m.Arch, m.KernelVersion,
		dir, time.Since(start).Round(100*time.Millisecond))
	for _, f := range []string{wire.ImageKernel, wire.ImageInitrd, wire.ImageSquashfs} {
		s := m.Files[f]
		fmt.Fprintf(stdout, "  %-20s %10d bytes  sha256 %s\n", f, s.Size, s.SHA256)
	}
	if len(m.Volumes) > 0 {
		fmt.Fprintf(stdout, "  volumes: %s\n", strings.Join(m.Volumes, " "))
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, f)
	}
	return out
}

// findInit looks for livebootp-init beside this program (make build puts
// both in bin/), then in $PATH.
func findInit() (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "livebootp-init")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	if p, err := exec.LookPath("livebootp-init"); err == nil {
		return p, nil
	}
	return "", errors.New("image build: no livebootp-init next to livebootp or in $PATH: run `make build`, or pass --init PATH")
}
