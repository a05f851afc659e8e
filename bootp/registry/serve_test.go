package registry_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livebootp/livebootp/internal/testbed"
)

// TestServeRealClients runs `livebootp serve` in a namespace and drives it
// from a second namespace the way machines and operators do: busybox udhcpc
// gets the host's lease, atftp fetches a loader, the pxelinux config and an
// image file, curl fetches the boot script, a key file and a byte range of
// the kernel, and `livebootp reload` refuses a broken file while the
// running configuration keeps serving.
func TestServeRealClients(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces")
	}
	if miss := testbed.Missing("ip", "busybox", "atftp", "curl"); len(miss) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("missing %v (make deps)", miss)
		}
		t.Skipf("needs %v (make deps)", miss)
	}
	wd, _ := os.Getwd()
	repo, err := testbed.RepoRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	bin := buildBinary(t, repo)
	dir := t.TempDir()
	kernel := filepath.Join(dir, "fake-vmlinuz")
	big := bytes.Repeat([]byte("livebootp kernel stand-in "), 40000) // ~1 MiB: many TFTP blocks
	if err := os.WriteFile(kernel, big, 0o644); err != nil {
		t.Fatal(err)
	}
	loaders := filepath.Join(dir, "loaders")
	os.MkdirAll(loaders, 0o755)
	loader := bytes.Repeat([]byte{0xeb, 0xfe, 0x90, 0x90}, 17000)
	os.WriteFile(filepath.Join(loaders, "undionly.kpxe"), loader, 0o644)

	s := &testbed.Scenario{
		Repo: repo, Dir: filepath.Join(dir, "s"), Binary: bin, Kernel: kernel, Initrd: kernel, Loaders: loaders,
		NetName: testbed.Uniq("srv"), Server: netip.MustParsePrefix("10.80.1.1/24"),
		HostName: "client1", MAC: "52:54:00:aa:bb:01", HostIP: netip.MustParseAddr("10.80.1.10"),
		Cmdline: "console=ttyS0", RouterAdvertisements: true,
	}
	os.MkdirAll(s.Dir, 0o755)
	t.Cleanup(s.Close)
	if err := s.Setup(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := s.StartRegistry(ctx); err != nil {
		t.Fatal(err)
	}
	peer, err := s.Net.AddPeer(testbed.Uniq("cli"), s.MAC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	run := func(name string, args ...string) string {
		t.Helper()
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		defer ccancel()
		out, err := peer.Command(cctx, name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s\nregistry log:\n%s", name, strings.Join(args, " "), err, out, s.RegistryLogText())
		}
		return string(out)
	}

	// DHCP with a real client. The script prints what udhcpc was given.
	script := filepath.Join(dir, "udhcpc.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && echo \"LEASE ip=$ip mask=$mask router=$router dns=$dns domain=$domain hostname=$hostname boot_file=$boot_file siaddr=$siaddr serverid=$serverid lease=$lease\"\nexit 0\n"), 0o755)
	out := run("busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script, "-O", "hostname", "-O", "bootfile")
	for _, want := range []string{"ip=10.80.1.10 ", "mask=24", "router=10.80.1.1", "dns=10.80.1.1", "domain=vmtest.internal",
		"hostname=client1", "boot_file=undionly.kpxe", "siaddr=10.80.1.1", "serverid=10.80.1.1", "lease=3600"} {
		if !strings.Contains(out, want) {
			t.Errorf("udhcpc lease lacks %q:\n%s", want, out)
		}
	}
	t.Logf("udhcpc: %s", strings.TrimSpace(out))
	run("ip", "addr", "add", "10.80.1.10/24", "dev", "eth0")

	// TFTP with a real client, blksize negotiated.
	got := filepath.Join(dir, "got")
	run("atftp", "--option", "blksize 1468", "-g", "-r", "undionly.kpxe", "-l", got, "10.80.1.1")
	if b, _ := os.ReadFile(got); !bytes.Equal(b, loader) {
		t.Errorf("loader over TFTP: %d bytes, want %d", len(b), len(loader))
	}
	run("atftp", "-g", "-r", "pxelinux.cfg/01-52-54-00-aa-bb-01", "-l", got, "10.80.1.1")
	if b, _ := os.ReadFile(got); !strings.Contains(string(b), "KERNEL images/vmtest/1/vmlinuz") || !strings.Contains(string(b), "livebootp.hostname=client1") {
		t.Errorf("pxelinux config over TFTP:\n%s", b)
	}
	run("atftp", "--option", "blksize 1468", "-g", "-r", "images/vmtest/1/vmlinuz", "-l", got, "10.80.1.1")
	if b, _ := os.ReadFile(got); !bytes.Equal(b, big) {
		t.Errorf("image file over TFTP: %d bytes, want %d", len(b), len(big))
	}
	if out, err := peer.Command(ctx, "atftp", "-g", "-r", "../../../../etc/passwd", "-l", got, "10.80.1.1").CombinedOutput(); err == nil {
		t.Errorf("traversal over TFTP served something:\n%s", out)
	}

	// HTTP with curl.
	base := "http://10.80.1.1:8080"
	ipxe := run("curl", "-fsS", base+"/boot/52:54:00:aa:bb:01.ipxe")
	if !strings.HasPrefix(ipxe, "#!ipxe") || !strings.Contains(ipxe, "livebootp.hostname=client1 console=ttyS0") {
		t.Errorf("boot script:\n%s", ipxe)
	}
	if keys := run("curl", "-fsS", base+"/ssh-authorized-keys/default"); !strings.HasPrefix(keys, "ssh-ed25519 ") {
		t.Errorf("key file: %q", keys)
	}
	if keys := run("curl", "-fsS", base+"/boot/52:54:00:aa:bb:01.keys"); !strings.HasPrefix(keys, "ssh-ed25519 ") {
		t.Errorf("the host's keys by MAC: %q", keys)
	}
	if r := run("curl", "-fsS", "-r", "10-25", base+"/images/vmtest/1/vmlinuz"); r != string(big[10:26]) {
		t.Errorf("range of the kernel: %q, want %q", r, big[10:26])
	}

	// The registry saw it all.
	hosts, err := s.Client().Hosts()
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || hosts[0].LastDHCP != "REQUEST→ACK" || hosts[0].Kernel.IsZero() || hosts[0].BootCount != 1 {
		t.Errorf("boot state: %+v", hosts)
	}

	// Garbage on the DHCP, proxyDHCP and TFTP ports does not stop the
	// servers: 300 random datagrams each, then the same clients again.
	run("bash", "-c", `for port in 67 4011 69; do for i in $(seq 300); do head -c $((RANDOM % 1400 + 1)) /dev/urandom > /dev/udp/10.80.1.1/$port; done; done`)
	run("atftp", "-g", "-r", "undionly.kpxe", "-l", got, "10.80.1.1")
	if b, _ := os.ReadFile(got); !bytes.Equal(b, loader) {
		t.Errorf("TFTP after garbage: %d bytes, want %d", len(b), len(loader))
	}
	run("ip", "addr", "flush", "dev", "eth0")
	if out := run("busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script); !strings.Contains(out, "ip=10.80.1.10 ") {
		t.Errorf("DHCP after garbage:\n%s", out)
	}
	run("ip", "addr", "add", "10.80.1.10/24", "dev", "eth0")

	// A broken file is refused with file:line; the running one keeps serving.
	good, _ := os.ReadFile(s.Config)
	broken := strings.Replace(string(good), "    image-name: vmtest/1\n", "    image-name: vmtest/1\n    image-nmae: typo\n", 1)
	os.WriteFile(s.Config, []byte(broken), 0o644)
	rel := exec.Command(bin, "reload", "-socket", s.Socket)
	out2, err := rel.CombinedOutput()
	if err == nil || !strings.Contains(string(out2), s.Config+":") || !strings.Contains(string(out2), "image-nmae") {
		t.Errorf("reload of a broken file: err %v, output:\n%s", err, out2)
	}
	if !strings.Contains(run("curl", "-fsS", base+"/boot/52:54:00:aa:bb:01.ipxe"), "livebootp.hostname=client1") {
		t.Error("the running configuration stopped serving after a failed reload")
	}
	st, err := s.Client().Status()
	if err != nil || st.LastError == "" {
		t.Errorf("status after a failed reload: %+v %v", st, err)
	}

	// A good change is picked up from SIGHUP (and by the file watcher).
	fixed := strings.Replace(string(good), `cmdline-append: "console=ttyS0"`, `cmdline-append: "console=ttyS0 changed=1"`, 1)
	os.WriteFile(s.Config, []byte(fixed), 0o644)
	if err := s.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(run("curl", "-fsS", base+"/boot/52:54:00:aa:bb:01.ipxe"), "changed=1") {
		if time.Now().After(deadline) {
			t.Fatalf("the new cmdline-append was not served 10 s after SIGHUP; log:\n%s", s.RegistryLogText())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The CLI shows the host table from the running registry.
	table, err := exec.Command(bin, "hosts", "-socket", s.Socket).CombinedOutput()
	t.Logf("livebootp reload of a broken file:\n%s\nlivebootp hosts:\n%s", out2, table)
	if err != nil || !strings.Contains(string(table), "client1") || !strings.Contains(string(table), "52:54:00:aa:bb:01") {
		t.Errorf("livebootp hosts: %v\n%s", err, table)
	}
}
