package sshkeys

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestEnsureGeneratesOnceThenReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "livebootp", "ssh")
	keys, created, err := Ensure(dir, "root@web1", Pregenerate())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(created, Types()) || len(keys) != 3 {
		t.Fatalf("created %v, %d keys", created, len(keys))
	}
	for _, k := range keys {
		for _, f := range []struct {
			name string
			mode os.FileMode
		}{{k.FileName(), 0o600}, {k.FileName() + ".pub", 0o644}} {
			st, err := os.Stat(filepath.Join(dir, f.name))
			if err != nil || st.Mode().Perm() != f.mode {
				t.Errorf("%s: %v mode %v, want %v", f.name, err, st.Mode().Perm(), f.mode)
			}
		}
		if !strings.HasPrefix(string(k.Private), "-----BEGIN OPENSSH PRIVATE KEY-----\n") {
			t.Errorf("%s private key is not in OpenSSH format", k.Type)
		}
		pub, comment, _, _, err := ssh.ParseAuthorizedKey(k.Public)
		if err != nil || comment != "root@web1" || ssh.FingerprintSHA256(pub) != strings.Fields(k.Fingerprint)[1] {
			t.Errorf("%s public line %q: %v", k.Type, k.Public, err)
		}
	}
	if strings.Fields(keys[2].Fingerprint)[0] != "RSA" {
		t.Errorf("fingerprints %q", Fingerprints(keys))
	}
	// The temporary files of the atomic writes are gone.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 6 {
		t.Errorf("%d files in %s, want 6", len(ents), dir)
	}

	// Second boot: same keys, nothing generated; a lost .pub is rewritten.
	os.Remove(filepath.Join(dir, "ssh_host_ecdsa_key.pub"))
	never := func(typ, _ string) (Key, error) {
		t.Fatalf("generated a %s key on the second boot", typ)
		return Key{}, nil
	}
	again, created, err := Ensure(dir, "root@web1", never)
	if err != nil || len(created) != 0 {
		t.Fatalf("second Ensure: created %v, %v", created, err)
	}
	if !reflect.DeepEqual(Fingerprints(again), Fingerprints(keys)) {
		t.Errorf("fingerprints changed: %v -> %v", Fingerprints(keys), Fingerprints(again))
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ssh_host_ecdsa_key.pub")); string(b) != string(keys[1].Public) {
		t.Errorf("ecdsa .pub not restored: %q", b)
	}
}

func TestEnsureRefusesToReplaceAnUnreadableKey(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "ssh_host_ed25519_key")
	os.WriteFile(bad, []byte("garbage"), 0o600)
	keys, created, err := Ensure(dir, "", nil)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "remove it") {
		t.Errorf("err = %v", err)
	}
	if b, _ := os.ReadFile(bad); string(b) != "garbage" {
		t.Error("unreadable key was overwritten")
	}
	if len(keys) != 2 || !reflect.DeepEqual(created, []string{"ecdsa", "rsa"}) {
		t.Errorf("keys %d created %v", len(keys), created)
	}
}

func TestEnsureWithoutPersistence(t *testing.T) {
	a, created, err := Ensure("", "", nil)
	if err != nil || len(created) != 3 {
		t.Fatal(created, err)
	}
	b, _, _ := Ensure("", "", nil)
	if a[0].Fingerprint == b[0].Fingerprint {
		t.Error("two boots without persistent storage got the same key")
	}
}

// ssh-keygen (openssh-client) reads what sshd will read: check the files
// with the real tool when it is installed.
func TestInstallReadableBySSHKeygen(t *testing.T) {
	etc := filepath.Join(t.TempDir(), "etc", "ssh")
	keys, _, err := Ensure("", "root@h", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Install(etc, keys); err != nil {
		t.Fatal(err)
	}
	kg, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("needs ssh-keygen (openssh-client) to check the key files")
	}
	for _, k := range keys {
		out, err := exec.Command(kg, "-l", "-f", filepath.Join(etc, k.FileName())).CombinedOutput()
		if err != nil || !strings.Contains(string(out), strings.Fields(k.Fingerprint)[1]) {
			t.Errorf("ssh-keygen -l %s: %s %v", k.FileName(), out, err)
		}
		out, err = exec.Command(kg, "-y", "-f", filepath.Join(etc, k.FileName())).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(k.Public), strings.TrimSpace(string(out))) {
			t.Errorf("ssh-keygen -y %s: %s %v", k.FileName(), out, err)
		}
	}
}

// A power cut during an earlier boot's write left a temporary file: the
// next Ensure removes it and writes the key.
func TestEnsureRemovesLeftoversOfACutWrite(t *testing.T) {
	dir := t.TempDir()
	leftover := filepath.Join(dir, ".ssh_host_ed25519_key.pub.tmp766843329")
	if err := os.WriteFile(leftover, []byte("ssh-ed25519 AAAA"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Ensure(dir, "root@web1", Pregenerate()); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 6 || slices.Contains(names, filepath.Base(leftover)) {
		t.Errorf("after Ensure the directory holds %q, want the 6 key files only", names)
	}
}
