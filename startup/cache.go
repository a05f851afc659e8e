package startup

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

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

// cacheCopy puts a downloaded squashfs into the persistent cache. It
// works on open files only, so the background process can finish it after
// switch_root, when none of the paths it started from exist. Two cases:
//   - copy: the image was downloaded into RAM before its disk was
//     initialised; it is copied to the cache, the loop device is pointed at
//     the copy and the RAM freed;
//   - commit: the image was downloaded into the cache as NAME.part without
//     its sha256 computed, because dm-verity checks it block by block; it is
//     read back once through the dm-verity device and renamed only when
//     every block matches, so a cached file has always been verified whole.
//
// With a dm-verity device (check), a copy reads the data through it too:
// the one pass both copies and verifies.
type cacheCopy struct {
	src    *os.File // the squashfs: in RAM (copy) or the .part file (commit)
	srcDir *os.File // its directory
	dir    *os.File // the cache directory on persistent storage
	loop   *os.File // the loop device the squashfs is mounted from
	check  *os.File // the dm-verity device on the loop device, or nil
	name   string   // src's name in srcDir
	final  string   // the cached image's name in dir
	data   int64    // bytes of squashfs data before the verity tree; 0 without check
	commit bool
	debug  bool // say so on the console when done
}

// cacheImage caches the squashfs on persistent storage when this boot
// downloaded it: copied from RAM to a disk initialised after the download,
// or committed where it was downloaded when dm-verity is yet to see every
// block; a large image in the background from switch_root on.
func cacheImage(s *State) error {
	key := s.cacheKey()
	if s.Data == "" || key == "" || s.Cached || s.Squashfs == "" ||
		filepath.Clean(s.Squashfs) == persist.CachePath(s.Data, key) { // downloaded into the cache, verified
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
			what := "copied to"
			if c.commit {
				what = "read back through dm-verity and kept on"
			}
			s.infof("the image (%.0f MB) is %s persistent storage in the background from switch_root on", float64(st.Size())/1e6, what)
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
	s.Squashfs = persist.CachePath(s.Data, key)
	s.infof("image cached on persistent storage")
	return nil
}

func openCacheCopy(s *State) (*cacheCopy, error) {
	cache := persist.CachePath(s.Data, s.cacheKey())
	if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
		return nil, err
	}
	c := &cacheCopy{name: filepath.Base(s.Squashfs), final: filepath.Base(cache), debug: s.Args.Debug,
		commit: filepath.Clean(s.Squashfs) == cache+".part"}
	files := []struct {
		f    **os.File
		path string
	}{{&c.src, s.Squashfs}, {&c.srcDir, filepath.Dir(s.Squashfs)}, {&c.dir, filepath.Dir(cache)}, {&c.loop, s.Loop}}
	if s.dm != nil {
		c.data = s.verity.HashOffset
		files = append(files, struct {
			f    **os.File
			path string
		}{&c.check, s.dm.Path})
	} else if c.commit {
		return nil, errors.New("a partial download without dm-verity to check it") // fetchImage renames verified downloads
	}
	for _, o := range files {
		var err error
		if *o.f, err = os.Open(o.path); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

func (c *cacheCopy) close() {
	for _, f := range []*os.File{c.src, c.srcDir, c.dir, c.loop, c.check} {
		if f != nil {
			f.Close()
		}
	}
}

// run copies or commits (see cacheCopy). A copy goes through dir/final.part,
// synced before the rename; then the loop device is switched to it and
// the RAM copy removed. When the switch fails the copy stays for the next
// boot and this boot keeps the RAM copy.
func (c *cacheCopy) run() error {
	if c.commit {
		if err := c.verifyAll(); err != nil {
			unix.Unlinkat(int(c.dir.Fd()), c.name, 0)
			return err
		}
		if err := c.src.Sync(); err != nil {
			return err
		}
		return c.rename(c.name)
	}
	part := c.final + ".part"
	fd, err := unix.Openat(int(c.dir.Fd()), part, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(c.dir.Name(), part), err)
	}
	dst := os.NewFile(uintptr(fd), filepath.Join(c.dir.Name(), part))
	err = c.copyTo(dst)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = c.rename(part)
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
	return unix.Unlinkat(int(c.srcDir.Fd()), c.name, 0)
}

// copyTo writes the squashfs to dst: from the start, file to file
// (copy_file_range, in the kernel); with dm-verity, the data read through
// the verity device and then the tree as it is.
func (c *cacheCopy) copyTo(dst *os.File) error {
	from := int64(0)
	if c.check != nil {
		if err := c.readChecked(dst); err != nil {
			return err
		}
		from = c.data
	}
	if _, err := c.src.Seek(from, io.SeekStart); err != nil {
		return err
	}
	_, err := io.Copy(dst, c.src)
	return err
}

// verifyAll reads every data block through dm-verity.
func (c *cacheCopy) verifyAll() error { return c.readChecked(io.Discard) }

// readChecked copies the verity device's c.data bytes to w. The kernel
// hashes each block as it is read; a block that does not match fails the
// read with EIO. The device's page cache is dropped as it goes: the
// squashfs reads its blocks itself and would never use it.
func (c *cacheCopy) readChecked(w io.Writer) error {
	buf := make([]byte, 1<<20)
	var off int64
	for off < c.data {
		n, err := c.check.ReadAt(buf[:min(int64(len(buf)), c.data-off)], off)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			unix.Fadvise(int(c.check.Fd()), off, int64(n), unix.FADV_DONTNEED)
			off += int64(n)
		}
		if err != nil && (off < c.data || !errors.Is(err, io.EOF)) {
			return &CorruptImageError{Offset: off, Err: err}
		}
	}
	return nil
}

