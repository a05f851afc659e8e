package imagebuild

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Source kinds, as logged and as the tests name them.
const (
	KindDir           = "directory"      // a root filesystem directory
	KindRootfsTar     = "rootfs-tar"     // a root filesystem tarball (.tar, .tar.gz, .tar.zst, .tar.xz)
	KindOCILayout     = "oci-layout"     // an OCI image layout directory (index.json, blobs/)
	KindOCIArchive    = "oci-archive"    // the same, as a tar (podman save --format oci-archive)
	KindDockerArchive = "docker-archive" // docker save / podman save
)

// source is an opened SOURCE: its files, and what mksquashfs reads.
type source struct {
	kind   string
	fsys   fs.FS          // the root filesystem, symlinks resolved inside it
	dir    string         // what mksquashfs reads: SOURCE itself, or the unpacked image
	config *v1.ConfigFile // images only
	dups   []string       // names a tarball held twice (the first copy is kept)
}

// openSource recognises SOURCE and makes its root filesystem readable.
// Everything but a directory is flattened into work/: layers merged
// (whiteouts and opaque directories applied), compression removed.
// SOURCE may end in :REF to pick an image by tag in an archive or layout
// holding several.
func openSource(ctx context.Context, from, work string, epoch time.Time, log *slog.Logger) (*source, error) {
	p, ref := from, ""
	if _, err := os.Stat(p); err != nil {
		// The reference may hold colons itself (registry:5000/x:tag): the
		// path is the shortest prefix that exists.
		for i := 0; i < len(from); i++ {
			if from[i] != ':' || i == 0 {
				continue
			}
			if _, err := os.Stat(from[:i]); err == nil {
				p, ref = from[:i], from[i+1:]
				break
			}
		}
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", from, err)
	}
	if fi.IsDir() {
		if _, err := os.Stat(filepath.Join(p, "index.json")); err == nil {
			idx, err := layout.ImageIndexFromPath(p)
			if err != nil {
				return nil, fmt.Errorf("source %s: OCI layout: %w", p, err)
			}
			img, err := pickImage(idx, ref)
			if err != nil {
				return nil, fmt.Errorf("source %s: %w", p, err)
			}
			return flattenImage(ctx, KindOCILayout, img, work, epoch, log)
		}
		if ref != "" {
			return nil, fmt.Errorf("source %s: a root filesystem directory has no images to pick %q from", from, ref)
		}
		return &source{kind: KindDir, fsys: dirFS(p), dir: p}, nil
	}

	kind, err := classifyTar(p)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", p, err)
	}
	switch kind {
	case KindDockerArchive:
		var tag *name.Tag
		if ref != "" {
			t, err := name.NewTag(ref)
			if err != nil {
				return nil, fmt.Errorf("source %s: image reference %q: %w", from, ref, err)
			}
			tag = &t
		}
		img, err := tarball.Image(func() (io.ReadCloser, error) { return openDecompressed(p) }, tag)
		if err != nil {
			return nil, fmt.Errorf("source %s: docker archive: %w (an archive of several images needs one named: --from %s:REPO:TAG)", p, err, p)
		}
		return flattenImage(ctx, KindDockerArchive, img, work, epoch, log)
	case KindOCIArchive:
		dir := filepath.Join(work, "oci")
		if err := unpackLayout(p, dir); err != nil {
			return nil, fmt.Errorf("source %s: %w", p, err)
		}
		idx, err := layout.ImageIndexFromPath(dir)
		if err != nil {
			return nil, fmt.Errorf("source %s: OCI archive: %w", p, err)
		}
		img, err := pickImage(idx, ref)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", p, err)
		}
		return flattenImage(ctx, KindOCIArchive, img, work, epoch, log)
	}
	if ref != "" {
		return nil, fmt.Errorf("source %s: a root filesystem tarball has no images to pick %q from", from, ref)
	}
	rc, err := openDecompressed(p)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", p, err)
	}
	defer rc.Close()
	return flatten(ctx, KindRootfsTar, rc, work, epoch, log)
}

// classifyTar tells an image archive from a root filesystem tarball by the
// names at its top: manifest.json (docker save), oci-layout + index.json.
func classifyTar(p string) (string, error) {
	rc, err := openDecompressed(p)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	top := map[string]bool{}
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if i == 0 {
				return "", fmt.Errorf("not a tar archive, an OCI layout or a directory: %w", err)
			}
			return "", fmt.Errorf("reading the tar: %w", err)
		}
		if n := strings.TrimPrefix(h.Name, "./"); !strings.Contains(strings.TrimSuffix(n, "/"), "/") {
			top[strings.TrimSuffix(n, "/")] = true
		}
	}
	switch {
	case top["manifest.json"] && !top["etc"] && !top["usr"]:
		return KindDockerArchive, nil
	case top["oci-layout"] && top["index.json"]:
		return KindOCIArchive, nil
	}
	return KindRootfsTar, nil
}

// openDecompressed opens a file, undoing gzip, zstd, xz or bzip2 as its
// first bytes say. An uncompressed file is returned as the *os.File, so a
// tar reader can seek over contents.
func openDecompressed(p string) (io.ReadCloser, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	magic := make([]byte, 6)
	n, _ := io.ReadFull(f, magic)
	magic = magic[:n]
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		r, err = gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		var d *zstd.Decoder
		if d, err = zstd.NewReader(br); err == nil {
			return readCloser{d.IOReadCloser(), f}, nil
		}
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		r, err = xz.NewReader(br)
	case bytes.HasPrefix(magic, []byte("BZh")):
		r = bzip2.NewReader(br)
	default:
		return f, nil
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return readCloser{io.NopCloser(r), f}, nil
}

