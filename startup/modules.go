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
	"runtime"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// moduleInitCompressedFile is MODULE_INIT_COMPRESSED_FILE (linux/module.h):
// the kernel decompresses the module itself (CONFIG_MODULE_DECOMPRESS).
const moduleInitCompressedFile = 4

// loadModules loads every module listed in /etc/livebootp/modules (written
// by the image builder), each after its dependencies from modules.dep,
// and waits for them all.
func loadModules(s *State) error {
	l, err := startModules(s)
	if l == nil {
		return err
	}
	return l.collect(s, l.request(func(string) bool { return true }, false), "")
}

// loadNetworkModules is the modules step: it loads the modules the
// network needs and starts the others in the background, at the lowest
// priority, except the SCSI and ATA stacks (see findStorage). The steps
// wait for the ones they use (needModules); at switch_root the image's
// udev takes over whatever is left.
func loadNetworkModules(s *State) error {
	l, err := startModules(s)
	if l == nil {
		return err
	}
	s.modules = l
	err = l.collect(s, l.request(networkModule, false), "network drivers")
	n := len(l.request(func(f string) bool { return !moduleGroup("disk-controllers")(f) }, true))
	s.debugf("%d more loading in the background", n)
	return err
}

// needModules loads (unless already loading) the listed modules that
// match, with their dependencies, and waits for them. what names them on
// the console.
func (s *State) needModules(what string, match func(file string) bool) error {
	if s.modules == nil {
		return nil
	}
	return s.modules.collect(s, s.modules.request(match, false), what)
}

// moduleGroup is a set of the initrd's modules by where they sit in the
// kernel's tree (their modules.dep paths), or by name:
//   - disk-controllers: SCSI and ATA (SATA, SAS, virtio-scsi and their
//     disk driver sd_mod), loaded only when the first look for persistent
//     storage (virtio, NVMe) does not find it: the AHCI driver alone costs
//     half a second of probing, for a controller that often holds no disk
//     of ours.
//   - disks: every block device driver but device-mapper's.
//   - any other name: that module, plus, for a filesystem, the crypto and
//     library modules it may ask the kernel for when it mounts (ext4
//     wants crc32c).
func moduleGroup(name string) func(file string) bool {
	under := func(dirs ...string) func(string) bool {
		return func(f string) bool {
			for _, d := range dirs {
				if strings.HasPrefix(f, "kernel/"+d+"/") {
					return true
				}
			}
			return false
		}
	}
	switch name {
	case "disk-controllers":
		return under("drivers/scsi", "drivers/ata")
	case "disks":
		// Not device-mapper (dm-verity is the image's, not a disk's).
		d := under("drivers/block", "drivers/nvme", "drivers/scsi", "drivers/ata", "drivers/mmc", "drivers/md")
		return func(f string) bool { return d(f) && !strings.HasPrefix(moduleName(f), "dm_") }
	}
	mod := moduleName(name)
	helpers := func(string) bool { return false }
	switch mod {
	case "ext4", "ext3", "ext2", "vfat", "xfs", "btrfs": // filesystems on disks
		helpers = under("crypto", "lib", "arch/x86/crypto", "arch/arm64/crypto")
	}
	return func(f string) bool { return moduleName(f) == mod || helpers(f) }
}

// anyModule matches the modules of any of the groups.
func anyModule(groups []string) func(file string) bool {
	var ms []func(string) bool
	for _, g := range groups {
		ms = append(ms, moduleGroup(g))
	}
	return func(f string) bool {
		for _, m := range ms {
			if m(f) {
				return true
			}
		}
		return false
	}
}

// moduleLoad is module loading under way: one goroutine per module file,
// started when the file is requested, each waiting for its dependencies.
type moduleLoad struct {
	release string
	dir     string
	plan    modPlan
	done    map[string]chan struct{} // by file: closed when its load ended
	start   map[string]chan struct{} // by file: closed when it is requested
	nice    map[string]bool          // requested in the background only: lowest CPU priority

	mu       sync.Mutex
	results  map[string]error // by file
	reported map[string]bool
	asked    map[string]bool
}

