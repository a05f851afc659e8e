package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Module is one loadable kernel module of a modules tree (/lib/modules/<kver>).
type Module struct {
	Name string   // canonical name: file name without .ko and compression suffix, "-" written as "_"
	Path string   // file, relative to the modules directory (kernel/fs/ext4/ext4.ko)
	Deps []string // names of the modules it needs, as modules.dep or its .modinfo lists them
	Pre  []string // soft dependencies to load before it (modules.softdep "pre:"), resolved to names
	Post []string // soft dependencies to load after it
}

// ModuleSet is the result of resolving a list of wanted module names
// against a modules tree.
type ModuleSet struct {
	Modules []Module // in load order: every module after the modules it depends on
	Missing []string // wanted names the tree has neither a module nor an alias for
	Builtin []string // wanted names compiled into the kernel: nothing to load
}

// Decompressor returns the uncompressed content of a module compressed
// with ext (".xz" or ".zst"). The package handles ".gz" itself; it knows no
// other format because the init helper imports it and must stay small.
type Decompressor func(ext string, r io.Reader) (io.Reader, error)

// ModuleTree reads a kernel's modules directory: modules.dep (written by
// depmod), or each module's .modinfo "depends=" when there is none (a tree
// unpacked with dpkg -x, before depmod ran).
type ModuleTree struct {
	Dir string // the modules directory, e.g. ROOT/lib/modules/6.1.0-56-amd64
	// FS, if set, is read instead of Dir (which then only names the tree in
	// messages): an image's files need not be unpacked to disk.
	FS         fs.FS
	Decompress Decompressor // nil: .ko.xz and .ko.zst can be copied but not read
}

func (t ModuleTree) fsys() fs.FS {
	if t.FS != nil {
		return t.FS
	}
	return os.DirFS(t.Dir)
}

// name is a file's name for messages.
func (t ModuleTree) name(rel string) string {
	if t.Dir == "" {
		return rel
	}
	return path.Join(filepath.ToSlash(t.Dir), rel)
}

// ModuleClosure resolves want (module names or aliases; "-" and "_" are
// the same) against the modules tree at modulesDir and returns the modules
// to load, dependencies first. Names the tree lacks or has built in are
// skipped; ModuleTree.Resolve reports them.
func ModuleClosure(modulesDir string, want []string) ([]Module, error) {
	set, err := ModuleTree{Dir: modulesDir}.Resolve(want)
	if err != nil {
		return nil, err
	}
	return set.Modules, nil
}

// index is what a modules tree knows: modules by name, aliases, builtins.
type index struct {
	mods     map[string]*Module
	aliases  map[string][]string // alias -> module names
	builtin  map[string]bool     // builtin module names and their aliases
	fromDep  bool                // mods came from modules.dep (else from .modinfo, read lazily)
	modinfos map[string]bool     // names whose .modinfo was read
	scanned  bool                // every module's .modinfo aliases are in aliases
	scan     func() error        // fills aliases from every .modinfo (trees without modules.dep)
}

// Resolve computes the load order for want. Aliases (crc32c, crypto-crc32c)
// resolve to every module that provides them, in name order, as modprobe
// would load them all.
func (t ModuleTree) Resolve(want []string) (*ModuleSet, error) {
	ix, err := t.load()
	if err != nil {
		return nil, err
	}
	set := &ModuleSet{}
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	// visitSoft visits the modules that softdep names (aliases allowed).
	visitSoft := func(names []string) error {
		for _, p := range names {
			ns, err := ix.lookupScan(p)
			if err != nil {
				return err
			}
			for _, n := range ns {
				if err := visit(n); err != nil {
					return err
				}
			}
		}
		return nil
	}
	visit = func(name string) error {
		if state[name] != 0 {
			return nil // done, or a cycle (soft dependencies may form one): break it
		}
		state[name] = 1
		m := ix.mods[name]
		if err := t.readModinfo(ix, m); err != nil {
			return err
		}
		if err := visitSoft(m.Pre); err != nil {
			return err
		}
		// modules.dep lists the deepest dependency last, modprobe loads
		// the list back to front; visiting in that order keeps ours alike.
		for i := len(m.Deps) - 1; i >= 0; i-- {
			d := m.Deps[i]
			if _, ok := ix.mods[d]; !ok {
				if ix.builtin[d] {
					continue
				}
				return fmt.Errorf("initramfs: %s: module %s needs %s, which is not in the tree; run depmod -b ROOT KVER", t.Dir, name, d)
			}
			if err := visit(d); err != nil {
				return err
			}
		}
		state[name] = 2
		set.Modules = append(set.Modules, *m)
		if err := visitSoft(m.Post); err != nil {
			return err
		}
		return nil
	}
	seen := map[string]bool{}
	for _, w := range want {
		if w == "" || seen[w] {
			continue
		}
		seen[w] = true
		names, err := ix.lookupScan(w)
		if err != nil {
			return nil, err
		}
		if len(names) == 0 {
			if ix.builtin[w] || ix.builtin[canon(w)] {
				set.Builtin = append(set.Builtin, w)
			} else {
				set.Missing = append(set.Missing, w)
			}
			continue
		}
		for _, n := range names {
			if err := visit(n); err != nil {
				return nil, err
			}
		}
	}
	return set, nil
}

