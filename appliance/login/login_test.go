package login

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/livebootp/livebootp/internal/syncbuf"
)

// A wrong password is refused and asked again; the right one starts the
// shell; nothing typed is printed back.
func TestLoginPassword(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(t.TempDir(), "console-password")
	if err := os.WriteFile(pwFile, append(hash, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	out := runLogin(t, pwFile, "guess\ns3cret pw\n", 1)
	if strings.Count(out, PasswordPrompt) < 2 || strings.Count(out, "wrong password") != 1 {
		t.Errorf("want two prompts and one refusal:\n%s", out)
	}
	if strings.Contains(out, "s3cret") || strings.Contains(out, "guess") {
		t.Errorf("typed text printed:\n%s", out)
	}
	if i, j := strings.Index(out, "wrong password"), strings.Index(out, "shell-ran"); i < 0 || j < i {
		t.Errorf("the shell ran before the right password:\n%s", out)
	}
}

// Without a password file the shell starts at once, and again after it
// exits.
func TestLoginOpen(t *testing.T) {
	out := runLogin(t, filepath.Join(t.TempDir(), "none"), "", 2)
	if strings.Contains(out, PasswordPrompt) || !strings.Contains(out, "banner") {
		t.Errorf("no password set, yet:\n%s", out)
	}
}

// runLogin runs the gate with input typed on its terminal until its shell
// has run shells times, and returns what it printed.
func runLogin(t *testing.T, pwFile, input string, shells int) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := w.WriteString(input); err != nil {
		t.Fatal(err)
	}
	var out syncbuf.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l := &Login{PasswordFile: pwFile, Shell: []string{"/bin/sh", "-c", "echo shell-ran"}, Banner: "banner",
		Fail: 10 * time.Millisecond, In: r, Out: &out}
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	for ctx.Err() == nil && strings.Count(out.String(), "shell-ran") < shells {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	w.Close() // the terminal goes away: a gate waiting for a password stops
	<-done
	if strings.Count(out.String(), "shell-ran") < shells {
		t.Fatalf("the shell did not run %d times:\n%s", shells, out.String())
	}
	return out.String()
}
