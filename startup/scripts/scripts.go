// Package scripts runs the image's custom startup scripts
// (/etc/livebootp/startup.d/*, executables, in name order) and installs the
// shell library they source, functions.sh, which offers LiveBOOTP's helpers.
//
// It must never stop the boot because a script failed: a failing script is
// reported (console, boot report) and the next one runs, as LiveBOOTP's
// startup.d did.
package scripts

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/livebootp/livebootp/startup/cmdline"
	"github.com/livebootp/livebootp/startup/safefile"
)

// Paths inside the image.
const (
	Dir         = "/etc/livebootp/startup.d"
	LibraryPath = "/usr/lib/livebootp/functions.sh"
)

//go:embed functions.sh
var library []byte

// Library is the content of functions.sh.
func Library() []byte { return bytes.Clone(library) }

// InstallLibrary writes functions.sh into the image rooted at root.
func InstallLibrary(root string) error {
	p := filepath.Join(root, LibraryPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("install the shell library: %w", err)
	}
	return safefile.WriteFile(p, library, 0o644)
}

// WriteCmdline writes the command line one word a line, quotes removed, for
// get_cmdline_param (a shell cannot split quoted values safely).
func WriteCmdline(path string, params []cmdline.Param) error {
	var b strings.Builder
	for _, p := range params {
		if strings.ContainsAny(p.Name+p.Value, "\n") {
			continue
		}
		b.WriteString(p.Name)
		if p.HasValue {
			b.WriteString("=" + p.Value)
		}
		b.WriteByte('\n')
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return safefile.WriteFile(path, []byte(b.String()), 0o644)
}

// Runner runs the scripts of the image rooted at Root.
type Runner struct {
	Root    string        // the image root (the new root)
	Chroot  bool          // run chrooted into Root (production); tests run in place
	Env     []string      // the scripts' whole environment
	Output  io.Writer     // stdout and stderr of the scripts (console, debug log)
	Timeout time.Duration // per script; a script still running then is killed [10 min]
}

// Result is one script's outcome.
type Result struct {
	Name     string
	Err      error // nil: exit status 0
	Duration time.Duration
}

// List returns the scripts to run, in name order (byte order, as run-parts
// with LC_ALL=C), and the entries skipped with the reason.
func (r Runner) List() (run []string, skipped []string, err error) {
	ents, err := os.ReadDir(filepath.Join(r.Root, Dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", Dir, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") {
			continue
		}
		st, err := os.Stat(filepath.Join(r.Root, Dir, n))
		switch {
		case err != nil:
			skipped = append(skipped, n+": "+err.Error())
		case !st.Mode().IsRegular():
			skipped = append(skipped, n+": not a regular file")
		case st.Mode().Perm()&0o111 == 0:
			skipped = append(skipped, n+": not executable (chmod +x it to have it run)")
		default:
			run = append(run, n)
		}
	}
	return run, skipped, nil
}

// Run runs every script in turn and returns one Result each. It stops only
// when ctx ends.
func (r Runner) Run(ctx context.Context) ([]Result, error) {
	names, _, err := r.List()
	if err != nil {
		return nil, err
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	out := r.Output
	if out == nil {
		out = io.Discard
	}
	var res []Result
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		start := time.Now()
		err := r.one(ctx, n, timeout, out)
		res = append(res, Result{Name: n, Err: err, Duration: time.Since(start)})
	}
	return res, nil
}

func (r Runner) one(ctx context.Context, name string, timeout time.Duration, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	path := filepath.Join(r.Root, Dir, name)
	dir := r.Root
	if r.Chroot {
		path, dir = Dir+"/"+name, "/"
	}
	cmd := exec.CommandContext(ctx, path)
	cmd.Dir = dir
	cmd.Env = r.Env
	// An empty pipe, not /dev/null: the init has no /dev of its own once
	// the mounts moved into the new root.
	cmd.Stdin = strings.NewReader("")
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group, so a timeout also kills what the script started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if r.Chroot {
		cmd.SysProcAttr.Chroot = r.Root
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%s/%s: killed after %s", Dir, name, timeout)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%s/%s: %v", Dir, name, ee.ProcessState)
	}
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ENOEXEC) {
		return fmt.Errorf("%s/%s: %w (does its #! line name an interpreter the image has?)", Dir, name, err)
	}
	if err != nil {
		return fmt.Errorf("%s/%s: %w", Dir, name, err)
	}
	return nil
}
