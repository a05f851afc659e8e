// Package registry runs the registry: it loads the configuration, starts the
// DHCP, TFTP, HTTP and router-advertisement servers over one shared view of
// it, reloads on request or when the file changes, and serves the admin
// socket the CLI talks to. A configuration that fails to load never
// replaces the running one. It never parses flags or exits: cmds/livebootp
// does that.
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/livebootp/livebootp/bootp/boot"
	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/bootp/state"
)

// Options are what a registry needs from its caller.
type Options struct {
	ConfigPath string
	Log        *slog.Logger
	Detector   config.Detector  // nil: config.NetlinkDetector
	Now        func() time.Time // nil: time.Now
	// WatchInterval is how often the config file is checked for changes;
	// 0 means every second, negative turns watching off.
	WatchInterval time.Duration
	// Version is shown by status.
	Version string
}

// Registry is a running (or ready to run) registry.
type Registry struct {
	opts    Options
	log     *slog.Logger
	cfg     atomic.Pointer[config.Config]
	tracker *state.Tracker
	metrics *prometheus.Registry
	booter  boot.Booter
	started time.Time

	mu         sync.Mutex
	lastLoad   time.Time
	lastErr    error
	loads      int
	fileStamp  stamp
	listeners  []string // what is listening, for status
	reloadHook func(*config.Config)
}

// New loads the configuration. A configuration with problems is an error:
// a registry never starts on a broken file.
func New(opts Options) (*Registry, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Detector == nil {
		opts.Detector = config.NetlinkDetector{}
	}
	r := &Registry{
		opts:    opts,
		log:     opts.Log,
		tracker: state.New(1000, opts.Now),
		metrics: prometheus.NewRegistry(),
		started: opts.Now(),
	}
	r.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	st, _ := statFile(opts.ConfigPath)
	cfg, err := r.load()
	if err != nil {
		return nil, err
	}
	r.fileStamp = st
	r.swap(cfg)
	return r, nil
}

func (r *Registry) load() (*config.Config, error) {
	return config.Load(r.opts.ConfigPath, config.Options{Detector: r.opts.Detector})
}

func (r *Registry) swap(cfg *config.Config) {
	r.cfg.Store(cfg)
	r.booter = boot.Booter{Root: cfg.Registry.TFTPRoot}
	known := make([]state.Known, 0, len(cfg.Hosts))
	for _, h := range cfg.Hosts {
		known = append(known, state.Known{Name: h.Name, MAC: h.MAC.String(), Address: h.Address.String(), Image: h.Image})
	}
	r.tracker.SetHosts(known)
	r.mu.Lock()
	r.lastLoad, r.lastErr = r.opts.Now(), nil
	r.loads++
	hook := r.reloadHook
	r.mu.Unlock()
	if hook != nil {
		hook(cfg)
	}
}

// Config is the running configuration. Servers call it once per request and
// use that snapshot for the whole request.
func (r *Registry) Config() *config.Config { return r.cfg.Load() }

// Tracker is the boot state of every host.
func (r *Registry) Tracker() *state.Tracker { return r.tracker }

// Reload loads the configuration file again. On success the new one serves
// the next request; on failure the running one stays and the error (with
// file:line of every problem) is returned and logged.
func (r *Registry) Reload() error {
	st, _ := statFile(r.opts.ConfigPath)
	cfg, err := r.load()
	r.mu.Lock()
	r.fileStamp = st
	r.mu.Unlock()
	if err != nil {
		r.mu.Lock()
		r.lastErr = err
		r.mu.Unlock()
		r.log.Error("configuration not reloaded; the running one stays", "file", r.opts.ConfigPath, "err", err)
		r.tracker.Note("config", "reload failed, running configuration kept: "+firstLine(err.Error()))
		return err
	}
	old := r.Config()
	if old != nil && listenChanged(old, cfg) {
		r.log.Warn("listen addresses or interface changed; they take effect on restart", "file", r.opts.ConfigPath)
	}
	r.swap(cfg)
	r.log.Info("configuration reloaded", "summary", cfg.Summary())
	r.tracker.Note("config", "reloaded: "+cfg.Summary())
	return nil
}

func listenChanged(a, b *config.Config) bool {
	x, y := a.Registry, b.Registry
	return x.Interface != y.Interface || x.DHCPListen != y.DHCPListen || x.TFTPListen != y.TFTPListen ||
		x.HTTPListen != y.HTTPListen || x.AdminSocket != y.AdminSocket || x.ProxyDHCP != y.ProxyDHCP ||
		x.RouterAdvertisements != y.RouterAdvertisements
}

// stamp identifies a version of the config file. Editors that write a new
// file and rename it change the inode; in-place writes change size or mtime.
type stamp struct {
	ino   uint64
	size  int64
	mtime time.Time
}

func (r *Registry) watch(ctx context.Context) {
	every := r.opts.WatchInterval
	if every == 0 {
		every = time.Second
	}
	if every < 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := statFile(r.opts.ConfigPath)
		if err != nil {
			continue // mid-rename, or removed: keep serving what we have
		}
		r.mu.Lock()
		changed := st != r.fileStamp
		r.mu.Unlock()
		if changed {
			r.log.Info("configuration file changed; reloading", "file", r.opts.ConfigPath)
			_ = r.Reload()
		}
	}
}

// Status is what `livebootp status` shows.
type Status struct {
	Version    string    `json:"version"`
	Started    time.Time `json:"started"`
	Uptime     string    `json:"uptime"`
	ConfigFile string    `json:"config_file"`
	Summary    string    `json:"summary"`
	LastLoad   time.Time `json:"last_load"`
	Loads      int       `json:"loads"`
	LastError  string    `json:"last_error,omitempty"`
	Listening  []string  `json:"listening"`
	Hosts      int       `json:"hosts"`
	Interfaces []string  `json:"interfaces,omitempty"`
}

// Status reports the registry's own state.
func (r *Registry) Status() Status {
	cfg := r.Config()
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Status{
		Version: r.opts.Version, Started: r.started, Uptime: r.opts.Now().Sub(r.started).Round(time.Second).String(),
		ConfigFile: r.opts.ConfigPath, Summary: cfg.Summary(), LastLoad: r.lastLoad, Loads: r.loads,
		Listening: append([]string(nil), r.listeners...), Hosts: len(cfg.Hosts),
	}
	if r.lastErr != nil {
		s.LastError = r.lastErr.Error()
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, ifi := range ifs {
			addrs, _ := ifi.Addrs()
			line := ifi.Name + " " + ifi.HardwareAddr.String()
			if ifi.Flags&net.FlagUp == 0 {
				line += " DOWN"
			}
			for _, a := range addrs {
				line += " " + a.String()
			}
			s.Interfaces = append(s.Interfaces, line)
		}
	}
	return s
}

func (r *Registry) listening(what string) {
	r.mu.Lock()
	r.listeners = append(r.listeners, what)
	r.mu.Unlock()
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i] + " …"
		}
	}
	return s
}

func statFile(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{ino: inode(fi), size: fi.Size(), mtime: fi.ModTime()}, nil
}

// errJoin collects server errors in the order they happen.
type errJoin struct {
	mu   sync.Mutex
	errs []error
}

func (e *errJoin) add(what string, err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	e.mu.Lock()
	e.errs = append(e.errs, fmt.Errorf("%s: %w", what, err))
	e.mu.Unlock()
}

func (e *errJoin) err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return errors.Join(e.errs...)
}
