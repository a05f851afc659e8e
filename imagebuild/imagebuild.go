// Package imagebuild turns a container image or a root filesystem into
// what the registry serves for one image version:
// images/<name>/<version>/{vmlinuz, initrd.img, filesystem.squashfs,
// manifest.json}. The kernel and its modules come from the image itself;
// the initrd is livebootp-init as /init plus the modules it needs.
//
// It never writes outside the output directory (a temporary directory
// beside the version being built, renamed into place at the end, so a
// failed build leaves nothing behind), never runs the image's code, and
// never contacts a registry: SOURCE is a local directory or file.
package imagebuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/livebootp/livebootp/initramfs"
	"github.com/livebootp/livebootp/startup/verity"
	"github.com/livebootp/livebootp/wire"
	"github.com/ulikunitz/xz"
)

// DefaultModules are the modules a target's initrd carries unless told
// otherwise: common NICs (virtio, Intel, Realtek, Broadcom), disks (virtio,
// AHCI, NVMe, SCSI), the filesystems the init helper mounts (squashfs on
// loop under overlay, ext4 persistent storage, vfat), and the kernel's
// sha256 for the init helper (AF_ALG; the SSSE3/AVX2/SHA-NI code where
// the CPU has it), used by dm-verity, which checks the squashfs as it is
// read, and for the whole-file check where dm-verity is missing. Names
// absent from a kernel, or built into it, are skipped.
var DefaultModules = []string{
	"virtio_net", "virtio_pci", "virtio_blk", "virtio_scsi", "e1000", "e1000e", "igb", "ixgbe", "r8169",
	"tg3", "bnx2", "af_packet", "ahci", "nvme", "sd_mod", "squashfs", "loop", "overlay", "ext4", "vfat",
	"nls_cp437", "nls_iso8859-1", "nls_utf8", "crc32c", "af_alg", "algif_hash", "sha256_ssse3", "dm-verity",
}

// DefaultExclude is left out of the squashfs unless told otherwise: the
// distribution's own initramfs (35 MB of already-compressed data in a
// Debian image, a sixth of its squashfs), which a livebootp target never
// boots: the registry serves the initrd built here.
var DefaultExclude = []string{"boot/initrd.img*"}

// Options says what to build and where.
type Options struct {
	Name    string // image name: images/<Name>/<Version>
	Version string
	From    string // SOURCE: OCI layout dir, docker/podman save archive, rootfs dir or tarball; may end in :TAG
	Out     string // registry data directory; the image goes to Out/images/<Name>/<Version>
	Init    string // the livebootp-init binary, installed as the initrd's /init

	KernelVersion string   // which of the image's kernels; "" = the newest
	Modules       []string // modules for the initrd; nil = DefaultModules
	Exclude       []string // globs (mksquashfs -wildcards) relative to the image root, left out of the squashfs; nil = DefaultExclude
	Volumes       []string // persistent directories besides the image's own VOLUMEs (a rootfs has none)
	Force         bool     // replace an existing Out/images/<Name>/<Version>
	Compression   string   // squashfs compressor; "" = zstd if mksquashfs and the kernel support it, else gzip
	// Epoch is the time stamped on what the build creates (squashfs creation
	// time, directories a tarball only implies); zero means the image's
	// creation time, or 1970 for a directory or tarball.
	Epoch time.Time

	Log        *slog.Logger // nil: no logging
	Progress   io.Writer    // mksquashfs' progress bar and summary; nil: quiet
	Mksquashfs string       // path of mksquashfs; "" = from $PATH
}

