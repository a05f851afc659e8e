package httpd

import (
	"fmt"
	"net/http"

	"github.com/livebootp/livebootp/bootp/boot"
)

// serveHostKeys serves /boot/<mac>.keys: the ssh-authorized-keys file of
// the host with that MAC. The init helper on the target knows its MAC but
// not the name of its key file, and fetches its keys here on every boot.
func (h *Handler) serveHostKeys(w http.ResponseWriter, r *http.Request, macText string) {
	mac, err := boot.ParseMAC(macText)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cfg := h.Backend.Config()
	host, ok := cfg.HostByMAC(mac)
	if !ok {
		http.Error(w, fmt.Sprintf("MAC %s is not in the registry's config file %s", boot.MACString(mac), cfg.File), http.StatusNotFound)
		return
	}
	if host.SSHAuthorizedKeys == "" {
		http.Error(w, fmt.Sprintf("host %s has no ssh-authorized-keys in %s", host.Name, cfg.File), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store") // edited between boots
	h.serveFile(w, r, cfg, "ssh-authorized-keys-dir", cfg.Registry.KeysDir, host.SSHAuthorizedKeys, "")
}
