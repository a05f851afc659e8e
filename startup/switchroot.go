package startup

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livebootp/livebootp/startup/report"
	"github.com/livebootp/livebootp/startup/rescue"
)

// moveMounts moves /dev, /proc, /sys and /run (with the squashfs, the
// tmpfs layer and persistent storage under /run/livebootp) into the new
// root, where the image's init expects them. The scripts run after this,
// chrooted, and see a complete system.
func moveMounts(s *State) error {
	for _, d := range []string{"dev", "proc", "sys", "run"} {
		t := filepath.Join(s.NewRoot(), d)
		if err := os.MkdirAll(t, 0o755); err != nil {
			return err
		}
		if err := s.Mounter.Mount(filepath.Join(s.Root, d), t, "", unix.MS_MOVE, ""); err != nil {
			return err
		}
	}
	s.moved = true
	if s.Data != "" {
		s.Data = filepath.Join(s.NewRoot(), dirWork, "data")
	}
	if s.Squashfs != "" && strings.HasPrefix(s.Squashfs, s.work()+"/") {
		s.Squashfs = filepath.Join(s.NewRoot(), strings.TrimPrefix(s.Squashfs, s.Root))
	}
	return nil
}

// switchRoot empties the initramfs (its files would otherwise hold RAM for
// the machine's lifetime), makes /newroot the root and execs the image's
// init. It only returns on failure.
func switchRoot(s *State) error {
	if s.Root != "/" {
		return errors.New("switch_root only runs as PID 1 with Root /")
	}
	newRoot := s.NewRoot()
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err == nil && (st.Type == unix.RAMFS_MAGIC || st.Type == unix.TMPFS_MAGIC) {
		removeInitramfs("/", newRoot)
	}
	if err := s.Mounter.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return err
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot %s: %w", newRoot, err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	s.switched = true
	init := ""
	for _, c := range initCandidates() {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			init = c
			break
		}
	}
	if init == "" {
		return fmt.Errorf("no init in the image (tried %s)", strings.Join(initCandidates(), ", "))
	}
	s.infof("exec %s (uptime %s)", init, report.Uptime().Round(10*time.Millisecond))
	s.out.closeFile()
	argv := append([]string{init}, s.InitArgs...)
	return fmt.Errorf("exec %s: %w", init, unix.Exec(init, argv, os.Environ()))
}

// childMode is the child process args make this one (cacheCopyArg,
// keygenArg, reportArg), or "". The kernel never gives PID 1 such an
// argument; only a child livebootp-init started itself (self) has one.
func childMode(args []string) string {
	if len(args) < 2 || os.Getpid() == 1 {
		return ""
	}
	switch args[1] {
	case cacheCopyArg, keygenArg, reportArg:
		return args[1]
	}
	return ""
}

// self is livebootp-init started again as the child mode names, with args
// after it; such children outlive switch_root (the binary stays mapped).
func self(mode string, args ...string) *exec.Cmd {
	return &exec.Cmd{Path: "/proc/self/exe", Args: append([]string{"livebootp-init", mode}, args...)}
}

// initCandidates are the image's inits switchRoot tries, in order.
func initCandidates() []string {
	return []string{"/sbin/init", "/lib/systemd/systemd", "/usr/lib/systemd/systemd", "/init", "/bin/sh"}
}

// removeInitramfs deletes the initramfs' files, staying on its filesystem
// and leaving keep (the new root) alone, as util-linux switch_root does.
func removeInitramfs(dir, keep string) {
	var root unix.Stat_t
	if unix.Lstat(dir, &root) != nil {
		return
	}
	var walk func(d string)
	walk = func(d string) {
		ents, err := os.ReadDir(d)
		if err != nil {
			return
		}
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			if p == keep {
				continue
			}
			var st unix.Stat_t
			if unix.Lstat(p, &st) != nil || st.Dev != root.Dev {
				continue
			}
			if e.IsDir() {
				walk(p)
				unix.Rmdir(p)
			} else {
				unix.Unlink(p)
			}
		}
	}
	walk(dir)
}

func (c *console) closeFile() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.file.(io.Closer); ok {
		f.Close()
	}
	c.file = nil
}

func sethostname(name string) error { return unix.Sethostname([]byte(name)) }