var validName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._+-]*$`)

// Build builds the image and returns its manifest, also written as
// manifest.json beside the files.
func Build(ctx context.Context, o Options) (*wire.Manifest, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	for what, v := range map[string]string{"name": o.Name, "version": o.Version} {
		if !validName.MatchString(v) {
			return nil, fmt.Errorf("image %s %q: use letters, digits and . _ + - (not starting with . or -)", what, v)
		}
	}
	if o.From == "" {
		return nil, errors.New("no source given: a container image (OCI layout, docker save archive) or a root filesystem (directory, tarball)")
	}
	if o.Out == "" {
		return nil, errors.New("no output directory given")
	}
	initFile, err := os.Open(o.Init)
	if err != nil {
		return nil, fmt.Errorf("init program: %w (build cmds/livebootp-init, or name it with --init)", err)
	}
	initArch := elfArch(initFile)
	initFile.Close()
	sq, err := probeMksquashfs(ctx, o.Mksquashfs)
	if err != nil {
		return nil, err
	}

	parent := filepath.Join(o.Out, "images", o.Name)
	final := filepath.Join(parent, o.Version)
	if _, err := os.Lstat(final); err == nil && !o.Force {
		return nil, fmt.Errorf("%s exists: give a new version, or --force to replace it", final)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp(parent, "."+o.Version+".build-")
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			os.RemoveAll(stage)
		}
	}()
	if err := os.Chmod(stage, 0o755); err != nil {
		return nil, err
	}
	work := filepath.Join(stage, ".work")
	if err := os.Mkdir(work, 0o700); err != nil {
		return nil, err
	}

	src, err := openSource(ctx, o.From, work, o.Epoch, log)
	if err != nil {
		return nil, err
	}
	epoch := o.Epoch
	if epoch.IsZero() && src.config != nil && !src.config.Created.IsZero() {
		epoch = src.config.Created.Time
	}
	if epoch.IsZero() {
		epoch = time.Unix(0, 0)
	}

	k, err := findKernel(src.fsys, o.KernelVersion)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.From, err)
	}
	log.Info("kernel", "version", k.Version, "file", "/"+k.Path, "arch", k.Arch, "modules", k.ModulesDir)
	arch := k.Arch
	if src.config != nil && src.config.Architecture != "" {
		if arch == "" {
			arch = src.config.Architecture
		} else if arch != src.config.Architecture {
			log.Warn("the kernel's architecture differs from the image's", "kernel", arch, "image", src.config.Architecture)
		}
	}
	if arch == "" {
		return nil, fmt.Errorf("%s: cannot tell the architecture of /%s (not a bzImage, arm64 Image or EFI-stub kernel)", o.From, k.Path)
	}
	if initArch != "" && initArch != arch {
		return nil, fmt.Errorf("%s is built for %s, the image's kernel is %s: build it with GOARCH=%s", o.Init, initArch, arch, arch)
	}
	if k.Config != nil && k.Config["CONFIG_SQUASHFS"] == "" {
		return nil, fmt.Errorf("kernel %s cannot mount squashfs (no CONFIG_SQUASHFS in /%s)", k.Version, k.ConfigPath)
	}
	if k.Config == nil {
		log.Warn("the image has no kernel config; assuming the kernel reads gzip squashfs", "looked-for", "/boot/config-"+k.Version)
	}

	if err := copyOut(src.fsys, k.Path, filepath.Join(stage, wire.ImageKernel)); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}

	want := o.Modules
	if want == nil {
		want = DefaultModules
	}
	if err := buildInitrd(filepath.Join(stage, wire.ImageInitrd), o.Init, k, src.fsys, want, log); err != nil {
		return nil, err
	}

	comp, err := sq.compression(o.Compression, k)
	if err != nil {
		return nil, err
	}
	sqStart := time.Now()
	sqOut := filepath.Join(stage, wire.ImageSquashfs)
	log.Info("making squashfs", "compression", comp, "source", src.kind)
	exclude := o.Exclude
	if exclude == nil {
		exclude = DefaultExclude
	}
	err = sq.build(ctx, src.dir, sqOut, comp, epoch, exclude, o.Progress)
	if err != nil {
		return nil, err
	}
	log.Info("squashfs done", "took", time.Since(sqStart).Round(time.Millisecond))
	vp, err := appendVerity(sqOut)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(work); err != nil {
		return nil, err
	}

	m := &wire.Manifest{
		Name: o.Name, Version: o.Version, Arch: arch, KernelVersion: k.Version,
		Files:  map[string]wire.FileSum{},
		Verity: &wire.Verity{RootHash: hex.EncodeToString(vp.Root), HashOffset: vp.HashOffset},
	}
	if epoch.Unix() > 0 {
		m.Created = epoch.UTC()
	}
	if c := src.config; c != nil {
		for v := range c.Config.Volumes {
			m.Volumes = append(m.Volumes, v)
		}
		m.Env = c.Config.Env
		if len(c.Config.Labels) > 0 {
			m.Labels = c.Config.Labels
		}
	}
	for _, v := range o.Volumes {
		if !path.IsAbs(v) || path.Clean(v) == "/" {
			return nil, fmt.Errorf("volume %q: give an absolute directory such as /var/www", v)
		}
		m.Volumes = append(m.Volumes, path.Clean(v))
	}
	slices.Sort(m.Volumes)
	m.Volumes = slices.Compact(m.Volumes)
	for _, f := range []string{wire.ImageKernel, wire.ImageInitrd, wire.ImageSquashfs} {
		sum, err := sumFile(filepath.Join(stage, f))
		if err != nil {
			return nil, err
		}
		m.Files[f] = sum
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeSynced(filepath.Join(stage, wire.ImageManifest), append(b, '\n')); err != nil {
		return nil, err
	}
	if err := syncDir(stage); err != nil {
		return nil, err
	}
	if err := commit(stage, final, o.Force); err != nil {
		return nil, err
	}
	committed = true
	log.Info("image built", "dir", final, "took", time.Since(start).Round(time.Millisecond),
		"initrd", m.Files[wire.ImageInitrd].Size, "squashfs", m.Files[wire.ImageSquashfs].Size)
	return m, nil
}

// appendVerity appends the dm-verity hash tree to the squashfs (see
// package verity), so targets check each block as they read it instead of
// hashing the whole file before mounting it. Older targets and other
// tools ignore it: a squashfs ends where its superblock says.
func appendVerity(path string) (verity.Params, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return verity.Params{}, err
	}
	defer f.Close()
	size, err := verity.SquashfsHashOffset(f)
	if err != nil {
		return verity.Params{}, fmt.Errorf("%s: %w", path, err)
	}
	p, err := verity.Build(f, size)
	if err != nil {
		return p, fmt.Errorf("dm-verity tree for %s: %w", path, err)
	}
	return p, f.Sync()
}

// buildInitrd writes the initrd: init plus the closure of want over the
// image's own modules, which are stored uncompressed so the init helper
// needs no xz or zstd code (the archive is compressed as a whole: zstd
// when the kernel's config says it unpacks it, which it does about three
// times faster than gzip, else gzip).
func buildInitrd(out, init string, k *kernel, fsys fs.FS, want []string, log *slog.Logger) error {
	spec := initramfs.Spec{Init: init, KernelVersion: k.Version, Want: want, Zstd: k.Config["CONFIG_RD_ZSTD"] == "y"}
	if k.ModulesDir != "" {
		sub, err := fs.Sub(fsys, k.ModulesDir)
		if err != nil {
			return err
		}
		spec.Modules = initramfs.ModuleTree{Dir: "/" + k.ModulesDir, FS: sub, Decompress: decompress}
	} else {
		log.Warn("the image has no modules for its kernel: the initrd carries none", "looked-for", "/lib/modules/"+k.Version)
	}
	var buf bytes.Buffer
	set, err := initramfs.Build(&buf, spec)
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	if len(set.Missing) > 0 {
		log.Warn("modules not in the image's kernel, skipped", "modules", set.Missing)
	}
	if len(set.Builtin) > 0 {
		log.Debug("modules built into the kernel", "modules", set.Builtin)
	}
	log.Info("initrd", "modules", len(set.Modules), "bytes", buf.Len(), "zstd", spec.Zstd)
	return writeSynced(out, buf.Bytes())
}

// decompress reads .ko.xz and .ko.zst modules.
func decompress(ext string, r io.Reader) (io.Reader, error) {
	switch ext {
	case ".xz":
		return xz.NewReader(r)
	case ".zst":
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		defer d.Close()
		b, err := io.ReadAll(d)
		return bytes.NewReader(b), err
	}
	return nil, fmt.Errorf("no decompressor for %s", ext)
}

func copyOut(fsys fs.FS, name, dst string) error {
	in, err := fsys.Open(name)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return errors.Join(err, out.Sync(), out.Close())
}

func writeSynced(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	return errors.Join(err, f.Sync(), f.Close())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

func sumFile(p string) (wire.FileSum, error) {
	f, err := os.Open(p)
	if err != nil {
		return wire.FileSum{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return wire.FileSum{}, fmt.Errorf("hashing %s: %w", p, err)
	}
	// mksquashfs writes through its own descriptors: flush them too.
	if err := f.Sync(); err != nil {
		return wire.FileSum{}, err
	}
	return wire.FileSum{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// commit moves the finished stage into place. With replace, an existing
// version is moved aside first and deleted after, so readers see either
// the old or the new directory, never a mix.
func commit(stage, final string, replace bool) error {
	err := os.Rename(stage, final)
	if err == nil {
		return syncDir(filepath.Dir(final))
	}
	if !replace {
		if _, statErr := os.Lstat(final); statErr == nil {
			return fmt.Errorf("%s appeared during the build: give a new version, or --force to replace it", final)
		}
		return err
	}
	old := stage + ".old"
	if err := os.Rename(final, old); err != nil {
		return fmt.Errorf("moving the old %s aside: %w", final, err)
	}
	if err := os.Rename(stage, final); err != nil {
		return errors.Join(fmt.Errorf("installing %s: %w", final, err), os.Rename(old, final))
	}
	return errors.Join(os.RemoveAll(old), syncDir(filepath.Dir(final)))
}
