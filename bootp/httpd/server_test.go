package httpd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveLoopback runs h with NewServer on a free loopback port.
func serveLoopback(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln.Addr().String(), h)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestNewServerTimeouts(t *testing.T) {
	srv := NewServer(":0", http.NotFoundHandler())
	if srv.ReadHeaderTimeout <= 0 || srv.IdleTimeout <= 0 {
		t.Errorf("ReadHeaderTimeout %v IdleTimeout %v: both must be set", srv.ReadHeaderTimeout, srv.IdleTimeout)
	}
	if srv.WriteTimeout != 0 || srv.ReadTimeout != 0 {
		t.Errorf("WriteTimeout %v ReadTimeout %v: both would cut long downloads; want 0", srv.WriteTimeout, srv.ReadTimeout)
	}
}

// TestLoopbackRange fetches over a real TCP connection, where the response
// writer is net/http's own and sendfile is in play, with a real client.
func TestLoopbackRange(t *testing.T) {
	f := newFixture(t, 9<<20+77) // more than two stall chunks
	addr := serveLoopback(t, f.h)
	path := "/images/" + testImg + "/filesystem.squashfs"
	data := f.files[path]
	for _, rng := range []string{"", "bytes=1-", "bytes=4194300-8388700", "bytes=-1000"} {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		want, code := data, 200
		if rng != "" {
			req.Header.Set("Range", rng)
			code = 206
			var a, b int
			switch {
			case strings.HasPrefix(rng, "bytes=-"):
				fmt.Sscanf(rng, "bytes=-%d", &b)
				want = data[len(data)-b:]
			case strings.HasSuffix(rng, "-"):
				fmt.Sscanf(rng, "bytes=%d-", &a)
				want = data[a:]
			default:
				fmt.Sscanf(rng, "bytes=%d-%d", &a, &b)
				want = data[a : b+1]
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != code || !bytes.Equal(got, want) {
			t.Errorf("Range %q: %d, %d bytes, %v; want %d and %d matching bytes", rng, resp.StatusCode, len(got), err, code, len(want))
		}
	}
}

// TestDownloadDeadline: a client that stops reading is cut off after
// StallTimeout; one that keeps reading, slowly, gets the whole file although
// the download takes several StallTimeouts. Chunks are small here so that
// each one takes a fraction of StallTimeout (a wide margin on a busy
// machine) while the whole file takes longer than StallTimeout.
func TestDownloadDeadline(t *testing.T) {
	const size = 32 << 20
	f := newFixture(t, size)
	f.h.StallTimeout = time.Second
	f.h.chunk = 256 << 10
	addr := serveLoopback(t, f.h)
	path := "/images/" + testImg + "/filesystem.squashfs"

	get := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: registry\r\nConnection: close\r\n\r\n", path)
		return c
	}

	stalled := get()
	defer stalled.Close()
	time.Sleep(3 * f.h.StallTimeout) // socket buffers fill, the server's write blocks
	stalled.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, err := io.Copy(io.Discard, stalled)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("stalled client: connection still open after 20 s (%d bytes): the server never gave up", n)
	}
	if n >= size {
		t.Errorf("stalled client got all %d bytes; want the server to cut it off", n)
	}

	slow := get()
	defer slow.Close()
	slow.SetReadDeadline(time.Now().Add(60 * time.Second))
	start := time.Now()
	buf := make([]byte, 128<<10)
	var total int64
	for {
		m, err := io.ReadFull(slow, buf)
		total += int64(m)
		if err != nil {
			break
		}
		time.Sleep(16 * time.Millisecond) // ~8 MiB/s: a chunk takes ~32 ms of a 1 s StallTimeout
	}
	took := time.Since(start)
	if total < size {
		t.Errorf("slow client got %d of %d bytes in %v: a progressing download was cut off", total, size, took)
	}
	if took < f.h.StallTimeout {
		t.Logf("the slow download took %v, less than StallTimeout: it proves nothing about resets on this machine", took)
	}
}

// TestFakeClockKeepsDeadlines: Now is the status page's clock only; a fake
// one in the past must not turn into write deadlines that already expired.
func TestFakeClockKeepsDeadlines(t *testing.T) {
	f := newFixture(t, 10)
	f.h.Now = func() time.Time { return time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC) }
	addr := serveLoopback(t, f.h)
	for _, path := range []string{"/", "/images/" + testImg + "/vmlinuz"} {
		code, body := rawRequest(t, addr, "GET", path)
		if code != 200 || body == "" {
			t.Errorf("GET %s with a fake clock: %d, %d bytes; want 200 and a body", path, code, len(body))
		}
	}
}
