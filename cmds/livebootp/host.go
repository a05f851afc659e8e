package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/bootp/config/edit"
	"github.com/livebootp/livebootp/bootp/registry"
)

const hostUsage = `usage: livebootp host add  NAME --mac MAC --image NAME/VERSION [--address IP] [--keys FILE] [--cmdline ARGS]
       livebootp host set  NAME [--mac MAC] [--address IP] [--image NAME/VERSION] [--keys FILE] [--cmdline ARGS]
       livebootp host rm   NAME
       livebootp host show NAME

Each takes -config FILE: by default the file the running registry serves,
else the default of serve. The edited file is checked as 'livebootp check'
would before anything is written, then written atomically, and the running
registry is asked to reload it. With set, an empty value (--keys "")
removes that key.
`

// hostCmd edits one host of the configuration file.
func hostCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, hostUsage)
		return errors.New("host: no subcommand given")
	}
	sub := args[0]
	fs := newFlags("host "+sub, stderr)
	fs.Usage = func() { fmt.Fprint(stderr, hostUsage+"\nflags:\n"); fs.PrintDefaults() }
	path := fs.String("config", "", "configuration file (default: the one the running registry serves, else "+defaultConfig()+")")
	sock := fs.String("socket", "", "admin socket of the running registry (default: admin-socket of the configuration)")
	noFiles := fs.Bool("skip-file-checks", false, "do not check that image directories and key files exist (editing a file for another machine)")
	values := map[string]*string{}
	if sub == "add" || sub == "set" {
		for _, f := range []struct{ flag, key, help string }{
			{"mac", edit.MAC, "MAC address of the machine's boot network card (hardware-ethernet)"},
			{"address", edit.Address, "its fixed IPv4 address (fixed-address)"},
			{"image", edit.Image, "the image it boots, NAME/VERSION (image-name)"},
			{"keys", edit.Keys, "file in ssh-authorized-keys-dir for root's authorized_keys (ssh-authorized-keys)"},
			{"cmdline", edit.Cmdline, "kernel arguments added to the image's (cmdline-append)"},
		} {
			values[f.key] = fs.String(f.flag, "", f.help)
		}
	}
	switch sub {
	case "add", "set", "rm", "show":
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, hostUsage)
		return nil
	default:
		fmt.Fprint(stderr, hostUsage)
		return fmt.Errorf("host: unknown subcommand %q", sub)
	}
	name, err := parseWithName(fs, args[1:])
	if err != nil {
		return err
	}
	file := *path
	if file == "" {
		file = servedConfig(*sock)
	}
	f, err := edit.Open(file)
	if err != nil {
		return err
	}
	if sub == "show" {
		line, block, err := f.Show(name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s:%d:\n%s", f.Path, line, block)
		return nil
	}

	// The settings given, in the order the file writes them.
	var settings []edit.Setting
	fs.Visit(func(fl *flag.Flag) {
		if key := flagKey(fl.Name); key != "" {
			settings = append(settings, edit.Setting{Key: key, Value: *values[key]})
		}
	})
	switch sub {
	case "add":
		if *values[edit.MAC] == "" || *values[edit.Image] == "" {
			return fmt.Errorf("host add %s: --mac and --image are required (and --address, unless the registry is a proxy-dhcp); see livebootp host -h", name)
		}
		err = f.Add(name, settings...)
	case "set":
		if len(settings) == 0 {
			return fmt.Errorf("host set %s: nothing to set: give --mac, --address, --image, --keys or --cmdline", name)
		}
		err = f.Set(name, settings...)
	case "rm":
		err = f.Remove(name)
	}
	if err != nil {
		return err
	}
	cfg, err := f.Check(config.Options{Detector: config.NetlinkDetector{}, SkipFileChecks: *noFiles})
	if err != nil {
		var probs config.Problems
		if errors.As(err, &probs) {
			fmt.Fprintln(stdout, err)
			fmt.Fprintf(stdout, "%s: %d problem(s) in the edited file (the lines above are those it would have); nothing was written\n", f.Path, len(probs))
			if sub != "rm" {
				fmt.Fprintln(stdout, "(--mac, --address, --image, --keys and --cmdline write hardware-ethernet, fixed-address, image-name, ssh-authorized-keys and cmdline-append)")
			}
			return errReported
		}
		return err
	}
	if !f.Changed() {
		fmt.Fprintf(stdout, "%s: host %s already has these settings; nothing to write\n", f.Path, name)
		return nil
	}
	if err := f.Write(); err != nil {
		return err
	}
	what := map[string]string{"add": "added", "set": "changed", "rm": "removed"}[sub]
	if h, ok := cfg.HostByName(name); ok {
		fmt.Fprintf(stdout, "%s:%d: %s host %s (%s, %s, %s)\n", f.Path, h.Line, what, name, h.MAC, h.Address, h.Image)
	} else {
		fmt.Fprintf(stdout, "%s: %s host %s\n", f.Path, what, name)
	}
	return askReload(f.Path, *sock, cfg, stdout)
}

// flagKey is the host key a flag sets, or "" for the other flags.
func flagKey(flag string) string {
	return map[string]string{"mac": edit.MAC, "address": edit.Address, "image": edit.Image, "keys": edit.Keys, "cmdline": edit.Cmdline}[flag]
}

// parseWithName parses flags on either side of the one host name, as in
// `host add web-1 --mac ...`: the flag package stops at the first
// argument that is not a flag.
func parseWithName(fs *flag.FlagSet, args []string) (string, error) {
	var names []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(names) != 1 {
		return "", fmt.Errorf("%s: give one host name, not %d (%q); see livebootp host -h", fs.Name(), len(names), names)
	}
	return names[0], nil
}

// servedConfig is the file the registry on sock (or the default socket)
// serves, when one answers and says so with an absolute path; else
// serve's default.
func servedConfig(sock string) string {
	if sock == "" {
		sock = config.DefaultAdminSocket
	}
	if st, err := (registry.Client{Socket: sock}).Status(); err == nil && filepath.IsAbs(st.ConfigFile) {
		return st.ConfigFile
	}
	return defaultConfig()
}

// askReload asks the running registry to load the file just written. No
// registry running is fine: its file watcher, or its next start, reads it.
func askReload(file, sock string, cfg *config.Config, stdout io.Writer) error {
	if sock == "" {
		sock = cfg.Registry.AdminSocket
	}
	if sock == "" || sock == config.Off {
		fmt.Fprintln(stdout, "admin-socket is off: a running registry's file watcher, or its next start, picks the change up")
		return nil
	}
	c := registry.Client{Socket: sock}
	st, err := c.Status()
	if err != nil {
		fmt.Fprintf(stdout, "no registry answers on %s: a running registry's file watcher, or its next start, picks the change up\n", sock)
		return nil
	}
	if filepath.IsAbs(st.ConfigFile) && !sameFile(st.ConfigFile, file) {
		fmt.Fprintf(stdout, "the registry on %s serves %s, not %s: not reloaded\n", sock, st.ConfigFile, file)
		return nil
	}
	summary, err := c.Reload()
	if err != nil {
		return fmt.Errorf("%s was written, but the running registry refused to reload it and keeps its configuration:\n%w", file, err)
	}
	fmt.Fprintln(stdout, "reloaded:", summary)
	return nil
}

func sameFile(a, b string) bool {
	x, err1 := os.Stat(a)
	y, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(x, y)
}
