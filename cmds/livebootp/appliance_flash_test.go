//go:build !livebootp_appliance

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livebootp/livebootp/appliance/disk"
)

// flashFixture builds a small appliance image and a 200 MiB VM disk file to
// flash it to (--force-file).
func flashFixture(t *testing.T) (image, vmdisk string) {
	t.Helper()
	dir := t.TempDir()
	put := func(p, s string) string {
		t.Helper()
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	put("data/config.yml", "hosts: {}\n")
	image = filepath.Join(dir, "appliance.img")
	_, err := disk.Build(context.Background(), image, disk.Spec{
		Arch: "amd64", Kernel: put("vmlinuz", "kernel"), Initramfs: put("initrd", "initrd"),
		Cmdline: "console=ttyS0", DataDir: filepath.Join(dir, "data"),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	vmdisk = put("vm.img", "")
	if err := os.Truncate(vmdisk, 200<<20); err != nil {
		t.Fatal(err)
	}
	return image, vmdisk
}

func TestApplianceFlashAsks(t *testing.T) {
	image, vmdisk := flashFixture(t)
	args := []string{"--image", image, "--device", vmdisk, "--force-file"}

	var stdout, stderr bytes.Buffer
	err := applianceFlash(context.Background(), args, strings.NewReader("n\n"), &stdout, &stderr)
	if !errors.Is(err, disk.ErrDeclined) {
		t.Fatalf("answer n: err = %v, want ErrDeclined; stderr:\n%s", err, stderr.String())
	}
	if q := stderr.String(); !strings.Contains(q, "write "+image) || !strings.Contains(q, vmdisk+" (regular file, 200.0 MiB)") || !strings.HasSuffix(q, "[y/N] ") {
		t.Errorf("question: %q", q)
	}
	if b, err := os.ReadFile(vmdisk); err != nil || bytes.Count(b, []byte{0}) != len(b) {
		t.Fatalf("the disk changed after the answer n (%v)", err)
	}

	// No answer at all (stdin closed) is no too.
	stderr.Reset()
	if err := applianceFlash(context.Background(), args, strings.NewReader(""), &stdout, &stderr); !errors.Is(err, disk.ErrDeclined) {
		t.Fatalf("no answer: err = %v", err)
	}

	stderr.Reset()
	if err := applianceFlash(context.Background(), args, strings.NewReader("yes\n"), &stdout, &stderr); err != nil {
		t.Fatalf("answer yes: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "synced 100.0%") || !strings.Contains(stdout.String(), "wrote "+image+" to "+vmdisk) {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(vmdisk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b[512:1024], []byte("EFI PART")) || !bytes.Contains(b[len(b)-512:], []byte("EFI PART")) {
		t.Error("no primary GPT header, or no backup header at the end of the disk")
	}
}

func TestApplianceFlashYesAndErrors(t *testing.T) {
	image, vmdisk := flashFixture(t)
	var stdout, stderr bytes.Buffer
	// --yes never reads stdin: a reader that fails proves it.
	if err := applianceFlash(context.Background(), []string{"--image", image, "--device", vmdisk, "--force-file", "--yes", "-q"},
		failingReader{}, &stdout, &stderr); err != nil {
		t.Fatalf("--yes: %v\n%s", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("-q printed %q", stderr.String())
	}
	zeros := filepath.Join(t.TempDir(), "zeros.img")
	if err := os.WriteFile(zeros, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--image and --device are required"},
		{[]string{"--image", image}, "--image and --device are required"},
		{[]string{"--image", image, "--device", vmdisk, "extra"}, "unexpected arguments"},
		{[]string{"--image", image, "--device", vmdisk, "--yes"}, "--force-file"},
		{[]string{"--image", image, "--device", "/dev/null", "--yes"}, "not a block device"},
		{[]string{"--image", zeros, "--device", vmdisk, "--yes", "--force-file"}, "not an appliance image"},
	} {
		err := applianceFlash(context.Background(), tc.args, failingReader{}, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("appliance flash %q: err = %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("stdin must not be read") }