type readCloser struct {
	io.ReadCloser
	f *os.File
}

func (r readCloser) Close() error { return errors.Join(r.ReadCloser.Close(), r.f.Close()) }

// unpackLayout extracts an OCI archive's index.json, oci-layout and blobs
// into dir (only those: they are all layout.ImageIndexFromPath reads).
func unpackLayout(archive, dir string) error {
	rc, err := openDecompressed(archive)
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the OCI archive: %w", err)
		}
		n, err := cleanName(h.Name)
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg || !(n == "index.json" || n == "oci-layout" || strings.HasPrefix(n, "blobs/")) {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.Create(dst)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if err := errors.Join(err, f.Close()); err != nil {
			return fmt.Errorf("unpacking %s: %w", n, err)
		}
	}
}

// refAnnotation is where OCI layouts keep an image's tag.
const refAnnotation = "org.opencontainers.image.ref.name"

type candidate struct {
	idx  v1.ImageIndex
	desc v1.Descriptor
	ref  string
}

// pickImage chooses the image of an index: the one whose tag is ref, or
// the only one, or the only linux one for this machine's architecture.
func pickImage(idx v1.ImageIndex, ref string) (v1.Image, error) {
	var cands []candidate
	var walk func(idx v1.ImageIndex, inherited string, depth int) error
	walk = func(idx v1.ImageIndex, inherited string, depth int) error {
		im, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		for _, d := range im.Manifests {
			r := d.Annotations[refAnnotation]
			if r == "" {
				r = inherited
			}
			switch {
			case d.MediaType.IsIndex() && depth < 4:
				child, err := idx.ImageIndex(d.Digest)
				if err != nil {
					return err
				}
				if err := walk(child, r, depth+1); err != nil {
					return err
				}
			case d.MediaType.IsImage():
				cands = append(cands, candidate{idx, d, r})
			}
		}
		return nil
	}
	if err := walk(idx, "", 0); err != nil {
		return nil, fmt.Errorf("reading the image index: %w", err)
	}
	if ref != "" {
		cands = slices.DeleteFunc(cands, func(c candidate) bool {
			return c.ref != ref && !strings.HasSuffix(c.ref, ":"+ref) && !strings.HasSuffix(c.ref, "/"+ref)
		})
	}
	if len(cands) > 1 {
		mine := slices.DeleteFunc(slices.Clone(cands), func(c candidate) bool {
			return c.desc.Platform == nil || c.desc.Platform.OS != "linux" || c.desc.Platform.Architecture != runtime.GOARCH
		})
		if len(mine) > 0 {
			cands = mine
		}
	}
	switch len(cands) {
	case 0:
		if ref != "" {
			return nil, fmt.Errorf("no image tagged %q", ref)
		}
		return nil, errors.New("no image in the index")
	case 1:
		return cands[0].idx.Image(cands[0].desc.Digest)
	}
	var names []string
	for _, c := range cands {
		names = append(names, fmt.Sprintf("%s (%s)", c.ref, c.desc.Digest))
	}
	return nil, fmt.Errorf("%d images to choose from: %s; name one as SOURCE:TAG", len(cands), strings.Join(names, ", "))
}

func flattenImage(ctx context.Context, kind string, img v1.Image, work string, epoch time.Time, log *slog.Logger) (*source, error) {
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("image layers: %w", err)
	}
	log.Info("flattening image", "kind", kind, "layers", len(layers))
	if epoch.IsZero() && !cfg.Created.IsZero() {
		epoch = cfg.Created.Time
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	s, err := flatten(ctx, kind, rc, work, epoch, log)
	if err != nil {
		return nil, err
	}
	s.config = cfg
	return s, nil
}

// ErrNeedRoot is returned (wrapped) for an image or tarball source when
// not running as root: unpacking it with its owners needs root.
var ErrNeedRoot = errors.New("unpacking an image with its file owners needs root: run as root, or in a user namespace (podman unshare livebootp image build ...)")

// flatten merges the tar stream r into work/rootfs (see unpack.go).
func flatten(ctx context.Context, kind string, r io.Reader, work string, epoch time.Time, log *slog.Logger) (*source, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%s: %w", kind, ErrNeedRoot)
	}
	if epoch.IsZero() {
		epoch = time.Unix(0, 0) // a zero time would leave directories at the time of unpacking
	}
	start := time.Now()
	out, err := newDirSink(filepath.Join(work, "rootfs"))
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*source, error) {
		out.root.Close()
		return nil, err
	}
	fl := newFlattener(out, epoch)
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(fmt.Errorf("reading the %s: %w", kind, err))
		}
		if err := fl.add(h, tr); err != nil {
			return fail(fmt.Errorf("%s: %w", kind, err))
		}
	}
	if err := fl.finish(); err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	if out.xattrErr != nil {
		log.Warn("extended attributes lost", "first", out.xattrErr)
	}
	if out.nodevErr != nil {
		log.Warn("device nodes left out (not allowed here)", "first", out.nodevErr)
	}
	if len(fl.dups) > 0 {
		log.Warn("the source holds some files twice; the first copy is kept", "count", len(fl.dups), "first", fl.dups[0])
	}
	log.Info("unpacked", "kind", kind, "entries", fl.files, "bytes", out.n, "took", time.Since(start).Round(time.Millisecond))
	return &source{kind: kind, fsys: dirFS(out.dir), dir: out.dir, dups: fl.dups}, nil
}
