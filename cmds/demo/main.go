// Command demo is `make demo`: it builds a small image (busybox, the Debian
// kernel, livebootp-init), starts a registry in a throwaway network
// namespace, PXE-boots a qemu VM with a blank disk from it through the VM's
// own iPXE ROM, prints the VM's console as it boots and the registry's view
// of the host with its boot report, then tears everything down. With
// -appliance (make demo-appliance) the registry is the appliance image in a
// VM of its own. It needs root (namespace, tap devices).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/livebootp/livebootp/bootp/registry"
	"github.com/livebootp/livebootp/internal/testbed"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("binary", "bin/livebootp", "livebootp binary")
	initBin := fs.String("init", "bin/livebootp-init", "livebootp-init binary, the target's /init")
	loaders := fs.String("loaders", "build/tftpboot", "boot loaders (make loaders)")
	kernel := fs.String("kernel", "", "kernel to boot (default build/kernel/vmlinuz)")
	showLog := fs.Bool("registry-log", false, "also print the registry's log")
	withAppliance := fs.Bool("appliance", false, "boot the appliance image in one VM and a target from it in another")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("the demo needs root: it creates a network namespace and a tap device")
	}
	wd, _ := os.Getwd()
	repo, err := testbed.RepoRoot(wd)
	if err != nil {
		return err
	}
	if *kernel == "" {
		*kernel = testbed.KernelPath(repo)
	}
	dir, err := os.MkdirTemp("", "livebootp-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	absBin, _ := filepath.Abs(*bin)
	absInit, _ := filepath.Abs(*initBin)
	absLoaders, _ := filepath.Abs(*loaders)
	if *withAppliance {
		return runAppliance(ctx, repo, absBin, absInit, dir, stdout)
	}
	fmt.Fprintln(stdout, "== demo: building the image busybox/1 (busybox, the Debian kernel, livebootp-init) with `livebootp image build`")
	if err := testbed.BuildBusyboxImage(repo, absBin, absInit, dir, filepath.Join(dir, "reg")); err != nil {
		return err
	}
	disk := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(disk, 256<<20); err != nil {
		return err
	}
	s := &testbed.Scenario{
		Repo: repo, Dir: dir, Binary: absBin, Kernel: *kernel, Loaders: absLoaders,
		ImagesDir: filepath.Join(dir, "reg", "images"), Image: "busybox/1",
		NetName: testbed.Uniq("demo"), Server: netip.MustParsePrefix("10.80.0.1/24"),
		HostName: "my-nginx-web-server", MAC: "52:54:00:12:34:56", HostIP: netip.MustParseAddr("10.80.0.10"),
		Cmdline: "console=ttyS0 panic=-1", RouterAdvertisements: true,
	}
	if *showLog {
		s.RegistryLog = stderr
	}
	defer s.Close()
	fmt.Fprintf(stdout, "== demo: registry on 10.80.0.1 (namespace %s), config %s\n", s.NetName, filepath.Join(dir, "config.yml"))
	if err := s.Setup(); err != nil {
		return err
	}
	cfg, _ := os.ReadFile(s.Config)
	fmt.Fprintf(stdout, "%s\n", cfg)
	if err := s.StartRegistry(ctx); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "== demo: registry serving; powering on a qemu VM (TCG, iPXE ROM, MAC 52:54:00:12:34:56, a blank 256 MiB disk); its console:")
	start := time.Now()
	vm, err := s.Boot(ctx, stdout, disk)
	if err != nil {
		return err
	}
	defer vm.Kill()
	_, reached, err := vm.Console.WaitFor(ctx, testbed.TargetMarker+"init reached", 4*time.Minute)
	if err == nil {
		_, _, err = vm.Console.WaitFor(ctx, testbed.TargetMarker+"done", 4*time.Minute)
	}
	if err != nil {
		return fmt.Errorf("%w\nregistry log:\n%s", err, s.RegistryLogTail(30))
	}
	done := time.Since(start)
	_ = vm.Wait(30 * time.Second)
	fmt.Fprintf(stdout, "\n== demo: the image's init started %.1f s after power-on and was done at %.1f s (it waits for the RSA host key, as sshd would). `livebootp hosts` says:\n",
		reached.Seconds(), done.Seconds())
	hosts, err := s.Client().Hosts()
	if err != nil {
		return err
	}
	if err := registry.WriteHosts(stdout, hosts, time.Now()); err != nil {
		return err
	}
	if len(hosts) == 1 && hosts[0].LastReport != nil {
		r := hosts[0].LastReport
		fmt.Fprintf(stdout, "== demo: the boot report (persistent storage %q, host keys %q):\n", r.Persistent, r.HostKeys)
		for _, st := range r.Steps {
			fmt.Fprintf(stdout, "   %-16s %8s %s\n", st.Name, st.Duration.Round(time.Millisecond), st.Error)
		}
	}
	fmt.Fprintln(stdout, "== demo: done; namespace and registry removed")
	return nil
}
