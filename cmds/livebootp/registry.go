package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/livebootp/livebootp/bootp/config"
	"github.com/livebootp/livebootp/bootp/registry"
)

func defaultConfig() string { return filepath.Join(config.DefaultConfigDir, "config.yml") }

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("livebootp "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	path := fs.String("config", defaultConfig(), "configuration file")
	debug := fs.Bool("debug", false, "log every request")
	jsonLogs := fs.Bool("json", false, "log as JSON lines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	var h slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	if *jsonLogs {
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(h)
	r, err := registry.New(registry.Options{ConfigPath: *path, Log: log, Version: version})
	if err != nil {
		return fmt.Errorf("%s does not load:\n%w", *path, err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading configuration", "file", *path)
				_ = r.Reload()
			}
		}
	}()
	return r.Run(ctx)
}

func check(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	path := fs.String("config", defaultConfig(), "configuration file")
	noFiles := fs.Bool("skip-file-checks", false, "do not check that image directories and key files exist")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path, config.Options{Detector: config.NetlinkDetector{}, SkipFileChecks: *noFiles})
	if err != nil {
		var probs config.Problems
		if errors.As(err, &probs) {
			fmt.Fprintln(stdout, err)
			fmt.Fprintf(stdout, "%s: %d problem(s)\n", *path, len(probs))
			return errReported
		}
		return err
	}
	fmt.Fprintf(stdout, "%s: OK: %s\n", *path, cfg.Summary())
	return nil
}

// socketFlag adds -socket and -config: the admin socket is the one named
// by -socket, else the admin-socket of the configuration file if it can be
// read, else the default.
func socketFlag(fs *flag.FlagSet) func() string {
	sock := fs.String("socket", "", "admin socket of the running registry (default: admin-socket of -config, else "+config.DefaultAdminSocket+")")
	path := fs.String("config", "", "configuration file whose admin-socket to use")
	return func() string {
		if *sock != "" {
			return *sock
		}
		p := *path
		if p == "" {
			p = defaultConfig()
		}
		if cfg, err := config.Load(p, config.Options{Detector: config.NetlinkDetector{}, SkipFileChecks: true}); err == nil && cfg.Registry.AdminSocket != "" {
			return cfg.Registry.AdminSocket
		}
		return config.DefaultAdminSocket
	}
}

func status(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", stderr)
	sock := socketFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := registry.Client{Socket: sock()}.Status()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "livebootp %s, up %s (since %s)\n", s.Version, s.Uptime, s.Started.Format(time.RFC3339))
	fmt.Fprintf(stdout, "config:    %s\n           %s\n           loaded %d time(s), last %s\n", s.ConfigFile, s.Summary, s.Loads, s.LastLoad.Format(time.RFC3339))
	if s.LastError != "" {
		fmt.Fprintf(stdout, "last reload FAILED (running configuration kept):\n%s\n", s.LastError)
	}
	fmt.Fprintln(stdout, "serving:")
	for _, l := range s.Listening {
		fmt.Fprintln(stdout, "  "+l)
	}
	fmt.Fprintln(stdout, "interfaces:")
	for _, l := range s.Interfaces {
		fmt.Fprintln(stdout, "  "+l)
	}
	return nil
}

func hosts(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("hosts", stderr)
	sock := socketFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	hs, err := registry.Client{Socket: sock()}.Hosts()
	if err != nil {
		return err
	}
	return registry.WriteHosts(stdout, hs, time.Now())
}

func logs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("logs", stderr)
	sock := socketFlag(fs)
	follow := fs.Bool("f", false, "keep printing new events")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := registry.Client{Socket: sock()}
	var last time.Time
	for {
		evs, err := c.Events()
		if err != nil {
			return err
		}
		for _, e := range evs {
			if !e.Time.After(last) {
				continue
			}
			last = e.Time
			who := e.Host
			if who == "" {
				who = e.MAC
			}
			if who == "" {
				who = "-"
			}
			fmt.Fprintf(stdout, "%s %-7s %-20s %s\n", e.Time.Format("2006-01-02 15:04:05.000"), e.Kind, who, e.Detail)
		}
		if !*follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func reload(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reload", stderr)
	sock := socketFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	summary, err := registry.Client{Socket: sock()}.Reload()
	if err != nil {
		return fmt.Errorf("reload refused, the running configuration stays:\n%w", err)
	}
	fmt.Fprintln(stdout, "reloaded:", summary)
	return nil
}
