package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/livebootp/livebootp/bootp/boot"
	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/bootp/dhcp"
	"github.com/livebootp/livebootp/bootp/httpd"
	"github.com/livebootp/livebootp/bootp/ra"
	"github.com/livebootp/livebootp/bootp/state"
	"github.com/livebootp/livebootp/bootp/tftp"
)

// off reports whether a listen setting turns its server off.
func off(addr string) bool { return addr == "" || addr == config.Off }

// server is one of the registry's servers, opened before any of them
// serves so that a port already in use fails the start cleanly.
type server struct {
	name  string
	serve func(ctx context.Context) error
	close func()
}

// Run opens every listener, then serves until ctx is done. If any listener
// cannot be opened, the ones already open are closed and the error says
// which address failed. When one server fails the others are stopped and
// every error is returned, joined.
func (r *Registry) Run(ctx context.Context) error {
	cfg := r.Config()
	servers, err := r.open(cfg)
	if err != nil {
		for _, s := range servers {
			s.close()
		}
		return err
	}
	r.log.Info("registry serving", "summary", cfg.Summary(), "listening", strings.Join(r.Status().Listening, ", "))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var errs errJoin
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.serve(ctx)
			if ctx.Err() == nil {
				if err == nil {
					err = errors.New("stopped unexpectedly")
				}
				r.log.Error("server failed; stopping the registry", "server", s.name, "err", err)
				errs.add(s.name, err)
				cancel()
			}
		}()
	}
	wg.Add(1)
	go func() { defer wg.Done(); r.watch(ctx) }()
	<-ctx.Done()
	for _, s := range servers {
		s.close()
	}
	wg.Wait()
	return errs.err()
}

// open creates the listeners in a fixed order. On error it returns what it
// opened so far for the caller to close.
func (r *Registry) open(cfg *config.Config) ([]server, error) {
	var out []server
	reg := cfg.Registry
	if !off(reg.DHCPListen) {
		h := &dhcp.Handler{Backend: r, Booter: r, Tracker: r.tracker, Log: r.log.With("server", "dhcp"), Metrics: dhcp.NewMetrics(r.metrics), Now: r.opts.Now}
		conn, err := dhcp.Listen(reg.Interface, reg.DHCPListen)
		if err != nil {
			return out, fmt.Errorf("DHCP on %s (dhcp-listen in %s): %w", reg.DHCPListen, cfg.File, err)
		}
		out = append(out, packetServer("dhcp", conn, h.Serve))
		r.listening("dhcp " + reg.DHCPListen + " on " + reg.Interface)
		if reg.ProxyDHCP {
			// PXE clients send their boot server requests to port 4011.
			pconn, err := dhcp.Listen(reg.Interface, proxyPort(reg.DHCPListen))
			if err != nil {
				return out, fmt.Errorf("proxyDHCP on port 4011: %w", err)
			}
			out = append(out, packetServer("proxydhcp", pconn, h.Serve))
			r.listening("proxydhcp " + proxyPort(reg.DHCPListen))
		}
	}
	if !off(reg.TFTPListen) {
		// tftp.ListenPacket turns on IP_PKTINFO before binding, so even
		// on a wildcard address each reply leaves from the address the
		// client sent its request to.
		conn, err := tftp.ListenPacket(context.Background(), "udp4", reg.TFTPListen)
		if err != nil {
			return out, fmt.Errorf("TFTP on %s (tftp-listen in %s): %w", reg.TFTPListen, cfg.File, err)
		}
		// Resends follow each transfer's round trip, from 200 ms (TCP's
		// least) to 1 s: a lost packet costs a fifth of what it did.
		s := &tftp.Server{Handler: r.tftpHandler(), Log: r.log.With("server", "tftp"), Observe: r.observeTFTP,
			MinTimeout: 200 * time.Millisecond}
		out = append(out, packetServer("tftp", conn, s.Serve))
		r.listening("tftp " + reg.TFTPListen)
	}
	if !off(reg.HTTPListen) {
		ln, err := net.Listen("tcp", reg.HTTPListen)
		if err != nil {
			return out, fmt.Errorf("HTTP on %s (http-listen in %s): %w", reg.HTTPListen, cfg.File, err)
		}
		hs := httpd.NewServer(reg.HTTPListen, httpd.New(r, r.tracker, r.log.With("server", "http"), r.metrics))
		out = append(out, httpServer("http", hs, ln))
		r.listening("http " + reg.HTTPListen + " (" + boot.BaseURL(cfg) + ")")
	}
	if !off(reg.AdminSocket) {
		ln, err := listenAdmin(reg.AdminSocket)
		if err != nil {
			return out, err
		}
		hs := &http.Server{Handler: r.adminHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
		out = append(out, httpServer("admin", hs, ln))
		r.listening("admin " + reg.AdminSocket)
	}
	if reg.RouterAdvertisements && reg.Interface != "" {
		rctx, cancel := context.WithCancel(context.Background())
		resp := &ra.Responder{Interface: reg.Interface, Log: r.log.With("server", "ra")}
		out = append(out, server{name: "ra", serve: func(ctx context.Context) error {
			stop := context.AfterFunc(ctx, cancel)
			defer stop()
			err := resp.Serve(rctx)
			if err != nil && ctx.Err() == nil {
				// Router advertisements only save boot time: log and go on
				// rather than take DHCP down with them.
				r.log.Warn("router advertisements off", "err", err)
				<-ctx.Done()
				return nil
			}
			return err
		}, close: cancel})
		r.listening("router-advertisements on " + reg.Interface)
	}
	return out, nil
}

func proxyPort(dhcpListen string) string {
	host, _, err := net.SplitHostPort(dhcpListen)
	if err != nil {
		host = ""
	}
	return net.JoinHostPort(host, "4011")
}

func packetServer(name string, conn net.PacketConn, serve func(context.Context, net.PacketConn) error) server {
	return server{
		name:  name,
		serve: func(ctx context.Context) error { return serve(ctx, conn) },
		close: func() { conn.Close() },
	}
}

func httpServer(name string, hs *http.Server, ln net.Listener) server {
	return server{
		name: name,
		serve: func(ctx context.Context) error {
			err := hs.Serve(ln)
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		},
		close: func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hs.Shutdown(ctx)
		},
	}
}

