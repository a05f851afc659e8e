package startup

import "io"

// LoadModules runs the modules step on its own, with the same module list
// (initramfs.LoadListPath), dependency order and absent-hardware filter:
// the appliance's initramfs loads its drivers this way too.
func LoadModules(root string, console io.Writer) error {
	s := &State{Root: root, Console: console}
	s.defaults()
	return loadModules(s)
}
