// Package startup is livebootp-init, the /init of every target's initrd: it
// walks a table of boot steps (Steps: mount the API filesystems, read the
// kernel command line, load the network's modules, DHCP, fetch the
// manifest, find persistent storage, fetch and verify the squashfs, mount
// it under an overlay, persistent volumes, SSH host keys, hostname,
// authorized_keys, startup.d scripts, boot report) and then switches root
// to the image's init. The other modules load in the background; a step
// waits for the ones it uses, and udev in the image loads what the boot
// did not need.
//
// Every path is relative to State.Root, so tests run the real steps in a
// temporary directory. A failing fatal step prints
// "livebootp: FAILED: <step>: <error>; check: <hint>", sends a boot report
// with the error, and then, with `debug`, runs a rescue shell (the image's
// /bin/sh when it is mounted, else the initrd's, else the one built in:
// package rescue); without `debug` it reboots after 30 s, so a registry
// that was briefly away gets another network boot without anyone at the
// console.
//
// It must never import the registry (bootp/...): the two sides share only
// package wire. It must never let PID 1 exit (that is a kernel panic).
package startup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/livebootp/livebootp/startup/cmdline"
	"github.com/livebootp/livebootp/startup/fetch"
	"github.com/livebootp/livebootp/startup/mount"
	"github.com/livebootp/livebootp/startup/netconf"
	"github.com/livebootp/livebootp/startup/persist"
	"github.com/livebootp/livebootp/startup/sshkeys"
	"github.com/livebootp/livebootp/startup/verity"
	"github.com/livebootp/livebootp/wire"
)

// Step is one boot step. Fatal steps stop the boot when they fail; the
// others add a warning and the boot goes on. Hint says what to check when it
// fails (an error implementing Hint() string overrides it). Modules are the
// kernel modules (names, see moduleGroup) it needs loaded before it runs.
type Step struct {
	Name    string
	Run     func(*State) error
	Fatal   bool
	Hint    string
	Modules []string
}

// State is everything the steps share: the inputs (paths and system calls,
// replaceable in tests) and what the steps found out.
type State struct {
	// Inputs.
	Root          string           // "/" in production; a temp dir in tests
	ProcCmdline   string           // [Root/proc/cmdline]
	Mounter       mount.Mounter    // [mount.Unix]
	Now           func() time.Time // [time.Now]
	Console       io.Writer        // [os.Stdout]
	KernelRelease string           // uname -r [asked from the kernel]
	Chroot        bool             // run the image's tools and scripts chrooted into it (production)
	Context       context.Context  // [context.Background()]
	InitArgs      []string         // extra arguments for the image's init (the kernel's leftovers)
	// System calls the tests replace.
	LoadModule  func(path string) error                                        // [finit_module]
	Network     func(context.Context, netconf.Options) (*netconf.Lease, error) // [netconf.Up]
	SetHostname func(name string) error                                        // [sethostname]

	// Found out by the steps.
	Args     cmdline.Args
	HTTP     *http.Client
	Lease    *netconf.Lease
	MAC      string // of the NIC that got the lease, lower case
	Hostname string
	Manifest *wire.Manifest
	SHA256   string // of the squashfs: livebootp.sha256, else the manifest's
	// VerityRoot is the squashfs's dm-verity root hash (hex):
	// livebootp.verity, else the manifest's.
	VerityRoot string
	// Verification says how the image is checked: "dm-verity" (each block
	// as it is read), "sha256" (the whole file before it is mounted) or
	// "none".
	Verification string
	Squashfs     string // the local squashfs file
	Loop         string // the loop device it is mounted from
	Cached       bool   // the squashfs came from the persistent cache
	Plan         persist.Plan
	Data         string // mount point of persistent storage in the init's view; "" = none
	DataDesc     string // "/dev/vdb ext4 livebootp-data", for the report
	Keys         []sshkeys.Key
	Warnings     []string
	Steps        []wire.Step

	keygen    sshkeys.Generator
	rsa       *rsaChild       // the RSA host key's child process
	rsaLater  bool            // the RSA key was not ready at the keys step
	rsaRetry  bool            // the boot report failed: the RSA child sends it until the registry takes it
	dm        *mount.DMDevice // the image's dm-verity device
	verity    verity.Params   // its tree
	modules   *moduleLoad     // started by the modules step; the others wait for what they use
	cacheGate *os.File        // held open until switch_root's exec starts the background cache copy
	moved     bool            // /dev /proc /sys /run are in the new root
	switched  bool            // root switched: paths are the image's now
	log       *slog.Logger
	out       *console
	step      string // the step running, for console lines
}

// Paths of the init's working directories, under Root.
const (
	dirNewRoot = "newroot"
	dirWork    = "run/livebootp"
)

