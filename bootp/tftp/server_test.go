package tftp

import (
	"github.com/livebootp/livebootp/internal/syncbuf"

	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// patternReader is generated content: byte i is a function of i, so large files need no disk.
type patternReader int64

func (p patternReader) ReadAt(b []byte, off int64) (int, error) {
	if off >= int64(p) {
		return 0, io.EOF
	}
	n := min(int64(len(b)), int64(p)-off)
	for i := range n {
		x := off + i
		b[i] = byte(x ^ x>>8 ^ x>>16)
	}
	if n < int64(len(b)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

func patternSum(size int64) [32]byte {
	b := make([]byte, size)
	patternReader(size).ReadAt(b, 0)
	return sha256.Sum256(b)
}

type observed struct {
	remote netip.AddrPort
	path   string
	bytes  int64
	err    error
}

type testServer struct {
	addr netip.AddrPort
	srv  *Server
	log  *syncbuf.Buffer

	mu  sync.Mutex
	obs []observed
}

func (ts *testServer) observed() []observed {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]observed(nil), ts.obs...)
}

// waitObserved waits (bounded) until n requests have ended.
func (ts *testServer) waitObserved(t testing.TB, n int) []observed {
	t.Helper()
	for i := 0; i < 500; i++ {
		if o := ts.observed(); len(o) >= n {
			return o
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("want %d observed requests, got %+v", n, ts.observed())
	return nil
}

// startServer serves h on listen (e.g. "127.0.0.1:0"); configure may adjust the Server.
func startServer(t testing.TB, listen string, h Handler, configure func(*Server)) *testServer {
	t.Helper()
	pc, err := ListenPacket(context.Background(), "udp", listen)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{log: &syncbuf.Buffer{}}
	ts.srv = &Server{
		Handler: h,
		Log:     slog.New(slog.NewTextHandler(ts.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Timeout: 200 * time.Millisecond,
		Observe: func(remote netip.AddrPort, path string, n int64, err error) {
			ts.mu.Lock()
			ts.obs = append(ts.obs, observed{remote, path, n, err})
			ts.mu.Unlock()
		},
	}
	if configure != nil {
		configure(ts.srv)
	}
	ts.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.srv.Serve(ctx, pc) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
		pc.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", ts.log)
		}
	})
	return ts
}

func fileRoot(t testing.TB, files map[string][]byte) string {
	t.Helper()
	root := t.TempDir()
	for name, b := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestTransferSizesAndOptions(t *testing.T) {
	sizes := []int{0, 1, 511, 512, 513, 1024, 1467, 1468, 1469, 3 * 1468, 100_000}
	files := map[string][]byte{}
	for _, n := range sizes {
		files["f"+itoa(n)] = randBytes(n, uint64(n))
	}
	ts := startServer(t, "127.0.0.1:0", Dir(fileRoot(t, files)), nil)
	for _, opts := range [][]string{
		nil,
		{"blksize", "1468"},
		{"blksize", "8"},
		{"blksize", "512", "windowsize", "4"},
		{"blksize", "1468", "windowsize", "16", "tsize", "0"},
		{"windowsize", "64", "timeout", "1"},
	} {
		for _, n := range sizes {
			name := "f" + itoa(n)
			c := newTestClient(t, "127.0.0.1:0")
			res, err := c.get(ts.addr, name, opts...)
			if err != nil {
				t.Fatalf("%s %v: %v", name, opts, err)
			}
			if !bytes.Equal(res.data, files[name]) {
				t.Fatalf("%s %v: got %d bytes, want %d (content differs)", name, opts, len(res.data), n)
			}
			for i := 0; i+1 < len(opts); i += 2 {
				if opts[i] == "tsize" && res.oack["tsize"] != itoa(n) {
					t.Errorf("%s: tsize %q, want %d", name, res.oack["tsize"], n)
				}
			}
			blocks := n/res.blksize + 1
			if res.dataPkts != blocks {
				t.Errorf("%s %v: %d DATA packets, want %d (no resends on a clean link)", name, opts, res.dataPkts, blocks)
			}
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestBlockSizeCap(t *testing.T) {
	root := fileRoot(t, map[string][]byte{"a": randBytes(5000, 1)})
	ts := startServer(t, "127.0.0.1:0", Dir(root), nil)
	c := newTestClient(t, "127.0.0.1:0")
	res, err := c.get(ts.addr, "a", "blksize", "65464")
	if err != nil {
		t.Fatal(err)
	}
	if res.oack["blksize"] != "1468" {
		t.Errorf("blksize 65464 answered with %q, want the 1468 default cap", res.oack["blksize"])
	}
	ts2 := startServer(t, "127.0.0.1:0", Dir(root), func(s *Server) { s.MaxBlockSize = 1024 })
	res, err = newTestClient(t, "127.0.0.1:0").get(ts2.addr, "a", "blksize", "1468")
	if err != nil || res.oack["blksize"] != "1024" || res.n != 5000 {
		t.Errorf("MaxBlockSize 1024: blksize %q, %d bytes, %v", res.oack["blksize"], res.n, err)
	}
}

func TestObserve(t *testing.T) {
	root := fileRoot(t, map[string][]byte{"a/b": randBytes(3000, 2)})
	ts := startServer(t, "127.0.0.1:0", Dir(root), nil)
	c := newTestClient(t, "127.0.0.1:0")
	if _, err := c.get(ts.addr, `\a\b`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.get(ts.addr, "nope"); err == nil {
		t.Fatal("missing file served")
	}
	o := ts.waitObserved(t, 2)
	local := c.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	if o[0].path != "a/b" || o[0].bytes != 3000 || o[0].err != nil || o[0].remote != local {
		t.Errorf("observed %+v, want a/b 3000 bytes from %v", o[0], local)
	}
	if o[1].path != "nope" || o[1].err == nil {
		t.Errorf("observed %+v, want nope with an error", o[1])
	}
}

func TestErrors(t *testing.T) {
	root := fileRoot(t, map[string][]byte{"a": []byte("x")})
	ts := startServer(t, "127.0.0.1:0", Dir(root), nil)
	for _, tc := range []struct {
		name string
		req  []byte
		code ErrorCode
	}{
		{"wrq", append([]byte{0, opWRQ}, "a\x00octet\x00"...), ErrAccessViolation},
		{"wrq new file", append([]byte{0, opWRQ}, "new\x00octet\x00tsize\x0010\x00"...), ErrAccessViolation},
		{"not found", rrq("missing", "octet"), ErrFileNotFound},
		{"mail mode", rrq("a", "mail"), ErrIllegalOperation},
		{"no mode", append([]byte{0, opRRQ}, "abc"...), ErrIllegalOperation},
		{"dotdot", rrq("../a", "octet"), ErrAccessViolation},
	} {
		c := newTestClient(t, "127.0.0.1:0")
		_, err := c.getRaw(ts.addr, tc.req)
		var re *remoteError
		if !errors.As(err, &re) || re.code != tc.code {
			t.Errorf("%s: %v, want ERROR %d", tc.name, err, tc.code)
		}
		if tc.name == "wrq" && (re == nil || re.msg != "read-only server") {
			t.Errorf("wrq: message %v, want read-only server", re)
		}
	}
	o := ts.waitObserved(t, 6)
	if !errors.Is(o[0].err, ErrReadOnly) {
		t.Errorf("WRQ observed as %v, want ErrReadOnly", o[0].err)
	}
}

func TestServerTraversal(t *testing.T) {
	root, _ := traversalRoot(t)
	ts := startServer(t, "127.0.0.1:0", Dir(root), nil)
	for _, name := range traversalCorpus {
		c := newTestClient(t, "127.0.0.1:0")
		res, err := c.get(ts.addr, name)
		var re *remoteError
		if !errors.As(err, &re) {
			t.Errorf("%.60q: got %v (%d bytes), want an ERROR packet", name, err, res.n)
			continue
		}
		if re.code != ErrFileNotFound && re.code != ErrAccessViolation && re.code != ErrIllegalOperation {
			t.Errorf("%.60q: ERROR %d %q, want not found or access violation", name, re.code, re.msg)
		}
		if strings.Contains(re.msg, root) {
			t.Errorf("%.60q: error message %q leaks the server path", name, re.msg)
		}
	}
	// Positive control: the same server does serve what is inside.
	res, err := newTestClient(t, "127.0.0.1:0").get(ts.addr, "/sub/inner")
	if err != nil || string(res.data) != "inner" {
		t.Errorf("sub/inner: %q, %v", res.data, err)
	}
}

func TestNetascii(t *testing.T) {
	root := fileRoot(t, map[string][]byte{"t": []byte("line1\nline2\r\n")})
	ts := startServer(t, "127.0.0.1:0", Dir(root), nil)
	res, err := newTestClient(t, "127.0.0.1:0").getRaw(ts.addr, rrq("t", "netascii"))
	if err != nil || string(res.data) != "line1\r\nline2\r\x00\r\n" {
		t.Errorf("netascii: %q, %v", res.data, err)
	}
}

// Generated content of unknown size ends where ReadAt says io.EOF.
func TestUnknownSize(t *testing.T) {
	for _, n := range []int64{0, 511, 512, 70_000, 65536} {
		h := HandlerFunc(func(r *Request) (io.ReaderAt, int64, error) { return patternReader(n), -1, nil })
		ts := startServer(t, "127.0.0.1:0", h, nil)
		for _, opts := range [][]string{{"tsize", "0"}, {"windowsize", "8"}} {
			res, err := newTestClient(t, "127.0.0.1:0").get(ts.addr, "gen", opts...)
			if err != nil || res.sum != patternSum(n) {
				t.Fatalf("size %d %v: %d bytes, %v", n, opts, res.n, err)
			}
			if _, ok := res.oack["tsize"]; ok {
				t.Errorf("size %d: tsize offered for unknown size", n)
			}
		}
	}
}

// Past 65535 blocks the block number rolls over to 0, as tftpd-hpa and iPXE expect.
func TestRollover(t *testing.T) {
	const size = 32<<20 + 1000 // > 65535 blocks of 512
	h := HandlerFunc(func(r *Request) (io.ReaderAt, int64, error) { return patternReader(size), size, nil })
	ts := startServer(t, "127.0.0.1:0", h, nil)
	for _, opts := range [][]string{{"windowsize", "16"}, {"blksize", "8", "tsize", "0"}} {
		c := newTestClient(t, "127.0.0.1:0")
		c.discard = true
		want := int64(size)
		if opts[0] == "blksize" {
			// 65536 blocks of 8 bytes and some: small, still rolls over.
			want = 65536*8 + 100
			hs := HandlerFunc(func(r *Request) (io.ReaderAt, int64, error) { return patternReader(want), want, nil })
			ts = startServer(t, "127.0.0.1:0", hs, nil)
		}
		res, err := c.get(ts.addr, "big", opts...)
		if err != nil {
			t.Fatalf("%v: %v", opts, err)
		}
		if res.n != want || res.sum != patternSum(want) || !res.sawBlock0 {
			t.Errorf("%v: %d bytes (want %d), sum ok %v, rolled over to 0: %v", opts, res.n, want, res.sum == patternSum(want), res.sawBlock0)
		}
	}
}

// Lost DATA and OACK packets are resent after the timeout, in lockstep and in windows.
func TestLoss(t *testing.T) {
	content := randBytes(200_000, 3)
	root := fileRoot(t, map[string][]byte{"f": content})
	ts := startServer(t, "127.0.0.1:0", Dir(root), func(s *Server) { s.Timeout = 50 * time.Millisecond })
	for _, tc := range []struct {
		name string
		opts []string
		drop func(blk uint64, seen int) bool
		oack int
	}{
		{"lockstep some once", nil, func(b uint64, s int) bool { return (b == 7 || b == 100 || b == 300) && s == 1 }, 0},
		{"lockstep block 1 three times", nil, func(b uint64, s int) bool { return b == 1 && s <= 3 }, 0},
		{"oack lost twice", []string{"blksize", "1468"}, nil, 2},
		{"window first of window", []string{"windowsize", "8"}, func(b uint64, s int) bool { return (b == 9 || b == 161) && s == 1 }, 0},
		{"window middle", []string{"windowsize", "16", "blksize", "1024"}, func(b uint64, s int) bool { return b%16 == 5 && s == 1 }, 0},
		{"window last", []string{"windowsize", "4"}, func(b uint64, s int) bool { return (b == 4 || b == 40) && s == 1 }, 0},
		{"window twice in a row", []string{"windowsize", "4"}, func(b uint64, s int) bool { return b == 22 && s <= 2 }, 0},
		{"final block", []string{"windowsize", "4"}, func(b uint64, s int) bool { return b == 391 && s == 1 }, 0},
	} {
		c := newTestClient(t, "127.0.0.1:0")
		c.dropData, c.dropOACK = tc.drop, tc.oack
		res, err := c.get(ts.addr, "f", tc.opts...)
		if err != nil || !bytes.Equal(res.data, content) {
			t.Errorf("%s: %d bytes, %v", tc.name, len(res.data), err)
		}
	}
}

// Duplicate ACKs must not cause duplicate DATA (RFC 1350's sorcerer's apprentice).
func TestDuplicateAcks(t *testing.T) {
	content := randBytes(300_000, 4)
	root := fileRoot(t, map[string][]byte{"f": content})
	ts := startServer(t, "127.0.0.1:0", Dir(root), func(s *Server) { s.Timeout = 5 * time.Second })
	for _, opts := range [][]string{nil, {"windowsize", "4"}} {
		c := newTestClient(t, "127.0.0.1:0")
		c.dupAcks = true
		res, err := c.get(ts.addr, "f", opts...)
		if err != nil || !bytes.Equal(res.data, content) {
			t.Fatalf("%v: %v", opts, err)
		}
		if want := len(content)/res.blksize + 1; res.dataPkts != want {
			t.Errorf("%v: %d DATA packets for %d blocks: duplicate ACKs caused resends", opts, res.dataPkts, want)
		}
	}
}

// A client ERROR ends the transfer; Observe reports the bytes acknowledged and the error.
func TestClientAbort(t *testing.T) {
	root := fileRoot(t, map[string][]byte{"f": randBytes(100_000, 5)})
	ts := startServer(t, "127.0.0.1:0", Dir(root), nil)
	c := newTestClient(t, "127.0.0.1:0")
	c.errorAfter = 10
	c.get(ts.addr, "f")
	o := ts.waitObserved(t, 1)
	if o[0].err == nil || !strings.Contains(o[0].err.Error(), "client gives up") || o[0].bytes != 9*512 {
		t.Errorf("observed %+v, want the client's error after 9 acknowledged blocks", o[0])
	}
}

// Garbage on the request port is dropped and the server keeps serving.
func TestGarbage(t *testing.T) {
	root := fileRoot(t, map[string][]byte{"a": []byte("still here")})
	ts := startServer(t, "127.0.0.1:0", Dir(root), nil)
	c := newTestClient(t, "127.0.0.1:0")
	r := rand.New(rand.NewPCG(7, 7))
	junk := [][]byte{{}, {0}, {0, 1}, {0, 1, 0}, {0, 2, 0, 0}, {0, 3, 0, 1, 'x'}, {0, 4, 0, 0}, {0, 5, 0, 0, 0},
		{0, 6}, {0xff, 0xff, 0, 0}, {0, 1, 'a', 0, 'o', 'c', 't', 'e', 't'}, rrq("a", "octet", "blksize"),
		rrq("a", "octet", "blksize", "99999999999999999999999"), rrq("a", "octet", "windowsize", "-5"),
		append([]byte{0, 1}, bytes.Repeat([]byte{0}, 1400)...), bytes.Repeat([]byte{0xff}, 70000)[:65000]}
	for i := 0; i < 300; i++ {
		b := make([]byte, r.IntN(600))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if len(b) > 1 && i%2 == 0 {
			b[0], b[1] = 0, byte(1+r.IntN(6))
		}
		junk = append(junk, b)
	}
	for _, b := range junk {
		c.conn.WriteToUDPAddrPort(b, ts.addr)
	}
	// Drain what the junk provoked (ERRORs/DATA from transfer sockets), then fetch.
	c2 := newTestClient(t, "127.0.0.1:0")
	c2.timeout, c2.tries = 100*time.Millisecond, 50 // the junk may have filled the socket buffer
	res, err := c2.get(ts.addr, "a")
	if err != nil || string(res.data) != "still here" {
		t.Fatalf("after garbage: %q, %v", res.data, err)
	}
}

// A retransmitted request does not start a second transfer.
func TestDuplicateRequest(t *testing.T) {
	root := fileRoot(t, map[string][]byte{"f": randBytes(50_000, 6)})
	ts := startServer(t, "127.0.0.1:0", Dir(root), nil)
	c := newTestClient(t, "127.0.0.1:0")
	c.conn.WriteToUDPAddrPort(rrq("f", "octet"), ts.addr) // the "lost" first try
	res, err := c.get(ts.addr, "f")
	if err != nil || res.n != 50_000 {
		t.Fatalf("%d bytes, %v", res.n, err)
	}
	time.Sleep(50 * time.Millisecond) // let a (wrong) second transfer show up if there were one
	if o := ts.observed(); len(o) != 1 {
		t.Errorf("%d transfers observed for one client port, want 1: %+v", len(o), o)
	}
}

// Beyond MaxTransfers, requests are dropped (clients retry) instead of opening more sockets.
func TestMaxTransfers(t *testing.T) {
	root := fileRoot(t, map[string][]byte{"f": randBytes(10_000, 8)})
	ts := startServer(t, "127.0.0.1:0", Dir(root), func(s *Server) {
		s.MaxTransfers = 1
		s.Timeout = 5 * time.Second
	})
	// First client starts a transfer and stalls it (never acknowledges).
	stall := newTestClient(t, "127.0.0.1:0")
	stall.conn.WriteToUDPAddrPort(rrq("f", "octet"), ts.addr)
	buf := make([]byte, 1024)
	stall.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, tid, err := stall.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	second := newTestClient(t, "127.0.0.1:0")
	second.conn.WriteToUDPAddrPort(rrq("f", "octet"), ts.addr)
	for i := 0; i < 500 && !strings.Contains(ts.log.String(), "too many transfers"); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(ts.log.String(), "too many transfers") {
		t.Fatalf("second request not dropped; log:\n%s", ts.log)
	}
	// End the first transfer; the second client's retry is now served.
	stall.conn.WriteToUDPAddrPort(appendError(nil, ErrNotDefined, "bye"), tid)
	second.timeout = 100 * time.Millisecond
	second.tries = 50
	res, err := second.get(ts.addr, "f")
	if err != nil || res.n != 10_000 {
		t.Fatalf("second client after the first ended: %d bytes, %v", res.n, err)
	}
}

// Replies leave from the address the client sent to, even on a wildcard listener: 127.0.0.2 is
// a loopback address too, and the client must see DATA from it, not from 127.0.0.1.
func TestReplyFromRequestedAddress(t *testing.T) {
	root := fileRoot(t, map[string][]byte{"a": []byte("hi")})
	ts := startServer(t, "0.0.0.0:0", Dir(root), nil)
	for _, dst := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		c := newTestClient(t, "127.0.0.1:0")
		res, err := c.get(netip.AddrPortFrom(netip.MustParseAddr(dst), ts.addr.Port()), "a")
		if err != nil {
			t.Fatalf("%s: %v", dst, err)
		}
		if res.from.Addr().String() != dst || res.from.Port() == ts.addr.Port() {
			t.Errorf("request to %s answered from %v, want %s on a new port", dst, res.from, dst)
		}
	}
	// Dual stack: an IPv6 wildcard listener answers IPv4 and IPv6 clients from the right address.
	pc, err := net.ListenPacket("udp", "[::]:0")
	if err != nil {
		t.Skipf("no IPv6 wildcard socket here: %v", err)
	}
	pc.Close()
	ts6 := startServer(t, "[::]:0", Dir(root), nil)
	for _, tc := range []struct{ local, dst string }{{"127.0.0.1:0", "127.0.0.2"}, {"[::1]:0", "::1"}} {
		c := newTestClient(t, tc.local)
		res, err := c.get(netip.AddrPortFrom(netip.MustParseAddr(tc.dst), ts6.addr.Port()), "a")
		if err != nil {
			t.Fatalf("dual stack %s: %v", tc.dst, err)
		}
		if res.from.Addr().Unmap().String() != tc.dst {
			t.Errorf("dual stack: request to %s answered from %v", tc.dst, res.from)
		}
	}
}

// Serve returns promptly when its context ends, also with a transfer stalled mid-way.
func TestServeStops(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	root := fileRoot(t, map[string][]byte{"f": randBytes(10_000, 9)})
	s := &Server{Handler: Dir(root), Timeout: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc) }()
	c := newTestClient(t, "127.0.0.1:0")
	c.conn.WriteToUDPAddrPort(rrq("f", "octet"), pc.LocalAddr().(*net.UDPAddr).AddrPort())
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.conn.ReadFromUDPAddrPort(make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10s after cancel")
	}
	if err := (&Server{}).Serve(context.Background(), pc); err == nil {
		t.Error("Serve without a Handler did not fail")
	}
}

// The per-block path must not allocate: a transfer of many blocks allocates as much as one of few.
func TestNoAllocPerBlock(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	h := HandlerFunc(func(r *Request) (io.ReaderAt, int64, error) {
		if r.Path == "big" {
			return patternReader(4 << 20), 4 << 20, nil
		}
		return patternReader(10), 10, nil
	})
	ts := startServer(t, "127.0.0.1:0", h, nil)
	var before, after runtimeMem
	measure := func(name string) uint64 {
		c := newTestClient(t, "127.0.0.1:0")
		c.discard = true
		before.read()
		if _, err := c.get(ts.addr, name, "blksize", "1468"); err != nil {
			t.Fatal(err)
		}
		after.read()
		return after.mallocs - before.mallocs
	}
	measure("small") // warm the buffer pool
	small, big := measure("small"), measure("big")
	// Neither side allocates per block; allow slack for runtime noise far below one per block
	// (4 MiB at 1468 is ~2860 blocks).
	if big > small+300 {
		t.Errorf("a 2860-block transfer made %d allocations against %d for a 1-block one", big, small)
	}
}

type runtimeMem struct{ mallocs uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.mallocs = s.Mallocs
}

// A panicking or broken handler fails its own request only.
func TestHandlerFaults(t *testing.T) {
	h := HandlerFunc(func(r *Request) (io.ReaderAt, int64, error) {
		switch r.Path {
		case "panic":
			panic("handler bug")
		case "nil":
			return nil, 0, nil
		case "denied":
			return nil, 0, &Error{Code: ErrAccessViolation, Message: "go away"}
		case "shrinks":
			return patternReader(1000), 5000, nil // promises more than it has
		}
		return patternReader(10), 10, nil
	})
	ts := startServer(t, "127.0.0.1:0", h, nil)
	for name, code := range map[string]ErrorCode{"panic": ErrNotDefined, "nil": ErrNotDefined, "denied": ErrAccessViolation, "shrinks": ErrNotDefined} {
		_, err := newTestClient(t, "127.0.0.1:0").get(ts.addr, name)
		var re *remoteError
		if !errors.As(err, &re) || re.code != code {
			t.Errorf("%s: %v, want ERROR %d", name, err, code)
		}
	}
	if res, err := newTestClient(t, "127.0.0.1:0").get(ts.addr, "ok"); err != nil || res.n != 10 {
		t.Errorf("after faults: %d bytes, %v", res.n, err)
	}
}

// TestAdaptiveTimeout: with MinTimeout a lost packet is resent after about the measured round
// trip (floored at MinTimeout), not after Timeout; and a client gone silent is still given up
// on after (Retries+1)*Timeout without progress. Three losses at a fixed 2 s would take 6 s.
func TestAdaptiveTimeout(t *testing.T) {
	content := randBytes(300_000, 21)
	root := fileRoot(t, map[string][]byte{"f": content})
	ts := startServer(t, "127.0.0.1:0", Dir(root), func(s *Server) {
		s.Timeout, s.MinTimeout, s.Retries = 2*time.Second, 20*time.Millisecond, 1
	})
	for _, opts := range [][]string{nil, {"windowsize", "4"}} {
		c := newTestClient(t, "127.0.0.1:0")
		c.timeout = 30 * time.Second // the server must recover, not the client
		c.dropData = func(b uint64, seen int) bool { return (b == 50 || b == 300 || b == 500) && seen == 1 }
		start := time.Now()
		res, err := c.get(ts.addr, "f", opts...)
		if err != nil || !bytes.Equal(res.data, content) {
			t.Fatalf("%v: %d bytes, %v", opts, len(res.data), err)
		}
		if el := time.Since(start); el >= 2*time.Second {
			t.Errorf("%v: three lost packets took %v: resent after the fixed timeout", opts, el)
		}
	}

	// A client that stops acknowledging: abandoned after 2*Timeout without progress.
	c := newTestClient(t, "127.0.0.1:0")
	c.timeout, c.tries = 10*time.Second, 0
	c.dropData = func(b uint64, _ int) bool { return b >= 10 } // never acknowledges past block 9
	go c.get(ts.addr, "f")
	var o []observed
	for deadline := time.Now().Add(20 * time.Second); len(o) < 3 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		o = ts.observed()
	}
	if len(o) < 3 {
		t.Fatalf("the silent client's transfer was not given up on: %+v", o)
	}
	if err := o[2].err; err == nil || !strings.Contains(err.Error(), "no ACK for block 10 for 4") {
		t.Errorf("silent client: %v", err)
	}
}

func TestRTO(t *testing.T) {
	r := newRTO(200*time.Millisecond, time.Second)
	if !r.adaptive() || r.current() != time.Second {
		t.Fatalf("before any sample: %v", r.current())
	}
	r.sample(time.Millisecond) // 1 ms + 4*0.5 ms, floored
	if r.current() != 200*time.Millisecond {
		t.Errorf("after a 1 ms sample: %v, want the 200 ms floor", r.current())
	}
	r.backOff()
	r.backOff()
	if r.current() != 800*time.Millisecond {
		t.Errorf("after two timeouts: %v, want 800 ms", r.current())
	}
	r.backOff()
	if r.current() != time.Second {
		t.Errorf("after three timeouts: %v, want the 1 s ceiling", r.current())
	}
	for i := 0; i < 20; i++ {
		r.sample(100 * time.Millisecond)
	}
	if c := r.current(); c < 200*time.Millisecond || c > 260*time.Millisecond {
		t.Errorf("after steady 100 ms samples: %v, want srtt+4*rttvar near the 200 ms floor", c)
	}
	fixed := newRTO(0, time.Second)
	fixed.sample(time.Millisecond)
	fixed.backOff()
	if fixed.adaptive() || fixed.current() != time.Second {
		t.Errorf("fixed: %v", fixed.current())
	}
}
