package startup

import (
	"bufio"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// withoutAbsentPCIDrivers drops from mods the PCI drivers (modules with
// pci: patterns in modules.alias) that match no PCI device of this
// machine. The initrd carries drivers for many NICs and disk controllers;
// loading one for hardware that is not there costs its whole load and
// signature check (a tenth of a second each under emulation) and ends in
// ENODEV. Modules without PCI aliases (file systems, virtio drivers on the
// virtio bus) always stay. Without modules.alias or a readable
// /sys/bus/pci the list stays whole: better slow than without a driver.
func withoutAbsentPCIDrivers(root, modDir string, mods []string) (kept, skipped []string) {
	aliases := pciAliases(filepath.Join(modDir, "modules.alias"))
	devs, _ := filepath.Glob(filepath.Join(root, "sys", "bus", "pci", "devices", "*", "modalias"))
	if len(aliases) == 0 || len(devs) == 0 {
		return mods, nil
	}
	var present []string
	for _, d := range devs {
		if b, err := os.ReadFile(d); err == nil {
			present = append(present, strings.TrimSpace(string(b)))
		}
	}
	for _, m := range mods {
		pats, ok := aliases[moduleName(m)]
		if !ok || matchesAny(pats, present) {
			kept = append(kept, m)
			continue
		}
		skipped = append(skipped, m)
	}
	return kept, skipped
}

// pciAliases reads the pci: patterns of modules.alias by module name.
func pciAliases(file string) map[string][]string {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "alias" && strings.HasPrefix(fields[1], "pci:") {
			name := moduleName(fields[2])
			out[name] = append(out[name], fields[1])
		}
	}
	return out
}

func matchesAny(patterns, modaliases []string) bool {
	for _, p := range patterns {
		for _, m := range modaliases {
			if ok, _ := path.Match(p, m); ok {
				return true
			}
		}
	}
	return false
}