// lookup maps a module name or alias to module names in the tree.
func (ix *index) lookup(name string) []string {
	if _, ok := ix.mods[canon(name)]; ok {
		return []string{canon(name)}
	}
	if ns := ix.aliases[name]; len(ns) > 0 {
		return ns
	}
	return ix.aliases[canon(name)]
}

// lookupScan is lookup that, in a tree without modules.alias, reads the
// aliases of every module once before giving up on a name (slow, but only
// trees nobody ran depmod on take this path).
func (ix *index) lookupScan(name string) ([]string, error) {
	ns := ix.lookup(name)
	if len(ns) > 0 || ix.scanned || ix.scan == nil {
		return ns, nil
	}
	ix.scanned = true
	if err := ix.scan(); err != nil {
		return nil, err
	}
	return ix.lookup(name), nil
}

func (t ModuleTree) load() (*index, error) {
	ix := &index{
		mods:     map[string]*Module{},
		aliases:  map[string][]string{},
		builtin:  map[string]bool{},
		modinfos: map[string]bool{},
	}
	if _, err := fs.Stat(t.fsys(), "."); err != nil {
		return nil, fmt.Errorf("initramfs: modules directory %s: %w", t.Dir, err)
	}
	dep, err := fs.ReadFile(t.fsys(), "modules.dep")
	switch {
	case err == nil:
		ix.fromDep = true
		if err := parseDep(ix, dep); err != nil {
			return nil, fmt.Errorf("initramfs: %s: %w", t.name("modules.dep"), err)
		}
	case errors.Is(err, fs.ErrNotExist):
		if err := t.walk(ix); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	if err := t.readLines("modules.builtin", func(line string) {
		ix.builtin[modName(line)] = true
	}); err != nil {
		return nil, err
	}
	// Builtins keep their aliases in modules.builtin.modinfo
	// ("crc32c_generic.alias=crypto-crc32c"): a wanted alias of a builtin
	// is built in, not missing.
	if b, err := fs.ReadFile(t.fsys(), "modules.builtin.modinfo"); err == nil {
		for _, kv := range bytes.Split(b, []byte{0}) {
			mod, rest, ok := strings.Cut(string(kv), ".")
			if !ok {
				continue
			}
			ix.builtin[canon(mod)] = true
			if a, ok := strings.CutPrefix(rest, "alias="); ok {
				ix.builtin[a] = true
			}
		}
	}
	if !ix.fromDep {
		ix.scan = func() error {
			for _, n := range slices.Sorted(maps.Keys(ix.mods)) {
				info, err := t.Modinfo(ix.mods[n].Path)
				if err != nil {
					return err
				}
				for _, kv := range info {
					if a, ok := strings.CutPrefix(kv, "alias="); ok && !strings.ContainsAny(a, "*?[") {
						ix.aliases[a] = append(ix.aliases[a], n)
					}
				}
			}
			return nil
		}
	}
	if err := t.readLines("modules.alias", func(line string) {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "alias" || strings.ContainsAny(f[1], "*?[") {
			return // device aliases (pci:v*...) are for udev; we load by name
		}
		n := canon(f[2])
		if _, ok := ix.mods[n]; ok && !slices.Contains(ix.aliases[f[1]], n) {
			ix.aliases[f[1]] = append(ix.aliases[f[1]], n)
		}
	}); err != nil {
		return nil, err
	}
	for _, ns := range ix.aliases {
		sort.Strings(ns)
	}
	if err := t.readLines("modules.softdep", func(line string) {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "softdep" {
			return
		}
		if m := ix.mods[canon(f[1])]; m != nil {
			m.Pre, m.Post = parseSoftdep(f[2:], m.Pre, m.Post)
		}
	}); err != nil {
		return nil, err
	}
	return ix, nil
}

// parseSoftdep reads "pre: a b post: c" (modules.softdep and .modinfo
// softdep= share the syntax).
func parseSoftdep(f []string, pre, post []string) ([]string, []string) {
	into := &pre
	for _, w := range f {
		switch w {
		case "pre:":
			into = &pre
		case "post:":
			into = &post
		default:
			*into = append(*into, w)
		}
	}
	return pre, post
}

func parseDep(ix *index, b []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p, deps, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("line %d: no ':' in %q", n, line)
		}
		m := &Module{Name: modName(p), Path: p}
		for _, d := range strings.Fields(deps) {
			m.Deps = append(m.Deps, modName(d))
		}
		if _, dup := ix.mods[m.Name]; !dup { // depmod lists the preferred copy first
			ix.mods[m.Name] = m
		}
	}
	return sc.Err()
}