// NewRoot is where the image is assembled (the overlay).
func (s *State) NewRoot() string { return filepath.Join(s.Root, dirNewRoot) }

func (s *State) work(parts ...string) string {
	return filepath.Join(append([]string{s.Root, dirWork}, parts...)...)
}

func (s *State) defaults() {
	if s.Root == "" {
		s.Root = "/"
	}
	if s.ProcCmdline == "" {
		s.ProcCmdline = filepath.Join(s.Root, "proc", "cmdline")
	}
	if s.Mounter == nil {
		s.Mounter = mount.Unix{}
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Console == nil {
		s.Console = os.Stdout
	}
	if s.Context == nil {
		s.Context = context.Background()
	}
	if s.LoadModule == nil {
		s.LoadModule = loadModuleFile
	}
	if s.Network == nil {
		s.Network = netconf.Up
	}
	if s.SetHostname == nil {
		s.SetHostname = sethostname
	}
	if s.HTTP == nil {
		s.HTTP = fetch.NewClient(false)
	}
	if s.out == nil {
		s.out = &console{w: s.Console}
		s.log = slog.New(s.out)
	}
}

// Walk runs the steps in order, timing each into s.Steps. A failing fatal
// step ends the walk with a *StepError; any other failure becomes a warning.
func (s *State) Walk(steps []Step) error {
	s.defaults()
	for _, st := range steps {
		s.step = ""
		s.infof("%s ...", st.Name)
		s.step = st.Name
		start := s.Now()
		if len(st.Modules) > 0 {
			if err := s.needModules(strings.Join(st.Modules, " "), anyModule(st.Modules)); err != nil {
				s.warnf("%v", err)
			}
		}
		err := st.Run(s)
		d := s.Now().Sub(start)
		rec := wire.Step{Name: st.Name, Duration: d}
		if err != nil {
			rec.Error = err.Error()
		}
		s.Steps = append(s.Steps, rec)
		if err != nil && st.Fatal {
			hint := st.Hint
			var h interface{ Hint() string }
			if errors.As(err, &h) {
				hint = h.Hint()
			}
			return &StepError{Step: st.Name, Err: err, Hint: hint}
		}
		if err != nil {
			s.warnf("%v", err)
		}
		s.debugf("done in %s", d.Round(time.Millisecond))
	}
	s.step = ""
	return nil
}

// StepError is a fatal step's failure, worded for the console.
type StepError struct {
	Step string
	Err  error
	Hint string
}

func (e *StepError) Error() string {
	msg := "FAILED: " + e.Step + ": " + e.Err.Error()
	if e.Hint != "" {
		msg += "; check: " + e.Hint
	}
	return msg
}

func (e *StepError) Unwrap() error { return e.Err }

// console renders log records as "livebootp: <step>: message" lines on the
// console and keeps every line so the boot log file can start from the
// beginning once the image is mounted. Debug records show only with the
// `debug` kernel argument.
type console struct {
	mu    sync.Mutex
	w     io.Writer
	file  io.Writer // the boot log, once open (debug only)
	buf   []byte    // everything printed, until file is attached
	debug bool
}

func (c *console) Enabled(_ context.Context, l slog.Level) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return l >= slog.LevelInfo || c.debug
}

func (c *console) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("livebootp: ")
	step := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "step" {
			step = a.Value.String()
		}
		return true
	})
	if r.Level == slog.LevelWarn {
		b.WriteString("WARNING: ")
	}
	if step != "" {
		b.WriteString(step + ": ")
	}
	b.WriteString(r.Message)
	b.WriteByte('\n')
	c.write([]byte(b.String()))
	return nil
}

func (c *console) write(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.w.Write(p)
	if c.file != nil {
		c.file.Write(p)
	} else if len(c.buf) < 1<<20 {
		c.buf = append(c.buf, p...)
	}
}

// Write passes raw output (scripts, mkfs) to the console and the log.
func (c *console) Write(p []byte) (int, error) {
	c.write(p)
	return len(p), nil
}

func (c *console) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *console) WithGroup(string) slog.Handler      { return c }

func (s *State) logAt(l slog.Level, format string, args ...any) {
	s.defaults()
	s.log.Log(s.Context, l, fmt.Sprintf(format, args...), "step", s.step)
}

func (s *State) infof(format string, args ...any)  { s.logAt(slog.LevelInfo, format, args...) }
func (s *State) debugf(format string, args ...any) { s.logAt(slog.LevelDebug, format, args...) }

// warnf prints a warning and keeps it for the boot report.
func (s *State) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if s.step != "" {
		s.Warnings = append(s.Warnings, s.step+": "+msg)
	} else {
		s.Warnings = append(s.Warnings, msg)
	}
	s.logAt(slog.LevelWarn, "%s", msg)
}
