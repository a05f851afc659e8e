package tftp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/livebootp/livebootp/internal/udprelay"
)

// startRelay puts a delaying relay in front of addr.
func startRelay(t testing.TB, addr netip.AddrPort, delay time.Duration) netip.AddrPort {
	t.Helper()
	r, err := udprelay.New("127.0.0.1:0", addr, delay)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return r.Addr()
}

// Lockstep and windowed transfers across a link with a round trip: content intact and, on a
// loss-free link, every block sent exactly once.
func TestThroughDelayRelay(t *testing.T) {
	content := randBytes(1<<20, 11)
	ts := startServer(t, "127.0.0.1:0", Dir(fileRoot(t, map[string][]byte{"f": content})), func(s *Server) { s.Timeout = time.Second })
	relay := startRelay(t, ts.addr, 100*time.Microsecond)
	for _, opts := range [][]string{nil, {"blksize", "1468"}, {"blksize", "1468", "windowsize", "16"}, {"windowsize", "64"}} {
		c := newTestClient(t, "127.0.0.1:0")
		start := time.Now()
		res, err := c.get(relay, "f", opts...)
		if err != nil || res.n != int64(len(content)) || res.sum != sha256Sum(content) {
			t.Fatalf("%v: %d bytes, %v", opts, res.n, err)
		}
		if want := len(content)/res.blksize + 1; res.dataPkts != want {
			t.Errorf("%v: %d DATA packets for %d blocks", opts, res.dataPkts, want)
		}
		t.Logf("%v: %v", opts, time.Since(start))
	}
}
