package httpd

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/livebootp/livebootp/bootp/boot"
	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/bootp/state"
	"github.com/livebootp/livebootp/wire"
)

//go:embed html
var htmlFS embed.FS

// statusTmpl is parsed once from the embedded file; it never changes after.
var statusTmpl = template.Must(template.New("status.html").Funcs(template.FuncMap{
	"ago":      ago,
	"clock":    clock,
	"size":     size,
	"dur":      dur,
	"after":    after,
	"stepsSum": stepsSum,
	"base":     func(s string) string { return path.Base(s) }, // a boot file URL's last element
}).ParseFS(htmlFS, "html/status.html"))

// Status is the status page's content; GET / answers it as JSON when asked
// (Accept: application/json or ?format=json).
type Status struct {
	Time   time.Time         `json:"time"`
	Config ConfigSummary     `json:"config"`
	Hosts  []wire.HostStatus `json:"hosts"`
	Events []wire.Event      `json:"events"` // newest first
	Booted int               `json:"booted"` // hosts whose last boot reported back
}

// ConfigSummary is the part of the configuration an operator checks first.
type ConfigSummary struct {
	File          string   `json:"file"`
	Interface     string   `json:"interface"`
	ServerAddress string   `json:"server_address"`
	Subnet        string   `json:"subnet"`
	Routers       []string `json:"routers,omitempty"`
	DNS           []string `json:"dns,omitempty"`
	DomainName    string   `json:"domain_name,omitempty"`
	BaseURL       string   `json:"base_url"`
	ImagesDir     string   `json:"images_dir"`
	KeysDir       string   `json:"ssh_authorized_keys_dir"`
	TFTPRoot      string   `json:"tftp_root"`
	ProxyDHCP     bool     `json:"proxy_dhcp"`
	BootUnknown   string   `json:"boot_unknown,omitempty"`
	Hosts         int      `json:"hosts"`
}

func summarize(cfg *config.Config) ConfigSummary {
	reg := cfg.Registry
	s := ConfigSummary{
		File:        cfg.File,
		Interface:   reg.Interface,
		Subnet:      reg.Subnet.String(),
		DomainName:  reg.DomainName,
		BaseURL:     boot.BaseURL(cfg),
		ImagesDir:   reg.ImagesDir,
		KeysDir:     reg.KeysDir,
		TFTPRoot:    reg.TFTPRoot,
		ProxyDHCP:   reg.ProxyDHCP,
		BootUnknown: reg.BootUnknown,
		Hosts:       len(cfg.Hosts),
	}
	if reg.ServerAddress.IsValid() {
		s.ServerAddress = reg.ServerAddress.String()
	}
	if !reg.Subnet.IsValid() {
		s.Subnet = ""
	}
	for _, a := range reg.Routers {
		s.Routers = append(s.Routers, a.String())
	}
	for _, a := range reg.DomainNameServers {
		s.DNS = append(s.DNS, a.String())
	}
	return s
}

func (h *Handler) status() Status {
	ev := h.Tracker.Events()
	slices.Reverse(ev)
	if len(ev) > maxEventsShown {
		ev = ev[:maxEventsShown]
	}
	st := Status{
		Time:   h.Now(),
		Config: summarize(h.Backend.Config()),
		Hosts:  h.Tracker.Hosts(),
		Events: ev,
	}
	for _, hs := range st.Hosts {
		if hs.Phase == state.PhaseReported {
			st.Booted++
		}
	}
	return st
}

func (h *Handler) serveStatus(w http.ResponseWriter, r *http.Request) {
	st := h.status()
	w.Header().Set("Vary", "Accept")
	w.Header().Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		writeJSON(w, st)
		return
	}
	var buf bytes.Buffer
	if err := statusTmpl.Execute(&buf, st); err != nil {
		h.Log.Warn("http: status page", "err", err)
		http.Error(w, "rendering the status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.Write(buf.Bytes())
}

// wantsJSON: ?format=json (or html) decides; otherwise JSON when the client
// accepts application/json and ranks it above text/html. Browsers send
// text/html first; curl sends */* and gets the page.
func wantsJSON(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "json":
		return true
	case "html":
		return false
	}
	jsonQ, htmlQ := -1.0, -1.0
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		switch mt {
		case "application/json":
			jsonQ = max(jsonQ, q)
		case "text/html":
			htmlQ = max(htmlQ, q)
		}
	}
	return jsonQ > 0 && jsonQ >= htmlQ
}

// ago is a time relative to now for the page: "12s ago".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(d.Minutes())%60)
	}
	return t.Format("2006-01-02")
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.Local().Format("15:04:05")
}

// after says how long after start t happened: the kernel-to-initrd gap on
// the page.
func after(start, t time.Time) string {
	if start.IsZero() || t.IsZero() || t.Before(start) {
		return ""
	}
	return "+" + dur(t.Sub(start))
}

// size is n bytes in binary units.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func stepsSum(steps []wire.Step) time.Duration {
	var d time.Duration
	for _, s := range steps {
		d += s.Duration
	}
	return d
}
