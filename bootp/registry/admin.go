package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/livebootp/livebootp/wire"
)

// The admin socket speaks HTTP over a Unix socket: local, guarded by file
// permissions (0600, root), and curl can talk to it when the CLI cannot.
const (
	adminStatus = "/v1/status"
	adminHosts  = "/v1/hosts"
	adminEvents = "/v1/events"
	adminReload = "/v1/reload"
)

func (r *Registry) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+adminStatus, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, r.Status()) })
	mux.HandleFunc("GET "+adminHosts, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, r.tracker.Hosts()) })
	mux.HandleFunc("GET "+adminEvents, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, r.tracker.Events()) })
	mux.HandleFunc("POST "+adminReload, func(w http.ResponseWriter, _ *http.Request) {
		if err := r.Reload(); err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, reloadResult{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, reloadResult{Summary: r.Config().Summary()})
	})
	return mux
}

type reloadResult struct {
	Summary string `json:"summary,omitempty"`
	Error   string `json:"error,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// listenAdmin opens the admin socket. A stale socket file left by a crash is
// replaced; a live one (another registry answering) is an error.
func listenAdmin(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("admin socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s: another registry is running and answering there; stop it or set admin-socket to another path", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return ln, nil
}

// Client talks to a running registry's admin socket.
type Client struct {
	Socket string
}

func (c Client) http() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.Socket)
		}},
	}
}

func (c Client) do(method, path string, out any) error {
	req, err := http.NewRequest(method, "http://livebootp"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) {
			return fmt.Errorf("no registry answers on %s (%v): is `livebootp serve` running, and is this its admin-socket?", c.Socket, ne.Err)
		}
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s answered %s: %w", c.Socket, resp.Status, err)
	}
	return nil
}

// Status asks the registry for its own state.
func (c Client) Status() (Status, error) {
	var s Status
	return s, c.do(http.MethodGet, adminStatus, &s)
}

// Hosts asks for every host's boot state.
func (c Client) Hosts() ([]wire.HostStatus, error) {
	var h []wire.HostStatus
	return h, c.do(http.MethodGet, adminHosts, &h)
}

// Events asks for the recent events, oldest first.
func (c Client) Events() ([]wire.Event, error) {
	var e []wire.Event
	return e, c.do(http.MethodGet, adminEvents, &e)
}

// Reload asks the registry to load its configuration file again. The
// returned error carries every problem of a file that did not load.
func (c Client) Reload() (string, error) {
	var res reloadResult
	if err := c.do(http.MethodPost, adminReload, &res); err != nil {
		return "", err
	}
	if res.Error != "" {
		return "", errors.New(res.Error)
	}
	return res.Summary, nil
}

// WriteHosts prints boot states as the table `livebootp hosts` shows.
func WriteHosts(w io.Writer, hosts []wire.HostStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tMAC\tADDRESS\tIMAGE\tPHASE\tLAST SEEN\tBOOTS\tLOADER\tIMAGE BYTES\tLAST")
	for _, h := range hosts {
		name := h.Name
		if h.Unknown {
			name = "(unknown)"
		}
		seen := "never"
		if !h.LastSeen.IsZero() {
			seen = now.Sub(h.LastSeen).Round(time.Second).String() + " ago"
		}
		last := h.LastMessage
		if h.LastReport != nil {
			last = reportLine(h.LastReport)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", name, h.MAC, dash(h.Address), dash(h.Image), h.Phase,
			seen, h.BootCount, dash(h.BootFile), bytesString(h.ImageBytes), dash(last))
	}
	return tw.Flush()
}

func reportLine(r *wire.Report) string {
	var b strings.Builder
	if r.Error != "" {
		fmt.Fprintf(&b, "FAILED: %s", r.Error)
	} else {
		fmt.Fprintf(&b, "booted in %s", r.Uptime.Round(10*time.Millisecond))
	}
	if n := len(r.Warnings); n > 0 {
		fmt.Fprintf(&b, ", %d warning(s): %s", n, r.Warnings[0])
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func bytesString(n int64) string {
	switch {
	case n == 0:
		return "-"
	case n < 1<<20:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}
