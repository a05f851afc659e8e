package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeConfig writes a complete configuration (nothing left to detect)
// with one host whose image and key file exist.
func writeConfig(t *testing.T, hostBlock string) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "images", "nginx-web-server", "test"), 0o755)
	os.MkdirAll(filepath.Join(dir, "keys"), 0o755)
	os.WriteFile(filepath.Join(dir, "keys", "default"), []byte("ssh-ed25519 AAAA test\n"), 0o644)
	cfg := `bootp-registry:
  interface: eth0
  server-address: 192.168.122.1
  subnet: 192.168.122.0/24
  routers: [192.168.122.1]
  domain-name-servers: ["192.168.122.1"]
  images-dir: images
  ssh-authorized-keys-dir: keys
hosts:
` + hostBlock
	p := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	good := writeConfig(t, `  my-nginx-web-server:
    hardware-ethernet: "52:54:00:12:34:56"
    fixed-address: "192.168.122.10"
    image-name: nginx-web-server/test
    ssh-authorized-keys: default
    cmdline-append: debug
`)
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"check", "-config", good}, nil, &out, &errb); err != nil {
		t.Fatalf("check of a good file: %v\n%s%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "OK: ") || !strings.Contains(out.String(), "1 hosts") {
		t.Errorf("check output: %q", out.String())
	}

	// Three problems, each with file:line:col and a fix, and exit status 1.
	bad := writeConfig(t, `  my-nginx-web-server:
    hardware-ethernet: "52:54:00:12:34:5"
    fixed-address: "10.0.0.10"
    image-name: nginx-web-server/missing
    ssh-authorized-keys: default
`)
	out.Reset()
	err := run(context.Background(), []string{"check", "-config", bad}, nil, &out, &errb)
	if !errors.Is(err, errReported) {
		t.Fatalf("check of a bad file returned %v, want a failing status", err)
	}
	text := out.String()
	for _, want := range []string{bad + ":11:", bad + ":12:", bad + ":13:", "fix: ", "3 problem(s)"} {
		if !strings.Contains(text, want) {
			t.Errorf("check output lacks %q:\n%s", want, text)
		}
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"frobnicate"}, nil, &out, &errb); err == nil || !strings.Contains(errb.String(), "usage: livebootp") {
		t.Errorf("unknown command: err %v, stderr %q", err, errb.String())
	}
	if err := run(context.Background(), []string{"hosts", "-socket", filepath.Join(t.TempDir(), "none.sock")}, nil, &out, &errb); err == nil || !strings.Contains(err.Error(), "is `livebootp serve` running") {
		t.Errorf("hosts without a registry: %v", err)
	}
}