// BootFile lets the registry stand in as the DHCP handler's booter, so a
// reload that changes tftp-root takes effect without a restart.
func (r *Registry) BootFile(cfg *config.Config, h *config.Host, c boot.Client) (string, bool) {
	return boot.Booter{Root: cfg.Registry.TFTPRoot}.BootFile(cfg, h, c)
}

// tftpHandler serves the TFTP tree: boot loaders from tftp-root, images
// under images/, and each known host's generated pxelinux configuration.
// Paths are resolved against the configuration of the moment, and arrive
// cleaned by the tftp package.
func (r *Registry) tftpHandler() tftp.Handler {
	var m tftp.Mux
	m.Handle("", tftp.HandlerFunc(func(req *tftp.Request) (io.ReaderAt, int64, error) {
		return tftp.Dir(r.Config().Registry.TFTPRoot).ServeTFTP(req)
	}))
	m.Handle("images/", tftp.HandlerFunc(func(req *tftp.Request) (io.ReaderAt, int64, error) {
		return tftp.Dir(r.Config().Registry.ImagesDir).ServeTFTP(req)
	}))
	m.Handle("pxelinux.cfg/", tftp.HandlerFunc(func(req *tftp.Request) (io.ReaderAt, int64, error) {
		cfg := r.Config()
		mac, err := boot.ParseMAC(req.Path) // the Mux strips "pxelinux.cfg/"
		if err != nil {
			return nil, 0, tftp.ErrNotFound
		}
		h, ok := cfg.HostByMAC(mac)
		if !ok {
			return nil, 0, tftp.ErrNotFound
		}
		s := boot.PXELinuxConfig(cfg, h)
		return strings.NewReader(s), int64(len(s)), nil
	}))
	return &m
}

// observeTFTP records what each known host fetched over TFTP.
func (r *Registry) observeTFTP(remote netip.AddrPort, path string, n int64, err error) {
	if err != nil {
		return
	}
	cfg := r.Config()
	h, ok := cfg.HostByAddress(remote.Addr().Unmap())
	if !ok {
		return
	}
	phase := state.PhaseLoader
	switch {
	case strings.HasSuffix(path, "/vmlinuz"):
		phase = state.PhaseKernel
	case strings.HasSuffix(path, "/initrd.img"):
		phase = state.PhaseInitrd
	case strings.HasSuffix(path, "/filesystem.squashfs"):
		phase = state.PhaseImage
	case strings.HasPrefix(path, "pxelinux.cfg/"):
		phase = state.PhaseScript
	}
	r.tracker.Fetch(h.MAC, "tftp", path, phase, n)
}
