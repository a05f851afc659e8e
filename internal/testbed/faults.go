package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livebootp/livebootp/wire"
)

// The faults the fault tests inject: frames lost on a guest's link, the
// registry killed and started again, a bigger image so a download lasts
// long enough to be interrupted.

// NeedFaultVM is NeedVM for the fault tests, which boot a VM several times
// each (minutes under TCG): they run only with LIVEBOOTP_FAULTS=1, which CI
// sets.
func NeedFaultVM(t testing.TB) string {
	t.Helper()
	if os.Getenv("LIVEBOOTP_FAULTS") != "1" {
		t.Skip("VM fault test: set LIVEBOOTP_FAULTS=1 (CI does); it boots several VMs under TCG")
	}
	return NeedVM(t)
}

// lossTable is the nftables table AddLoss creates; it lives in the test's
// namespace only and goes with it.
const lossTable = "lbloss"

// Loss drops a random share of the frames that cross one bridge port, in
// both directions, with nftables rules in the namespace (the kernel has no
// netem). Each rule counts what it saw and what it dropped.
type Loss struct {
	net *Net
	dev string
}

// AddLoss starts dropping percent % of the frames entering and leaving dev
// (a tap or veth on the namespace's bridge): those to and from the bridge's
// own address (the registry) and those forwarded to other ports.
func (n *Net) AddLoss(dev string, percent int) (*Loss, error) {
	if percent < 0 || percent > 100 {
		return nil, fmt.Errorf("testbed: loss of %d%%: want 0..100", percent)
	}
	// Each rule: count every frame of dev, then drop percent of them and
	// count those. numgen draws per frame.
	rule := func(dir string) string {
		return fmt.Sprintf("%s %q counter numgen random mod 100 < %d counter drop", dir, dev, percent)
	}
	ruleset := fmt.Sprintf(`table bridge %[1]s {
	chain lbin { type filter hook input priority 0; policy accept; %[2]s; }
	chain lbout { type filter hook output priority 0; policy accept; %[3]s; }
	chain lbfwd { type filter hook forward priority 0; policy accept; %[2]s; %[3]s; }
}
`, lossTable, rule("iifname"), rule("oifname"))
	cmd := n.Command(context.Background(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("testbed: nft in namespace %s: %v: %s (Debian package nftables)", n.Name, err, bytes.TrimSpace(out))
	}
	return &Loss{net: n, dev: dev}, nil
}

// Throttle limits what dev (a tap on the namespace's bridge) sends to its
// guest to mbit megabits per second (a token bucket, tc tbf), so a
// download lasts long enough to be interrupted; removed with the
// namespace.
func (n *Net) Throttle(dev string, mbit int) error {
	cmd := n.Command(context.Background(), "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
		"rate", fmt.Sprintf("%dmbit", mbit), "burst", "64kb", "latency", "100ms")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testbed: tc tbf on %s in namespace %s: %v: %s (Debian package iproute2)", dev, n.Name, err, bytes.TrimSpace(out))
	}
	return nil
}

// LossCounts are the frames a Loss saw and dropped.
type LossCounts struct {
	Seen, Dropped uint64
}

// Rate is the share of frames dropped, in percent.
func (c LossCounts) Rate() float64 {
	if c.Seen == 0 {
		return 0
	}
	return 100 * float64(c.Dropped) / float64(c.Seen)
}

// Counts reads the rules' counters.
func (l *Loss) Counts() (LossCounts, error) {
	out, err := l.net.Command(context.Background(), "nft", "-j", "list", "table", "bridge", lossTable).Output()
	if err != nil {
		return LossCounts{}, fmt.Errorf("testbed: nft list table bridge %s: %w", lossTable, err)
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Expr []struct {
					Counter *struct {
						Packets uint64 `json:"packets"`
					} `json:"counter"`
				} `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return LossCounts{}, fmt.Errorf("testbed: nft -j output: %w", err)
	}
	var c LossCounts
	for _, item := range doc.Nftables {
		if item.Rule == nil {
			continue
		}
		var counters []uint64
		for _, e := range item.Rule.Expr {
			if e.Counter != nil {
				counters = append(counters, e.Counter.Packets)
			}
		}
		if len(counters) != 2 {
			return LossCounts{}, fmt.Errorf("testbed: a loss rule has %d counters, want 2", len(counters))
		}
		c.Seen += counters[0]
		c.Dropped += counters[1]
	}
	return c, nil
}

// Remove stops the loss.
func (l *Loss) Remove() error {
	out, err := l.net.Command(context.Background(), "nft", "delete", "table", "bridge", lossTable).CombinedOutput()
	if err != nil {
		return fmt.Errorf("testbed: nft delete table bridge %s: %v: %s", lossTable, err, bytes.TrimSpace(out))
	}
	return nil
}

// RestartRegistry kills the registry (SIGKILL, by PID: no goodbye to its
// clients), keeps it down for down and starts it again with the same
// config, waiting until its admin socket answers.
func (s *Scenario) RestartRegistry(ctx context.Context, down time.Duration) error {
	s.StopRegistry()
	if s.logFile != nil {
		s.logFile.Close()
		s.logFile = nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(down):
	}
	return s.StartRegistry(ctx)
}

// WaitEvent polls the registry's event log until an event satisfies match,
// for at most timeout, and returns it.
func (s *Scenario) WaitEvent(ctx context.Context, match func(wire.Event) bool, timeout time.Duration) (wire.Event, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		evs, err := s.Client().Events()
		if err == nil {
			for _, e := range evs {
				if match(e) {
					return e, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return wire.Event{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return wire.Event{}, fmt.Errorf("testbed: no matching registry event within %s; log:\n%s", timeout, s.RegistryLogTail(20))
}

// BuildBusyboxImageBallast is BuildBusyboxImage with an incompressible
// file of ballast bytes at /opt/ballast in the root filesystem, so the
// squashfs download takes long enough to be interrupted.
func BuildBusyboxImageBallast(repo, bin, initBin, scratch, out string, ballast int64) error {
	return buildBusyboxImage(repo, bin, initBin, scratch, out, func(root string) error {
		dir := filepath.Join(root, "opt")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(dir, "ballast"))
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(f, io.LimitReader(ballastStream(), ballast)); err != nil {
			return err
		}
		return f.Close()
	})
}

// ballastStream is the ballast's content: from a fixed seed, so the image
// stays reproducible and tests can find the ballast's bytes in it.
func ballastStream() io.Reader {
	return rand.NewChaCha8([32]byte{'l', 'i', 'v', 'e', 'b', 'o', 'o', 't', 'p'})
}

// Ballast is the first n bytes of every image's /opt/ballast.
func Ballast(n int) []byte {
	b := make([]byte, n)
	io.ReadFull(ballastStream(), b)
	return b
}

// SetCmdline changes the host's cmdline-append in the config and has the
// running registry reload it.
func (s *Scenario) SetCmdline(cmdline string) error {
	b, err := os.ReadFile(s.Config)
	if err != nil {
		return err
	}
	old := fmt.Sprintf("cmdline-append: %q", s.Cmdline)
	if !bytes.Contains(b, []byte(old)) {
		return fmt.Errorf("testbed: %s has no line %s", s.Config, old)
	}
	b = bytes.Replace(b, []byte(old), []byte(fmt.Sprintf("cmdline-append: %q", cmdline)), 1)
	if err := os.WriteFile(s.Config, b, 0o644); err != nil {
		return err
	}
	s.Cmdline = cmdline
	_, err = s.Client().Reload()
	return err
}
