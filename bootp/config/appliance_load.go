package config

import (
	"io/fs"
	"os"
)

// LoadAppliance reads only the appliance: section of the config file at
// path. The appliance applies it before its network is up, when the rest
// of the file (auto-detected addresses, hosts) cannot be checked yet, and a
// mistake in a host must not keep the appliance off the network. Its error
// is always Problems, about that section only.
func LoadAppliance(path string) (Appliance, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		if pe, ok := err.(*fs.PathError); ok {
			msg = pe.Err.Error()
		}
		return Appliance{}, Problems{{File: path, Msg: "cannot read the config file: " + msg,
			Fix: "check that the data partition holds config.yml"}}
	}
	col := &collector{file: path}
	t, syntax := parseTree(data)
	if syntax != nil {
		for _, e := range syntax {
			col.add(pos{int32(e.line), 0}, "YAML syntax: "+e.msg, "fix the line (indent with spaces only)")
		}
		return Appliance{}, col.err()
	}
	w := &walker{t: t, col: col, intern: map[string]string{}, mergeBudget: maxMergedPairs}
	r := t.root
	if r < 0 || w.isNull(r) || t.nodes[r].kind != kMap {
		return Appliance{}, nil
	}
	kids := t.children(r)
	for i := 0; i+1 < len(kids); i += 2 {
		if name, ok := w.keyText(kids[i]); ok && lookup(topKeys, name) == 2 {
			w.appliance(kids[i], kids[i+1])
			break
		}
	}
	if err := col.err(); err != nil {
		return Appliance{}, err
	}
	return w.app, nil
}