// rename makes dir/name the cached image, durably, and removes any other.
func (c *cacheCopy) rename(name string) error {
	if err := unix.Renameat(int(c.dir.Fd()), name, int(c.dir.Fd()), c.final); err != nil {
		return err
	}
	if err := c.dir.Sync(); err != nil {
		return err
	}
	// Older images and leftovers: the cache holds one image.
	_, err := persist.PruneCacheDir(c.dir, strings.TrimSuffix(c.final, ".squashfs"))
	return err
}

// CorruptImageError is a block of the downloaded image that does not match
// its dm-verity hash.
type CorruptImageError struct {
	Offset int64 // byte offset of the first block that failed
	Err    error
}

func (e *CorruptImageError) Error() string {
	return fmt.Sprintf("the image's block at byte %d does not match its dm-verity hash (%v): the registry's filesystem.squashfs is corrupt or changed, rebuild or re-upload it; it is not cached", e.Offset, e.Err)
}

func (e *CorruptImageError) Unwrap() error { return e.Err }

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
	mode := "copy"
	if c.commit {
		mode = "commit"
	}
	args := []string{mode, c.name, c.final, strconv.FormatInt(c.data, 10)}
	if c.debug {
		args = append(args, "debug")
	}
	files := []*os.File{c.src, c.srcDir, c.dir, c.loop, gate}
	if c.check != nil {
		files = append(files, c.check)
	}
	cmd := self(cacheCopyArg, args...)
	cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = s.Console, s.Console, files
	if err := cmd.Start(); err != nil {
		hold.Close()
		return err
	}
	s.cacheGate = hold // closed by the exec of the image's init
	return nil
}

// runCacheCopy is the background cache copy's main (see startCacheCopy):
// descriptors 3-7 are the squashfs, its directory, the cache directory,
// the loop device and the gate; 8 the dm-verity device when DATA-BYTES is
// not 0.
func runCacheCopy(args []string, console io.Writer) error {
	usage := errors.New("usage: " + cacheCopyArg + " copy|commit NAME CACHE-NAME DATA-BYTES [debug]")
	if len(args) < 4 || (args[0] != "copy" && args[0] != "commit") {
		return usage
	}
	data, err := strconv.ParseInt(args[3], 10, 64)
	if err != nil || data < 0 {
		return usage
	}
	c := &cacheCopy{commit: args[0] == "commit", name: args[1], final: args[2], data: data,
		debug: len(args) > 4 && args[4] == "debug",
		src:   os.NewFile(3, "squashfs"), srcDir: os.NewFile(4, "squashfs directory"), dir: os.NewFile(5, "cache"),
		loop: os.NewFile(6, "loop device")}
	if data > 0 {
		c.check = os.NewFile(8, "dm-verity device")
	}
	gate := os.NewFile(7, "gate")
	var b [1]byte
	gate.Read(b[:]) // EOF once livebootp-init has execed the image's init
	gate.Close()
	// Lowest CPU priority; I/O stays best-effort: the idle I/O class
	// starves behind the journal's writes for many seconds at a time.
	// Nice is per thread: the copy runs on this one, locked.
	runtime.LockOSThread()
	unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
	err = c.run()
	c.close()
	switch {
	case err != nil:
		fmt.Fprintf(console, "livebootp: WARNING: cache the image in the background: %v; the next boot downloads it again\n", err)
	case c.debug:
		fmt.Fprintf(console, "livebootp: image cached on persistent storage in the background\n")
	}
	return nil
}
