package startup

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/livebootp/livebootp/startup/sshkeys"
	"github.com/livebootp/livebootp/wire"
)

// TestMain lets the test binary be the RSA key child, as livebootp-init
// is when it runs itself with keygenArg.
func TestMain(m *testing.M) {
	var err error
	switch childMode(os.Args) {
	case keygenArg:
		err = runKeygen(os.Stdout, os.NewFile(3, "keygen control"), os.Stderr)
	case reportArg:
		err = runLateReport(os.Stdin, os.Stderr)
	default:
		os.Exit(m.Run())
	}
	if err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// TestRSAChildTake: the child's key arrives whole and is a 3072-bit RSA
// key; before it is there, take(0) says so without waiting.
func TestRSAChildTake(t *testing.T) {
	c, err := startRSAChild(os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.release()
	start := time.Now()
	if _, ok, err := c.take(0); err != nil || (ok && time.Since(start) > time.Second) {
		t.Fatalf("take(0) = %v, %v after %s", ok, err, time.Since(start))
	}
	priv, ok, err := c.take(2 * time.Minute)
	if err != nil || !ok {
		t.Fatalf("take = %v, %v", ok, err)
	}
	if priv.N.BitLen() != sshkeys.RSABits {
		t.Errorf("RSA key of %d bits", priv.N.BitLen())
	}
	if err := priv.Validate(); err != nil {
		t.Error(err)
	}
}

// TestRSAChildTakeReady: once the child has written the key, take(0)
// returns it without waiting (a deadline already past would fail the read
// before trying it).
func TestRSAChildTakeReady(t *testing.T) {
	c, err := startRSAChild(os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.release()
	var ready bool
	for deadline := time.Now().Add(2 * time.Minute); !ready && time.Now().Before(deadline); {
		// Poll for the pipe's end without reading it: the key is whole
		// once the child has closed it.
		fds := []unix.PollFd{{Fd: int32(c.key.Fd()), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, 100); n == 1 && fds[0].Revents&unix.POLLHUP != 0 {
			ready = true
		}
	}
	if !ready {
		t.Fatal("the child wrote no key in 2 minutes")
	}
	priv, ok, err := c.take(0)
	if err != nil || !ok || priv.N.BitLen() != sshkeys.RSABits {
		t.Fatalf("take(0) with the key in the pipe: %v, %v", ok, err)
	}
}

// TestRSAChildHandover: handed over, the child writes the key to the
// persistent directory and to /etc/ssh (that one last), and sends the
// boot report again with the RSA fingerprint added.
func TestRSAChildHandover(t *testing.T) {
	var mu sync.Mutex
	var reports []wire.Report
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rep wire.Report
		if r.URL.Path != wire.PathReport+testMAC || json.NewDecoder(r.Body).Decode(&rep) != nil {
			http.Error(w, "bad report", http.StatusBadRequest)
			return
		}
		mu.Lock()
		reports = append(reports, rep)
		mu.Unlock()
	}))
	defer ts.Close()
	data, etc := t.TempDir(), t.TempDir()
	var dirs []*os.File
	for _, d := range []string{data, etc} {
		f, err := os.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		dirs = append(dirs, f)
	}
	c, err := startRSAChild(os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	h := handover{Comment: "root@web1", Dirs: []string{"data", "etc"}, lateReport: lateReport{Registry: ts.URL, MAC: testMAC,
		Report: wire.Report{Hostname: "web1", HostKeys: []string{"ED25519 SHA256:x", "ECDSA SHA256:y"}}}}
	if err := c.handOver(h, dirs); err != nil {
		t.Fatal(err)
	}
	installed := filepath.Join(etc, "ssh_host_rsa_key")
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(installed); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child installed no RSA key in 2 minutes")
		}
	}
	priv, err := os.ReadFile(installed)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{data, etc} {
		b, err := os.ReadFile(filepath.Join(d, "ssh_host_rsa_key"))
		if err != nil || !bytes.Equal(b, priv) {
			t.Errorf("%s: key %v, same as /etc/ssh's: %v", d, err, bytes.Equal(b, priv))
		}
		if st, err := os.Stat(filepath.Join(d, "ssh_host_rsa_key")); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: private key mode %v, %v", d, st.Mode(), err)
		}
		pub, err := os.ReadFile(filepath.Join(d, "ssh_host_rsa_key.pub"))
		if err != nil || !strings.HasSuffix(string(pub), " root@web1\n") {
			t.Errorf("%s: public key %q, %v", d, pub, err)
		}
	}
	signer, err := ssh.ParsePrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"ED25519 SHA256:x", "ECDSA SHA256:y", "RSA " + ssh.FingerprintSHA256(signer.PublicKey())}
	if len(reports) != 1 || strings.Join(reports[0].HostKeys, ",") != strings.Join(want, ",") || reports[0].Hostname != "web1" {
		t.Errorf("reports %+v, want one with host keys %q", reports, want)
	}
}

// TestHoldSSHD: an image that boots systemd gets a unit in /run ordering
// sshd after the RSA key; another image gets nothing.
func TestHoldSSHD(t *testing.T) {
	for _, tc := range []struct {
		init string
		want bool
	}{{"../lib/systemd/systemd", true}, {"/lib/systemd/systemd", true}, {"/bin/busybox", false}, {"", true}} {
		s := &State{Root: t.TempDir()}
		os.MkdirAll(filepath.Join(s.NewRoot(), "sbin"), 0o755)
		if tc.init != "" {
			if err := os.Symlink(tc.init, filepath.Join(s.NewRoot(), "sbin", "init")); err != nil {
				t.Fatal(err)
			}
		} else {
			// No /sbin/init (no systemd-sysv): switchRoot starts
			// /lib/systemd/systemd.
			os.MkdirAll(filepath.Join(s.NewRoot(), "lib", "systemd"), 0o755)
			os.WriteFile(filepath.Join(s.NewRoot(), "lib", "systemd", "systemd"), nil, 0o755)
		}
		if err := s.holdSSHD(); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(s.NewRoot(), "run", "systemd", "system")
		unit, err := os.ReadFile(filepath.Join(dir, sshdWaitName))
		if !tc.want {
			if err == nil {
				t.Errorf("init %s: a systemd unit was written", tc.init)
			}
			continue
		}
		if err != nil || !strings.Contains(string(unit), "Before=ssh.service sshd.service sshd-keygen@rsa.service") {
			t.Errorf("init %s: unit %q, %v", tc.init, unit, err)
		}
		if l, err := os.Readlink(filepath.Join(dir, "multi-user.target.wants", sshdWaitName)); err != nil || l != "../"+sshdWaitName {
			t.Errorf("init %s: not wanted by multi-user.target: %q, %v", tc.init, l, err)
		}
	}
}
