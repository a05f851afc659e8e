package startup

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// moduleInitCompressedFile is MODULE_INIT_COMPRESSED_FILE (linux/module.h):
// the kernel decompresses the module itself (CONFIG_MODULE_DECOMPRESS).
const moduleInitCompressedFile = 4

// loadModules loads the modules listed in /etc/livebootp/modules (written
// by the image builder), each after its dependencies from modules.dep.
func loadModules(s *State) error {
	list, err := os.ReadFile(filepath.Join(s.Root, "etc", "livebootp", "modules"))
	if errors.Is(err, os.ErrNotExist) {
		s.infof("no /etc/livebootp/modules: relying on built-in drivers")
		return nil
	}
	if err != nil {
		return err
	}
	dir := filepath.Join(s.Root, "lib", "modules", s.kernelRelease())
	want, absentHW := withoutAbsentPCIDrivers(s.Root, dir, names(list))
	if len(absentHW) > 0 {
		s.debugf("no PCI device for: %s", strings.Join(absentHW, " "))
	}
	plan, err := modulePlan(dir, want)
	if err != nil {
		return err
	}
	// Each module loads as soon as its dependencies have: the kernel
	// verifies and links modules in parallel on several CPUs.
	index := map[string]int{}
	done := map[string]chan struct{}{}
	for i, f := range plan.Order {
		index[f] = i
		done[f] = make(chan struct{})
	}
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		errs   []string
		absent []string
		loaded int
	)
	for i, f := range plan.Order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[f])
			for _, d := range plan.Deps[f] {
				if j, ok := index[d]; ok && j < i { // only earlier ones: no wait cycle
					<-done[d]
				}
			}
			err := s.LoadModule(filepath.Join(dir, f))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, unix.ENODEV):
				// A driver for hardware (or a CPU feature, such as
				// crc32c_intel without SSE4.2) this machine lacks.
				absent = append(absent, moduleName(f))
			case err != nil:
				errs = append(errs, fmt.Sprintf("%s: %v", moduleName(f), err))
			default:
				loaded++
			}
		}()
	}
	wg.Wait()
	s.infof("%d loaded for %s", loaded, s.KernelRelease)
	if len(absent) > 0 {
		sort.Strings(absent)
		s.debugf("no device for: %s", strings.Join(absent, " "))
	}
	if len(plan.Missing) > 0 {
		s.debugf("not found, built in or absent: %s", strings.Join(plan.Missing, " "))
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// kernelRelease is uname -r, asked once.
func (s *State) kernelRelease() string {
	if s.KernelRelease == "" {
		var u unix.Utsname
		if unix.Uname(&u) == nil {
			s.KernelRelease = unix.ByteSliceToString(u.Release[:])
		}
	}
	return s.KernelRelease
}

func names(list []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(list))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, strings.Fields(l)[0])
	}
	return out
}

// moduleName is the kernel's name for a module file: base name without
// .ko(.gz|.xz|.zst), dashes as underscores.
func moduleName(path string) string {
	b := filepath.Base(path)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// modPlan is what to load: Order lists files so that each comes after its
// dependencies; Deps gives each file's dependency files.
type modPlan struct {
	Order   []string
	Deps    map[string][]string
	Missing []string // wanted modules that are built in or absent
}

// modulePlan orders the module files to load: for each wanted module its
// dependencies first (deepest first, as modprobe does), each file once.
// Without modules.dep the files are found by name and load one after the
// other in list order.
func modulePlan(dir string, want []string) (modPlan, error) {
	p := modPlan{Deps: map[string][]string{}}
	files := map[string]string{} // module name -> file
	dep, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
	sequential := false
	switch {
	case err == nil:
		for _, line := range strings.Split(string(dep), "\n") {
			file, rest, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			files[moduleName(file)] = file
			p.Deps[file] = strings.Fields(rest)
		}
	case errors.Is(err, os.ErrNotExist):
		sequential = true
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.Contains(d.Name(), ".ko") {
				rel, _ := filepath.Rel(dir, path)
				files[moduleName(rel)] = rel
			}
			return nil
		})
	default:
		return p, err
	}
	done := map[string]bool{}
	var visit func(file string, depth int)
	visit = func(file string, depth int) {
		if done[file] || depth > 64 {
			return
		}
		done[file] = true
		// modules.dep lists the whole closure; load from its end so each
		// module finds what it needs already there.
		d := p.Deps[file]
		for i := len(d) - 1; i >= 0; i-- {
			visit(d[i], depth+1)
		}
		p.Order = append(p.Order, file)
	}
	for _, w := range want {
		f, ok := files[moduleName(w)]
		if !ok {
			p.Missing = append(p.Missing, w)
			continue
		}
		visit(f, 0)
	}
	if sequential {
		for i := 1; i < len(p.Order); i++ {
			p.Deps[p.Order[i]] = []string{p.Order[i-1]}
		}
	}
	return p, nil
}

// loadModuleFile loads one module file. Plain .ko goes to finit_module;
// .ko.gz is decompressed here; .ko.xz and .ko.zst are handed to the kernel
// to decompress (the image builder stores modules uncompressed when the
// kernel cannot). A module already loaded is not an error.
func loadModuleFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	switch {
	case strings.HasSuffix(path, ".ko"):
		err = unix.FinitModule(int(f.Fd()), "", 0)
	case strings.HasSuffix(path, ".ko.gz"):
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(f); err == nil {
			var b []byte
			if b, err = io.ReadAll(zr); err == nil {
				err = unix.InitModule(b, "")
			}
		}
	default:
		err = unix.FinitModule(int(f.Fd()), "", moduleInitCompressedFile)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			err = fmt.Errorf("%w: this kernel cannot decompress %s itself; rebuild the image so the initrd holds it uncompressed", err, filepath.Ext(path))
		}
	}
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}