// startModules reads the module list and plans its loading; nothing loads
// before request. A nil moduleLoad means there is nothing to load (or it
// cannot be planned: the error says why).
func startModules(s *State) (*moduleLoad, error) {
	list, err := os.ReadFile(filepath.Join(s.Root, "etc", "livebootp", "modules"))
	if errors.Is(err, os.ErrNotExist) {
		s.infof("no /etc/livebootp/modules: relying on built-in drivers")
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.Root, "lib", "modules", s.kernelRelease())
	ix, err := readModIndex(dir)
	if err != nil {
		return nil, err
	}
	want, absentHW := withoutAbsentHardware(s.Root, dir, names(list), ix)
	if len(absentHW) > 0 {
		s.debugf("not loaded, for hardware or CPU features this machine lacks: %s", strings.Join(absentHW, " "))
	}
	l := &moduleLoad{release: s.KernelRelease, dir: dir, plan: ix.plan(want),
		done: map[string]chan struct{}{}, start: map[string]chan struct{}{}, nice: map[string]bool{},
		results: map[string]error{}, reported: map[string]bool{}, asked: map[string]bool{}}
	if len(l.plan.Missing) > 0 {
		s.debugf("not found, built in or absent: %s", strings.Join(l.plan.Missing, " "))
	}
	index := map[string]int{}
	for i, f := range l.plan.Order {
		index[f] = i
		l.done[f] = make(chan struct{})
		l.start[f] = make(chan struct{})
	}
	load := s.LoadModule
	for i, f := range l.plan.Order {
		go func() {
			<-l.start[f]
			defer close(l.done[f])
			for _, d := range l.plan.Deps[f] {
				if j, ok := index[d]; ok && j < i { // only earlier ones: no wait cycle
					<-l.done[d]
				}
			}
			l.mu.Lock()
			nice := l.nice[f]
			l.mu.Unlock()
			if nice {
				// The kernel verifies and links a module in the thread
				// that loads it; on one CPU a dozen of them would starve
				// the steps. The thread is never unlocked, so it ends
				// with this goroutine, nice value and all.
				runtime.LockOSThread()
				unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
			}
			err := load(filepath.Join(dir, f))
			l.mu.Lock()
			l.results[f] = err
			l.mu.Unlock()
		}()
	}
	return l, nil
}

// request starts loading the files that match and their dependencies,
// those not started yet; nice for background loads no step waits for
// yet. It returns the files, in load order.
func (l *moduleLoad) request(match func(file string) bool, nice bool) []string {
	files := l.plan.closure(match)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range files {
		if !nice {
			l.nice[f] = false // a step waits for it now: full priority, unless it is loading already
		}
		if !l.asked[f] {
			l.asked[f] = true
			l.nice[f] = nice
			close(l.start[f])
		}
	}
	return files
}

// networkModule: the modules DHCP needs before it can start: NIC drivers,
// the virtio bus they sit on, and AF_PACKET for the DHCP client's raw
// socket (their dependencies come with them).
func networkModule(file string) bool {
	for _, p := range []string{"kernel/drivers/net/", "kernel/drivers/virtio/", "kernel/net/packet/"} {
		if strings.HasPrefix(file, p) {
			return true
		}
	}
	return false
}

