// Command dhcpserve runs the DHCP handler alone on one interface, with hosts
// from a dnsmasq-style file (MAC,IP,NAME per line). bench/dhcp.sh uses it to
// measure the handler by itself and as a fallback when `livebootp serve`
// cannot run; it is not installed.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/livebootp/livebootp/bootp/boot"
	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/bootp/dhcp"
	"github.com/livebootp/livebootp/bootp/state"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dhcpserve:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("dhcpserve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	iface := fs.String("iface", "", "interface to bind to")
	listen := fs.String("listen", ":67", "UDP address")
	server := fs.String("server", "", "server address (option 54, next server)")
	subnet := fs.String("subnet", "", "subnet, CIDR")
	router := fs.String("router", "", "router")
	dns := fs.String("dns", "", "DNS server")
	hostsFile := fs.String("hosts", "", "hosts file: MAC,IP,NAME per line")
	root := fs.String("tftp-root", "", "TFTP root (loaders)")
	debug := fs.Bool("debug", false, "log at debug level")
	profile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	reg := config.Registry{Interface: *iface, DomainName: "bench.example", LeaseTime: time.Hour, TFTPRoot: *root}
	var err error
	if reg.ServerAddress, err = netip.ParseAddr(*server); err != nil {
		return fmt.Errorf("-server: %w", err)
	}
	if reg.Subnet, err = netip.ParsePrefix(*subnet); err != nil {
		return fmt.Errorf("-subnet: %w", err)
	}
	for _, a := range []struct {
		s    string
		dest *[]netip.Addr
	}{{*router, &reg.Routers}, {*dns, &reg.DomainNameServers}} {
		if a.s != "" {
			ip, err := netip.ParseAddr(a.s)
			if err != nil {
				return err
			}
			*a.dest = append(*a.dest, ip)
		}
	}
	hosts, err := readHosts(*hostsFile)
	if err != nil {
		return err
	}
	cfg, err := config.New(reg, hosts)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	tracker := state.New(1000, nil)
	known := make([]state.Known, 0, len(hosts))
	for _, h := range hosts {
		known = append(known, state.Known{Name: h.Name, MAC: h.MAC.String(), Address: h.Address.String(), Image: h.Image})
	}
	tracker.SetHosts(known)
	var be dhcp.ConfigPointer
	be.Store(cfg)
	h := &dhcp.Handler{
		Backend: &be,
		Booter:  boot.Booter{Root: *root},
		Tracker: tracker,
		Log:     slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		Metrics: dhcp.NewMetrics(prometheus.NewRegistry()),
	}
	conn, err := dhcp.Listen(*iface, *listen)
	if err != nil {
		return err
	}
	defer conn.Close()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	h.Log.Info("serving", "addr", conn.LocalAddr().String(), "iface", *iface, "hosts", len(hosts))
	return h.Serve(ctx, conn)
}

func readHosts(file string) ([]*config.Host, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var hosts []*config.Host
	s := bufio.NewScanner(f)
	for line := 1; s.Scan(); line++ {
		fields := strings.Split(strings.TrimSpace(s.Text()), ",")
		if len(fields) != 3 {
			continue
		}
		mac, err := net.ParseMAC(fields[0])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, line, err)
		}
		ip, err := netip.ParseAddr(fields[1])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, line, err)
		}
		hosts = append(hosts, &config.Host{Name: fields[2], MAC: mac, Address: ip, Image: "bench/v1"})
	}
	return hosts, s.Err()
}
