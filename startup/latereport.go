package startup

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/livebootp/livebootp/startup/fetch"
	"github.com/livebootp/livebootp/startup/report"
	"github.com/livebootp/livebootp/wire"
)

// A boot report the registry did not take (restarting, or its network
// not there yet) is sent again after switch_root by a child process, every
// 2 s for up to 2 minutes, so the registry still learns how the boot went;
// the boot does not wait for it. When the RSA host key's child is handed
// over it carries the report instead (with the key's fingerprint).

// reportArg as livebootp-init's first argument makes it the late report
// child; the report comes on its stdin as lateReport JSON.
const reportArg = "--livebootp-report"

// lateFor is how long a late report is retried.
const lateFor = 2 * time.Minute

type lateReport struct {
	Registry string      `json:"registry"`
	MAC      string      `json:"mac"`
	Insecure bool        `json:"insecure,omitempty"`
	Report   wire.Report `json:"report"`
	Debug    bool        `json:"debug,omitempty"`
}

// lateReport is r to send to this boot's registry; Registry is "" when
// there is none to send it to.
func (s *State) lateReport(r wire.Report) lateReport {
	l := lateReport{MAC: s.MAC, Insecure: s.Args.Insecure, Report: r, Debug: s.Args.Debug}
	if s.MAC != "" {
		l.Registry = s.Args.Registry
	}
	return l
}

// reportLater starts the late report child with r.
func (s *State) reportLater(r wire.Report) error {
	b, err := json.Marshal(s.lateReport(r))
	if err != nil {
		return err
	}
	in, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer in.Close()
	cmd := self(reportArg)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, s.Console, s.Console
	if err := cmd.Start(); err != nil {
		w.Close()
		return err
	}
	go cmd.Wait()       // or the image's init reaps it
	_, err = w.Write(b) // at most a few KiB: the pipe holds it
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}

// runLateReport is the late report child's main.
func runLateReport(stdin io.Reader, console io.Writer) error {
	var l lateReport
	if err := json.NewDecoder(stdin).Decode(&l); err != nil {
		return fmt.Errorf("late boot report: %w", err)
	}
	return sendLate(l, time.Now().Add(lateFor), time.Sleep, console)
}

// sendLate sends l.Report until the registry takes it or until deadline,
// pausing with sleep between tries, and says on the console how it went.
func sendLate(l lateReport, deadline time.Time, sleep func(time.Duration), console io.Writer) error {
	client := fetch.NewClient(l.Insecure)
	start := time.Now()
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := report.Send(ctx, client, l.Registry, l.MAC, l.Report)
		cancel()
		if err == nil {
			if l.Debug {
				fmt.Fprintf(console, "livebootp: boot report sent after switch_root, %s later (try %d)\n", time.Since(start).Round(time.Second), try)
			}
			return nil
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(console, "livebootp: WARNING: boot report not sent in %s: %v\n", time.Since(start).Round(time.Second), err)
			return err
		}
		sleep(2 * time.Second)
	}
}
