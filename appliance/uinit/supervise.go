package uinit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Supervisor keeps the registry running: it restarts it when it exits
// (with a growing pause, so a broken config does not spin), keeps its last
// log lines in memory and its log on the data partition, and says on the
// console when it starts serving or dies.
type Supervisor struct {
	Argv    []string  // the registry command
	Console io.Writer // where restarts and crashes are announced
	LogFile string    // the registry's log, rotated at LogMax ("" = none)
	LogMax  int64     // bytes before LogFile moves to LogFile.1 [1 MiB]
	Ring    *Ring     // the last lines of the registry's output
	// Ready reports whether the registry answers (its admin socket); it is
	// polled after each start so the console says when serving began.
	Ready func() (string, bool)
	// Getty, when set, is kept running as well: the login shell of a
	// second console (tty1 when the serial port is the main console).
	Getty []string
	Clock func() time.Time
}

// Run supervises until ctx ends, then stops the registry with SIGTERM.
func (s *Supervisor) Run(ctx context.Context) error {
	if s.Clock == nil {
		s.Clock = time.Now
	}
	if s.LogMax == 0 {
		s.LogMax = 1 << 20
	}
	if len(s.Getty) > 0 {
		go s.keep(ctx, "console login on "+s.Getty[len(s.Getty)-1], s.Getty, nil)
	}
	s.keep(ctx, "registry", s.Argv, s.output)
	return ctx.Err()
}

// keep runs argv again and again until ctx ends. The pause after an exit
// doubles from 1 s to 30 s, and starts over once a run lasted a minute.
func (s *Supervisor) keep(ctx context.Context, what string, argv []string, out func(io.Reader)) {
	pause := time.Second
	for ctx.Err() == nil {
		start := s.Clock()
		err := s.runOnce(ctx, what, argv, out)
		if ctx.Err() != nil {
			return
		}
		if s.Clock().Sub(start) > time.Minute {
			pause = time.Second
		}
		fmt.Fprintf(s.Console, "livebootp-appliance: %s exited (%v); restarting in %s\n", what, err, pause)
		if out != nil && s.Ring != nil {
			for _, l := range s.Ring.Last(10) {
				fmt.Fprintf(s.Console, "  | %s\n", l)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
	}
}

func (s *Supervisor) runOnce(ctx context.Context, what string, argv []string, out func(io.Reader)) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	var (
		wg sync.WaitGroup
		w  *os.File
	)
	if out != nil {
		r, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		w = pw
		cmd.Stdout, cmd.Stderr = w, w
		wg.Add(1)
		go func() { defer wg.Done(); out(r); r.Close() }()
	} else {
		// A getty: its own session with the tty as controlling terminal
		// is the login program's job.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	err := cmd.Start()
	if w != nil {
		// Only the child holds the write end now: the reader sees EOF
		// when it exits, and its last lines are in the ring before
		// they are shown.
		w.Close()
		defer wg.Wait()
	}
	if err != nil {
		return err
	}
	if out != nil {
		go s.announce(ctx, what, cmd.Process.Pid)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			return <-done
		}
	}
}

// announce polls Ready for up to 30 s after a start and prints one line.
func (s *Supervisor) announce(ctx context.Context, what string, pid int) {
	if s.Ready == nil {
		return
	}
	for i := 0; i < 300 && ctx.Err() == nil; i++ {
		if msg, ok := s.Ready(); ok {
			fmt.Fprintf(s.Console, "livebootp-appliance: %s serving (pid %d): %s\n", what, pid, msg)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// output copies the registry's log lines into the ring and the log file.
func (s *Supervisor) output(r io.Reader) {
	var f *os.File
	var size int64
	open := func() {
		if s.LogFile == "" {
			return
		}
		var err error
		if f, err = os.OpenFile(s.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
			fmt.Fprintf(s.Console, "livebootp-appliance: registry log %s: %v (kept in memory only)\n", s.LogFile, err)
			f = nil
			return
		}
		if st, err := f.Stat(); err == nil {
			size = st.Size()
		}
	}
	open()
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if s.Ring != nil {
			s.Ring.Add(line)
		}
		if f == nil {
			continue
		}
		n, err := f.WriteString(line + "\n")
		size += int64(n)
		if err != nil {
			f.Close()
			f = nil
			continue
		}
		if size >= s.LogMax {
			f.Close()
			_ = os.Rename(s.LogFile, s.LogFile+".1")
			open()
		}
	}
}

// Ring holds the last N lines.
type Ring struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

// NewRing makes a ring of n lines.
func NewRing(n int) *Ring { return &Ring{lines: make([]string, n)} }

// Add appends a line, dropping the oldest when full.
func (r *Ring) Add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines[r.next] = line
	r.next = (r.next + 1) % len(r.lines)
	if r.next == 0 {
		r.full = true
	}
}

// Last returns up to n of the newest lines, oldest first.
func (r *Ring) Last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []string
	if r.full {
		all = append(all, r.lines[r.next:]...)
	}
	all = append(all, r.lines[:r.next]...)
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// String is the ring's content, one line each.
func (r *Ring) String() string { return strings.Join(r.Last(len(r.lines)), "\n") }
