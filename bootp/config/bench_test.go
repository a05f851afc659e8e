package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// genHosts writes a config of n hosts the way a generator would: every host
// in full, four images and two key files shared among them.
func genHosts(n int, imagesDir, keysDir string) []byte {
	var b bytes.Buffer
	b.Grow(200 * (n + 10))
	fmt.Fprintf(&b, `# generated: %d hosts
bootp-registry:
  interface: eth0
  server-address: 10.0.0.1
  subnet: 10.0.0.0/8
  routers: [10.0.0.254]
  domain-name-servers: ["10.0.0.253"]
  domain-name: lab.example
  images-dir: %s
  ssh-authorized-keys-dir: %s
hosts:
`, n, imagesDir, keysDir)
	for i := 0; i < n; i++ {
		a := 10<<24 + 256 + i // from 10.0.1.0 on: clear of the server, router and DNS
		fmt.Fprintf(&b, `  node-%06d:
    hardware-ethernet: "52:54:%02x:%02x:%02x:%02x"
    fixed-address: "%d.%d.%d.%d"
    image-name: app-%d/1.0
    ssh-authorized-keys: team-%d
    cmdline-append: console=ttyS0,115200n8 quiet
`, i, byte(i>>24), byte(i>>16), byte(i>>8), byte(i), byte(a>>24), byte(a>>16), byte(a>>8), byte(a), i%4, i%2)
	}
	return b.Bytes()
}

// writeGenerated writes a generated config and the images and key files it
// names into dir, and returns the config's path.
func writeGenerated(tb testing.TB, dir string, n int) string {
	tb.Helper()
	for i := 0; i < 4; i++ {
		if err := os.MkdirAll(filepath.Join(dir, "images", fmt.Sprintf("app-%d", i), "1.0"), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := os.WriteFile(filepath.Join(dir, "keys", fmt.Sprintf("team-%d", i)), []byte("ssh-ed25519 AAAA test\n"), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	path := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(path, genHosts(n, "images", "keys"), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

func TestGeneratedLoads(t *testing.T) {
	path := writeGenerated(t, t.TempDir(), 1000)
	c, err := Load(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Hosts) != 1000 {
		t.Fatalf("got %d hosts, want 1000", len(c.Hosts))
	}
	h, ok := c.HostByName("node-000999")
	if !ok || h.Image != "app-3/1.0" || h.SSHAuthorizedKeys != "team-1" || h.Address.String() != "10.0.4.231" {
		t.Fatalf("node-000999 = %+v, %v", h, ok)
	}
	if got, ok := c.HostByMAC(h.MAC); !ok || got != h {
		t.Fatalf("HostByMAC(%s) = %v, %v", h.MAC, got, ok)
	}
	if got, ok := c.HostByAddress(h.Address); !ok || got != h {
		t.Fatalf("HostByAddress(%s) = %v, %v", h.Address, got, ok)
	}
}

func benchmarkLoad(b *testing.B, n int) {
	path := writeGenerated(b, b.TempDir(), n)
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(st.Size())
	b.ReportAllocs()
	for b.Loop() {
		c, err := Load(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if len(c.Hosts) != n {
			b.Fatalf("got %d hosts", len(c.Hosts))
		}
	}
}

// BenchmarkLoad10k and BenchmarkLoad100k load generated files with every
// check on, image directories and key files included. Target: 100k ≤ 0.5 s.
func BenchmarkLoad10k(b *testing.B)  { benchmarkLoad(b, 10_000) }
func BenchmarkLoad100k(b *testing.B) { benchmarkLoad(b, 100_000) }

// BenchmarkParse100kYAMLv3 is the same file through yaml.v3 only (the path
// for files fastParse leaves to it), for comparison.
func BenchmarkParse100kYAMLv3(b *testing.B) {
	data := genHosts(100_000, "images", "keys")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, errs := slowParse(data); errs != nil {
			b.Fatal(errs)
		}
	}
}
