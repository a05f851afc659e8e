package tftp

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkTransfer fetches an 8 MiB file from Dir over loopback with the test client (bytes
// hashed, not kept), lockstep and windowed, directly and across the 0.1 ms-each-way relay.
// Allocations reported are per transfer (client included), not per block.
func BenchmarkTransfer(b *testing.B) {
	const size = 8 << 20
	root := b.TempDir()
	if err := os.WriteFile(filepath.Join(root, "f"), randBytes(size, 99), 0o644); err != nil {
		b.Fatal(err)
	}
	ts := startServer(b, "127.0.0.1:0", Dir(root), func(s *Server) { s.Timeout = time.Second })
	relay := startRelay(b, ts.addr, 100*time.Microsecond)
	for _, bc := range []struct {
		name  string
		relay bool
		opts  []string
	}{
		{"Lockstep512", false, nil},
		{"Lockstep1468", false, []string{"blksize", "1468"}},
		{"Window16", false, []string{"blksize", "1468", "windowsize", "16"}},
		{"Window64", false, []string{"blksize", "1468", "windowsize", "64"}},
		{"RelayLockstep1468", true, []string{"blksize", "1468"}},
		{"RelayWindow16", true, []string{"blksize", "1468", "windowsize", "16"}},
		{"RelayWindow64", true, []string{"blksize", "1468", "windowsize", "64"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			to := ts.addr
			if bc.relay {
				to = relay
			}
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				c := newTestClient(b, "127.0.0.1:0")
				c.discard = true
				res, err := c.get(to, "f", bc.opts...)
				if err != nil || res.n != size {
					b.Fatalf("%d bytes, %v", res.n, err)
				}
			}
		})
	}
}
