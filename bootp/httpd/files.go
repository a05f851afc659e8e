package httpd

import (
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"strconv"

	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/bootp/state"
	"github.com/livebootp/livebootp/wire"
)

// serveImage serves images/<name>/<version>/<file> from ImagesDir and tells
// the tracker which boot phase the requesting host reached.
func (h *Handler) serveImage(w http.ResponseWriter, r *http.Request) {
	cfg := h.Backend.Config()
	name, version, file := r.PathValue("name"), r.PathValue("version"), r.PathValue("file")
	rel := path.Join(name, version, file)
	phase := ""
	switch file {
	case wire.ImageKernel:
		phase = state.PhaseKernel
	case wire.ImageInitrd:
		phase = state.PhaseInitrd
	case wire.ImageSquashfs:
		phase = state.PhaseImage
	}
	h.serveFile(w, r, cfg, "images-dir", cfg.Registry.ImagesDir, rel, phase)
}

// serveKeys serves a file of ssh-authorized-keys-dir, which the init helper
// installs as root's authorized_keys.
func (h *Handler) serveKeys(w http.ResponseWriter, r *http.Request) {
	cfg := h.Backend.Config()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	h.serveFile(w, r, cfg, "ssh-authorized-keys-dir", cfg.Registry.KeysDir, r.PathValue("name"), "")
}

// serveLoader serves a boot loader from the top of the TFTP root, for UEFI
// HTTP boot clients, which get a URL instead of a TFTP file name.
func (h *Handler) serveLoader(w http.ResponseWriter, r *http.Request) {
	cfg := h.Backend.Config()
	h.serveFile(w, r, cfg, "tftp-root", cfg.Registry.TFTPRoot, r.PathValue("file"), state.PhaseLoader)
}

// serveFile serves rel, a slash-separated path, from dir (the config key
// named setting) with Range and conditional requests. The lookup goes
// through os.OpenRoot, which refuses `..`, absolute paths and symlinks that
// lead out of dir, however they are spelled.
func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, cfg *config.Config, setting, dir, rel, phase string) {
	if dir == "" {
		http.Error(w, setting+" is not set in the registry's configuration", http.StatusNotFound)
		return
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		h.Log.Warn("http: cannot open directory", "setting", setting, "dir", dir, "err", err)
		http.Error(w, fmt.Sprintf("%s %s cannot be opened on the registry; check the configuration", setting, dir), http.StatusInternalServerError)
		return
	}
	defer root.Close()
	f, err := root.Open(rel)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrPermission):
			// The registry cannot read its own file: the operator must fix it.
			h.Log.Warn("http: cannot read file", "setting", setting, "dir", dir, "path", rel, "err", err)
		case !errors.Is(err, fs.ErrNotExist):
			// Paths and symlinks that lead out of the root land here.
			h.Log.Info("http: refused file", "setting", setting, "path", rel, "remote", r.RemoteAddr, "err", err)
		}
		http.Error(w, fmt.Sprintf("%s not found in %s", rel, setting), http.StatusNotFound)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.Error(w, fmt.Sprintf("%s not found in %s", rel, setting), http.StatusNotFound)
		return
	}
	hdr := w.Header()
	if hdr.Get("Content-Type") == "" {
		// Set here so ServeContent does not read the file to sniff it.
		ct := mime.TypeByExtension(path.Ext(rel))
		if ct == "" {
			ct = "application/octet-stream"
		}
		hdr.Set("Content-Type", ct)
	}
	// Size and modification time change whenever an image is rebuilt; that
	// is all a cache or an If-Range needs, without hashing gigabytes.
	hdr.Set("ETag", `"`+strconv.FormatInt(fi.Size(), 16)+"-"+strconv.FormatInt(fi.ModTime().UnixNano(), 16)+`"`)
	rec, _ := w.(*recorder)
	if rec != nil {
		rec.stall, rec.chunk = h.StallTimeout, h.chunk
		defer func() { rec.stall = 0 }()
	}
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
	if rec == nil || phase == "" || r.Method != http.MethodGet {
		return
	}
	h.metrics.fileBytes.WithLabelValues(phase).Add(float64(rec.bytes))
	if rec.status != http.StatusOK && rec.status != http.StatusPartialContent {
		return
	}
	host, ok := hostOf(cfg, r)
	if !ok {
		return // not a configured host: nothing to track it by
	}
	h.Tracker.Fetch(host.MAC, "http", r.URL.Path, phase, rec.bytes)
}
