package tftp

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("needs %s (apt-get install %s): %v", name, map[string]string{"atftp": "atftp", "curl": "curl", "ip": "iproute2"}[name], err)
	}
	return p
}

// run runs a client with a bound on its time; it returns combined output and the exit error.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %q did not finish in 90s: %s", name, args, out)
	}
	return string(out), err
}

func atftpOpts(opts ...string) []string {
	var a []string
	for i := 0; i+1 < len(opts); i += 2 {
		a = append(a, "--option", opts[i]+" "+opts[i+1])
	}
	return a
}

// atftp (Debian 12: 0.8) fetches with every option combination, directly and, for windowsize,
// across the delay relay.
func TestInteropAtftp(t *testing.T) {
	atftp := needTool(t, "atftp")
	sizes := map[string][]byte{"a/small": randBytes(700, 1), "exact": randBytes(1468*4, 2), "big": randBytes(3<<20, 3), "empty": nil}
	ts := startServer(t, "127.0.0.1:0", Dir(fileRoot(t, sizes)), nil)
	relay := startRelay(t, ts.addr, 100*time.Microsecond)
	dir := t.TempDir()
	port := fmt.Sprint(ts.addr.Port())
	for _, opts := range [][]string{
		nil,
		{"blksize", "1468"},
		{"blksize", "8"},
		{"tsize", "enable", "blksize", "1024"},
		{"blksize", "1468", "windowsize", "16"},
		{"windowsize", "64", "timeout", "2"},
	} {
		for name, want := range sizes {
			if name == "big" && len(opts) >= 2 && opts[1] == "8" {
				continue // 400k lockstep round trips add nothing over "small"
			}
			out := filepath.Join(dir, "out")
			os.Remove(out)
			args := append(atftpOpts(opts...), "-g", "-r", name, "-l", out, "127.0.0.1", port)
			msg, err := run(t, atftp, args...)
			got, rerr := os.ReadFile(out)
			if err != nil || rerr != nil || !bytes.Equal(got, want) {
				t.Errorf("atftp %v %s: %v, %d bytes of %d: %s", opts, name, err, len(got), len(want), msg)
			}
		}
	}
	for _, opts := range [][]string{{"blksize", "1468"}, {"blksize", "1468", "windowsize", "16"}} {
		out := filepath.Join(dir, "relayed")
		args := append(atftpOpts(opts...), "-g", "-r", "big", "-l", out, "127.0.0.1", fmt.Sprint(relay.Port()))
		msg, err := run(t, atftp, args...)
		got, _ := os.ReadFile(out)
		if err != nil || !bytes.Equal(got, sizes["big"]) {
			t.Errorf("atftp %v across the relay: %v, %d bytes: %s", opts, err, len(got), msg)
		}
	}
}

func TestInteropCurl(t *testing.T) {
	curl := needTool(t, "curl")
	content := randBytes(2<<20+17, 4)
	ts := startServer(t, "127.0.0.1:0", Dir(fileRoot(t, map[string][]byte{"pxelinux.cfg/default": content})), nil)
	dir := t.TempDir()
	for _, args := range [][]string{nil, {"--tftp-blksize", "1468"}, {"--tftp-blksize", "512"}, {"--tftp-no-options"}} {
		out := filepath.Join(dir, "out")
		os.Remove(out)
		url := fmt.Sprintf("tftp://%v/pxelinux.cfg/default", ts.addr)
		msg, err := run(t, curl, append(args, "-sS", "-o", out, url)...)
		got, _ := os.ReadFile(out)
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("curl %v: %v, %d bytes of %d: %s", args, err, len(got), len(content), msg)
		}
	}
}

// Real clients asking for names outside the root get an error and nothing else; writes are
// refused with ERROR 2.
func TestInteropRefusals(t *testing.T) {
	atftp, curl := needTool(t, "atftp"), needTool(t, "curl")
	root, secret := traversalRoot(t)
	ts := startServer(t, "127.0.0.1:0", Dir(root), nil)
	dir := t.TempDir()
	port := fmt.Sprint(ts.addr.Port())
	rel, _ := filepath.Rel(root, secret)
	names := append([]string{rel, "../../../../../../" + secret, secret, `..\secret`}, traversalCorpus...)
	for _, name := range names {
		if strings.ContainsRune(name, 0) || len(name) > 400 {
			continue // cannot be passed on a command line / URL meaningfully
		}
		out := filepath.Join(dir, "out")
		os.Remove(out)
		msg, err := run(t, atftp, "-g", "-r", name, "-l", out, "127.0.0.1", port)
		if got, _ := os.ReadFile(out); err == nil || bytes.Contains(got, []byte("SECRET")) {
			t.Errorf("atftp %q: exit %v, got %q: %s", name, err, got, msg)
		}
		os.Remove(out)
		url := fmt.Sprintf("tftp://%v/%s", ts.addr, strings.ReplaceAll(name, "%", "%25"))
		msg, err = run(t, curl, "-sS", "--path-as-is", "-o", out, url)
		if got, _ := os.ReadFile(out); err == nil || bytes.Contains(got, []byte("SECRET")) {
			t.Errorf("curl %q: exit %v, got %q: %s", url, err, got, msg)
		}
	}
	// curl decodes %2e%2e to ".." before it sends: refused as traversal.
	msg, err := run(t, curl, "-sS", "-o", filepath.Join(dir, "x"), fmt.Sprintf("tftp://%v/%%2e%%2e/secret", ts.addr))
	if err == nil {
		t.Errorf("curl %%2e%%2e/secret succeeded: %s", msg)
	}

	// Writes: atftp -p and curl -T both get ERROR 2 "read-only server", and nothing is created.
	src := filepath.Join(dir, "upload")
	os.WriteFile(src, []byte("payload"), 0o644)
	msg, err = run(t, atftp, "-p", "-l", src, "-r", "uploaded", "127.0.0.1", port)
	if err == nil || !strings.Contains(msg, "read-only server") {
		t.Errorf("atftp put: exit %v: %s (want refusal naming read-only server)", err, msg)
	}
	msg, err = run(t, curl, "-sS", "-T", src, fmt.Sprintf("tftp://%v/uploaded2", ts.addr))
	if err == nil {
		t.Errorf("curl upload succeeded: %s", msg)
	}
	for _, n := range []string{"uploaded", "uploaded2"} {
		if _, err := os.Stat(filepath.Join(root, n)); err == nil {
			t.Errorf("%s was created by a write request", n)
		}
	}
}
