package safefile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWriteReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "authorized_keys")
	if err := WriteFile(p, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new\n" {
		t.Errorf("content %q", b)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
	// A failed write leaves the old content and no temporary file.
	err := Write(p, 0o600, func(w io.Writer) error {
		w.Write([]byte("half"))
		return errors.New("disk full")
	})
	if err == nil {
		t.Fatal("failed fill reported success")
	}
	if b, _ := os.ReadFile(p); string(b) != "new\n" {
		t.Errorf("content after a failed write %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files left in %s", len(ents), dir)
	}
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ssh_host_rsa_key")
	keep := []string{"ssh_host_rsa_key", "ssh_host_rsa_key.pub", ".other.tmp1", ".ssh_host_rsa_key.pub.tmp2"}
	for _, f := range append([]string{".ssh_host_rsa_key.tmp12345", ".ssh_host_rsa_key.tmp"}, keep...) {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveStale(p); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	slices.Sort(left)
	slices.Sort(keep)
	if !slices.Equal(left, keep) {
		t.Errorf("left %q, want %q", left, keep)
	}
}

// TestWriteFileAt: by descriptor, the file replaces the old one with the
// mode asked for (past the umask), and no temporary file stays.
func TestWriteFileAt(t *testing.T) {
	dir := t.TempDir()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, content := range []string{"old\n", "new\n"} {
		if err := WriteFileAt(d, "ssh_host_rsa_key", []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "ssh_host_rsa_key")
	if b, _ := os.ReadFile(p); string(b) != "new\n" {
		t.Errorf("content %q", b)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v", st.Mode(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want the file alone", len(ents))
	}
	if err := WriteFileAt(d, "a/b", nil, 0o600); err == nil {
		t.Error("a path with a slash was accepted")
	}
}
