package registry_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/livebootp/livebootp/bootp/registry"
	"github.com/livebootp/livebootp/bootp/state"
	"github.com/livebootp/livebootp/internal/testbed"
	"github.com/livebootp/livebootp/wire"
)

func needVM(t *testing.T) string { return testbed.NeedVM(t) }

func buildBinary(t *testing.T, repo string) string {
	return testbed.BuildGo(t, repo, "./cmds/livebootp")
}

// bootOnce PXE-boots one VM through qemu's iPXE ROM from a fresh registry
// and returns the time iPXE spent between its DHCP ACK and asking for its
// boot script.
func bootOnce(t *testing.T, repo, bin string, ra bool, tag string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var regLog bytes.Buffer
	s := &testbed.Scenario{
		Repo: repo, Dir: t.TempDir(), Binary: bin, Kernel: testbed.KernelPath(repo),
		NetName: testbed.Uniq("vm" + tag), Server: netip.MustParsePrefix("10.80.0.1/24"),
		HostName: "vmhost", MAC: "52:54:00:12:34:56", HostIP: netip.MustParseAddr("10.80.0.10"),
		Cmdline: "console=ttyS0 panic=-1", RouterAdvertisements: ra, RegistryLog: &regLog,
		Loaders: filepath.Join(repo, "build", "tftpboot"),
	}
	testbed.Start(t, ctx, s)
	vm, err := s.Boot(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	at := testbed.Wait(t, ctx, s, vm, testbed.VMInitMarker, 3*time.Minute)
	line, _, err := vm.Console.WaitFor(ctx, "LIVEBOOTP-VMINIT: cmdline:", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RA %v: init reached %.1f s after power-on; %s", ra, at.Seconds(), line)
	for _, want := range []string{
		wire.ArgHostname + "=vmhost",
		wire.ArgRegistry + "=http://10.80.0.1:8080",
		wire.ArgImage + "=vmtest/1",
		"initrd=initrd.img",
		"console=ttyS0",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("kernel command line %q lacks %q", line, want)
		}
	}
	if err := vm.Wait(time.Minute); err != nil {
		t.Errorf("guest did not power off: %v", err)
	}

	hosts, err := s.Client().Hosts()
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := registry.WriteHosts(&table, hosts, time.Now()); err != nil {
		t.Fatal(err)
	}
	t.Logf("livebootp hosts:\n%s", table.String())
	if len(hosts) != 1 || hosts[0].Name != "vmhost" || hosts[0].Phase != state.PhaseInitrd ||
		hosts[0].Kernel.IsZero() || hosts[0].BootCount != 1 || !strings.HasPrefix(hosts[0].ClientArch, "ipxe") {
		t.Errorf("boot state after the boot = %+v, want vmhost in phase initrd with kernel fetched, 1 boot, an iPXE client", hosts)
	}
	evs, err := s.Client().Events()
	if err != nil {
		t.Fatal(err)
	}
	var ack, script time.Time
	for _, e := range evs {
		switch {
		case e.Kind == "dhcp" && strings.Contains(e.Detail, "ACK") && ack.IsZero():
			ack = e.Time
		case e.Kind == "http" && strings.HasPrefix(e.Detail, wire.PathBoot) && script.IsZero():
			script = e.Time
		}
	}
	if ack.IsZero() || script.IsZero() {
		t.Fatalf("events lack the DHCP ACK or the script fetch: %+v", evs)
	}
	return script.Sub(ack)
}

// TestVMPXEBoot boots a qemu guest through its own iPXE ROM from the
// registry, twice: with router advertisements (the default) and without,
// and shows that answering iPXE's router solicitations removes its wait
// for IPv6 configuration.
func TestVMPXEBoot(t *testing.T) {
	repo := needVM(t)
	bin := buildBinary(t, repo)
	withRA := bootOnce(t, repo, bin, true, "ra")
	withoutRA := bootOnce(t, repo, bin, false, "nora")
	t.Logf("DHCP ACK → boot script request: %.2f s with router advertisements, %.2f s without", withRA.Seconds(), withoutRA.Seconds())
	if withRA > 5*time.Second {
		t.Errorf("with router advertisements iPXE still waited %s after its DHCP ACK, want < 5 s", withRA)
	}
	if withoutRA < withRA+5*time.Second {
		t.Errorf("without router advertisements the wait was %s, with them %s: the saving is not shown", withoutRA, withRA)
	}
}

// TestVMUEFIPXEBoot boots OVMF's own PXE client (no iPXE ROM on the NIC):
// the firmware gets ipxe.efi over TFTP, iPXE asks again and gets its
// script over HTTP, and the EFI-stub kernel gets its initrd.
func TestVMUEFIPXEBoot(t *testing.T) {
	repo := needVM(t)
	if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE_4M.fd"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("needs OVMF (Debian package ovmf): %v", err)
		}
		t.Skipf("needs OVMF (Debian package ovmf): %v", err)
	}
	if _, err := os.Stat(filepath.Join(repo, "build", "tftpboot", "ipxe.efi")); err != nil {
		t.Skipf("needs the staged loaders: %v (make loaders)", err)
	}
	bin := buildBinary(t, repo)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := &testbed.Scenario{
		Repo: repo, Dir: t.TempDir(), Binary: bin, Kernel: testbed.KernelPath(repo),
		NetName: testbed.Uniq("vmefi"), Server: netip.MustParsePrefix("10.80.2.1/24"),
		HostName: "efihost", MAC: "52:54:00:12:34:57", HostIP: netip.MustParseAddr("10.80.2.10"),
		Cmdline: "console=ttyS0 panic=-1", RouterAdvertisements: true,
		Loaders: filepath.Join(repo, "build", "tftpboot"),
	}
	testbed.Start(t, ctx, s)
	vm, err := s.BootUEFI(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(vm.Kill)
	at := testbed.Wait(t, ctx, s, vm, testbed.VMInitMarker, 4*time.Minute)
	t.Logf("UEFI PXE: init reached %.1f s after power-on", at.Seconds())
	hosts, err := s.Client().Hosts()
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := s.Client().Events()
	var sawLoader bool
	for _, e := range evs {
		if e.Kind == "tftp" && strings.Contains(e.Detail, "ipxe.efi") {
			sawLoader = true
		}
	}
	if !sawLoader {
		t.Errorf("the firmware did not fetch ipxe.efi over TFTP; events: %+v", evs)
	}
	if len(hosts) != 1 || hosts[0].Initrd.IsZero() || hosts[0].BootCount != 1 {
		t.Errorf("boot state: %+v", hosts)
	}
}
