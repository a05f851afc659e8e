package startup

import (
	"bufio"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// withoutAbsentHardware drops from mods the drivers for hardware this
// machine lacks, and the modules that were listed only as their
// dependencies. The initrd carries drivers for many NICs, disk
// controllers and CPU features; loading one for hardware that is not
// there costs its whole load and signature check (a tenth of a second
// each under emulation) and ends in ENODEV.
//
// A driver is absent when every alias modules.alias gives it is a pci: or
// cpu: pattern and none matches this machine: the modalias of a device in
// /sys/bus/pci/devices, or the CPU's feature list in
// /sys/devices/system/cpu/modalias (crc32c_intel needs SSE4.2). Modules
// with no such aliases (file systems, virtio drivers on the virtio bus)
// always stay, and so does everything when modules.alias or the sysfs
// files cannot be read: better slow than without a driver. A dependency
// (modules.dep) of a dropped driver goes too unless a module that stays
// needs it: libphy came only with r8169, nvme_core only with nvme.
func withoutAbsentHardware(root, modDir string, mods []string, ix modIndex) (kept, skipped []string) {
	aliases := hardwareAliases(filepath.Join(modDir, "modules.alias"))
	present := map[string][]string{} // bus ("pci", "cpu") -> modaliases of this machine
	devs, _ := filepath.Glob(filepath.Join(root, "sys", "bus", "pci", "devices", "*", "modalias"))
	devs = append(devs, filepath.Join(root, "sys", "devices", "system", "cpu", "modalias"))
	for _, d := range devs {
		if b, err := os.ReadFile(d); err == nil {
			a := strings.TrimSpace(string(b))
			bus, _, _ := strings.Cut(a, ":")
			present[bus] = append(present[bus], a)
		}
	}
	if len(aliases) == 0 || len(present) == 0 {
		return mods, nil
	}
	absent := map[string]bool{}
	for _, m := range mods {
		pats, ok := aliases[moduleName(m)]
		if ok && !matchesMachine(pats, present) {
			absent[moduleName(m)] = true
			skipped = append(skipped, m)
		}
	}
	if len(skipped) == 0 {
		return mods, nil
	}
	// The absent drivers and their dependencies, and what the others need.
	onlyDeps := ix.closure(namesOf(skipped))
	var roots []string
	for _, m := range mods {
		if n := moduleName(m); !absent[n] && !onlyDeps[n] {
			roots = append(roots, n)
		}
	}
	needed := ix.closure(roots)
	for _, m := range mods {
		n := moduleName(m)
		switch {
		case absent[n]:
		case onlyDeps[n] && !needed[n]:
			skipped = append(skipped, m)
		default:
			kept = append(kept, m)
		}
	}
	return kept, skipped
}

func namesOf(mods []string) []string {
	out := make([]string, len(mods))
	for i, m := range mods {
		out[i] = moduleName(m)
	}
	return out
}

// hardwareAliases reads modules.alias by module name, keeping only the
// modules whose every alias is a pci: or cpu: pattern: those are the ones
// this machine's devices and CPU say yes or no to.
func hardwareAliases(file string) map[string][]string {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string][]string{}
	other := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || fields[0] != "alias" {
			continue
		}
		name := moduleName(fields[2])
		if strings.HasPrefix(fields[1], "pci:") || strings.HasPrefix(fields[1], "cpu:") {
			out[name] = append(out[name], fields[1])
		} else if strings.Contains(fields[1], ":") {
			// Another bus (virtio:, acpi*:, platform:) that sysfs is not
			// asked about here; plain names (crc32c, fs-ext4) say nothing
			// about hardware.
			other[name] = true
		}
	}
	for name := range other {
		delete(out, name)
	}
	return out
}

// matchesMachine: does any pattern match a modalias of its bus? A bus
// whose devices could not be read counts as a match.
func matchesMachine(patterns []string, present map[string][]string) bool {
	for _, p := range patterns {
		bus, _, _ := strings.Cut(p, ":")
		have, ok := present[bus]
		if !ok {
			return true
		}
		for _, m := range have {
			if ok, _ := path.Match(p, m); ok {
				return true
			}
		}
	}
	return false
}
