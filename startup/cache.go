package startup

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/livebootp/livebootp/startup/mount"
	"github.com/livebootp/livebootp/startup/persist"
)

// backgroundCacheAbove: an image larger than this, downloaded into RAM
// before its disk was initialised, is copied into the disk's cache by a
// background process that starts at switch_root. Under emulation the copy
// costs about a second per 100 MB, on the way to the image's init
// otherwise; a small image is copied at once.
const backgroundCacheAbove = 32 << 20

// cacheCopyArg as livebootp-init's first argument (never PID 1's: the
// kernel gives that one only its leftover arguments) makes it the
// background cache copy: see startCacheCopy.
const cacheCopyArg = "--livebootp-cache-copy"

// cacheCopy is the copy of a squashfs from RAM into the persistent cache.
// It works on open files only, so the background process can finish it
// after switch_root, when none of the paths it started from exist.
type cacheCopy struct {
	src    *os.File // the squashfs in RAM
	ramDir *os.File // its directory
	dir    *os.File // the cache directory on persistent storage
	loop   *os.File // the loop device the squashfs is mounted from
	ram    string   // name of src in ramDir
	final  string   // name of the copy in dir
	debug  bool     // say so on the console when done
}

// cacheImage copies the squashfs downloaded into RAM to the persistent
// cache of a disk initialised after the download, then points the loop
// device at the copy and frees the RAM; a large image in the background
// from switch_root on.
func cacheImage(s *State) error {
	if s.Data == "" || s.SHA256 == "" || s.Cached || s.Squashfs == "" ||
		filepath.Clean(s.Squashfs) == persist.CachePath(s.Data, s.SHA256) { // downloaded into the cache
		return nil
	}
	c, err := openCacheCopy(s)
	if err != nil {
		return fmt.Errorf("cache the image: %w", err)
	}
	st, err := c.src.Stat()
	if err == nil && st.Size() > backgroundCacheAbove && s.Root == "/" {
		err = startCacheCopy(s, c)
		c.close() // the background process has its own descriptors
		if err == nil {
			s.infof("the image (%.0f MB) is copied to persistent storage in the background from switch_root on", float64(st.Size())/1e6)
			return nil
		}
		s.warnf("background copy of the image: %v; copying it now", err)
		if c, err = openCacheCopy(s); err != nil {
			return fmt.Errorf("cache the image: %w", err)
		}
	}
	defer c.close()
	if err := c.run(); err != nil {
		return fmt.Errorf("cache the image: %w", err)
	}
	s.Squashfs = persist.CachePath(s.Data, s.SHA256)
	s.infof("image cached on persistent storage; RAM copy freed")
	return nil
}

func openCacheCopy(s *State) (*cacheCopy, error) {
	cache := persist.CachePath(s.Data, s.SHA256)
	if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
		return nil, err
	}
	c := &cacheCopy{ram: filepath.Base(s.Squashfs), final: filepath.Base(cache), debug: s.Args.Debug}
	var err error
	for _, o := range []struct {
		f    **os.File
		path string
	}{{&c.src, s.Squashfs}, {&c.ramDir, filepath.Dir(s.Squashfs)}, {&c.dir, filepath.Dir(cache)}, {&c.loop, s.Loop}} {
		if *o.f, err = os.Open(o.path); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

func (c *cacheCopy) close() {
	for _, f := range []*os.File{c.src, c.ramDir, c.dir, c.loop} {
		if f != nil {
			f.Close()
		}
	}
}

// run copies src to dir/final (through final.part, synced before the
// rename), switches the loop device to the copy and removes the RAM copy.
// When the switch fails the copy stays for the next boot and this boot
// keeps the RAM copy.
func (c *cacheCopy) run() error {
	part := c.final + ".part"
	fd, err := unix.Openat(int(c.dir.Fd()), part, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(c.dir.Name(), part), err)
	}
	dst := os.NewFile(uintptr(fd), filepath.Join(c.dir.Name(), part))
	// From the start, file to file: copy_file_range, in the kernel.
	_, err = c.src.Seek(0, io.SeekStart)
	if err == nil {
		_, err = io.Copy(dst, c.src)
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(int(c.dir.Fd()), part, int(c.dir.Fd()), c.final)
	}
	if err == nil {
		err = c.dir.Sync()
	}
	if err != nil {
		unix.Unlinkat(int(c.dir.Fd()), part, 0)
		return fmt.Errorf("copy to %s: %w", filepath.Join(c.dir.Name(), c.final), err)
	}
	fd, err = unix.Openat(int(c.dir.Fd()), c.final, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	cached := os.NewFile(uintptr(fd), filepath.Join(c.dir.Name(), c.final))
	defer cached.Close()
	if err := mount.ChangeBackingFile(c.loop, cached); err != nil {
		return err
	}
	return unix.Unlinkat(int(c.ramDir.Fd()), c.ram, 0)
}

// startCacheCopy starts livebootp-init again as the background cache
// copy, handing it c's files and the read end of a pipe whose write end
// only this process holds, close-on-exec: the copy begins when this
// process execs the image's init (or never, when the boot fails before).
// It runs at the lowest CPU priority, so the image's services come
// first; a shutdown that kills it half way leaves a .part file the next
// download replaces.
func startCacheCopy(s *State, c *cacheCopy) error {
	gate, hold, err := os.Pipe()
	if err != nil {
		return err
	}
	defer gate.Close()
	args := []string{"livebootp-init", cacheCopyArg, c.ram, c.final}
	if c.debug {
		args = append(args, "debug")
	}
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: args, Stdout: s.Console, Stderr: s.Console,
		ExtraFiles: []*os.File{c.src, c.ramDir, c.dir, c.loop, gate}}
	if err := cmd.Start(); err != nil {
		hold.Close()
		return err
	}
	s.cacheGate = hold // closed by the exec of the image's init
	return nil
}

// runCacheCopy is the background cache copy's main (see startCacheCopy):
// descriptors 3-7 are the squashfs in RAM, its directory, the cache
// directory, the loop device and the gate.
func runCacheCopy(args []string, console io.Writer) error {
	if len(args) < 2 {
		return errors.New("usage: " + cacheCopyArg + " RAM-NAME CACHE-NAME [debug]")
	}
	c := &cacheCopy{ram: args[0], final: args[1], debug: len(args) > 2 && args[2] == "debug",
		src: os.NewFile(3, "squashfs"), ramDir: os.NewFile(4, "/run/livebootp"), dir: os.NewFile(5, "cache"),
		loop: os.NewFile(6, "loop device")}
	gate := os.NewFile(7, "gate")
	var b [1]byte
	gate.Read(b[:]) // EOF once livebootp-init has execed the image's init
	gate.Close()
	// Lowest CPU priority; I/O stays best-effort: the idle I/O class
	// starves behind the journal's writes for many seconds at a time.
	unix.Setpriority(unix.PRIO_PROCESS, 0, 19)
	err := c.run()
	c.close()
	switch {
	case err != nil:
		fmt.Fprintf(console, "livebootp: WARNING: cache the image in the background: %v; the next boot downloads it again\n", err)
	case c.debug:
		fmt.Fprintf(console, "livebootp: image cached on persistent storage in the background; RAM copy freed\n")
	}
	return nil
}

// isCacheCopy: is this process the background cache copy?
func isCacheCopy(args []string) bool {
	return len(args) > 1 && args[1] == cacheCopyArg && os.Getpid() != 1
}
