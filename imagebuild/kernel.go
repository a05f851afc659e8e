package imagebuild

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// ErrNoKernel is returned (wrapped) for an image with no kernel to boot.
var ErrNoKernel = errors.New("image has no kernel in /boot: install one in the image " +
	"(e.g. `apt-get install linux-image-amd64` on Debian, linux-image-generic on Ubuntu)")

// kernel is the kernel found in an image.
type kernel struct {
	Version    string            // uname -r
	Path       string            // of the kernel image, inside the image
	ModulesDir string            // lib/modules/<version> (or usr/lib/...); "" if the image has none
	ConfigPath string            // boot/config-<version>; "" if absent
	Config     map[string]string // CONFIG_X -> y, m or a value; nil without ConfigPath
	Arch       string            // GOARCH name, from the kernel image's headers
}

// findKernel picks the image's kernel: /boot/vmlinuz-<version> (or
// /usr/lib/modules/<version>/vmlinuz, as Fedora and Arch install it), the
// newest by version unless want names one.
func findKernel(fsys fs.FS, want string) (*kernel, error) {
	found := map[string]string{} // version -> path
	if es, err := fs.ReadDir(fsys, "boot"); err == nil {
		for _, e := range es {
			if v, ok := strings.CutPrefix(e.Name(), "vmlinuz-"); ok && v != "" {
				found[v] = path.Join("boot", e.Name())
			}
		}
	}
	for _, dir := range []string{"usr/lib/modules", "lib/modules"} {
		es, _ := fs.ReadDir(fsys, dir)
		for _, e := range es {
			p := path.Join(dir, e.Name(), "vmlinuz")
			if _, ok := found[e.Name()]; !ok && isFile(fsys, p) {
				found[e.Name()] = p
			}
		}
	}
	var versions []string
	for v, p := range found {
		if isFile(fsys, p) { // boot/vmlinuz-x may be a dangling link
			versions = append(versions, v)
		}
	}
	if len(versions) == 0 {
		return nil, ErrNoKernel
	}
	slices.SortFunc(versions, compareVersions)
	v := versions[len(versions)-1]
	if want != "" {
		if !slices.Contains(versions, want) {
			return nil, fmt.Errorf("image has no kernel %s; it has %s", want, strings.Join(versions, ", "))
		}
		v = want
	}
	k := &kernel{Version: v, Path: found[v]}
	for _, dir := range []string{"lib/modules/" + v, "usr/lib/modules/" + v} {
		if fi, err := fs.Stat(fsys, dir); err == nil && fi.IsDir() {
			k.ModulesDir = dir
			break
		}
	}
	for _, p := range []string{"boot/config-" + v, k.ModulesDir + "/config"} {
		if k.ModulesDir == "" && !strings.HasPrefix(p, "boot/") {
			continue
		}
		if b, err := fs.ReadFile(fsys, p); err == nil {
			k.ConfigPath, k.Config = p, parseKernelConfig(b)
			break
		}
	}
	f, err := fsys.Open(k.Path)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Path, err)
	}
	defer f.Close()
	head := make([]byte, 64<<10)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("kernel %s: %w", k.Path, err)
	}
	k.Arch = kernelArch(head[:n], 0)
	return k, nil
}

func isFile(fsys fs.FS, p string) bool {
	fi, err := fs.Stat(fsys, p)
	return err == nil && fi.Mode().IsRegular()
}

// compareVersions orders kernel versions: runs of digits compare as
// numbers, so 6.1.0-56 is newer than 6.1.0-9.
func compareVersions(a, b string) int {
	for a != "" && b != "" {
		da, ra := leadingRun(a)
		db, rb := leadingRun(b)
		na, errA := strconv.ParseUint(da, 10, 64)
		nb, errB := strconv.ParseUint(db, 10, 64)
		switch {
		case errA == nil && errB == nil && na != nb:
			if na < nb {
				return -1
			}
			return 1
		case (errA != nil || errB != nil) && da != db:
			return strings.Compare(da, db)
		}
		a, b = ra, rb
	}
	return strings.Compare(a, b)
}

// leadingRun splits s after its leading run of digits or of non-digits.
func leadingRun(s string) (string, string) {
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	i := 1
	for i < len(s) && digit(s[i]) == digit(s[0]) {
		i++
	}
	return s[:i], s[i:]
}

func parseKernelConfig(b []byte) map[string]string {
	cfg := map[string]string{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && strings.HasPrefix(k, "CONFIG_") {
			cfg[k] = v
		}
	}
	return cfg
}

// kernelArch names the architecture (GOARCH) of a kernel image from its
// first bytes: the PE header of EFI-stub kernels (x86 bzImage, arm64 Image,
// EFI zboot), else the x86 boot protocol header, the arm64/riscv Image
// header, an ELF vmlinux, or a gzip-compressed Image. "" if unknown.
func kernelArch(b []byte, depth int) string {
	le16 := func(o int) int { return int(binary.LittleEndian.Uint16(b[o:])) }
	le32 := func(o int) int { return int(binary.LittleEndian.Uint32(b[o:])) }
	if len(b) >= 0x40 && bytes.HasPrefix(b, []byte("MZ")) {
		if pe := le32(0x3c); pe > 0 && pe+6 <= len(b) && bytes.Equal(b[pe:pe+4], []byte("PE\x00\x00")) {
			switch le16(pe + 4) {
			case 0x8664:
				return "amd64"
			case 0xaa64:
				return "arm64"
			case 0x14c:
				return "386"
			case 0x5064:
				return "riscv64"
			case 0x1c2, 0x1c4:
				return "arm"
			case 0x6264:
				return "loong64"
			}
		}
	}
	if len(b) >= 0x238 && bytes.Equal(b[0x202:0x206], []byte("HdrS")) {
		if le16(0x206) >= 0x20c && b[0x236]&1 != 0 { // XLF_KERNEL_64
			return "amd64"
		}
		return "386"
	}
	if len(b) >= 0x3c {
		switch string(b[0x38:0x3c]) {
		case "ARM\x64":
			return "arm64"
		case "RSC\x05":
			return "riscv64"
		}
	}
	if f, err := elf.NewFile(bytes.NewReader(b)); err == nil {
		return machineArch(f.Machine)
	}
	if depth == 0 && bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		if zr, err := gzip.NewReader(bytes.NewReader(b)); err == nil {
			head := make([]byte, 4096)
			n, _ := io.ReadFull(zr, head)
			return kernelArch(head[:n], 1)
		}
	}
	return ""
}

// elfArch is the GOARCH of an ELF executable, "" if it is not one (the
// tests' /init is a shell script).
func elfArch(r io.ReaderAt) string {
	f, err := elf.NewFile(r)
	if err != nil {
		return ""
	}
	defer f.Close()
	if a := machineArch(f.Machine); a != "" {
		return a
	}
	return f.Machine.String()
}

func machineArch(m elf.Machine) string {
	switch m {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_386:
		return "386"
	case elf.EM_RISCV:
		return "riscv64"
	case elf.EM_ARM:
		return "arm"
	}
	return ""
}
