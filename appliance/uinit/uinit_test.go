package uinit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livebootp/livebootp/internal/syncbuf"
)

func TestFindPartition(t *testing.T) {
	sys := t.TempDir()
	for dev, uevent := range map[string]string{
		"vda":  "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n",
		"vda1": "MAJOR=254\nMINOR=1\nDEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=livebootp-esp\n",
		"sda2": "MAJOR=8\nMINOR=2\nDEVNAME=sda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=livebootp-data\n",
	} {
		if err := os.MkdirAll(filepath.Join(sys, dev), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, dev, "uevent"), []byte(uevent), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := findPartition(sys, DataPartName); err != nil || got != "/dev/sda2" {
		t.Errorf("findPartition = %q, %v; want /dev/sda2", got, err)
	}
	if _, err := findPartition(sys, "nope"); err == nil {
		t.Error("found a partition that is not there")
	}
}

func TestRing(t *testing.T) {
	r := NewRing(3)
	for _, l := range []string{"a", "b", "c", "d"} {
		r.Add(l)
	}
	if got := strings.Join(r.Last(10), ","); got != "b,c,d" {
		t.Errorf("Last = %s, want b,c,d", got)
	}
	if got := strings.Join(r.Last(2), ","); got != "c,d" {
		t.Errorf("Last(2) = %s, want c,d", got)
	}
}

// A registry that dies is restarted, its last lines are shown on the
// console and kept in the log file, which rotates.
func TestSupervisorRestarts(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "runs")
	script := `n=$(cat ` + count + ` 2>/dev/null || echo 0); n=$((n+1)); echo $n > ` + count + `; echo "run $n failing"; exit 3`
	var console syncbuf.Buffer
	s := &Supervisor{
		Argv: []string{"/bin/sh", "-c", script}, Console: &console,
		LogFile: filepath.Join(dir, "registry.log"), LogMax: 20, Ring: NewRing(100),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// Restarts come after 1 s, then 2 s: wait for the second run.
	for ctx.Err() == nil && !strings.Contains(console.String(), "run 2 failing") {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	out := console.String()
	if !strings.Contains(out, "registry exited (exit status 3); restarting in 1s") || !strings.Contains(out, "  | run 1 failing") ||
		!strings.Contains(out, "restarting in 2s") {
		t.Errorf("console:\n%s", out)
	}
	old, _ := os.ReadFile(s.LogFile + ".1")
	cur, _ := os.ReadFile(s.LogFile)
	if !strings.Contains(string(old)+string(cur), "run 2 failing") || len(old) == 0 {
		t.Errorf("log files: %q and %q", old, cur)
	}
}
