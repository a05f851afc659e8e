package startup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livebootp/livebootp/startup/fetch"
	"github.com/livebootp/livebootp/startup/mount"
	"github.com/livebootp/livebootp/startup/persist"
	"github.com/livebootp/livebootp/startup/safefile"
	"github.com/livebootp/livebootp/wire"
)

// fetchImage gets the squashfs: from the persistent cache when its sha256
// is there, else over HTTP into the cache (persistent storage) or into RAM.
func fetchImage(s *State) error {
	url, err := s.Args.SquashfsURL()
	if err != nil {
		return err
	}
	lazy := s.verityUsable()
	switch {
	case lazy:
		s.Verification = "dm-verity"
	case s.SHA256 != "":
		s.Verification = "sha256"
	default:
		s.Verification = "none"
		s.warnf("no livebootp.sha256 and no manifest checksum: the image is not verified and not cached")
	}
	dst := s.work("filesystem.squashfs")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	cache := ""
	if key := s.cacheKey(); s.Data != "" && key != "" {
		cache = persist.CachePath(s.Data, key)
		if st, err := os.Stat(cache); err == nil && st.Mode().IsRegular() {
			// Only a verified download is renamed to this name, so the name
			// vouches for the content; hashing it again would cost seconds.
			s.Squashfs, s.Cached = cache, true
			s.infof("cached %s (%.1f MB), not downloaded", filepath.Base(cache), float64(st.Size())/1e6)
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
			return err
		}
		dst = cache + ".part"
	}
	want := s.SHA256
	if lazy {
		want = ""
	} else if err := s.needModules("sha256", anyModule([]string{"algif_hash", "sha256_ssse3"})); err != nil {
		// The kernel's sha256 (AF_ALG), and its SSSE3/AVX2/SHA-NI code
		// where the CPU has it, before the hash is set up.
		s.debugf("%v: the download is hashed in Go", err)
	}
	start := s.Now()
	var size int64
	if s.Manifest != nil {
		size = s.Manifest.Files[wire.ImageSquashfs].Size
	}
	res, err := fetch.File(s.Context, url, dst, want, fetch.Options{
		Client: s.HTTP,
		Size:   size,
		NoHash: lazy,
		Now:    s.Now,
		Log:    s.infof,
		Progress: func(p fetch.Progress) {
			if !p.Final {
				s.infof("%s", p)
			}
		},
	})
	if err != nil {
		return err
	}
	verified := "not verified"
	switch {
	case lazy:
		verified = "checked block by block as it is read (dm-verity)"
	case s.SHA256 != "":
		verified = "sha256 verified (" + res.Hash + ")"
	}
	el := s.Now().Sub(start)
	s.infof("%.1f MB in %s (%.1f MB/s), %s", float64(res.Size)/1e6, el.Round(10*time.Millisecond),
		float64(res.Size)/1e6/max(el.Seconds(), 1e-3), verified)
	if cache != "" && lazy {
		// Kept as .part until every block has been read back through
		// dm-verity (cacheImage), so only a whole verified image is ever
		// named by its sha256.
		s.Squashfs = dst
		return nil
	}
	if cache != "" {
		if err := safefile.Rename(dst, cache); err != nil {
			return err
		}
		dst = cache
		// Only now: a boot script with a wrong checksum must not cost the
		// good image its cache entry.
		if removed, err := persist.PruneCache(s.Data, s.cacheKey()); err != nil {
			s.warnf("prune the image cache: %v", err)
		} else if len(removed) > 0 {
			s.debugf("removed from the cache: %v", removed)
		}
	}
	s.Squashfs = dst
	return nil
}

// mountRootfs loop-mounts the squashfs read-only and assembles the root:
// overlay of the squashfs under a tmpfs upper layer, at /newroot.
func mountRootfs(s *State) error {
	lower, rw := s.work("lower"), s.work("rw")
	for _, d := range []string{lower, rw, s.NewRoot()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	err := s.mountSquashfs(lower)
	if err != nil && s.Cached {
		// A cached file that does not mount is damaged: drop it and
		// download again, once.
		s.warnf("cached image does not mount (%v): removed, downloading again", err)
		os.Remove(s.Squashfs)
		s.Squashfs, s.Cached = "", false
		if err = fetchImage(s); err == nil {
			err = s.mountSquashfs(lower)
		}
	}
	if err != nil {
		return err
	}
	if err := s.Mounter.Mount("tmpfs", rw, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return err
	}
	upper, work := filepath.Join(rw, "upper"), filepath.Join(rw, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := s.Mounter.Mount("overlay", s.NewRoot(), "overlay", 0,
		"lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
		return err
	}
	s.infof("squashfs on %s, overlay with a tmpfs upper layer on /%s", s.Loop, dirNewRoot)
	return nil
}

func (s *State) mountSquashfs(lower string) error {
	l, err := mount.AttachLoop(filepath.Join(s.Root, "dev"), s.Squashfs, false)
	if err != nil {
		return err
	}
	defer l.Close() // after the mount holds the device (autoclear)
	dev := l.Path
	if s.Verification == "dm-verity" {
		if dev, err = s.openVerity(l.Path); err != nil {
			return err
		}
	}
	if err := s.Mounter.Mount(dev, lower, "squashfs", unix.MS_RDONLY, ""); err != nil {
		if s.dm != nil {
			// dm-verity answers a block that does not match with EIO and
			// marks itself corrupt ("C"); anything else (no squashfs
			// driver) is not the image's fault.
			st, _ := s.dm.Status()
			s.closeVerity()
			if errors.Is(err, unix.EIO) || strings.HasPrefix(st, "C") {
				return &VerityError{File: s.Squashfs, URL: s.Args.Squashfs, Root: s.VerityRoot, Offset: s.verity.HashOffset, Err: err}
			}
		}
		return err
	}
	s.Loop = l.Path
	return nil
}
