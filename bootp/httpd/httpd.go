// Package httpd is the registry's HTTP side: per-host iPXE boot scripts,
// image files (kernel, initrd, squashfs) with Range and conditional
// requests, boot loaders for UEFI HTTP boot, SSH authorized keys, the boot
// report endpoint the init helper posts to, the JSON API, the status page and
// Prometheus metrics. It tells the state.Tracker what each host fetched.
//
// It never serves a file outside the directories the configuration names
// (every lookup goes through an os.Root), never decides what a host boots
// (bootp/boot does) and never keeps configuration of its own: every request
// reads the Backend's current snapshot, so a reload takes effect on the next
// request.
package httpd

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/bootp/state"
	"github.com/livebootp/livebootp/wire"
)

// Backend hands out the configuration in force. The registry swaps it
// atomically on reload; the handler asks once per request and uses that one
// snapshot to the end of the request.
type Backend interface {
	Config() *config.Config
}

// Defaults New fills in.
const (
	// DefaultStallTimeout is how long one chunk (stallChunk) of a file
	// download may take. It bounds a client that stops reading without
	// bounding a big, slow but progressing download, which a server-wide
	// WriteTimeout would cut off.
	DefaultStallTimeout = 30 * time.Second
	// DefaultWriteTimeout bounds writing any other response.
	DefaultWriteTimeout = 30 * time.Second
	// MaxReportBytes bounds a boot report body.
	MaxReportBytes = 1 << 20
	// maxEventsShown bounds the events on the status page.
	maxEventsShown = 100
)

// Handler serves the registry's HTTP routes. Build it with New; the exported
// fields may be changed before the first request (tests set Now).
type Handler struct {
	Backend Backend
	Tracker *state.Tracker
	Log     *slog.Logger
	Metrics prometheus.Gatherer // what /metrics exposes
	Now     func() time.Time    // the status page's clock; deadlines use the real one

	StallTimeout time.Duration // per chunk of a file download; see DefaultStallTimeout
	WriteTimeout time.Duration // any other response; see DefaultWriteTimeout

	chunk   int64 // bytes per StallTimeout; stallChunk except in tests
	mux     *http.ServeMux
	metrics *metrics
}

// New builds a Handler. Its metrics are registered on reg and /metrics
// serves reg; with a nil reg the handler gets a registry of its own.
func New(b Backend, t *state.Tracker, log *slog.Logger, reg *prometheus.Registry) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	h := &Handler{
		Backend:      b,
		Tracker:      t,
		Log:          log,
		Metrics:      reg,
		Now:          time.Now,
		StallTimeout: DefaultStallTimeout,
		WriteTimeout: DefaultWriteTimeout,
		chunk:        stallChunk,
		metrics:      newMetrics(reg, log),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+wire.PathBoot+"{script}", h.serveScript)
	mux.HandleFunc("GET "+wire.PathImages+"{name}/{version}/{file}", h.serveImage)
	mux.HandleFunc("GET "+wire.PathKeys+"{name}", h.serveKeys)
	mux.HandleFunc("GET "+wire.PathLoaders+"{file}", h.serveLoader)
	mux.HandleFunc("GET "+wire.PathHosts, h.serveHosts)
	mux.HandleFunc("GET /api/v1/events", h.serveEvents)
	mux.HandleFunc("POST "+wire.PathReport+"{mac}", h.serveReport)
	mux.Handle("GET "+wire.PathMetrics, promhttp.HandlerFor(h.Metrics, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET "+wire.PathStatus+"{$}", h.serveStatus)
	h.mux = mux
	return h
}

// ServeHTTP refuses paths that try to leave a directory before any route
// sees them, then routes, logs and counts the request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Deadlines and durations use the real clock: h.Now may be a test's
	// fake, and a deadline in its past would fail every write.
	start := time.Now()
	rec := newRecorder(w, r)
	if h.WriteTimeout > 0 {
		// Errors mean the writer has no deadlines (httptest); nothing to do.
		_ = rec.rc.SetWriteDeadline(start.Add(h.WriteTimeout))
	}
	var pattern string
	if msg := badPath(r.URL); msg != "" {
		http.Error(rec, msg, http.StatusBadRequest)
		pattern = "refused"
	} else {
		h.mux.ServeHTTP(rec, r)
		pattern = r.Pattern // set by the mux; "" when nothing matched
		if pattern == "" {
			pattern = "none"
		}
	}
	d := time.Since(start)
	h.metrics.observe(pattern, rec.status, rec.bytes, d)
	level := slog.LevelDebug
	if rec.status >= 500 {
		level = slog.LevelWarn
	}
	h.Log.Log(r.Context(), level, "http", "method", r.Method, "path", r.URL.EscapedPath(), "remote", r.RemoteAddr,
		"status", rec.status, "bytes", rec.bytes, "duration", d)
}

// badPath explains why a request path is refused outright, or returns "".
// The mux would redirect `..` to a cleaned path and match `%2F` inside a
// wildcard; a boot client never sends either, so both are refused here, at
// one place, before they reach a file lookup (which os.Root confines anyway).
func badPath(u *url.URL) string {
	if !strings.HasPrefix(u.Path, "/") {
		return "path must start with /"
	}
	esc := strings.ToLower(u.EscapedPath())
	if strings.Contains(esc, "%2f") || strings.Contains(esc, "%5c") || strings.ContainsAny(u.Path, "\\\x00") {
		return "encoded slash, backslash or NUL in path"
	}
	segs := strings.Split(u.Path[1:], "/")
	for i, s := range segs {
		switch {
		case s == "" && i != len(segs)-1:
			return "empty segment (//) in path"
		case s == "." || s == "..":
			return "dot segment in path"
		}
	}
	return ""
}

// NewServer wraps h in an http.Server with the registry's timeouts. There is
// no WriteTimeout: a 1 GiB squashfs over a slow link may take many minutes,
// so Handler sets a write deadline per request and pushes it forward while
// a download makes progress. Nor is there a ReadTimeout, which would also
// fire during a long download; the report handler bounds its body read.
func NewServer(addr string, h http.Handler) *http.Server {
	s := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// The handler needs the connection itself to cork it around file
		// bodies; see recorder.ReadFrom.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	if hh, ok := h.(*Handler); ok && hh.Log != nil {
		s.ErrorLog = slog.NewLogLogger(hh.Log.Handler(), slog.LevelWarn)
	}
	return s
}

// connKey is the context key under which NewServer's servers store each
// request's net.Conn.
type connKey struct{}

// remoteAddr is the client's address, unmapped, or the zero Addr.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// hostOf finds the configured host that sent r, by its fixed address.
func hostOf(cfg *config.Config, r *http.Request) (*config.Host, bool) {
	a := remoteAddr(r)
	if !a.IsValid() {
		return nil, false
	}
	return cfg.HostByAddress(a)
}