// walk indexes the module files of a tree that has no modules.dep.
// Dependencies come later from each module's .modinfo.
func (t ModuleTree) walk(ix *index) error {
	var paths []string
	err := fs.WalkDir(t.fsys(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && isModuleFile(d.Name()) {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("initramfs: indexing %s: %w", t.Dir, err)
	}
	// depmod's default search order: updates/ before the kernel's own.
	sort.SliceStable(paths, func(i, j int) bool {
		ui, uj := strings.HasPrefix(paths[i], "updates/"), strings.HasPrefix(paths[j], "updates/")
		if ui != uj {
			return ui
		}
		return paths[i] < paths[j]
	})
	for _, p := range paths {
		n := modName(p)
		if _, dup := ix.mods[n]; !dup {
			ix.mods[n] = &Module{Name: n, Path: p}
		}
	}
	return nil
}

// readModinfo fills Deps and soft dependencies from the module's .modinfo
// section, for trees without modules.dep.
func (t ModuleTree) readModinfo(ix *index, m *Module) error {
	if ix.fromDep || ix.modinfos[m.Name] {
		return nil
	}
	ix.modinfos[m.Name] = true
	info, err := t.Modinfo(m.Path)
	if err != nil {
		return err
	}
	for _, kv := range info {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					m.Deps = append(m.Deps, canon(d))
				}
			}
		case "softdep":
			m.Pre, m.Post = parseSoftdep(strings.Fields(v), m.Pre, m.Post)
		}
	}
	return nil
}

// Modinfo returns the key=value strings of the .modinfo ELF section of the
// module at rel (relative to the tree), decompressing it first if needed.
func (t ModuleTree) Modinfo(rel string) ([]string, error) {
	b, err := t.ReadModule(rel)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("initramfs: %s: not an ELF module: %w", t.name(rel), err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("initramfs: %s: no .modinfo section", t.name(rel))
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("initramfs: %s: .modinfo: %w", t.name(rel), err)
	}
	var out []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		if len(kv) > 0 {
			out = append(out, string(kv))
		}
	}
	return out, nil
}

// ReadModule returns the uncompressed content of the module at rel.
func (t ModuleTree) ReadModule(rel string) ([]byte, error) {
	full := t.name(rel)
	f, err := t.fsys().Open(rel)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %s: %w", full, err)
	}
	defer f.Close()
	var r io.Reader = f
	switch ext := path.Ext(rel); ext {
	case ".ko":
	case ".gz":
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("initramfs: %s: %w", full, err)
		}
		r = zr
	case ".xz", ".zst":
		if t.Decompress == nil {
			return nil, fmt.Errorf("initramfs: %s: no %s decompressor given", full, ext)
		}
		if r, err = t.Decompress(ext, f); err != nil {
			return nil, fmt.Errorf("initramfs: %s: %w", full, err)
		}
	default:
		return nil, fmt.Errorf("initramfs: %s: not a kernel module (.ko, .ko.gz, .ko.xz, .ko.zst)", full)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("initramfs: reading %s: %w", full, err)
	}
	return b, nil
}

func (t ModuleTree) readLines(name string, fn func(string)) error {
	b, err := fs.ReadFile(t.fsys(), name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			fn(line)
		}
	}
	return nil
}

var moduleExts = []string{".ko", ".ko.gz", ".ko.xz", ".ko.zst"}

func isModuleFile(name string) bool {
	for _, e := range moduleExts {
		if strings.HasSuffix(name, e) {
			return true
		}
	}
	return false
}

// modName turns a module path into its canonical name.
func modName(p string) string {
	b := path.Base(p)
	for _, e := range moduleExts {
		if s, ok := strings.CutSuffix(b, e); ok {
			b = s
			break
		}
	}
	return canon(b)
}

// canon makes "-" and "_" the same, as the kernel does for module names.
func canon(name string) string { return strings.ReplaceAll(name, "-", "_") }

// uncompressedPath is rel without a compression suffix: kernel/x.ko.xz ->
// kernel/x.ko.
func uncompressedPath(rel string) string {
	for _, e := range []string{".gz", ".xz", ".zst"} {
		if s, ok := strings.CutSuffix(rel, ".ko"+e); ok {
			return s + ".ko"
		}
	}
	return rel
}
