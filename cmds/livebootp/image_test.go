//go:build !livebootp_appliance

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestImageCmdErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "only subcommand is build"},
		{[]string{"push"}, "only subcommand is build"},
		{[]string{"build"}, "--name is required"},
		{[]string{"build", "--name", "x", "--version", "1", "--from", "/nonexistent"}, "--out is required"},
		{[]string{"build", "--name", "x", "--version", "1", "--from", "/nonexistent", "--out", "o", "extra"}, "unexpected arguments"},
		{[]string{"build", "--name", "x", "--version", "1", "--from", "/nonexistent", "--out", t.TempDir(), "--init", "/nonexistent/init"}, "init program"},
	} {
		var stdout, stderr bytes.Buffer
		err := imageCmd(context.Background(), tc.args, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("image %q: err = %v, want one containing %q", tc.args, err, tc.want)
		}
	}
}

// TestImageCmdBuild runs `livebootp image build` on a minimal root
// filesystem: the Debian kernel's header (enough to tell its architecture)
// and no modules.
func TestImageCmdBuild(t *testing.T) {
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("needs mksquashfs (apt-get install squashfs-tools)")
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	kdir := filepath.Join(wd, "../../build/kernel")
	v, err := os.ReadFile(filepath.Join(kdir, "version"))
	if err != nil {
		t.Skip("needs the Debian kernel: run scripts/fetch-kernel.sh (make kernel)")
	}
	kver := strings.TrimSpace(string(v))
	kernel, err := os.ReadFile(filepath.Join(kdir, "vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	files := map[string][]byte{
		"boot/vmlinuz-" + kver: kernel[:64<<10],
		"etc/hostname":         []byte("tiny\n"),
		"init":                 []byte("#!/bin/sh\n"),
	}
	for name, b := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	args := []string{"build", "--name", "tiny", "--version", "0.1", "--from", root, "--out", out,
		"--init", filepath.Join(root, "init"), "-q", "--compression", "gzip"}
	if err := imageCmd(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	for _, want := range []string{"tiny/0.1 (amd64, kernel " + kver + ")", "filesystem.squashfs", "sha256 "} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "images/tiny/0.1/manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"created": "2023-11-14T22:13:20Z"`) {
		t.Errorf("manifest does not carry SOURCE_DATE_EPOCH:\n%s", b)
	}
	if err := imageCmd(context.Background(), args, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second build: err = %v, want a refusal naming --force", err)
	}
}
