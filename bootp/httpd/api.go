package httpd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/livebootp/livebootp/bootp/boot"
	"github.com/livebootp/livebootp/bootp/state"
	"github.com/livebootp/livebootp/wire"
)

// reportReadTimeout bounds reading a boot report body; the server has no
// ReadTimeout (it would cut long downloads), so this handler sets its own.
const reportReadTimeout = 30 * time.Second

// serveScript serves /boot/<mac>.ipxe, the boot script iPXE chains to.
func (h *Handler) serveScript(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store") // it changes with the config
	name := r.PathValue("script")
	if m, ok := strings.CutSuffix(name, ".keys"); ok {
		h.serveHostKeys(w, r, m)
		return
	}
	macText, ok := strings.CutSuffix(name, ".ipxe")
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "#!ipxe\necho livebootp: %s is not a boot script; the registry serves %s<mac>.ipxe\n", name, wire.PathBoot)
		return
	}
	mac, err := boot.ParseMAC(macText)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "#!ipxe\necho livebootp: %s\n", ipxeSafe(err.Error()))
		return
	}
	cfg := h.Backend.Config()
	host, ok := cfg.HostByMAC(mac)
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		n, _ := fmt.Fprintf(w, "#!ipxe\necho livebootp: MAC %s is not in the registry's config file %s: add a host with hardware-ethernet: \"%s\" under hosts:\n",
			boot.MACString(mac), ipxeSafe(cfg.File), boot.MACString(mac))
		h.Tracker.Fetch(mac, "http", r.URL.Path+" (not in config)", state.PhaseScript, int64(n))
		return
	}
	n, _ := io.WriteString(w, boot.IPXEScript(cfg, host))
	h.Tracker.Fetch(mac, "http", r.URL.Path, state.PhaseScript, int64(n))
}

// ipxeSafe keeps text from ending an iPXE echo line or expanding settings.
func ipxeSafe(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ", "${", "$ {").Replace(s)
}

func (h *Handler) serveHosts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, h.Tracker.Hosts())
}

func (h *Handler) serveEvents(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, h.Tracker.Events())
}

// serveReport takes the boot report a host's init helper posts.
//
// Reports are accepted only from the host's own fixed address: the report
// is unauthenticated and the address the registry itself handed out is the
// only identity a target has, so another machine on the LAN cannot rewrite
// a host's boot state. With proxy-dhcp another server assigns addresses, the
// fixed address means nothing, and reports are accepted from any address
// (the log names the sender).
func (h *Handler) serveReport(w http.ResponseWriter, r *http.Request) {
	cfg := h.Backend.Config()
	mac, err := boot.ParseMAC(r.PathValue("mac"))
	if err != nil {
		http.Error(w, "boot report: "+err.Error(), http.StatusBadRequest)
		return
	}
	host, ok := cfg.HostByMAC(mac)
	if !ok {
		http.Error(w, fmt.Sprintf("boot report: MAC %s is not in the registry's config file %s", boot.MACString(mac), cfg.File), http.StatusNotFound)
		return
	}
	from := remoteAddr(r)
	if !cfg.Registry.ProxyDHCP && from != host.Address {
		http.Error(w, fmt.Sprintf("boot report for %s (%s) must come from its fixed address %s, not %s", host.Name, boot.MACString(mac), host.Address, from), http.StatusForbidden)
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(reportReadTimeout))
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxReportBytes))
	var rep wire.Report
	err = dec.Decode(&rep)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			http.Error(w, fmt.Sprintf("boot report for %s: body larger than %d bytes", host.Name, MaxReportBytes), http.StatusRequestEntityTooLarge)
			return
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			err = fmt.Errorf("%w (at byte %d)", err, se.Offset)
		}
		http.Error(w, fmt.Sprintf("boot report for %s: bad JSON: %v; the body must be one wire.Report object", host.Name, err), http.StatusBadRequest)
		return
	}
	h.Tracker.Report(mac, &rep)
	h.Log.Info("boot report", "host", host.Name, "mac", boot.MACString(mac), "from", from.String(),
		"steps", len(rep.Steps), "warnings", len(rep.Warnings), "error", rep.Error)
	w.WriteHeader(http.StatusNoContent)
}

// writeJSON writes v indented: the API is read by people with curl as often
// as by programs.
func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "encoding JSON: "+err.Error(), http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
}