// Run is livebootp-init's main: it boots with the production State and
// execs the image's init. Only when not PID 1 does it return: as the
// background cache copy, RSA key child or late report child it started
// itself (see startCacheCopy, startRSAChild, reportLater), or with
// an error (this program is only ever /init of an initrd).
func Run(args []string, console io.Writer) error {
	switch childMode(args) {
	case cacheCopyArg:
		return runCacheCopy(args[2:], console)
	case keygenArg:
		return runKeygen(os.Stdout, os.NewFile(3, "keygen control"), console)
	case reportArg:
		return runLateReport(os.Stdin, console)
	}
	if os.Getpid() != 1 {
		return errors.New("livebootp-init is the /init of a livebootp initrd and runs as PID 1 only; `livebootp image build` puts it there")
	}
	s := &State{Root: "/", Console: console, Chroot: true, InitArgs: args[1:]}
	err := s.Walk(Steps())
	s.Fail(err)
	return nil // not reached: Fail reboots or hands over to a shell forever
}

// Fail reports a fatal step on the console (and to the registry when the
// network is up), then: with `debug` a rescue shell; otherwise a reboot
// after 30 s, so a transient registry outage heals by itself (the network
// boot starts over). PID 1 never returns from here.
func (s *State) Fail(err error) {
	s.defaults()
	if err == nil {
		err = errors.New("the boot steps ended without switching root")
	}
	s.step = ""
	s.logAt(slog.LevelError, "%v", err)
	if s.Args.Registry != "" && s.MAC != "" && !s.switched {
		r := s.Report()
		r.Error = err.Error()
		if rerr := report.Send(s.Context, s.HTTP, s.Args.Registry, s.MAC, r); rerr != nil {
			s.infof("boot report not sent: %v", rerr)
		}
	}
	if s.Args.Debug {
		s.rescue()
		s.infof("rescue shell ended: rebooting")
	} else {
		s.infof("rebooting in 30 s (add `debug` to the host's cmdline-append for a rescue shell instead)")
		time.Sleep(30 * time.Second)
	}
	// A sync that hangs (a failing disk, a loop device on a bad image)
	// must not keep a failed boot from starting over.
	synced := make(chan struct{})
	go func() { unix.Sync(); close(synced) }()
	select {
	case <-synced:
	case <-time.After(5 * time.Second):
		s.infof("sync did not finish in 5 s: rebooting anyway")
	}
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		s.infof("reboot: %v", err)
	}
	sleepForever() // the reboot is under way
}

// rescue runs a shell on the console: the image's when it is mounted,
// else the initrd's (busybox), else the one built in (package rescue).
// When the shell exits the machine reboots.
func (s *State) rescue() {
	newRoot := s.NewRoot()
	var cmd *exec.Cmd
	switch {
	case s.switched:
		cmd = exec.Command("/bin/sh")
	case fileExists(filepath.Join(newRoot, "bin", "sh")):
		// The image's shell needs /dev and /proc inside it.
		for _, d := range []string{"dev", "proc", "sys"} {
			if s.moved {
				break
			}
			t := filepath.Join(newRoot, d)
			os.MkdirAll(t, 0o755)
			s.Mounter.Mount(filepath.Join(s.Root, d), t, "", unix.MS_BIND, "")
		}
		cmd = exec.Command("/bin/sh")
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: newRoot}
		cmd.Dir = "/"
	case fileExists(filepath.Join(s.Root, "bin", "sh")):
		cmd = exec.Command(filepath.Join(s.Root, "bin", "sh"))
	case fileExists(filepath.Join(s.Root, "bin", "busybox")):
		cmd = exec.Command(filepath.Join(s.Root, "bin", "busybox"), "sh")
	default:
		// The usual case before the image is mounted: image build puts
		// no shell in the initrd.
		s.infof("rescue shell (debug), built into livebootp-init: no /bin/sh in the image or the initrd; "+
			"commands: the shell's own and %s. Exit it to reboot.", strings.Join(rescue.Builtins(), ", "))
		if err := rescue.Shell(s.Context, os.Stdin, os.Stdout, os.Stderr, rescueEnv(), rescuePrompt); err != nil {
			s.infof("%v", err)
		}
		return
	}
	s.infof("rescue shell (debug); exit it to reboot. The image is at /%s until switch_root.", dirNewRoot)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty = true, true
	cmd.Env = append(rescueEnv(), "PS1="+rescuePrompt)
	if err := cmd.Run(); err != nil {
		s.infof("rescue shell: %v", err)
	}
}

const rescuePrompt = "livebootp-rescue# "

func rescueEnv() []string {
	return []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=linux"}
}

// sleepForever blocks without leaving the Go runtime with nothing to run:
// an empty select would be reported as a deadlock and end PID 1 (a kernel
// panic).
func sleepForever() {
	for {
		time.Sleep(time.Hour)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
