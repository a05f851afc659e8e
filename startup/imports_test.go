package startup

import (
	"os/exec"
	"strings"
	"testing"
)

// The init goes into every target's initrd: it must not pull in the
// registry (bootp/...) nor its heavy dependencies.
func TestImportsStayOnTheTargetSide(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go tool")
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/livebootp/livebootp/cmds/livebootp-init").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := []string{
		"github.com/livebootp/livebootp/startup", "github.com/livebootp/livebootp/wire",
		"github.com/livebootp/livebootp/cmds/livebootp-init",
		"github.com/insomniacslk/dhcp/", "github.com/vishvananda/", "golang.org/x/",
		"github.com/mdlayher/", "github.com/josharian/native", "github.com/u-root/uio/", "github.com/pierrec/lz4/",
		"mvdan.cc/sh/v3/", // the built-in rescue shell (startup/rescue)
	}
	for _, pkg := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(pkg, "/")
		if !strings.Contains(first, ".") {
			continue // standard library
		}
		ok := false
		for _, a := range allowed {
			if strings.HasPrefix(pkg, a) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("livebootp-init depends on %s", pkg)
		}
	}
}
