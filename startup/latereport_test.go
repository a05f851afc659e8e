package startup

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livebootp/livebootp/wire"
)

// flakyRegistry answers 503 to its first down report requests, then takes
// them.
type flakyRegistry struct {
	mu      sync.Mutex
	down    int
	tries   int
	reports []wire.Report
}

func (f *flakyRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tries++
	if f.tries <= f.down {
		http.Error(w, "restarting", http.StatusServiceUnavailable)
		return
	}
	var rep wire.Report
	if r.URL.Path != wire.PathReport+testMAC || json.NewDecoder(r.Body).Decode(&rep) != nil {
		http.Error(w, "bad report", http.StatusBadRequest)
		return
	}
	f.reports = append(f.reports, rep)
}

func (f *flakyRegistry) got() []wire.Report {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]wire.Report(nil), f.reports...)
}

// TestSendLate: tried until the registry takes it; given up after the
// deadline with a warning naming the failure.
func TestSendLate(t *testing.T) {
	reg := &flakyRegistry{down: 5}
	ts := httptest.NewServer(reg)
	defer ts.Close()
	l := lateReport{Registry: ts.URL, MAC: testMAC, Report: wire.Report{Hostname: "web1"}, Debug: true}
	var console bytes.Buffer
	sleeps := 0
	if err := sendLate(l, time.Now().Add(time.Hour), func(time.Duration) { sleeps++ }, &console); err != nil {
		t.Fatal(err)
	}
	if got := reg.got(); len(got) != 1 || got[0].Hostname != "web1" || sleeps != 2 {
		t.Errorf("reports %+v after %d pauses", got, sleeps)
	}
	if !strings.Contains(console.String(), "boot report sent after switch_root") {
		t.Errorf("console: %q", console.String())
	}

	reg = &flakyRegistry{down: 1000}
	ts2 := httptest.NewServer(reg)
	defer ts2.Close()
	l.Registry = ts2.URL
	console.Reset()
	if err := sendLate(l, time.Now(), func(time.Duration) {}, &console); err == nil || !strings.Contains(console.String(), "WARNING: boot report not sent") {
		t.Errorf("past the deadline: %v, console %q", err, console.String())
	}
}

// TestReportLater: the late report child (this test binary, as
// livebootp-init runs itself) gets the report and sends it once the
// registry is back.
func TestReportLater(t *testing.T) {
	reg := &flakyRegistry{down: 3}
	ts := httptest.NewServer(reg)
	defer ts.Close()
	s := &State{Console: os.Stderr, MAC: testMAC}
	s.Args.Registry = ts.URL
	if err := s.reportLater(wire.Report{Hostname: "web1", Uptime: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); len(reg.got()) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the late report child sent nothing in a minute")
		}
	}
	if r := reg.got()[0]; r.Hostname != "web1" || r.Uptime != 5*time.Second {
		t.Errorf("report %+v", r)
	}
}

// TestRSAChildHandoverRetry: when the init's own report failed, the RSA
// child installs the key in /etc/ssh first (sshd must not wait for the
// registry) and then sends the report, with the key, until it is taken.
func TestRSAChildHandoverRetry(t *testing.T) {
	reg := &flakyRegistry{down: 3}
	ts := httptest.NewServer(reg)
	defer ts.Close()
	etc := t.TempDir()
	d, err := os.Open(etc)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := startRSAChild(os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	h := handover{Comment: "root@web1", Dirs: []string{"etc"}, Retry: true, lateReport: lateReport{Registry: ts.URL, MAC: testMAC,
		Report: wire.Report{Hostname: "web1", HostKeys: []string{"ED25519 SHA256:x"}}}}
	if err := c.handOver(h, []*os.File{d}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); len(reg.got()) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no report in a minute")
		}
	}
	if _, err := os.Stat(etc + "/ssh_host_rsa_key"); err != nil {
		t.Error(err)
	}
	if r := reg.got()[0]; len(r.HostKeys) != 2 || !strings.HasPrefix(r.HostKeys[1], "RSA SHA256:") {
		t.Errorf("report host keys %q", r.HostKeys)
	}
}