// collect waits for files to load and reports those not reported yet:
// how many loaded, which found no device, and the errors.
func (l *moduleLoad) collect(s *State, files []string, what string) error {
	for _, f := range files {
		<-l.done[f]
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs, absent []string
	loaded := 0
	for _, f := range files {
		if l.reported[f] {
			continue
		}
		l.reported[f] = true
		err := l.results[f]
		switch {
		case errors.Is(err, unix.ENODEV):
			// A driver for hardware (or a CPU feature) this machine
			// lacks that withoutAbsentHardware could not rule out.
			absent = append(absent, moduleName(f))
		case err != nil:
			errs = append(errs, fmt.Sprintf("%s: %v", moduleName(f), err))
		default:
			loaded++
		}
	}
	if what != "" {
		what = " (" + what + ")"
	}
	if loaded > 0 || what == "" {
		s.infof("%d loaded for %s%s", loaded, l.release, what)
	}
	if len(absent) > 0 {
		sort.Strings(absent)
		s.debugf("no device for: %s", strings.Join(absent, " "))
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

// closure is the files of Order that match or that a matching file
// depends on, in Order's order.
func (p modPlan) closure(match func(file string) bool) []string {
	var roots []string
	for _, f := range p.Order {
		if match(f) {
			roots = append(roots, f)
		}
	}
	in := depClosure(p.Deps, roots)
	var out []string
	for _, f := range p.Order {
		if in[f] {
			out = append(out, f)
		}
	}
	return out
}

// depClosure is the files roots are and depend on, directly or not
// (deeper than 64 is a loop in a broken modules.dep: not followed).
func depClosure(deps map[string][]string, roots []string) map[string]bool {
	in := map[string]bool{}
	var visit func(f string, depth int)
	visit = func(f string, depth int) {
		if in[f] || depth > 64 {
			return
		}
		in[f] = true
		for _, d := range deps[f] {
			visit(d, depth+1)
		}
	}
	for _, f := range roots {
		visit(f, 0)
	}
	return in
}

// modIndex is a modules directory's modules.dep: each module's file and
// the files it depends on. Without modules.dep the files are found by
// name, and sequential says to load them one after the other.
type modIndex struct {
	files      map[string]string // module name -> file
	deps       map[string][]string
	sequential bool
}

func readModIndex(dir string) (modIndex, error) {
	ix := modIndex{files: map[string]string{}, deps: map[string][]string{}}
	dep, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
	switch {
	case err == nil:
		for _, line := range strings.Split(string(dep), "\n") {
			file, rest, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			ix.files[moduleName(file)] = file
			ix.deps[file] = strings.Fields(rest)
		}
	case errors.Is(err, os.ErrNotExist):
		ix.sequential = true
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.Contains(d.Name(), ".ko") {
				rel, _ := filepath.Rel(dir, path)
				ix.files[moduleName(rel)] = rel
			}
			return nil
		})
	default:
		return ix, err
	}
	return ix, nil
}

// closure is the names of the named modules and of those they depend
// on, directly or not.
func (ix modIndex) closure(names []string) map[string]bool {
	var files []string
	for _, n := range names {
		if f, ok := ix.files[n]; ok {
			files = append(files, f)
		}
	}
	out := map[string]bool{}
	for f := range depClosure(ix.deps, files) {
		out[moduleName(f)] = true
	}
	return out
}

// modulePlan orders the module files to load: for each wanted module its
// dependencies first (deepest first, as modprobe does), each file once.
// Without modules.dep the files are found by name and load one after the
// other in list order.
func modulePlan(dir string, want []string) (modPlan, error) {
	ix, err := readModIndex(dir)
	if err != nil {
		return modPlan{Deps: map[string][]string{}}, err
	}
	return ix.plan(want), nil
}

func (ix modIndex) plan(want []string) modPlan {
	p := modPlan{Deps: map[string][]string{}}
	done := map[string]bool{}
	var visit func(file string, depth int)
	visit = func(file string, depth int) {
		if done[file] || depth > 64 {
			return
		}
		done[file] = true
		// modules.dep lists the whole closure; load from its end so each
		// module finds what it needs already there.
		d := ix.deps[file]
		for i := len(d) - 1; i >= 0; i-- {
			visit(d[i], depth+1)
		}
		p.Order = append(p.Order, file)
		if len(d) > 0 {
			p.Deps[file] = d
		}
	}
	for _, w := range want {
		f, ok := ix.files[moduleName(w)]
		if !ok {
			p.Missing = append(p.Missing, w)
			continue
		}
		visit(f, 0)
	}
	if ix.sequential {
		for i := 1; i < len(p.Order); i++ {
			p.Deps[p.Order[i]] = []string{p.Order[i-1]}
		}
	}
	return p
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
