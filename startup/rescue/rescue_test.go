package rescue

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// shell runs Shell on input (through a pipe, as the console is a file) and
// returns what it printed.
func shell(t *testing.T, input string) string {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		pw.WriteString(input)
		pw.Close()
	}()
	defer pr.Close()
	outFile := filepath.Join(t.TempDir(), "out")
	out, err := os.Create(outFile)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Shell(ctx, pr, out, out, []string{"PATH=/nonexistent", "HOME=/"}, "rescue# "); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestShellRunsCommandsAndBuiltins(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "note"), []byte("from the disk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	got := shell(t, "echo rescue-$((40+2))\ncd "+dir+"\nls\ncat note\nif true; then\necho multi\nfi\necho )\necho after-error\nnosuchcmd\necho status=$?\nexit 3\necho never\n")
	for _, want := range []string{"rescue# ", "rescue-42\n", "note\nsub/\n", "from the disk\n", "> ", "multi\n", "after-error\n", "status=127\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "never") {
		t.Errorf("the shell went on after exit:\n%s", got)
	}
}

func TestShellEndsWithItsInput(t *testing.T) {
	if got := shell(t, "echo one\n"); !strings.Contains(got, "one\n") {
		t.Errorf("output %q", got)
	}
}
